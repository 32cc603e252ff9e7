"""Meta-optimizers: random search, successive halving (exact promotion), Hyperband brackets, PBT (toy problem,
exploit copies bit for bit, schedules)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meta_rl_lessons.adaptive.pbt import PBTConfig, pbt, truncation_sizes
from meta_rl_lessons.adaptive.random_search import RandomSearchConfig, random_search, random_search_plan
from meta_rl_lessons.adaptive.space import Float, SearchSpace
from meta_rl_lessons.adaptive.successive_halving import (
    HyperbandConfig,
    SuccessiveHalvingConfig,
    hyperband,
    successive_halving,
)
from meta_rl_lessons.adaptive.toy import QuadraticToy, objective, toy_space
from meta_rl_lessons.adaptive.trial import load_checkpoint


class Noisy:
    """A trainable whose score is a fixed function of its params and total steps (distinct per config)."""

    def __init__(self, params, seed=0):
        self.params, self.seed, self.steps_done, self.curve = dict(params), seed, 0, []

    def train(self, steps):
        self.steps_done += steps
        rows = [{"step": self.steps_done, "score": self.score()}]
        self.curve += rows
        return rows

    def score(self):  # later rungs reorder configurations, so promotion must use the current rung's scores
        x = self.params["x"]
        return math.sin(7 * x) * math.log(self.steps_done) + x

    def set_hyperparameters(self, params):
        self.params.update(params)

    def state_dict(self):
        return {"params": self.params, "seed": self.seed, "learner": {"steps": self.steps_done},
                "curve": self.curve}

    def load_state_dict(self, state):
        self.params, self.steps_done = dict(state["params"]), int(state["learner"]["steps"])
        self.curve = list(state["curve"])


SPACE = SearchSpace([Float("x", -2.0, 2.0)])


def test_random_search_returns_the_best_trial():
    res = random_search(SPACE, Noisy, RandomSearchConfig(num_trials=12, steps_per_trial=100, seed=1))
    assert len(res.segments) == 12 and res.total_steps == 1200
    scores = [s.score for s in res.segments]
    assert res.best_score == max(scores) and res.best_params == res.segments[int(np.argmax(scores))].params
    steps, best = res.compute_curve()
    assert list(steps) == list(range(100, 1300, 100)) and best[-1] == max(scores)
    assert np.all(np.diff(best) >= 0)


class Seeded(Noisy):
    """Noisy, plus a term that depends on the trial's seed: a rebuilt trial must get the seed right too."""

    def score(self):
        return super().score() + (self.seed % 1000) / 1000


def test_random_search_plan_rebuilds_every_trial_of_the_search():
    config = RandomSearchConfig(num_trials=6, steps_per_trial=50, seed=3)
    res = random_search(SPACE, Seeded, config)
    plan = random_search_plan(SPACE, Seeded, config)
    assert [s.trial_id for s in plan] == [s.trial_id for s in res.segments]
    assert len({s.seed for s in plan}) == 6
    for segment, result in zip(plan, res.segments, strict=True):
        trial = Seeded(segment.params, segment.seed, **segment.settings)
        trial.train(segment.steps)
        assert trial.params == result.params and trial.score() == result.score


