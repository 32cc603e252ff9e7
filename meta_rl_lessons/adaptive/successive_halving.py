r"""Successive halving (Jamieson & Talwalkar, 2016) and Hyperband (Li et al., 2018), budgets in env steps.

**Successive halving** with ``n`` configurations, minimum budget :math:`r` and reduction factor :math:`\eta`:

.. code-block:: text

    S_0 = n configurations sampled from the prior
    for k = 0, 1, ...:
        train every x in S_k until it has r * eta^k steps in total   (continuing from its checkpoint)
        if |S_k| = 1: stop
        S_{k+1} = the floor(|S_k| / eta) best of S_k                  (at least one)

Each rung spends about the same compute (:math:`|S_k|\, r\eta^k \approx n r`), so most of the budget goes to
the configurations that looked best early. Trials are continued, never restarted: a promoted trial loads the
checkpoint it saved at the previous rung.

**Hyperband** hedges against the one choice successive halving leaves open, how aggressive to be: with a
maximum budget :math:`R` per configuration and :math:`s_{\max} = \lfloor \log_\eta (R / r_{\min}) \rfloor`, it
runs brackets :math:`s = s_{\max}, \ldots, 0`, bracket :math:`s` being successive halving with
:math:`n_s = \lceil \frac{s_{\max}+1}{s+1} \eta^s \rceil` configurations starting at :math:`r_s = R\eta^{-s}`
steps: bracket :math:`s_{\max}` explores most, bracket 0 is random search with the full budget.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from meta_rl_lessons.adaptive.executors import Executor, ResultStore
from meta_rl_lessons.adaptive.search import SearchResult, best_of, rank, trial_seeds, use_store
from meta_rl_lessons.adaptive.space import SearchSpace
from meta_rl_lessons.adaptive.trial import Segment, SegmentResult, trainable_path
from meta_rl_lessons.rl.utils import check_positive_ints

__all__ = ["HyperbandConfig", "SuccessiveHalvingConfig", "hyperband", "run_halving", "successive_halving"]


@dataclass
class SuccessiveHalvingConfig:
    """Settings of :func:`successive_halving`."""

    num_trials: int = 27
    """Configurations in the first rung (``n``)."""
    min_steps: int = 2_048
    r"""Budget of the first rung (``r``): total steps of each trial after rung 0."""
    eta: int = 3
    r"""Reduction factor :math:`\eta`: keep the best ``1/eta``, multiply the budget by ``eta``."""
    max_rungs: int | None = None
    """Stop after this many rungs even if several trials survive (``None``: until one is left)."""
    seed: int = 0
    """Seed of the sampler of configurations and trial seeds."""

    def __post_init__(self) -> None:
        check_positive_ints(self, "num_trials", "min_steps", "eta")
        if self.eta < 2:
            raise ValueError(f"SuccessiveHalvingConfig.eta must be >= 2, got {self.eta}")
        if self.max_rungs is not None and self.max_rungs <= 0:
            raise ValueError(
                f"SuccessiveHalvingConfig.max_rungs must be positive or None, got {self.max_rungs}")


def run_halving(store: ResultStore, ex: Executor, configs: list[dict], seeds: list[int], trainable: str,
             settings: dict, min_steps: int, eta: int, max_rungs: int | None, prefix: str
             ) -> tuple[list[SegmentResult], list[dict[str, Any]]]:
    """One successive-halving run over ``configs`` (the loop of the module docstring).

    Segment ``<prefix>t<i>-r<k>`` trains configuration ``i`` up to ``min_steps * eta**k`` steps in total,
    restoring the checkpoint of its rung ``k - 1``. Returns all segment results in order, and per rung its
    budget, trials, scores and the promoted trials.
    """
    alive = list(range(len(configs)))  # indices of surviving configurations
    done_steps = [0] * len(configs)
    results: list[SegmentResult] = []
    rungs: list[dict[str, Any]] = []
    k = 0
    while True:
        budget = min_steps * eta**k
        segments = [Segment(
            trial_id=f"{prefix}t{i:03d}-r{k}", trainable=trainable, params=configs[i], seed=seeds[i],
            steps=budget - done_steps[i], settings=settings,
            restore=None if k == 0 else store.checkpoint_path(f"{prefix}t{i:03d}-r{k - 1}"),
            save=store.checkpoint_path(f"{prefix}t{i:03d}-r{k}")) for i in alive]
        rung_results = store.run(ex, segments)
        results += rung_results
        for i, r in zip(alive, rung_results, strict=True):
            done_steps[i] = r.steps_done
        order = rank([r.score for r in rung_results])
        last = len(alive) == 1 or (max_rungs is not None and k + 1 >= max_rungs)
        keep = [] if last else sorted(alive[j] for j in order[:max(1, len(alive) // eta)])
        rungs.append({"rung": k, "budget": budget, "trials": list(alive),
                      "scores": [r.score for r in rung_results], "promoted": keep})
        if last:
            return results, rungs
        alive = keep
        k += 1


def successive_halving(
    space: SearchSpace,
    trainable: type | str,
    config: SuccessiveHalvingConfig,
    *,
    settings: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    run_dir: str | os.PathLike | None = None,
) -> SearchResult:
    """Run successive halving; arguments as :func:`~meta_rl_lessons.adaptive.random_search.random_search`.

    ``result.extra["rungs"]`` lists, per rung, its budget, the trials in it, their scores and the promoted.
    """
    rng = np.random.default_rng(config.seed)
    configs = [space.sample(rng) for _ in range(config.num_trials)]
    seeds = trial_seeds(rng, config.num_trials)
    with use_store(run_dir, executor, need_checkpoints=True) as (store, ex):
        results, rungs = run_halving(store, ex, configs, seeds, trainable_path(trainable),
                                     dict(settings or {}), config.min_steps, config.eta, config.max_rungs,
                                     prefix="sh-")
        final = [r for r in results if r.trial_id.endswith(f"-r{len(rungs) - 1}")]
        best_params, best_score = best_of(final)
        out = SearchResult("successive halving", results, best_params, best_score, {"rungs": rungs})
        store.write_json("search", out.to_dict())
    return out


@dataclass
class HyperbandConfig:
    """Settings of :func:`hyperband`."""

    max_steps: int = 50_000
    """``R``: the most steps any one configuration gets."""
    min_steps: int = 2_048
    """Smallest budget of the most exploratory bracket (sets ``s_max``)."""
    eta: int = 3
    r"""Reduction factor :math:`\eta`."""
    seed: int = 0
    """Seed of the sampler of configurations and trial seeds."""

    def __post_init__(self) -> None:
        if not (isinstance(self.min_steps, int) and isinstance(self.max_steps, int)
                and 0 < self.min_steps <= self.max_steps):
            raise ValueError(f"HyperbandConfig needs integers 0 < min_steps <= max_steps, got "
                             f"min_steps={self.min_steps!r}, max_steps={self.max_steps!r}")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"HyperbandConfig.eta must be an integer >= 2, got {self.eta!r}")

    def brackets(self) -> list[tuple[int, int, int]]:
        """``(s, n_s, r_s)`` for ``s = s_max .. 0``."""
        s_max = int(math.floor(math.log(self.max_steps / self.min_steps, self.eta) + 1e-9))
        return [(s, math.ceil((s_max + 1) / (s + 1) * self.eta**s), max(1, self.max_steps // self.eta**s))
                for s in range(s_max, -1, -1)]


def hyperband(
    space: SearchSpace,
    trainable: type | str,
    config: HyperbandConfig,
    *,
    settings: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    run_dir: str | os.PathLike | None = None,
) -> SearchResult:
    """Run Hyperband: one successive-halving bracket per aggressiveness ``s`` (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    results: list[SegmentResult] = []
    finals: list[SegmentResult] = []
    brackets = []
    with use_store(run_dir, executor, need_checkpoints=True) as (store, ex):
        for s, n, r in config.brackets():
            configs = [space.sample(rng) for _ in range(n)]
            seeds = trial_seeds(rng, n)
            res, rungs = run_halving(store, ex, configs, seeds, trainable_path(trainable),
                                     dict(settings or {}), r, config.eta, s + 1, prefix=f"hb-s{s}-")
            results += res
            finals += [x for x in res if x.trial_id.endswith(f"-r{len(rungs) - 1}")]
            brackets.append({"s": s, "n": n, "r": r, "rungs": rungs})
        best_params, best_score = best_of(finals)
        out = SearchResult("hyperband", results, best_params, best_score, {"brackets": brackets})
        store.write_json("search", out.to_dict())
    return out
