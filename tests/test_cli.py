"""Tests of the ``meta-rl`` command line (meta_rl_lessons.cli): train, interrupt, resume, eval, plot, errors.

The acceptance tests run the command line at the smoke budget with one torch thread, in subprocesses
(``python -m meta_rl_lessons.cli``, as a user would) where it matters, else in this process (``cli.main``,
the same code without the cost of importing torch again): a run stopped half way (by
``--stop-after-iterations``, and once by a real SIGINT) and resumed must end with the same ``progress.csv``
as a run never interrupted, apart from the wall-clock columns.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from meta_rl_lessons import cli, experiments, runs

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "META_RL_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
MAML = ["maml", "--env", "MetaRL/Navigation2D-v0", "--budget", "smoke", "--seed", "3", "--threads", "1"]
PPO = ["ppo", "--env", "CartPole-v1", "--budget", "smoke", "--seed", "4", "--threads", "1"]


def meta_rl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m meta_rl_lessons.cli ARGS`` in the repository root."""
    proc = subprocess.run([sys.executable, "-m", "meta_rl_lessons.cli", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"meta-rl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def rows(run_dir: Path) -> list[dict[str, str]]:
    """progress.csv rows without the wall-clock columns (everything else must be reproducible)."""
    with open(run_dir / "progress.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in cli.TIMING_COLUMNS} for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted smoke runs: MAML on Navigation2D through the real command line (a subprocess running
    ``meta-rl train maml --env MetaRL/Navigation2D-v0 --budget smoke``), PPO on CartPole in this process."""
    base = tmp_path_factory.mktemp("reference")
    meta_rl("train", *MAML, "--out", str(base / "maml"))
    assert run_cli("train", *PPO, "--out", str(base / "ppo")) == 0
    return {"maml": base / "maml", "ppo": base / "ppo"}


# ---------------------------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("algo, args, total", [("maml", MAML, 6), ("ppo", PPO, 6)])
def test_stop_half_way_then_resume_gives_the_uninterrupted_numbers(tmp_path, reference_runs, capsys, algo,
                                                                   args, total):
    run = tmp_path / algo
    assert run_cli("train", *args, "--out", str(run), "--stop-after-iterations", str(total // 2)) == 0
    assert f"meta-rl resume {run}" in capsys.readouterr().err
    assert len(rows(run)) == total // 2
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "interrupted"
    assert run_cli("resume", str(run)) == 0
    expected = rows(reference_runs[algo])
    assert len(expected) == total
    assert rows(run) == expected
    prov = runs.RunDir(run).read_json("provenance.json")
    assert prov["status"] == "finished"
    assert [s["status"] for s in prov["sessions"]] == ["interrupted", "finished"]
    assert prov["sessions"][1]["command"] == ["meta-rl", "resume", str(run), "--no-progress"]


def test_resume_recomputes_rows_logged_after_the_last_checkpoint(tmp_path, reference_runs):
    """A crash between checkpoints leaves extra rows in progress.csv: resume drops and recomputes them."""
    run = tmp_path / "maml"
    assert run_cli("train", *MAML, "--out", str(run), "--stop-after-iterations", "2") == 0
    extra = rows(reference_runs["maml"])[2]
    with open(run / "progress.csv", "a", newline="") as fh:
        csv.writer(fh).writerow([*extra.values(), "0", "0", "0"])  # a fake row 3 written after the checkpoint
    assert run_cli("resume", str(run)) == 0
    assert rows(run) == rows(reference_runs["maml"])


MAML20 = [*MAML, "--set", "iterations=20"]


@pytest.fixture(scope="module")
def maml20_reference(tmp_path_factory):
    """An uninterrupted 20-iteration MAML run (long enough to interrupt a copy of it half way)."""
    run = tmp_path_factory.mktemp("maml20") / "run"
    assert run_cli("train", *MAML20, "--out", str(run)) == 0
    assert len(rows(run)) == 20
    return run


def start_and_wait(run: Path, *extra: str, min_rows: int = 2) -> subprocess.Popen:
    """Start ``meta-rl train`` (MAML, 20 iterations) in a subprocess; return once it logged ``min_rows``."""
    proc = subprocess.Popen([sys.executable, "-m", "meta_rl_lessons.cli", "train", *MAML20, "--out", str(run),
                             *extra], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    progress = run / "progress.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and len(progress.read_text().splitlines()) >= min_rows + 1:  # + the header
            break
        time.sleep(0.005)
    return proc


def test_sigint_checkpoints_at_the_iteration_boundary_and_resume_matches(tmp_path, maml20_reference):
    """A real SIGINT to a ``meta-rl train`` process half way; the resumed run equals an uninterrupted one."""
    run = tmp_path / "interrupted"
    proc = start_and_wait(run)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "SIGINT received" in err and f"meta-rl resume {run}" in err
    done = len(rows(run))
    assert 2 <= done < 20
    ckpt = runs.load_checkpoint(run / "checkpoint.pt")
    assert len(ckpt["rows"]) == done and int(ckpt["trainer"]["iterations_done"]) == done
    assert ckpt["format"] == 2 and ckpt["algorithm"] == "maml" and ckpt["config"]["iterations"] == 20
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "interrupted"
    assert run_cli("resume", str(run)) == 0
    assert rows(run) == rows(maml20_reference)


def test_sigterm_checkpoints_exits_143_and_resume_matches(tmp_path, maml20_reference):
    """SIGTERM (Slurm, timeout, Kubernetes) is handled as Ctrl-C is: checkpoint, 'interrupted', exit 143."""
    run = tmp_path / "terminated"
    proc = start_and_wait(run)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM received" in err and f"meta-rl resume {run}" in err
    done = len(rows(run))
    assert 2 <= done < 20 and len(runs.load_checkpoint(run / "checkpoint.pt")["rows"]) == done
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "interrupted"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (run / f".checkpoint.pt.tmp{dead}").write_bytes(b"x" * 1000)  # as a kill -9 during a save leaves it
    assert run_cli("resume", str(run)) == 0
    assert rows(run) == rows(maml20_reference)
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_killed_run_resumes_from_its_last_periodic_checkpoint(tmp_path, maml20_reference):
    """SIGKILL (no chance to save): with ``--checkpoint-every 0`` at most the running iteration is lost."""
    run = tmp_path / "killed"
    proc = start_and_wait(run, "--checkpoint-every", "0", min_rows=3)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = len(runs.load_checkpoint(run / "checkpoint.pt")["rows"])
    assert 2 <= done < 20  # every logged iteration but possibly the last was checkpointed
    assert done >= len(rows(run)) - 1
    assert runs.RunDir(run).read_json("provenance.json")["status"] == "running"
    assert run_cli("resume", str(run)) == 0
    assert rows(run) == rows(maml20_reference)


# ---------------------------------------------------------------------------------------------- run directory
def test_config_and_provenance_contents(reference_runs):
    rd = runs.RunDir.open(reference_runs["maml"])
    config = rd.read_config()
    assert {k: config[k] for k in ("algorithm", "env", "budget", "seed", "device", "threads")} == {
        "algorithm": "maml", "env": "MetaRL/Navigation2D-v0", "budget": "smoke", "seed": 3, "device": "cpu",
        "threads": 1}
    assert config["config_class"] == "meta_rl_lessons.maml.rl.MAMLTRPOConfig"
    fields = config["config"]
    assert fields["family"] == "Navigation2D" and fields["seed"] == 3 and fields["device"] == "cpu"
    assert fields["iterations"] == experiments.PRESETS["maml"]["smoke"]["iterations"]
    from meta_rl_lessons.maml.rl import MAMLTRPOConfig

    assert experiments.config_from_dict("maml", fields) == MAMLTRPOConfig(**{
        **fields, "hidden_sizes": tuple(fields["hidden_sizes"])})
    prov = rd.read_json("provenance.json")
    assert prov["command"][:3] == ["meta-rl", "train", "maml"] and "--seed" in prov["command"]
    assert prov["status"] == "finished" and prov["end_time"] >= prov["start_time"]
    for key in ("git", "hostname", "cpu_model", "cpu_count", "gpus", "versions"):
        assert key in prov
    for lib in ("torch", "gymnasium", "mujoco"):
        assert prov["versions"][lib]
    if prov["git"] is not None:
        assert len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)
    assert (rd.path / "checkpoint.pt").is_file()
    assert not [p for p in rd.path.iterdir() if ".tmp" in p.name]
    progress = rows(rd.path)
    assert [int(float(r["iteration"])) for r in progress] == list(range(1, 7))
    steps = [float(r["env_steps_total"]) for r in progress]
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False))


# ---------------------------------------------------------------------------------------------- eval, plot
def test_eval_maml_prints_returns_after_0_to_3_adaptation_steps(reference_runs, capsys):
    assert run_cli("eval", str(reference_runs["maml"]), "--tasks", "4") == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert "held-out test tasks" in stdout
    header = next(i for i, x in enumerate(lines) if x.startswith("adaptation steps"))
    table = [line.split() for line in lines[header + 1:]]
    assert [int(r[0]) for r in table] == [0, 1, 2, 3]
    assert all(math.isfinite(float(r[1])) and float(r[1]) < 0 for r in table)  # navigation rewards are < 0
    report = json.loads((reference_runs["maml"] / "eval.json").read_text())
    assert set(report["return_after_steps"]) == {"0", "1", "2", "3"}
    assert report["return_after_steps"]["0"]["n"] == 4
    assert report["task_seed"] == 10_000  # the default --seed: the tasks can be rebuilt from it


def test_eval_ppo_prints_episode_returns(reference_runs, capsys):
    assert run_cli("eval", str(reference_runs["ppo"]), "--episodes", "3") == 0
    assert "episode_return:" in capsys.readouterr().out
    report = json.loads((reference_runs["ppo"] / "eval.json").read_text())
    assert report["episode_return"]["n"] == 3
    assert report["episode_return"]["mean"] >= 8  # a CartPole episode lasts at least 8 steps


def test_plot_writes_a_png_with_labelled_axes(tmp_path, reference_runs):
    out = tmp_path / "fig.png"
    assert run_cli("plot", str(reference_runs["maml"]), "--out", str(out)) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from meta_rl_lessons import plotting

    rd = runs.RunDir.open(reference_runs["maml"])
    fig = plotting.plot_runs([(rd.path, rd.read_config(), rd.read_progress())], x="env_steps_total",
                             y="return_post")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "environment steps (count)"
    assert ax.get_ylabel().startswith("mean return after adaptation")
    assert ax.get_legend().get_texts()[0].get_text() == "maml on MetaRL/Navigation2D-v0 (smoke)"


def test_plot_unknown_column_is_a_clear_error(reference_runs, capsys):
    assert cli.main(["plot", str(reference_runs["ppo"]), "--y", "nonsense"]) == 2
    assert "has no column 'nonsense'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- other trainers
@pytest.mark.parametrize("algo, env", [("trpo", "CartPole-v1"), ("rl2", "MetaRL/BernoulliBandit-v0"),
                                       ("adaptive", "CartPole-v1")])
def test_other_algorithms_resume_exactly(tmp_path, algo, env):
    """Stop after one iteration, resume, compare with an uninterrupted run."""
    common = ["train", algo, "--env", env, "--budget", "smoke", "--threads", "1"]
    assert run_cli(*common, "--out", str(tmp_path / "full")) == 0
    assert run_cli(*common, "--out", str(tmp_path / "part"), "--stop-after-iterations", "1") == 0
    assert len(rows(tmp_path / "part")) == 1
    assert run_cli("resume", str(tmp_path / "part")) == 0
    full = rows(tmp_path / "full")
    assert len(full) > 1 and rows(tmp_path / "part") == full
    assert run_cli("eval", str(tmp_path / "full"), "--episodes", "2", "--tasks", "4") == 0
    report = json.loads((tmp_path / "full" / "eval.json").read_text())
    key = {"trpo": "episode_return", "rl2": "trial_return", "adaptive": "best_score"}[algo]
    assert key in report


def test_tensorboard_logs_when_available_else_says_how_to_install_it(tmp_path, capsys):
    import importlib.util

    run = tmp_path / "run"
    args = ["train", "maml", "--budget", "smoke", "--threads", "1", "--set", "iterations=2",
            "--out", str(run), "--tensorboard"]
    if importlib.util.find_spec("tensorboard") is None:
        assert run_cli(*args) == 2
        assert "pip install -e .[tensorboard]" in capsys.readouterr().err
        assert not run.exists()  # checked before anything was written
    else:
        assert run_cli(*args) == 0
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_list_shows_algorithms_budgets_and_metarl_envs(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    assert "ppo, trpo, maml, rl2, adaptive" in out and "smoke, book, full" in out
    assert "MetaRL/Navigation2D-v0" in out and "MetaRL/HalfCheetahVel-v0" in out


def test_resume_with_an_environment_state_it_cannot_read_warns_and_continues(tmp_path, capsys):
    """PPO on a gymnasium env that is neither classic control nor MuJoCo: the running episodes restart."""
    run = tmp_path / "run"
    args = ["ppo", "--env", "MetaRL/Navigation2D-v0", "--budget", "smoke", "--threads", "1"]
    assert run_cli("train", *args, "--out", str(run), "--stop-after-iterations", "2") == 0
    with pytest.warns(RuntimeWarning, match="not exact: cannot checkpoint the state of Navigation2DEnv"):
        assert run_cli("resume", str(run)) == 0
    assert len(rows(run)) == 6


# ---------------------------------------------------------------------------------------------- errors
def test_budget_defaults_to_meta_rl_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("META_RL_BUDGET", "smoke")
    out = str(tmp_path / "r")
    assert run_cli("train", "maml", "--threads", "1", "--set", "iterations=1", "--out", out) == 0
    assert runs.RunDir.open(tmp_path / "r").read_config()["budget"] == "smoke"
    monkeypatch.setenv("META_RL_BUDGET", "huge")
    assert run_cli("train", "maml", "--out", str(tmp_path / "r2")) == 2
    assert "META_RL_BUDGET='huge' is not a known experiment budget" in capsys.readouterr().err


def test_cuda_without_cuda_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["train", "ppo", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "--device cuda was requested but CUDA is not available on this machine" in capsys.readouterr().err


def test_existing_run_dir_needs_force_and_finished_runs_do_not_resume(reference_runs, tmp_path, capsys):
    assert cli.main(["train", *PPO, "--out", str(reference_runs["ppo"])]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert cli.main(["resume", str(reference_runs["ppo"])]) == 2
    assert "already finished" in capsys.readouterr().err
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    assert cli.main(["train", *PPO, "--out", str(other), "--force"]) == 2
    assert "does not look like one" in capsys.readouterr().err
    assert (other / "precious.txt").read_text() == "keep me"


def test_force_replaces_a_run_directory(tmp_path):
    run = tmp_path / "run"
    args = ["train", "maml", "--budget", "smoke", "--threads", "1", "--out", str(run),
            "--set", "iterations=1"]
    assert run_cli(*args) == 0
    (run / "stale.txt").write_text("old")
    assert run_cli(*args, "--force") == 0
    assert not (run / "stale.txt").exists() and len(rows(run)) == 1


def test_a_run_in_use_cannot_be_resumed_or_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *MAML, "--out", str(run), "--stop-after-iterations", "1") == 0
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from meta_rl_lessons.runs import RunDir\n"
                               "with RunDir(sys.argv[1]).lock():\n"
                               "    print('locked', flush=True)\n"
                               "    time.sleep(60)\n", str(run)],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_cli("resume", str(run)) == 2
        assert f"is in use by another meta-rl process (pid {holder.pid})" in capsys.readouterr().err
        assert run_cli("train", *MAML, "--out", str(run), "--force") == 2
        assert "is in use" in capsys.readouterr().err
        assert (run / "checkpoint.pt").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("resume", str(run)) == 0  # the lock died with its process


# ---------------------------------------------------------------------------------------------- --set parsing
def test_parse_overrides_converts_to_the_field_types():
    from meta_rl_lessons.maml.rl import MAMLTRPOConfig
    from meta_rl_lessons.rl.ppo import PPOConfig

    got = experiments.parse_overrides(PPOConfig, ["num_envs=2", "total_steps=1e4", "learning_rate=3e-4",
                                          "anneal_lr=false", "target_kl=none", "hidden_sizes=32,32",
                                          "max_grad_norm=inf", "activation=relu", "max_episode_steps=100"])
    assert got == {"num_envs": 2, "total_steps": 10_000, "learning_rate": 3e-4, "anneal_lr": False,
                   "target_kl": None, "hidden_sizes": (32, 32), "max_grad_norm": math.inf,
                   "activation": "relu", "max_episode_steps": 100}
    assert experiments.parse_overrides(PPOConfig, ["hidden_sizes=(8,)"]) == {"hidden_sizes": (8,)}
    assert experiments.parse_overrides(MAMLTRPOConfig, ['family_kwargs={"horizon": 50}']) == {
        "family_kwargs": {"horizon": 50}}
    with pytest.raises(experiments.ExperimentError, match="cannot convert to int"):
        experiments.parse_overrides(PPOConfig, ["num_envs=2.5"])
    with pytest.raises(experiments.ExperimentError, match="cannot convert to bool"):
        experiments.parse_overrides(PPOConfig, ["anneal_lr=maybe"])


def test_presets_are_valid_configs_for_every_budget():
    for algo in experiments.ALGORITHMS:
        cls = experiments.spec(algo).config_class
        for budget in ("smoke", "book", "full"):
            cls(**experiments.preset(algo, budget))
    assert experiments.preset("maml", "book", "HalfCheetahVel")["meta_batch_size"] == 40


def test_help_is_fast_and_imports_no_torch(capsys):
    code = ("import sys, meta_rl_lessons.cli as c\n"
            "assert 'torch' not in sys.modules and 'gymnasium' not in sys.modules, sorted(sys.modules)\n"
            "c.build_parser().format_help()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, check=True, timeout=60)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "train" in help_text and "resume" in help_text


# ---------------------------------------------------------------------------------------------- export
def rebuilt_policy(run: Path) -> dict[str, torch.Tensor]:
    """The trained policy as the run's own trainer holds it: a fresh trainer built from config.json with the
    checkpoint loaded (an independent route to the numbers policy.json must hold)."""
    rd = runs.RunDir.open(run)
    meta = rd.read_config()
    spec = experiments.spec(meta["algorithm"])
    trainer = spec.build(experiments.config_from_dict(spec.name, meta["config"]))
    try:
        trainer.load_state_dict(runs.load_checkpoint(rd.checkpoint_path)["trainer"])
        out = {f"policy.{k}": v.detach().clone() for k, v in trainer.policy.state_dict().items()}
        rms = getattr(getattr(trainer, "sampler", None), "obs_normalizer", None)
        if meta["algorithm"] == "ppo" and rms is not None:
            out.update({f"obs_rms.{k}": torch.as_tensor(v, dtype=torch.float64)
                        for k, v in rms.state_dict().items()})
    finally:
        trainer.close()
    return out


@pytest.fixture(scope="module")
def export_runs(tmp_path_factory, reference_runs):
    """Finished smoke runs of every algorithm with a policy (PPO with observation normalisation)."""
    base = tmp_path_factory.mktemp("export")
    made = {"maml": reference_runs["maml"]}
    for algo, extra in [("ppo", ["--set", "normalize_observations=true"]), ("trpo", []),
                        ("rl2", ["--env", "MetaRL/BernoulliBandit-v0", "--set", "total_iterations=2"])]:
        made[algo] = base / algo
        assert run_cli("train", algo, "--budget", "smoke", "--threads", "1", *extra, "--out",
                       str(made[algo])) == 0
    assert run_cli("eval", str(made["ppo"]), "--episodes", "2") == 0
    return made


@pytest.mark.parametrize("algo", ["maml", "ppo", "trpo", "rl2"])
def test_export_copies_files_verbatim_and_policy_json_holds_the_trained_policy(tmp_path, monkeypatch,
                                                                               export_runs, algo):
    from meta_rl_lessons import results

    run = export_runs[algo]
    dest = tmp_path / "results" / f"{algo}-smoke"
    assert run_cli("export", str(run), str(dest)) == 0
    expected_files = {"config.json", "provenance.json", "progress.csv", "policy.json"}
    if (run / "eval.json").is_file():
        expected_files.add("eval.json")
    assert {p.name for p in dest.iterdir()} == expected_files  # never the checkpoint
    for name in expected_files - {"policy.json"}:
        assert (dest / name).read_bytes() == (run / name).read_bytes(), name
    monkeypatch.setenv("META_RL_RESULTS", str(tmp_path / "results"))
    r = results.load_result(f"{algo}-smoke")
    got, want = r.policy_params(), rebuilt_policy(run)
    assert list(got) == list(want) and want
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert torch.equal(got[k], want[k]), k
        # exactly the same bits (torch.equal would accept -0.0 for 0.0)
        assert got[k].numpy().tobytes() == want[k].numpy().tobytes(), k
    assert ("obs_rms.mean" in got) == (algo == "ppo")
    with r.trainer() as rebuilt:  # Result.trainer(): the recorded config with policy.json's parameters
        for k, v in rebuilt.policy.state_dict().items():
            assert torch.equal(v, want[f"policy.{k}"]), k
    assert (r.eval is not None) == (run / "eval.json").is_file()
    assert algo != "ppo" or r.eval == json.loads((run / "eval.json").read_text())


def test_export_of_an_adaptive_search_has_no_policy(tmp_path, monkeypatch, capsys):
    from meta_rl_lessons import results

    run = tmp_path / "run"
    assert run_cli("train", "adaptive", "--budget", "smoke", "--threads", "1", "--out", str(run)) == 0
    assert run_cli("eval", str(run)) == 0
    assert run_cli("export", str(run), str(tmp_path / "res" / "a")) == 0
    assert "no policy.json" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "res" / "a").iterdir()} == {
        "config.json", "provenance.json", "progress.csv", "eval.json"}
    monkeypatch.setenv("META_RL_RESULTS", str(tmp_path / "res"))
    with pytest.raises(FileNotFoundError, match="exported without the policy"):
        results.load_result("a").policy_params()


def test_export_refuses_unfinished_runs_and_overwrites(tmp_path, capsys, reference_runs):
    part = tmp_path / "part"
    assert run_cli("train", *MAML, "--out", str(part), "--stop-after-iterations", "1") == 0
    capsys.readouterr()
    dest = tmp_path / "res" / "x"
    assert cli.main(["export", str(part), str(dest)]) == 2
    assert "has status 'interrupted', not 'finished'" in capsys.readouterr().err and not dest.exists()
    assert cli.main(["export", str(part), str(dest), "--allow-unfinished"]) == 0
    assert cli.main(["export", str(reference_runs["maml"]), str(dest)]) == 2
    assert "already exists and is not empty; pass --force" in capsys.readouterr().err
    assert (dest / "progress.csv").read_bytes() == (part / "progress.csv").read_bytes()  # untouched
    (dest / "stale.txt").write_text("old")
    assert cli.main(["export", str(reference_runs["maml"]), str(dest), "--force"]) == 0
    assert not (dest / "stale.txt").exists()
    assert (dest / "progress.csv").read_bytes() == (reference_runs["maml"] / "progress.csv").read_bytes()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("keep me")
    assert cli.main(["export", str(reference_runs["maml"]), str(other), "--force"]) == 2
    assert "has no config.json" in capsys.readouterr().err and (other / "keep.txt").read_text() == "keep me"
    assert cli.main(["export", str(tmp_path / "nope"), str(tmp_path / "res" / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "res").iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("family", experiments.RL2_FAMILIES)
def test_every_rl2_family_builds_a_config_the_trainer_accepts(family):
    # the command line's RL² families must stay in step with the families the trainer can sample trials from
    from meta_rl_lessons.envs import make_family

    fields = experiments.spec("rl2").env_fields(f"MetaRL/{family}-v0")
    assert fields["family"] == family
    make_family(family, **fields.get("family_kwargs", {"num_arms": 5, "episode_length": 1}))
    with pytest.raises(experiments.ExperimentError, match="rl2"):
        experiments.spec("rl2").env_fields("MetaRL/HalfCheetahVel-v0")


# ---------------------------------------------------------------------------------------------- resume --set
def test_resume_with_set_applies_and_records_the_change(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *MAML, "--set", "iterations=2", "--out", str(run)) == 0
    assert run_cli("resume", str(run), "--set", "iterations=3") == 0  # a finished run extended on purpose
    assert len(rows(run)) == 3
    config = runs.RunDir(run).read_config()
    assert config["config"]["iterations"] == 3 and config["resume_overrides"] == ["iterations=3"]
    prov = runs.RunDir(run).read_json("provenance.json")
    assert prov["sessions"][-1]["config_changes"] == {"iterations": [2, 3]}
    assert runs.load_checkpoint(run / "checkpoint.pt")["config"]["iterations"] == 3
    from meta_rl_lessons import results

    assert results.rebuild_config(prov["command"], config)["config"] == config["config"]


def test_plot_says_the_file_it_wrote(tmp_path, reference_runs, capsys):
    assert run_cli("plot", str(reference_runs["ppo"]), "--out", str(tmp_path / "fig")) == 0
    assert f"wrote {tmp_path / 'fig.png'}" in capsys.readouterr().out and (tmp_path / "fig.png").is_file()


def test_config_lists_fields_with_types_defaults_presets_and_docs(capsys):
    assert run_cli("config", "maml", "--budget", "smoke") == 0
    out = capsys.readouterr().out
    assert "iterations: int = " in out and "(preset: 6)" in out and "[set by --env]" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("meta-rl ")


def test_batch_jobs_get_a_start_banner_and_plain_log_lines(tmp_path, capsys):
    assert run_cli("train", *MAML, "--set", "iterations=2", "--out", str(tmp_path / "r")) == 0
    err = capsys.readouterr().err
    assert f"run directory {tmp_path / 'r'}" in err and "device cpu, 1 torch thread(s)" in err
    assert "meta-rl: iteration 1/2" in err and "meta-rl: iteration 2/2" in err
