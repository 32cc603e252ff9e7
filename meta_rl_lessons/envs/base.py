"""The task-family protocol shared by every meta-RL environment in the package.

A **task family** is a distribution over MDPs that share state and action spaces. It has three parts:

* a small frozen dataclass per task (``VelocityTask(velocity=1.3)``, ``GoalTask(goal=(0.2, -0.1))``...);
* a :class:`TaskFamily` that samples tasks, validates them and splits them into train and test tasks;
* environments that accept a task: a gymnasium env (``env.set_task(task)``, ``env.get_task()``) and, for
  the cheap families, a batched pure-torch env (``env.set_tasks(tasks)``, one task per row).

Train/test split (a deliberate choice)
--------------------------------------
Meta-RL reports performance on tasks not seen in meta-training. We split the *task space* into **disjoint,
interleaved regions**: a family maps a task to split coordinates ``u`` in ``[0, 1)^d`` (``d <= 2``: the
normalised goal velocity, the goal position, the means of the first two arms...), cuts each coordinate into
10 cells, and puts a task in the *test* split when its cell ``(i, j)`` satisfies ``(i + 2 j) mod 5 == 2``
(``i mod 5 == 2`` in one dimension: test tasks in ``[0.2, 0.3)`` and ``[0.7, 0.8)`` of the normalised
range, e.g. cheetah target velocities in [0.4, 0.6) and [1.4, 1.6) m/s). One cell in five is a test cell;
test cells are spread over the whole range, so test tasks come from the same overall range as training
tasks but never from a training cell.
``sample_tasks(n, rng, split="train")`` draws from the family's distribution conditioned on the split (by
rejection, so it stays deterministic given ``rng``); ``split=None`` draws from the whole distribution.
Families with finitely many tasks (forward/backward direction) cannot be split: both splits return the
full distribution and :attr:`TaskFamily.has_disjoint_split` is ``False``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

Split = Literal["train", "test"]
#: Cells per split coordinate, and one test cell in every ``_PERIOD`` cells (see the module docstring).
_CELLS = 10
_PERIOD = 5


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a ``numpy.random.Generator``, an int seed, or ``None`` (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def split_of_coordinates(u: np.ndarray) -> np.ndarray:
    """Split of each row of split coordinates ``u [n, d]`` in ``[0, 1)``: ``True`` for *test*."""
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    cells = np.clip(np.floor(u * _CELLS).astype(np.int64), 0, _CELLS - 1)
    weights = np.array([1, 2], dtype=np.int64)[: cells.shape[1]]
    return (cells @ weights) % _PERIOD == 2


class TaskFamily(ABC):
    """A distribution over tasks of one kind. Subclasses define the task type and its distribution.

    Public API: :meth:`sample_tasks`, :meth:`validate`, :meth:`split_of`, :meth:`make_env`, and for the cheap
    families :meth:`make_batched` (a pure-torch batched environment).
    """

    #: Name used in the gymnasium id ``MetaRL/<name>-v0``.
    name: ClassVar[str]
    #: The frozen dataclass describing one task.
    task_type: ClassVar[type]

    @property
    def env_id(self) -> str:
        return f"MetaRL/{self.name}-v0"

    # ----------------------------------------------------------------- sampling
    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> list[Any]:
        """``n`` tasks from the full task distribution."""

    def split_coordinates(self, tasks: Sequence[Any]) -> np.ndarray | None:
        """Split coordinates ``[n, d]`` in ``[0, 1)`` of each task, or ``None`` if the family has no split."""
        return None

    @property
    def has_disjoint_split(self) -> bool:
        return type(self).split_coordinates is not TaskFamily.split_coordinates

    def split_of(self, task: Any) -> Split | None:
        """``"train"`` or ``"test"``; ``None`` for a family whose tasks cannot be split."""
        u = self.split_coordinates([self.validate(task)])
        if u is None:
            return None
        return "test" if bool(split_of_coordinates(u)[0]) else "train"

    def sample_tasks(
        self, n: int, rng: np.random.Generator | int | None = None, split: Split | None = None
    ) -> list[Any]:
        """Sample ``n`` tasks, optionally from one side of the deterministic train/test split.

        Args:
            n: number of tasks.
            rng: a ``numpy.random.Generator`` or an int seed (same seed, same tasks).
            split: ``"train"``, ``"test"`` or ``None`` (the whole distribution).
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"number of tasks must be a non-negative int, got {n!r}")
        if split not in (None, "train", "test"):
            raise ValueError(f"unknown split {split!r}; allowed: 'train', 'test' or None")
        gen = as_generator(rng)
        if split is None or not self.has_disjoint_split:
            return self._sample(int(n), gen)
        want_test = split == "test"
        chosen: list[Any] = []
        while len(chosen) < n:
            # Oversample, then keep the tasks on the requested side (acceptance 20% for test, 80% for train).
            batch = self._sample(max(16, 6 * (n - len(chosen))), gen)
            is_test = split_of_coordinates(self.split_coordinates(batch))
            chosen.extend(t for t, te in zip(batch, is_test, strict=True) if bool(te) == want_test)
        return chosen[:n]

    # ----------------------------------------------------------------- validation
    def validate(self, task: Any) -> Any:
        """Return ``task`` as this family's task type, checking every parameter; accepts a dict too.

        Raises:
            TypeError: wrong task type, or a dict with unknown keys.
            ValueError: a parameter out of the family's range.
        """
        if isinstance(task, Mapping):
            allowed = [f.name for f in dataclasses.fields(self.task_type)]
            unknown = sorted(set(task) - set(allowed))
            if unknown:
                raise TypeError(
                    f"unknown task parameter(s) {unknown} for {self.name}; allowed: {allowed}"
                )
            try:
                task = self.task_type(**task)
            except TypeError as err:
                raise TypeError(f"bad task parameters for {self.name}: {err}; allowed: {allowed}") from None
        if not isinstance(task, self.task_type):
            raise TypeError(
                f"{self.name} expects a {self.task_type.__name__} (or a dict of its fields), "
                f"got {type(task).__name__}: {task!r}"
            )
        self._check(task)
        return task

    def _check(self, task: Any) -> None:  # noqa: B027 - optional hook, not abstract
        """Raise ``ValueError`` if a parameter of ``task`` is outside the family's range."""

    # ----------------------------------------------------------------- environments
    @abstractmethod
    def make_env(self, **kwargs: Any):
        """A gymnasium environment of this family (no time limit wrapper; ``gymnasium.make`` adds one)."""

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any):
        """A batched environment stepping ``[num_tasks, num_envs]`` copies at once."""
        raise NotImplementedError(f"{self.name} has no batched environment")


