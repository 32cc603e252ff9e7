r"""Population-based training (Jaderberg et al., 2017), synchronous generations, truncation selection.

.. code-block:: text

    P = N members, each with hyperparameters h_i (sampled, or given) and its own learner theta_i
    for g = 0 .. G-1:
        train every member for `steps_per_generation` more steps           (in parallel)
        rank members by score
        for each member i in the bottom quantile:                          (exploit)
            pick a donor j from the top quantile; theta_i <- theta_j       (weights, optimizer state,
                                                                            normalisers: bit for bit)
            h_i <- h_j
            h_i <- perturb(h_i): x0.8 or x1.2, or resample with prob 0.25  (explore)

The quantile is Ray Tune's: :math:`\lceil qN \rceil` members (``q = 0.25``), at most
:math:`\lfloor N/2\rfloor`.
A member that copies keeps its own environments, random generator and step count: only what it *learned*
changes. Architecture dimensions are copied with the weights (they must match them) and never perturbed;
``explore_keys`` names the hyperparameters that are.

Synchronous generations (every member reaches the same step count before any exploit) make the algorithm a
function of its seed alone, whatever the executor; Jaderberg et al.'s asynchronous version trades that for
throughput on a cluster. The ``hyperparameter schedule`` of every member, the values it trained with in each
generation and whom it copied, is in ``result.extra["schedules"]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from meta_rl_lessons.adaptive.executors import Executor
from meta_rl_lessons.adaptive.search import SearchResult, best_of, rank, trial_seeds, use_store
from meta_rl_lessons.adaptive.space import SearchSpace
from meta_rl_lessons.adaptive.trial import (
    Segment,
    exploit_state,
    load_checkpoint,
    save_checkpoint,
    trainable_path,
)
from meta_rl_lessons.rl.utils import check_positive_ints

__all__ = ["PBTConfig", "pbt", "truncation_sizes"]


@dataclass
class PBTConfig:
    """Settings of :func:`pbt`."""

    population: int = 8
    """Number of members ``N``."""
    generations: int = 10
    """Rounds of train / exploit / explore ``G`` (no exploit after the last)."""
    steps_per_generation: int = 10_000
    """Steps each member trains between two exploit/explore steps (Jaderberg et al.'s "ready" interval)."""
    quantile: float = 0.25
    """Fraction of the population in the bottom (and top) quantile."""
    resample_probability: float = 0.25
    """Probability that explore resamples a hyperparameter from its prior instead of perturbing it."""
    perturb_factors: tuple[float, ...] = (0.8, 1.2)
    """Multiplicative perturbations of numeric hyperparameters."""
    explore_keys: tuple[str, ...] | None = None
    """Hyperparameters explore may change (``None``: all dimensions of the space)."""
    exploit: bool = True
    """Copy a top member into each bottom member (False: members never copy; an ablation)."""
    explore: bool = True
    """Perturb hyperparameters after a copy (or, without exploit, of the bottom members)."""
    seed: int = 0
    """Seed of initial configurations, trial seeds, donor choice and perturbations."""

    def __post_init__(self) -> None:
        check_positive_ints(self, "population", "generations", "steps_per_generation")
        if not 0.0 < self.quantile <= 0.5:
            raise ValueError(f"PBTConfig.quantile must lie in (0, 0.5], got {self.quantile!r}")
        self.perturb_factors = tuple(self.perturb_factors)
        if self.explore_keys is not None:
            self.explore_keys = tuple(self.explore_keys)


def truncation_sizes(population: int, quantile: float) -> int:
    """Members in each of the bottom and top quantiles: ``ceil(q N)``, at most ``floor(N / 2)``."""
    return min(math.ceil(quantile * population), population // 2)


def pbt(
    space: SearchSpace,
    trainable: type | str,
    config: PBTConfig,
    *,
    initial_params: Sequence[Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    run_dir: str | os.PathLike | None = None,
) -> SearchResult:
    """Run PBT; see the module docstring. Arguments as
    :func:`~meta_rl_lessons.adaptive.random_search.random_search`, plus ``initial_params`` (one configuration
    per member instead of sampling them).

    ``result.extra["schedules"][i]`` is member ``i``'s list of ``{generation, steps, params, score,
    exploited_from}``; ``result.best_params``/``best_score`` are the best member's after the last generation.
    """
    c = config
    rng = np.random.default_rng(c.seed)
    if initial_params is None:
        params = [space.sample(rng) for _ in range(c.population)]
    else:
        if len(initial_params) != c.population:
            raise ValueError(f"initial_params has {len(initial_params)} configurations for a population of "
                             f"{c.population}")
        params = [space.validate(p) for p in initial_params]
    seeds = trial_seeds(rng, c.population)
    keys = list(space.names if c.explore_keys is None else c.explore_keys)
    for k in keys:
        space[k]  # noqa: B018 - KeyError naming an unknown key
    n_cut = truncation_sizes(c.population, c.quantile)
    name = trainable_path(trainable)
    restore: list[str | None] = [None] * c.population
    copied_from: list[int | None] = [None] * c.population
    schedules: list[list[dict[str, Any]]] = [[] for _ in range(c.population)]
    results = []
    with use_store(run_dir, executor, need_checkpoints=True) as (store, ex):
        for g in range(c.generations):
            segments = [Segment(trial_id=f"pbt-m{i:03d}-g{g:03d}", trainable=name, params=params[i],
                                seed=seeds[i], steps=c.steps_per_generation, settings=dict(settings or {}),
                                restore=restore[i], save=store.checkpoint_path(f"pbt-m{i:03d}-g{g:03d}"))
                        for i in range(c.population)]
            gen = store.run(ex, segments)
            results += gen
            for i, r in enumerate(gen):
                schedules[i].append({"generation": g, "steps": r.steps_done, "params": dict(params[i]),
                                     "score": r.score, "exploited_from": copied_from[i]})
            restore = [r.checkpoint for r in gen]
            copied_from = [None] * c.population
            if g == c.generations - 1 or n_cut == 0 or not (c.exploit or c.explore):
                continue
            order = rank([r.score for r in gen])
            top, bottom = order[:n_cut], order[-n_cut:]
            for i in sorted(bottom):
                if c.exploit:
                    j = int(top[int(rng.integers(len(top)))])
                    path = store.checkpoint_path(f"pbt-m{i:03d}-g{g:03d}-from-m{j:03d}")
                    if not os.path.exists(path):  # idempotent when a resumed search replays this step
                        own, donor = load_checkpoint(restore[i]), load_checkpoint(restore[j])
                        save_checkpoint(exploit_state(own, donor), path)
                    restore[i], params[i], copied_from[i] = path, dict(params[j]), j
                if c.explore:
                    params[i] = space.perturb(params[i], rng, keys=keys, factors=c.perturb_factors,
                                              resample_probability=c.resample_probability)
        best_params, best_score = best_of(results[-c.population:])
        out = SearchResult("PBT", results, best_params, best_score,
                           {"schedules": schedules, "quantile_size": n_cut})
        store.write_json("search", out.to_dict())
    return out