@pytest.mark.parametrize(("n", "eta"), [(27, 3), (20, 3), (16, 2), (10, 4)])
def test_successive_halving_promotes_exactly_the_top_fraction(tmp_path, n, eta):
    cfg = SuccessiveHalvingConfig(num_trials=n, min_steps=10, eta=eta, seed=2)
    res = successive_halving(SPACE, Noisy, cfg, run_dir=tmp_path)
    rungs = res.extra["rungs"]
    size = n
    for k, rung in enumerate(rungs):
        assert len(rung["trials"]) == size and rung["budget"] == 10 * eta**k
        seg = [s for s in res.segments if s.trial_id.endswith(f"-r{k}")]
        assert [s.steps_done for s in seg] == [rung["budget"]] * size  # continued up to the rung budget
        if k < len(rungs) - 1:
            top = max(1, size // eta)
            # independent ranking: sort the rung's (trial, score) pairs by score
            expected = sorted(t for t, _ in sorted(zip(rung["trials"], rung["scores"], strict=True),
                                                   key=lambda p: -p[1])[:top])
            assert rung["promoted"] == expected
            size = top
    assert len(rungs[-1]["trials"]) == 1
    assert res.best_score == rungs[-1]["scores"][0]
    # a later rung continues from the checkpoint: total steps of the winner = last budget, not a sum
    assert res.total_steps == sum(len(r["trials"]) * (r["budget"] - (r["budget"] // eta if i else 0))
                                  for i, r in enumerate(rungs))


def test_hyperband_brackets_follow_li_et_al():
    cfg = HyperbandConfig(max_steps=81, min_steps=1, eta=3)
    # Li et al. 2018, Table 1 (R = 81, eta = 3): n_i = 81, 34, 15, 8, 5 at r_i = 1, 3, 9, 27, 81
    assert cfg.brackets() == [(4, 81, 1), (3, 34, 3), (2, 15, 9), (1, 8, 27), (0, 5, 81)]
    res = hyperband(SPACE, Noisy, HyperbandConfig(max_steps=27, min_steps=3, eta=3, seed=0))
    brackets = res.extra["brackets"]
    assert [(b["s"], b["n"], b["r"]) for b in brackets] == [(2, 9, 3), (1, 5, 9), (0, 3, 27)]
    for b in brackets:  # every bracket ends at the maximum budget
        assert b["rungs"][-1]["budget"] == 27


def test_truncation_sizes_match_ray():
    assert [truncation_sizes(n, 0.25) for n in (2, 3, 4, 5, 8, 10)] == [1, 1, 1, 2, 2, 3]


def _toy(exploit: bool, explore: bool, seed: int = 0):
    init = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    cfg = PBTConfig(population=2, generations=25, steps_per_generation=4, exploit=exploit, explore=explore,
                    seed=seed)
    return pbt(toy_space(), QuadraticToy, cfg, initial_params=init)


def test_pbt_on_the_toy_problem_beats_the_same_population_without_exploit_and_explore():
    alone = _toy(False, False)
    # without PBT each member only shrinks one coordinate: Q -> 1.2 - 0.81 = 0.39 at best
    assert alone.best_score < 0.39
    for seed in range(3):
        full = _toy(True, True, seed)
        assert full.best_score > 1.0 > alone.best_score + 0.5, (seed, full.best_score)


def test_pbt_exploit_copies_weights_bit_for_bit_and_records_schedules(tmp_path):
    cfg = PBTConfig(population=2, generations=6, steps_per_generation=3, seed=0)
    init = [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    res = pbt(toy_space(), QuadraticToy, cfg, initial_params=init, run_dir=tmp_path)
    schedules = res.extra["schedules"]
    assert [len(s) for s in schedules] == [6, 6]
    copies = 0
    for g in range(5):
        a, b = (load_checkpoint(tmp_path / "checkpoints" / f"pbt-m{i:03d}-g{g:03d}.pt") for i in (0, 1))
        qa, qb = (float(objective(x["learner"]["theta"])) for x in (a, b))
        loser, winner = (0, 1) if qa < qb else (1, 0)
        name = f"pbt-m{loser:03d}-g{g:03d}-from-m{winner:03d}.pt"
        exploited = load_checkpoint(tmp_path / "checkpoints" / name)
        donor = (a, b)[winner]
        assert torch.equal(exploited["learner"]["theta"], donor["learner"]["theta"])
        assert exploited["progress"]["steps_done"] == (a, b)[loser]["progress"]["steps_done"]
        assert schedules[loser][g + 1]["exploited_from"] == winner
        assert schedules[winner][g + 1]["exploited_from"] is None
        copies += 1
    assert copies == 5
    # the schedule records the hyperparameters each member trained with, per generation
    for s in schedules:
        for row in s:
            assert set(row) == {"generation", "steps", "params", "score", "exploited_from"}
            toy_space().validate(row["params"])


def test_pbt_validates_its_arguments():
    with pytest.raises(ValueError, match="quantile must lie in"):
        PBTConfig(quantile=0.7)
    with pytest.raises(ValueError, match="initial_params has 1 configurations for a population of 2"):
        pbt(toy_space(), QuadraticToy, PBTConfig(population=2, generations=1, steps_per_generation=1),
            initial_params=[{"h0": 1.0, "h1": 0.0}])
    with pytest.raises(KeyError, match="no dimension 'lr'"):
        pbt(toy_space(), QuadraticToy, PBTConfig(population=2, generations=1, steps_per_generation=1,
                                                 explore_keys=("lr",)))