def check_int(family: str, name: str, value: Any, minimum: int) -> None:
    """Raise a ``ValueError`` naming the family, the argument, ``value`` and the bound unless ``value`` is an
    integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{family}: {name} must be an integer >= {minimum}, got {value!r}")


def check_range(name: str, value: float, low: float, high: float, family: str) -> None:
    """Raise a ``ValueError`` naming ``value`` and the allowed closed range."""
    if not np.isfinite(value) or not (low <= value <= high):
        raise ValueError(f"{family}: {name}={value!r} is outside the allowed range [{low}, {high}]")


class MetaEnvMixin:
    """``set_task`` / ``get_task`` for a gymnasium env holding a :class:`TaskFamily` in ``self.family``.

    If no task was set before the first ``reset``, a task is drawn from the family's *train* split with the
    env's own ``np_random``, so ``gymnasium.make(id)`` gives a working environment out of the box.
    ``reset(options={"task": task})`` also sets the task.
    """

    family: TaskFamily
    _task: Any = None

    def set_task(self, task: Any) -> None:
        self._task = self.family.validate(task)
        self._on_task_set(self._task)

    def get_task(self) -> Any:
        return self._task

    def sample_tasks(self, n: int, rng: np.random.Generator | int | None = None, split: Split | None = None):
        """Shortcut for ``env.family.sample_tasks`` (as in pytorch-maml-rl)."""
        return self.family.sample_tasks(n, rng, split)

    def _on_task_set(self, task: Any) -> None:
        """Hook: cache task parameters as arrays."""

    def _ensure_task(self, options: dict | None) -> None:
        if options and "task" in options:
            self.set_task(options["task"])
        elif self._task is None:
            self.set_task(self.family.sample_tasks(1, self.np_random, split="train")[0])
