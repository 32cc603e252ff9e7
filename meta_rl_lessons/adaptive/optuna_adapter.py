"""Optuna adapter: the production tool of rl-baselines3-zoo (TPE sampler, median pruner) on our search spaces.

rl-baselines3-zoo tunes its agents with Optuna: a tree-structured Parzen estimator (TPE) proposes
configurations from a model of which regions scored well, and a median pruner stops a trial whose intermediate
score falls below the median of earlier trials at the same step. This module maps a
:class:`~meta_rl_lessons.adaptive.space.SearchSpace` onto Optuna's ``suggest_*`` calls (conditional
dimensions included: a dimension is only suggested when active) and runs any
:class:`~meta_rl_lessons.adaptive.trial.Trainable` with intermediate reports, until a total budget of steps
is spent, so it compares with the hand-written optimizers at equal compute::

    result = optuna_search(cartpole_space(), PPOTrial, OptunaConfig(total_steps=200_000), settings=...)

Needs ``pip install optuna`` (in the ``distributed`` extra). Trials run one at a time in this process (the
ask-and-tell loop keeps TPE's proposals a function of the seed alone).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from meta_rl_lessons.adaptive.search import SearchResult, best_of, trial_seeds
from meta_rl_lessons.adaptive.space import Categorical, Float, Integer, SearchSpace
from meta_rl_lessons.adaptive.trial import SegmentResult, resolve_trainable, trainable_path
from meta_rl_lessons.rl.utils import check_positive_ints

__all__ = ["OptunaConfig", "optuna_search", "suggest"]


def _optuna():
    try:
        with warnings.catch_warnings():  # optuna imports tqdm.auto, which warns in a notebook without widgets
            warnings.filterwarnings("ignore", message="IProgress not found")
            import optuna
    except ImportError as err:
        raise ImportError("the Optuna adapter needs optuna: pip install 'meta-rl-lessons[distributed]' "
                          "(or pip install optuna)") from err
    return optuna


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """A configuration from an Optuna trial: one ``suggest_*`` call per *active* dimension, in order."""
    config: dict[str, Any] = {}
    for d in space.dimensions:
        if not d.is_active(config):
            continue
        if isinstance(d, Categorical):
            config[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif isinstance(d, Integer):
            config[d.name] = trial.suggest_int(d.name, d.low, d.high, log=d.log)
        elif isinstance(d, Float):
            config[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
        else:
            raise TypeError(f"dimension {d.name!r} of type {type(d).__name__} has no Optuna equivalent")
    return space.validate(config)


@dataclass
class OptunaConfig:
    """Settings of :func:`optuna_search` (as rl-baselines3-zoo's ``--sampler tpe --pruner median``)."""

    total_steps: int = 200_000
    """Budget of the whole search (steps summed over trials); trials start until it is spent."""
    steps_per_trial: int = 24_576
    """Most steps one trial gets (fewer if pruned)."""
    report_every: int = 4_096
    """Steps between two intermediate reports (the pruner's decision points)."""
    n_startup_trials: int = 5
    """Trials sampled at random before TPE takes over, and before the pruner prunes anything."""
    n_warmup_steps: int = 0
    """Reports at steps below this are never pruned (rl-zoo3: a third of the evaluations)."""
    seed: int = 0
    """Seed of the TPE sampler and of the trials."""

    def __post_init__(self) -> None:
        check_positive_ints(self, "total_steps", "steps_per_trial", "report_every")


def optuna_search(
    space: SearchSpace,
    trainable: type | str,
    config: OptunaConfig,
    *,
    settings: Mapping[str, Any] | None = None,
) -> SearchResult:
    """TPE + median pruning until ``config.total_steps`` are spent; one segment per trial in the result.

    ``result.extra["pruned"]`` lists the pruned trials; ``result.extra["study"]`` is the Optuna study.
    """
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    c = config
    sampler = optuna.samplers.TPESampler(seed=c.seed, n_startup_trials=c.n_startup_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=c.n_startup_trials, n_warmup_steps=c.n_warmup_steps)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    cls = resolve_trainable(trainable)
    seeds = iter(trial_seeds(np.random.default_rng(c.seed), 10_000))
    spent, results, pruned = 0, [], []
    while spent < c.total_steps:
        ot = study.ask()
        params = suggest(ot, space)
        t0 = time.perf_counter()
        member = cls(params, next(seeds), **dict(settings or {}))
        rows: list[dict[str, float]] = []
        state = optuna.trial.TrialState.COMPLETE
        while member.steps_done < min(c.steps_per_trial, c.total_steps - spent):
            rows += member.train(min(c.report_every, c.steps_per_trial - member.steps_done))
            score = member.score()
            ot.report(score if math.isfinite(score) else -1e9, member.steps_done)
            if ot.should_prune():
                state = optuna.trial.TrialState.PRUNED
                pruned.append(ot.number)
                break
        score = member.score()
        if state == optuna.trial.TrialState.PRUNED:
            study.tell(ot, state=state)
        else:
            study.tell(ot, score if math.isfinite(score) else -1e9)
        spent += member.steps_done
        results.append(SegmentResult(trial_id=f"optuna-{ot.number:04d}", params=params, score=float(score),
                                     steps_done=member.steps_done, steps_run=member.steps_done, curve=rows,
                                     wall_time=time.perf_counter() - t0, checkpoint=None))
    completed = [r for r in results if int(r.trial_id.split("-")[1]) not in pruned] or results
    best_params, best_score = best_of(completed)
    return SearchResult("Optuna TPE + median pruner", results, best_params, best_score,
                        {"pruned": pruned, "study": study, "trainable": trainable_path(cls)})
