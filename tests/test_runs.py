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


def test_get_and_set_path():
    class A:
        pass

    a = A()
    a.b = A()
    a.b.c = 1
    assert runs.get_path(a, "b.c") == 1
    runs.set_path(a, "b.c", 2)
    assert a.b.c == 2
    with pytest.raises(AttributeError, match="no attribute 'x' \\(in path 'b.x'\\)"):
        runs.get_path(a, "b.x")
