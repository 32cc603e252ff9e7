r"""Search spaces: the set of configurations a meta-optimizer may try.

A :class:`SearchSpace` is an ordered list of dimensions, each with a name:

==================================  ==================================================================
dimension                           sample
==================================  ==================================================================
``Integer(name, low, high)``        uniform on ``{low, ..., high}`` (``log=True``: log-uniform, rounded)
``Float(name, low, high)``          uniform on ``[low, high]``
``Float(name, low, high, log=True)`` log-uniform: :math:`\log x \sim \mathcal U[\log low, \log high]`
``Categorical(name, choices)``      uniform over ``choices`` (ordered: perturbation moves to a neighbour)
==================================  ==================================================================

A dimension may be **conditional**: ``when={"n_layers": (2, 3)}`` makes it *active* only when the
dimension ``n_layers`` (which must come earlier) takes one of the listed values. A configuration is a plain
dict ``name -> value`` holding exactly the active dimensions, so it can be written to JSON as is::

    space = SearchSpace([
        Integer("n_layers", 1, 3),
        Integer("width_0", 16, 256, log=True),
        Integer("width_1", 16, 256, log=True, when={"n_layers": (2, 3)}),
        Integer("width_2", 16, 256, log=True, when={"n_layers": (3,)}),
        Float("learning_rate", 1e-4, 3e-3, log=True),
        Categorical("gamma", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
    ])
    rng = np.random.default_rng(0)
    config = space.sample(rng)            # {'n_layers': 2, 'width_0': 97, 'width_1': 23, ...}
    space.validate(config)                # raises ValueError naming the dimension if anything is off
    child = space.perturb(config, rng, keys=["learning_rate", "gamma"])   # PBT's explore step

**Perturbation** (PBT's *explore*, with Ray Tune's defaults): each perturbed dimension is, with probability
``resample_probability`` (0.25), resampled from its prior; otherwise a number is multiplied by a factor
drawn from ``factors`` (0.8 or 1.2) and clipped to its bounds (integers are rounded), and a categorical value
moves to a neighbouring choice. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Categorical", "Dimension", "Float", "Integer", "SearchSpace"]


@dataclass(frozen=True)
class Dimension:
    """Base class: a named dimension, optionally active only ``when`` earlier dimensions take given values."""

    name: str
    when: Mapping[str, Sequence[Any]] | None = field(default=None, kw_only=True)
    """``{parent_name: allowed_values}``: the dimension is active only if every parent's value is allowed."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a dimension needs a non-empty string name, got {self.name!r}")
        if self.when is not None:
            frozen = {k: tuple(v) for k, v in dict(self.when).items()}
            for parent, allowed in frozen.items():
                if not allowed:
                    raise ValueError(f"dimension {self.name!r}: condition on {parent!r} allows no value")
            object.__setattr__(self, "when", frozen)

    def is_active(self, config: Mapping[str, Any]) -> bool:
        """Whether this dimension belongs in ``config`` (its parents present with allowed values)."""
        if self.when is None:
            return True
        return all(parent in config and config[parent] in allowed for parent, allowed in self.when.items())

    # subclasses implement these three
    def sample(self, rng: np.random.Generator) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, value: Any) -> Any:  # pragma: no cover - abstract
        """Return ``value`` in canonical form, or raise ``ValueError`` naming the dimension and its range."""
        raise NotImplementedError

    def perturb(self, value: Any, rng: np.random.Generator, factors: Sequence[float]) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract


def _check_bounds(name: str, low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"dimension {name!r}: need finite low <= high, got low={low!r}, high={high!r}")
    if log and low <= 0:
        raise ValueError(f"dimension {name!r}: a log-scale dimension needs low > 0, got low={low!r}")


