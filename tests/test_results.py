"""Tests of meta_rl_lessons.results: reading results/ (load_result, list_results, policy.json, captions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from meta_rl_lessons import cli, results

ROOT = Path(__file__).resolve().parent.parent
PPO = ["train", "ppo", "--env", "CartPole-v1", "--budget", "smoke", "--seed", "4", "--threads", "1",
       "--no-progress"]


def run_cli(*args: str) -> int:
    """``meta-rl ARGS`` in this process, restoring the caller's torch thread count."""
    threads = torch.get_num_threads()
    try:
        return cli.main(list(args))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke PPO run directory (a real `meta-rl train`)."""
    run = tmp_path_factory.mktemp("runs") / "ppo"
    assert run_cli(*PPO, "--out", str(run)) == 0
    return run


def copy_result(run: Path, dest: Path, files=results.REQUIRED_FILES) -> Path:
    """What a result directory holds: the run's files, copied verbatim (without its checkpoint)."""
    dest.mkdir(parents=True)
    for f in files:
        shutil.copyfile(run / f, dest / f)
    return dest


@pytest.fixture
def results_root(tmp_path, monkeypatch, smoke_run) -> Path:
    """A temporary results/ (via META_RL_RESULTS) holding one result, ``ppo-smoke``."""
    root = tmp_path / "results"
    copy_result(smoke_run, root / "ppo-smoke")
    monkeypatch.setenv("META_RL_RESULTS", str(root))
    return root


# ---------------------------------------------------------------------------------------------- load_result
def test_default_results_dir_is_the_repository_results_folder(monkeypatch):
    monkeypatch.delenv("META_RL_RESULTS", raising=False)
    assert results.results_dir() == ROOT / "results"
    assert results.DEFAULT_RESULTS_DIR == ROOT / "results"


def test_load_result_reads_every_file(results_root, smoke_run):
    r = results.load_result("ppo-smoke")
    assert r.name == "ppo-smoke" and r.path == results_root / "ppo-smoke"
    assert r.config == json.loads((smoke_run / "config.json").read_text())
    assert r.provenance == json.loads((smoke_run / "provenance.json").read_text())
    assert r.config["algorithm"] == "ppo" and r.config["seed"] == 4 and r.algorithm == "ppo"
    # progress: every cell of the CSV, numbers as floats (checked against the csv module directly)
    import csv

    with open(smoke_run / "progress.csv", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert len(r.progress) == len(raw) == 6
    for row, want in zip(r.progress, raw, strict=True):
        assert set(row) == set(want)
        for k, v in want.items():
            assert isinstance(row[k], float) and (row[k] == float(v) or (v == "nan" and row[k] != row[k]))
    assert r.column("iteration") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert r.eval is None


def test_eval_json_is_read_when_present(results_root):
    (results_root / "ppo-smoke" / "eval.json").write_text(json.dumps({"episode_return": {"mean": 9.5}}))
    assert results.load_result("ppo-smoke").eval == {"episode_return": {"mean": 9.5}}


def test_missing_result_names_the_directory_and_lists_what_exists(results_root):
    with pytest.raises(FileNotFoundError) as err:
        results.load_result("maml-nowhere")
    msg = str(err.value)
    assert str(results_root / "maml-nowhere") in msg and "ppo-smoke" in msg and "META_RL_RESULTS" in msg


def test_incomplete_result_names_the_missing_file(results_root):
    (results_root / "ppo-smoke" / "progress.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"progress\.csv missing.*config\.json"):
        results.load_result("ppo-smoke")


@pytest.mark.parametrize("bad", ["", "..", "a/b", "."])
def test_names_are_single_directory_names(results_root, bad):
    with pytest.raises(ValueError, match="one directory name"):
        results.load_result(bad)


def test_unknown_column_lists_the_columns(results_root):
    with pytest.raises(KeyError, match="no progress column 'nope'.*iteration"):
        results.load_result("ppo-smoke").column("nope")


def test_list_results_is_sorted_and_skips_non_results(results_root, smoke_run):
    copy_result(smoke_run, results_root / "a-first")
    (results_root / "not-a-result").mkdir()
    (results_root / "README.md").write_text("x")
    assert results.list_results() == ["a-first", "ppo-smoke"]
    assert results.list_results(results_root / "absent") == []


# ---------------------------------------------------------------------------------------------- policy.json
def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes reinterpreted as integers of the same width."""
    width = {torch.float32: torch.int32, torch.float64: torch.int64, torch.int64: torch.int64}[t.dtype]
    return t.contiguous().view(width)


def test_params_round_trip_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    params = {
        "w32": torch.randn(3, 4, generator=g) * 1e-3,
        "b64": torch.randn(5, generator=g, dtype=torch.float64),
        "edge": torch.tensor([1e-45, -0.0, 3.4028235e38, 1 / 3], dtype=torch.float32),  # subnormal, -0, max
        "scalar": torch.tensor(7.25, dtype=torch.float64),
        "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    payload = json.loads(json.dumps(results.params_to_json(params)))  # through JSON text, as on disk
    back = results.params_from_json(payload)
    assert list(back) == list(params)
    for k, v in params.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert torch.equal(bits(back[k]), bits(v))  # bit-level: torch.equal alone accepts -0.0 == 0.0


def test_params_from_json_rejects_bad_entries():
    with pytest.raises(ValueError, match="unknown dtype 'float7'"):
        results.params_from_json({"w": {"dtype": "float7", "shape": [1], "data": [1.0]}})
    with pytest.raises(ValueError, match=r"shape \[2\], recorded \[3\]"):
        results.params_from_json({"w": {"dtype": "float32", "shape": [3], "data": [1.0, 2.0]}})


def test_policy_params_without_policy_json_is_a_clear_error(results_root):
    with pytest.raises(FileNotFoundError, match="exported without the policy's parameters"):
        results.load_result("ppo-smoke").policy_params()


def test_policy_params_reads_policy_json(results_root):
    params = {"policy.w": torch.randn(2, 3)}
    (results_root / "ppo-smoke" / "policy.json").write_text(
        json.dumps({"format": 1, "parameters": results.params_to_json(params)}))
    back = results.load_result("ppo-smoke").policy_params()
    assert torch.equal(back["policy.w"], params["policy.w"])


# ---------------------------------------------------------------------------------------------- caption
def test_caption_names_command_budget_seed_commit_machine_and_date(results_root):
    r = results.load_result("ppo-smoke")
    cap = r.caption()
    prov = r.provenance
    assert "\n" not in cap
    assert "`meta-rl train ppo --env CartPole-v1 --budget smoke --seed 4 --threads 1`" in cap  # no --out
    assert "budget smoke" in cap and "seed 4" in cap
    assert prov["cpu_model"] in cap and str(prov["cpu_affinity"] or prov["cpu_count"]) + " cores" in cap
    assert prov["end_time"][:10] in cap and "results/ppo-smoke" in cap
    if prov["git"] is not None:
        assert f"commit {prov['git']['commit'][:7]}" in cap
        assert ("uncommitted" in cap) == prov["git"]["dirty"]
    assert ("no GPU" in cap) == (not prov["gpus"])


def test_train_command_rejects_other_commands():
    assert results.train_command({"command": ["meta-rl", "train", "ppo"]}) == ["meta-rl", "train", "ppo"]
    assert results.train_command({"command": "meta-rl train 'ppo'"}) == ["meta-rl", "train", "ppo"]
    for bad in (None, ["meta-rl", "eval", "runs/x"], ["python", "train", "ppo"], [1, 2, 3]):
        with pytest.raises(ValueError):
            results.train_command({"command": bad})
