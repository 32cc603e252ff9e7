"""Optuna adapter (TPE + median pruner): conditional spaces map onto suggest_* calls, the budget is respected,
pruning happens, and the search is a function of its seed. Skipped when optuna is not installed."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install '.[distributed]')")

from meta_rl_lessons.adaptive.optuna_adapter import OptunaConfig, optuna_search, suggest  # noqa: E402
from meta_rl_lessons.adaptive.space import Categorical, Float, Integer, SearchSpace  # noqa: E402
from meta_rl_lessons.adaptive.toy import QuadraticToy, toy_space  # noqa: E402


def test_suggest_respects_conditions_and_types():
    space = SearchSpace([Integer("n", 1, 3), Integer("w1", 4, 64, log=True, when={"n": (2, 3)}),
                         Float("lr", 1e-4, 1e-1, log=True), Categorical("act", ("tanh", "relu"))])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        t = study.ask()
        c = suggest(t, space)
        assert space.validate(c) == c and (("w1" in c) == (c["n"] >= 2))
        study.tell(t, 0.0)


def test_optuna_search_spends_the_budget_prunes_and_is_reproducible():
    cfg = OptunaConfig(total_steps=400, steps_per_trial=40, report_every=5, n_startup_trials=3, seed=0)
    a = optuna_search(toy_space(), QuadraticToy, cfg)
    b = optuna_search(toy_space(), QuadraticToy, cfg)
    assert a.total_steps == 400 and [s.params for s in a.segments] == [s.params for s in b.segments]
    assert a.extra["pruned"], "the median pruner never pruned"
    assert all(s.steps_run < 40 for s in a.segments if int(s.trial_id.split("-")[1]) in a.extra["pruned"])
    completed = [s.score for s in a.segments if int(s.trial_id.split("-")[1]) not in a.extra["pruned"]]
    assert a.best_score == max(completed)
