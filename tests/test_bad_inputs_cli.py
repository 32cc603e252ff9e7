"""Bad inputs to the ``meta-rl`` command line: each exits with status 2 and one line ``meta-rl: error: ...``
naming the value or file, never a traceback; ``train`` checks everything before it writes anything.

The table runs in this process (``cli.main``); two small MAML runs (one finished, one stopped half way) are
made once and copied into each case that needs to damage one.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from meta_rl_lessons import runs

MAML = ["maml", "--budget", "smoke", "--threads", "1", "--set", "iterations=2"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("made")
    assert run_cli("train", *MAML, "--out", str(base / "finished")) == 0
    assert run_cli("train", *MAML, "--out", str(base / "stopped"), "--stop-after-iterations", "1") == 0
    return {"finished": base / "finished", "stopped": base / "stopped"}


def copy(made: dict[str, Path], which: str, tmp: Path) -> Path:
    dest = tmp / which
    shutil.copytree(made[which], dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# Each case: (argv builder (tmp_path, made) -> argv, expected part of the message). ``{out}`` is a path that
# must not exist after a train case.
def _stopped(m: dict, t: Path) -> str:
    return str(copy(m, "stopped", t))


def _truncated(m: dict, t: Path) -> str:
    run = copy(m, "stopped", t)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return str(run)


def _format1(m: dict, t: Path) -> str:
    run = copy(m, "stopped", t)
    runs.save_checkpoint({"format": 1, "algorithm": "maml", "state": {}, "rows": []}, run / "checkpoint.pt")
    return str(run)


def _garbage_config(m: dict, t: Path) -> str:
    run = copy(m, "stopped", t)
    (run / "config.json").write_text("{not json")
    return str(run)


def _no_algorithm(m: dict, t: Path) -> str:
    run = copy(m, "stopped", t)
    edit_json(run / "config.json", lambda d: d.pop("algorithm"))
    return str(run)


def _edited(m: dict, t: Path) -> str:
    run = copy(m, "stopped", t)
    edit_json(run / "config.json", lambda d: d["config"].update(iterations=20))
    return str(run)


def _file(t: Path) -> str:
    (t / "a-file").write_text("x")
    return str(t / "a-file")


def _nonempty(t: Path) -> str:
    (t / "full").mkdir()
    (t / "full" / "keep.txt").write_text("x")
    return str(t / "full")


CASES: list[tuple[str, Callable[[Path, dict], list[str]], str]] = [
    ("unknown algorithm", lambda t, m: ["train", "mamll"],
     "unknown algorithm 'mamll' (did you mean maml?); allowed: ppo, trpo, maml, rl2, adaptive"),
    ("metarl env typo", lambda t, m: ["train", "maml", "--env", "MetaRL/Navigaton2D-v0"],
     "did you mean MetaRL/Navigation2D-v0"),
    ("not a metarl env", lambda t, m: ["train", "maml", "--env", "Nope-v0"],
     "Registered MetaRL environments: MetaRL/BernoulliBandit-v0"),
    ("gym env typo", lambda t, m: ["train", "ppo", "--env", "CartPol-v1"],
     "unknown environment 'CartPol-v1' for ppo; did you mean CartPole-v1"),
    ("rl2 on mujoco", lambda t, m: ["train", "rl2", "--env", "MetaRL/AntVel-v0"],
     "rl2 cannot train on 'MetaRL/AntVel-v0'"),
    ("unknown budget", lambda t, m: ["train", "ppo", "--budget", "huge"],
     "unknown budget 'huge'; allowed: smoke, book, full"),
    ("unknown device", lambda t, m: ["train", "ppo", "--device", "tpu"],
     "unknown device 'tpu'; allowed: cpu, cuda, cuda:N"),
    ("cuda index", lambda t, m: ["train", "ppo", "--device", "cuda:64"],
     "CUDA is not available" if not torch.cuda.is_available() else "CUDA device(s)"),
    ("set unknown field", lambda t, m: ["train", "ppo", "--set", "learnin_rate=1"],
     "PPOConfig has no field 'learnin_rate' (did you mean learning_rate?)"),
    ("set bad type", lambda t, m: ["train", "ppo", "--set", "learning_rate=fast"],
     "--set learning_rate='fast': cannot convert to float"),
    ("set reserved", lambda t, m: ["train", "ppo", "--set", "seed=1"], "--set seed: set by --seed"),
    ("set without =", lambda t, m: ["train", "ppo", "--set", "learning_rate"], "--set expects key=value"),
    ("set out of range", lambda t, m: ["train", "ppo", "--set", "learning_rate=-1"],
     "invalid PPOConfig: PPOConfig.learning_rate must be"),
    ("set inconsistent", lambda t, m: ["train", "ppo", "--budget", "smoke", "--set", "minibatch_size=100000"],
     "invalid PPOConfig: PPOConfig.minibatch_size=100000"),
    ("set physics", lambda t, m: ["train", "maml", "--set", "physics=bullet"],
     "--set physics='bullet': allowed values are mujoco, warp"),
    ("negative seed", lambda t, m: ["train", "ppo", "--seed", "-1"], "--seed must be a non-negative integer"),
    ("seed not a number", lambda t, m: ["train", "ppo", "--seed", "abc"], "invalid int value: 'abc'"),
    ("zero threads", lambda t, m: ["train", "ppo", "--threads", "0"], "--threads must be a positive integer"),
    ("checkpoint every", lambda t, m: ["train", "ppo", "--checkpoint-every", "-1"],
     "--checkpoint-every must be >= 0 seconds"),
    ("log every", lambda t, m: ["train", "ppo", "--log-every", "0"], "--log-every must be > 0 seconds"),
    ("stop after", lambda t, m: ["train", "ppo", "--stop-after-iterations", "0"],
     "--stop-after-iterations must be >= 1"),
    ("out is a file", lambda t, m: ["train", *MAML, "--out", _file(t)], "exists and is a file"),
    ("out under a file", lambda t, m: ["train", *MAML, "--out", _file(t) + "/run"],
     "is not a writable directory"),
    ("out not empty", lambda t, m: ["train", *MAML, "--out", _nonempty(t)], "already exists and is not "
                                                                            "empty"),
    ("force on a non-run", lambda t, m: ["train", *MAML, "--out", _nonempty(t), "--force"],
     "does not look like one"),
    ("resume missing", lambda t, m: ["resume", str(t / "nowhere")], "does not exist"),
    ("resume not a run", lambda t, m: ["resume", str(t)], "has no config.json"),
    ("garbage config.json", lambda t, m: ["resume", _garbage_config(m, t)], "config.json' is not valid JSON"),
    ("config.json without algorithm", lambda t, m: ["resume", _no_algorithm(m, t)],
     "has no 'algorithm' and 'config' entries"),
    ("truncated checkpoint", lambda t, m: ["resume", _truncated(m, t)],
     "checkpoint.pt' cannot be read"),
    ("format-1 checkpoint", lambda t, m: ["resume", _format1(m, t)], "has format 1"),
    ("edited config.json", lambda t, m: ["resume", _edited(m, t)],
     "differs from the checkpoint's config in iterations (checkpoint 2, config.json 20)"),
    ("resume finished", lambda t, m: ["resume", str(copy(m, "finished", t))], "already finished"),
    ("resume set unknown", lambda t, m: ["resume", _stopped(m, t), "--set", "iteratons=4"],
     "has no field 'iteratons'"),
    ("eval tasks 0", lambda t, m: ["eval", str(m["finished"]), "--tasks", "0"], "--tasks must be an "
                                                                                "integer >= 1"),
    ("eval episodes 0", lambda t, m: ["eval", str(m["finished"]), "--episodes", "0"],
     "--episodes must be an integer >= 1"),
    ("eval steps", lambda t, m: ["eval", str(m["finished"]), "--steps", "-1"], "--steps must be >= 0"),
    ("eval truncated", lambda t, m: ["eval", _truncated(m, t)], "checkpoint.pt' cannot be read"),
    ("plot format", lambda t, m: ["plot", str(m["finished"]), "--out", str(t / "fig.xyz")],
     "unknown image format '.xyz'"),
    ("plot column", lambda t, m: ["plot", str(m["finished"]), "--y", "nonsense"], "has no column 'nonsense'"),
    ("plot dpi", lambda t, m: ["plot", str(m["finished"]), "--dpi", "0"], "--dpi must be a positive integer"),
    ("export unfinished", lambda t, m: ["export", _stopped(m, t), str(t / "res")],
     "has status 'interrupted', not 'finished'"),
    ("config algorithm", lambda t, m: ["config", "mamll"], "unknown algorithm 'mamll'"),
    ("config budget", lambda t, m: ["config", "ppo", "--budget", "huge"], "unknown budget 'huge'"),
    ("unknown command", lambda t, m: ["trian"], "invalid choice: 'trian'"),
]
if importlib.util.find_spec("tensorboard") is None:
    CASES.append(("tensorboard missing", lambda t, m: ["train", *MAML, "--tensorboard"],
                  "pip install -e .[tensorboard]"))


@pytest.mark.parametrize("build, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, made, capsys, build, message):
    argv = build(tmp_path, made)
    out = tmp_path / "new-run"
    if argv[0] == "train" and "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    capsys.readouterr()
    try:
        code = run_cli(*argv)
    except SystemExit as exit_info:  # argparse's errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meta-rl: error: "), err
    assert message in err
    assert not out.exists()  # nothing was created


def test_the_table_is_large_enough():
    assert len(CASES) >= 25


def test_a_full_disk_is_a_message_and_the_run_can_resume(tmp_path, monkeypatch, capsys):
    """ENOSPC while logging: status 2 and what to do; the run is recorded as failed and resumes later."""
    run = tmp_path / "run"

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.progress_path))

    monkeypatch.setattr(runs.RunDir, "append_progress", full)
    assert run_cli("train", *MAML, "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"cannot write '{run / 'progress.csv'}': no space left on the device" in err
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "failed"
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_a_bad_set_value_leaves_nothing_behind_so_the_corrected_command_runs(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *MAML, "--set", "num_episodes=zero", "--out", str(run)) == 2
    assert not run.exists()
    assert run_cli("train", *MAML, "--set", "num_episodes=2", "--out", str(run)) == 0
