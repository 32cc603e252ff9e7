"""Executors: identical results across serial / process pool / Ray, resumption without rerunning finished
trials, crashes surface as errors naming the trial (never a hang)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

from meta_rl_lessons.adaptive.executors import (
    ProcessPoolExecutor,
    ResultStore,
    SerialExecutor,
    TrialError,
    make_executor,
)
from meta_rl_lessons.adaptive.pbt import PBTConfig, pbt
from meta_rl_lessons.adaptive.random_search import RandomSearchConfig, random_search
from meta_rl_lessons.adaptive.space import Categorical, Float, Integer, SearchSpace
from meta_rl_lessons.adaptive.toy import QuadraticToy
from meta_rl_lessons.adaptive.trial import PPOTrial, Segment, trainable_path

torch.set_num_threads(1)

BASE = {"num_envs": 2, "num_steps": 64, "minibatch_size": 64, "update_epochs": 2}
SPACE = SearchSpace([
    Integer("n_layers", 1, 2),
    Integer("width", 8, 32, log=True),
    Float("learning_rate", 1e-4, 1e-2, log=True),
    Categorical("gamma", (0.95, 0.99)),
])


class Exploding(QuadraticToy):
    """A toy member whose training raises, or whose process dies, for chosen hyperparameters."""

    def train(self, steps):
        if self.params["h0"] == 0.25:
            raise FloatingPointError("loss is NaN (on purpose)")
        if self.params["h0"] == 0.75:
            os._exit(3)  # a worker killed without a Python exception (as by the OOM killer)
        return super().train(steps)


def _segments(h0s, trainable=Exploding):
    return [Segment(f"t{i}", trainable_path(trainable), {"h0": h, "h1": 0.5}, seed=0, steps=3)
            for i, h in enumerate(h0s)]


def _search(executor, run_dir=None):
    return random_search(SPACE, PPOTrial, RandomSearchConfig(num_trials=3, steps_per_trial=256, seed=4),
                         settings={"base": BASE}, executor=executor, run_dir=run_dir)


@pytest.fixture(scope="module")
def serial_result():
    return _search(SerialExecutor())


def _same(a, b):
    assert [s.trial_id for s in a.segments] == [s.trial_id for s in b.segments]
    for x, y in zip(a.segments, b.segments, strict=True):
        assert (x.params, x.score, x.steps_done, x.curve) == (y.params, y.score, y.steps_done, y.curve)


def test_serial_and_process_pool_give_identical_results(serial_result):
    with ProcessPoolExecutor(workers=2) as ex:
        pooled = _search(ex)
    _same(serial_result, pooled)
    assert len({s.score for s in pooled.segments}) > 1  # different configurations, different results


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install '.[distributed]'); make test installs it")
def test_ray_executor_gives_identical_results(serial_result):
    from meta_rl_lessons.adaptive.executors import RayExecutor

    with RayExecutor(init_kwargs={"num_cpus": 2}) as ex:
        _same(serial_result, _search(ex))


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, serial_result):
    full = tmp_path / "full"
    _search(SerialExecutor(), full)
    lines = (full / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # the search was killed after its first two trials, the third mid-write
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])
    store = ResultStore(cut)
    assert sorted(store.results) == ["rs-0000", "rs-0001"]
    ex = SerialExecutor()
    resumed = random_search(SPACE, PPOTrial, RandomSearchConfig(num_trials=3, steps_per_trial=256, seed=4),
                            settings={"base": BASE}, executor=ex, run_dir=cut)
    _same(serial_result, resumed)
    summary = json.loads((cut / "search.json").read_text())
    assert summary["best_score"] == serial_result.best_score
    # a second resume runs nothing at all
    store = ResultStore(cut)
    assert store.run(ex, []) == [] and len(store.results) == 3


def test_resumed_pbt_replays_exploit_and_reruns_only_missing_generations(tmp_path):
    init = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    cfg = PBTConfig(population=2, generations=6, steps_per_generation=2, seed=1)
    full = pbt(SearchSpace([Float("h0", 0, 1), Float("h1", 0, 1)]), QuadraticToy, cfg, initial_params=init,
               run_dir=tmp_path / "a")
    lines = (tmp_path / "a" / "results.jsonl").read_text().splitlines()
    run = tmp_path / "b"
    run.mkdir()
    (run / "results.jsonl").write_text("\n".join(lines[:7]) + "\n")  # killed during generation 3
    (run / "checkpoints").mkdir()
    for f in (tmp_path / "a" / "checkpoints").iterdir():
        if int(f.name.split("-g")[1][:3]) <= 3:  # checkpoints written up to then
            (run / "checkpoints" / f.name).write_bytes(f.read_bytes())
    calls = []

    class Counting(SerialExecutor):
        def run(self, segments):
            calls.extend(s.trial_id for s in segments)
            yield from super().run(segments)

    resumed = pbt(SearchSpace([Float("h0", 0, 1), Float("h1", 0, 1)]), QuadraticToy, cfg, initial_params=init,
                  run_dir=run, executor=Counting())
    assert calls == ["pbt-m001-g003", "pbt-m000-g004", "pbt-m001-g004", "pbt-m000-g005", "pbt-m001-g005"]
    _same(full, resumed)
    assert resumed.extra["schedules"] == full.extra["schedules"]


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_a_failing_trial_raises_an_error_naming_it(kind):
    with make_executor(kind, workers=2) as ex, pytest.raises(TrialError) as err:
        list(ex.run(_segments([0.5, 0.25, 0.5])))
    assert "trial 't1'" in str(err.value) and "loss is NaN (on purpose)" in str(err.value)
    assert err.value.trial_ids == ["t1"]


def test_a_dead_worker_process_raises_instead_of_hanging():
    with ProcessPoolExecutor(workers=2, timeout=120) as ex:
        with pytest.raises(TrialError) as err:
            list(ex.run(_segments([0.75, 0.5])))
        assert "worker process died" in str(err.value) and "t0" in err.value.trial_ids
        # the executor recovers: a new pool serves the next batch
        results = dict(ex.run(_segments([0.5])))
        assert results[0].steps_done == 3


def test_unknown_executor_and_unsafe_start_method_are_refused():
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        make_executor("threads")
    with pytest.raises(ValueError, match="fork is unsafe with torch"):
        ProcessPoolExecutor(start_method="fork")
