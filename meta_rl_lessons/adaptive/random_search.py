r"""Random search (Bergstra & Bengio, 2012): sample configurations independently, train each, keep the best.

.. code-block:: text

    for i = 1..N:  x_i ~ p(x)  (the search space's prior);  s_i = score(train(x_i, B steps))
    return argmax_i s_i

Every trial gets the same budget ``steps_per_trial``; the ``N`` trials are independent, so they run in
parallel on any executor. With few dimensions that matter, random search covers each of them with ``N``
distinct values, where a grid of the same size covers it with only :math:`N^{1/d}` values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from meta_rl_lessons.adaptive.executors import Executor
from meta_rl_lessons.adaptive.search import SearchResult, best_of, trial_seeds, use_store
from meta_rl_lessons.adaptive.space import SearchSpace
from meta_rl_lessons.adaptive.trial import Segment, trainable_path
from meta_rl_lessons.rl.utils import check_positive_ints

__all__ = ["RandomSearchConfig", "random_search", "random_search_plan"]


@dataclass
class RandomSearchConfig:
    """Settings of :func:`random_search`."""

    num_trials: int = 8
    """Configurations sampled and trained (``N``)."""
    steps_per_trial: int = 20_000
    """Budget of each trial (environment steps for PPO)."""
    seed: int = 0
    """Seed of the sampler of configurations and trial seeds."""

    def __post_init__(self) -> None:
        check_positive_ints(self, "num_trials", "steps_per_trial")


def random_search(
    space: SearchSpace,
    trainable: type | str,
    config: RandomSearchConfig,
    *,
    settings: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    run_dir: str | os.PathLike | None = None,
) -> SearchResult:
    """Run a random search; see the module docstring.

    Args:
        space: where configurations come from.
        trainable: a :class:`~meta_rl_lessons.adaptive.trial.Trainable` class (or ``"module:Class"``).
        config: number of trials, budget, seed.
        settings: constructor arguments shared by all trials (e.g. ``{"base": {...}}`` for PPO).
        executor: where trials run (default: serially in this process).
        run_dir: results are appended to ``run_dir/results.jsonl``; rerunning with the same arguments
            skips the trials already there (resumption).
    """
    segments = random_search_plan(space, trainable, config, settings=settings)
    with use_store(run_dir, executor) as (store, ex):
        results = store.run(ex, segments)
        best_params, best_score = best_of(results)
        out = SearchResult("random search", results, best_params, best_score)
        store.write_json("search", out.to_dict())
    return out


def random_search_plan(space: SearchSpace, trainable: type | str, config: RandomSearchConfig, *,
                       settings: Mapping[str, Any] | None = None) -> list[Segment]:
    """The trials :func:`random_search` runs for ``config``: one :class:`Segment` each, in order.

    All configurations and trial seeds are drawn up front from ``config.seed`` (so a search is resumable, and
    any of its trials can be rebuilt and retrained on its own: ``PPOTrial(s.params, s.seed, **s.settings)``
    trained ``s.steps`` steps reproduces trial ``s.trial_id``).
    """
    rng = np.random.default_rng(config.seed)
    configs = [space.sample(rng) for _ in range(config.num_trials)]
    seeds = trial_seeds(rng, config.num_trials)
    return [Segment(trial_id=f"rs-{i:04d}", trainable=trainable_path(trainable), params=configs[i],
                    seed=seeds[i], steps=config.steps_per_trial, settings=dict(settings or {}))
            for i in range(config.num_trials)]