@dataclass(frozen=True)
class Float(Dimension):
    r"""A real number in ``[low, high]``; ``log=True`` samples uniformly in :math:`\log x` (learning rate)."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bounds(self.name, self.low, self.high, self.log)

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"dimension {self.name!r} needs a number in [{self.low}, {self.high}], "
                             f"got {value!r} of type {type(value).__name__}")
        v = float(value)
        if not (self.low <= v <= self.high):  # also rejects NaN
            scale = " (log scale)" if self.log else ""
            raise ValueError(
                f"dimension {self.name!r} must lie in [{self.low}, {self.high}]{scale}, got {v!r}")
        return v

    def perturb(self, value: Any, rng: np.random.Generator, factors: Sequence[float]) -> float:
        return float(np.clip(float(value) * float(rng.choice(factors)), self.low, self.high))


@dataclass(frozen=True)
class Integer(Dimension):
    """An integer in ``{low, ..., high}`` (both included); ``log=True`` for widths and batch sizes."""

    low: int = 0
    high: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)):
                raise ValueError(f"dimension {self.name!r}: integer bounds needed, got {bound!r}")
        _check_bounds(self.name, self.low, self.high, self.log)

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # log-uniform on [low - 0.5, high + 0.5] then rounded: every integer reachable, small favoured
            lo, hi = math.log(max(self.low - 0.5, 0.5)), math.log(self.high + 0.5)
            return int(np.clip(round(math.exp(rng.uniform(lo, hi))), self.low, self.high))
        return int(rng.integers(self.low, self.high + 1))

    def check(self, value: Any) -> int:
        integral = isinstance(value, (int, np.integer)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer())
        if isinstance(value, bool) or not integral:
            raise ValueError(f"dimension {self.name!r} needs an integer in [{self.low}, {self.high}], "
                             f"got {value!r} of type {type(value).__name__}")
        v = int(value)
        if not (self.low <= v <= self.high):
            raise ValueError(
                f"dimension {self.name!r} must be an integer in [{self.low}, {self.high}], got {v}")
        return v

    def perturb(self, value: Any, rng: np.random.Generator, factors: Sequence[float]) -> int:
        return int(np.clip(round(int(value) * float(rng.choice(factors))), self.low, self.high))


@dataclass(frozen=True)
class Categorical(Dimension):
    """One of ``choices`` (numbers, strings, booleans); perturbation moves to a neighbouring choice."""

    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "choices", tuple(self.choices))
        if len(self.choices) == 0:
            raise ValueError(f"dimension {self.name!r}: a categorical dimension needs at least one choice")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"dimension {self.name!r}: repeated choices in {self.choices!r}")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def check(self, value: Any) -> Any:
        for choice in self.choices:  # match 0.99 == 0.99 but not True == 1
            if type(choice) is type(value) and choice == value:
                return choice
            if (isinstance(choice, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
                    and choice == value):
                return choice
        raise ValueError(f"dimension {self.name!r} must be one of {list(self.choices)}, got {value!r}")

    def perturb(self, value: Any, rng: np.random.Generator, factors: Sequence[float]) -> Any:
        i = self.choices.index(self.check(value))
        j = int(np.clip(i + int(rng.choice((-1, 1))), 0, len(self.choices) - 1))
        return self.choices[j]


class SearchSpace:
    """An ordered collection of dimensions; see the module docstring.

    Args:
        dimensions: the dimensions; names unique; a conditional dimension after the parents it names.
    """

    def __init__(self, dimensions: Iterable[Dimension]) -> None:
        self.dimensions: tuple[Dimension, ...] = tuple(dimensions)
        seen: set[str] = set()
        for d in self.dimensions:
            if not isinstance(d, Dimension):
                raise TypeError(f"SearchSpace takes Dimension objects, got {d!r}")
            if d.name in seen:
                raise ValueError(f"dimension name {d.name!r} appears twice in the search space")
            for parent in (d.when or {}):
                if parent not in seen:
                    raise ValueError(f"dimension {d.name!r} is conditional on {parent!r}, which must be "
                                     "declared before it")
            seen.add(d.name)
        self._by_name = {d.name: d for d in self.dimensions}

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no dimension {name!r} in the search space; dimensions: {self.names}") from None

    def __len__(self) -> int:
        return len(self.dimensions)

    def __repr__(self) -> str:
        return f"SearchSpace({list(self.dimensions)!r})"

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration: every active dimension sampled from its prior, in declaration order."""
        config: dict[str, Any] = {}
        for d in self.dimensions:
            if d.is_active(config):
                config[d.name] = d.sample(rng)
        return config

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` in canonical form (ints as int, floats as float), or ``ValueError`` naming the problem:
        an unknown name, a missing active dimension, a value set for an inactive one, or one out of range."""
        unknown = [k for k in config if k not in self._by_name]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown} in config; the search space has {self.names}")
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if d.is_active(out):
                if d.name not in config:
                    raise ValueError(f"dimension {d.name!r} is active (condition {d.when}) but missing from "
                                     "the config")
                out[d.name] = d.check(config[d.name])
            elif d.name in config:
                raise ValueError(f"dimension {d.name!r} is set to {config[d.name]!r} but inactive: it needs "
                                 f"{d.when}, the config has " + str({p: out.get(p) for p in d.when or {}}))
        return out

    def perturb(
        self,
        config: Mapping[str, Any],
        rng: np.random.Generator,
        *,
        keys: Iterable[str] | None = None,
        factors: Sequence[float] = (0.8, 1.2),
        resample_probability: float = 0.25,
    ) -> dict[str, Any]:
        """PBT's *explore*: a copy of ``config`` with the dimensions in ``keys`` (default: all) perturbed.

        Each one is resampled from its prior with probability ``resample_probability``, else multiplied by a
        factor from ``factors`` and clipped (numbers) or moved to a neighbouring choice (categorical).
        Dimensions that become active are sampled; those that become inactive are dropped.
        """
        if not 0.0 <= resample_probability <= 1.0:
            raise ValueError(f"resample_probability must lie in [0, 1], got {resample_probability!r}")
        if len(factors) == 0 or any(not (f > 0) for f in factors):
            raise ValueError(f"factors must be positive numbers, got {factors!r}")
        config = self.validate(config)
        chosen = set(self.names if keys is None else keys)
        for k in chosen:
            self[k]  # noqa: B018 - raises KeyError naming an unknown key
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if not d.is_active(out):
                continue
            if d.name not in config:
                out[d.name] = d.sample(rng)  # newly active
            elif d.name in chosen:
                resample = rng.random() < resample_probability
                out[d.name] = d.sample(rng) if resample else d.perturb(config[d.name], rng, factors)
            else:
                out[d.name] = config[d.name]
        return out
