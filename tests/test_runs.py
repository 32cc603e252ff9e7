"""Tests of meta_rl_lessons.runs: checkpoints, generator states, run directories, provenance."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from meta_rl_lessons import runs


def _draws() -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(())))  # noqa: NPY002


def test_global_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    _draws()
    np.random.randn()  # noqa: NPY002 - leaves a cached Gaussian in the legacy state
    state = runs.global_rng_state()
    runs.save_checkpoint({"rng": state}, tmp_path / "c.pt")
    expected = [_draws() for _ in range(3)]
    restored = runs.load_checkpoint(tmp_path / "c.pt")["rng"]
    runs.set_global_rng_state(restored)
    assert [_draws() for _ in range(3)] == expected


@pytest.mark.parametrize("make", [
    lambda: np.random.default_rng(5),
    lambda: np.random.RandomState(5),  # noqa: NPY002
    lambda: torch.Generator().manual_seed(5),
    lambda: random.Random(5),
])
def test_generator_state_roundtrip(tmp_path, make):
    gen = make()

    def draw(g):
        if isinstance(g, torch.Generator):
            return torch.rand(4, generator=g).tolist()
        if isinstance(g, random.Random):
            return [g.random() for _ in range(4)]
        return g.random(4).tolist() if isinstance(g, np.random.Generator) else g.rand(4).tolist()

    draw(gen)
    runs.save_checkpoint({"g": runs.generator_state(gen)}, tmp_path / "g.pt")
    expected = draw(gen)
    fresh = make()
    runs.set_generator_state(fresh, runs.load_checkpoint(tmp_path / "g.pt")["g"])
    assert draw(fresh) == expected


def test_generator_state_rejects_other_objects_and_kind_mismatch():
    with pytest.raises(TypeError, match="cannot capture the state of a builtins.int"):
        runs.generator_state(3)
    with pytest.raises(TypeError, match="numpy.Generator state but the object is a Generator"):
        runs.set_generator_state(torch.Generator(), runs.generator_state(np.random.default_rng(0)))


def test_save_checkpoint_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    runs.save_checkpoint({"x": torch.ones(2), "a": np.arange(3), "n": np.float64(1.5), "t": (1, 2)}, path)
    loaded = runs.load_checkpoint(path)
    assert torch.equal(loaded["a"], torch.arange(3)) and loaded["n"] == 1.5 and loaded["t"] == [1, 2]

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        runs.save_checkpoint({"x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(runs.load_checkpoint(path)["x"], torch.ones(2))  # the previous checkpoint survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    import argparse

    torch.save({"obj": argparse.Namespace(a=1)}, tmp_path / "evil.pt")  # any class outside the allow-list
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        runs.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        runs.load_checkpoint(tmp_path / "missing.pt")


def test_run_dir_create_refuses_existing_unless_forced(tmp_path):
    rd = runs.RunDir.create(tmp_path / "run")
    rd.write_config({"algorithm": "ppo"})
    with pytest.raises(FileExistsError, match="already exists and is not empty.*--force"):
        runs.RunDir.create(tmp_path / "run")
    fresh = runs.RunDir.create(tmp_path / "run", force=True)
    assert list(fresh.path.iterdir()) == []
    runs.RunDir.create(tmp_path / "empty-ok")  # an empty existing directory is fine
    runs.RunDir.create(tmp_path / "empty-ok")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        runs.RunDir.open(tmp_path / "empty-ok")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.RunDir.open(tmp_path / "nowhere")


def test_progress_write_append_read(tmp_path):
    rd = runs.RunDir.create(tmp_path / "run")
    assert rd.read_progress() == []
    rd.append_progress({"iteration": 1, "ret": torch.tensor(2.5), "flag": True})
    rd.append_progress({"iteration": 2, "ret": float("nan"), "flag": False})
    rows = rd.read_progress()
    assert rows[0] == {"iteration": 1.0, "ret": 2.5, "flag": 1.0}
    assert rows[1]["iteration"] == 2.0 and np.isnan(rows[1]["ret"])
    with pytest.raises(KeyError, match="not in the header"):
        rd.append_progress({"iteration": 3, "new_metric": 1.0})
    rd.write_progress(rows[:1])  # what resume does: back to the checkpoint's rows
    assert len(rd.read_progress()) == 1
    rd2 = runs.RunDir(rd.path)  # a new process appends under the existing header
    rd2.append_progress({"iteration": 2, "ret": 1.0, "flag": 0.0})
    assert [r["iteration"] for r in rd2.read_progress()] == [1.0, 2.0]


def test_provenance_records_command_git_and_machine():
    prov = runs.provenance(["meta-rl", "train", "ppo", "--seed", "1"])
    assert prov["command"] == ["meta-rl", "train", "ppo", "--seed", "1"]
    assert prov["command_line"] == "meta-rl train ppo --seed 1"
    assert prov["status"] == "running" and prov["start_time"].endswith("+00:00")
    for key in ("hostname", "cpu_model", "cpu_count", "gpus", "versions"):
        assert key in prov
    assert prov["versions"]["torch"] == torch.__version__
    assert prov["versions"]["gymnasium"] is not None and "mujoco" in prov["versions"]
    git = runs.git_info()
    if git is not None:  # this package is in a git checkout when tested from the repository
        assert len(git["commit"]) == 40 and isinstance(git["dirty"], bool)
        assert prov["git"]["commit"] == git["commit"]
    json.dumps(prov)  # JSON-serialisable


# ---------------------------------------------------------------------------------------------- the run loop
from dataclasses import dataclass  # noqa: E402

from meta_rl_lessons.trainer import TrainerBase  # noqa: E402


@dataclass
class CountConfig:
    iterations: int = 5
    seed: int = 0


class Counter(TrainerBase):
    """A tiny trainer following the protocol: a NumPy generator is its whole state. ``signal_at`` sends
    this process a signal inside that iteration (as Slurm or Ctrl-C would)."""

    name = "counter"

    def __init__(self, config: CountConfig, signal_at: dict[int, tuple[int, ...]] | None = None) -> None:
        self.config, self.iterations_done, self.logger = config, 0, None
        self.rng = np.random.default_rng(config.seed)
        self.signal_at = signal_at or {}
        self.closed = 0

    @property
    def total_iterations(self) -> int:
        return self.config.iterations

    def iteration(self) -> dict:
        import os

        self.iterations_done += 1
        for signum in self.signal_at.get(self.iterations_done, ()):
            os.kill(os.getpid(), signum)
        return {"iteration": self.iterations_done, "env_steps": 10 * self.iterations_done,
                "episode_return": float(self.rng.normal())}

    def state_dict(self) -> dict:
        return {"iterations_done": self.iterations_done, "rng": runs.generator_state(self.rng)}

    def load_state_dict(self, state) -> None:
        self.iterations_done = int(state["iterations_done"])
        runs.set_generator_state(self.rng, state["rng"])

    def close(self) -> None:
        self.closed += 1


def plain(rows):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def test_run_from_python_returns_rows_and_continues_a_finished_run_at_once(tmp_path, capsys):
    result = runs.run(Counter(CountConfig()), tmp_path / "r", progress=False)
    assert result.status == "finished" and result.exit_code == 0 and len(result.rows) == 5
    assert [r["env_steps_total"] for r in result.rows] == [10, 20, 30, 40, 50]
    assert plain(runs.RunDir(tmp_path / "r").read_progress()) == plain(result.rows)
    assert "meta-rl: iteration 1/5" in capsys.readouterr().err  # plain log lines without a bar
    again = runs.run(Counter(CountConfig()), tmp_path / "r", progress=False)
    assert again.status == "finished" and plain(again.rows) == plain(result.rows)
    config = runs.RunDir(tmp_path / "r").read_config()
    assert config == {"algorithm": "counter", "config": {"iterations": 5, "seed": 0}}


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])
def test_sigint_and_sigterm_finish_the_iteration_checkpoint_and_resume_exactly(tmp_path, signum, code):
    expected = runs.run(Counter(CountConfig()), tmp_path / "ref", progress=False).rows
    result = runs.run(Counter(CountConfig(), signal_at={2: (signum,)}), tmp_path / "r", progress=False)
    assert result.status == "interrupted" and result.exit_code == code and len(result.rows) == 2
    assert runs.RunDir(tmp_path / "r").read_json("provenance.json")["status"] == "interrupted"
    assert len(runs.load_checkpoint(tmp_path / "r" / "checkpoint.pt")["rows"]) == 2
    resumed = runs.run(Counter(CountConfig()), tmp_path / "r", progress=False)
    assert resumed.status == "finished" and plain(resumed.rows) == plain(expected)
    sessions = runs.RunDir(tmp_path / "r").read_json("provenance.json")["sessions"]
    assert [s["status"] for s in sessions] == ["interrupted", "finished"]


def test_a_second_signal_stops_at_once_keeping_the_previous_checkpoint(tmp_path):
    run = tmp_path / "r"
    runs.run(Counter(CountConfig()), run, progress=False, stop_after=2)
    result = runs.run(Counter(CountConfig(), signal_at={3: (15, 15)}), run, progress=False)
    assert result.status == "interrupted" and result.exit_code == 143
    assert len(runs.load_checkpoint(run / "checkpoint.pt")["rows"]) == 2  # the checkpoint before both signals
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "interrupted"


def test_the_run_refuses_another_config_format_1_and_removes_stale_temporaries(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "r"
    runs.run(Counter(CountConfig()), run, progress=False, stop_after=1)
    with pytest.raises(runs.RunError, match=r"from checkpoint .* in iterations \(checkpoint 5, now 9\)"):
        runs.run(Counter(CountConfig(iterations=9)), run, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = run / f".checkpoint.pt.tmp{dead}"
    stale.write_bytes(b"half a checkpoint")  # what a kill -9 during a save leaves
    result = runs.run(Counter(CountConfig(iterations=9)), run, progress=False, allow_changes={"iterations"})
    assert result.status == "finished" and len(result.rows) == 9 and not stale.exists()
    runs.save_checkpoint({"format": 1, "algorithm": "counter", "rows": []}, run / "checkpoint.pt")
    with pytest.raises(runs.RunError, match="has format 1"):
        runs.run(Counter(CountConfig()), run, progress=False)


def test_callbacks_see_every_row_and_can_stop_the_run(tmp_path):
    seen = []

    class StopAtThree(runs.Callback):
        def on_row(self, session, row):
            seen.append(row["iteration"])
            return row["iteration"] < 3

    result = runs.run(Counter(CountConfig()), tmp_path / "r", progress=False, callbacks=[StopAtThree()])
    assert seen == [1, 2, 3] and result.status == "interrupted" and result.exit_code == 0
