"""Pieces every meta-optimizer shares: the result of a search, ranking, seeds, and where segments run.

A search is a sequence of *segments* (train one trial for some steps, see
:class:`~meta_rl_lessons.adaptive.trial.Segment`). :class:`SearchResult` lists them in the order the
algorithm issued them, with the compute spent so far (environment steps summed over all segments) and the best
score seen so far: the data of the best-score-versus-compute figure.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meta_rl_lessons.adaptive.executors import Executor, ResultStore, SerialExecutor
from meta_rl_lessons.adaptive.trial import SegmentResult

__all__ = ["SearchResult", "rank", "trial_seeds", "use_store"]


def _key(score: float) -> float:
    """Sort key: NaN (nothing to score yet) ranks below every number."""
    return -math.inf if score is None or math.isnan(score) else score


def rank(scores: Sequence[float]) -> list[int]:
    """Indices from best to worst score; ties keep the earlier index first (a stable, seed-free order)."""
    return sorted(range(len(scores)), key=lambda i: (-_key(scores[i]), i))


def trial_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """``n`` distinct seeds for the trials of a search, drawn from its generator."""
    return [int(s) for s in rng.choice(2**31 - 1, size=n, replace=False)]


@dataclass
class SearchResult:
    """Every segment a search ran, in issue order, and what it found."""

    method: str
    segments: list[SegmentResult]
    best_params: dict[str, Any]
    best_score: float
    extra: dict[str, Any] = field(default_factory=dict)
    """Method-specific records: successive halving's rungs, PBT's hyperparameter schedules, ..."""

    @property
    def total_steps(self) -> int:
        return int(sum(s.steps_run for s in self.segments))

    def compute_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(cumulative steps, best score so far)`` after each segment: the best-score-vs-compute curve."""
        steps = np.cumsum([s.steps_run for s in self.segments])
        best = np.maximum.accumulate([_key(s.score) for s in self.segments])
        return steps, best

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "best_params": self.best_params, "best_score": self.best_score,
                "total_steps": self.total_steps, "segments": [asdict(s) for s in self.segments],
                "extra": self.extra}


@contextmanager
def use_store(run_dir: str | Path | None, executor: Executor | None,
              need_checkpoints: bool = False) -> Iterator[tuple[ResultStore, Executor]]:
    """The result store for ``run_dir`` (a temporary directory when checkpoints are needed but ``run_dir`` is
    ``None``) and the executor (default :class:`SerialExecutor`, closed afterwards if we made it)."""
    tmp = tempfile.TemporaryDirectory(prefix="meta-rl-search-") if (need_checkpoints and run_dir is None) \
        else None
    own = executor is None
    ex = SerialExecutor() if own else executor
    try:
        yield ResultStore(tmp.name if tmp else run_dir), ex
    finally:
        if own:
            ex.close()
        if tmp is not None:
            tmp.cleanup()


def best_of(results: Sequence[SegmentResult]) -> tuple[dict[str, Any], float]:
    """Parameters and score of the best result (NaN scores rank last)."""
    i = rank([r.score for r in results])[0]
    return dict(results[i].params), float(results[i].score)


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(settings or {})
