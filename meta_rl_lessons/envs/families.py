"""The task families by name: :data:`FAMILIES` and :func:`make_family` (re-exported by
:mod:`meta_rl_lessons.envs`)."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from .bandit import BernoulliBanditFamily
from .base import TaskFamily
from .inventory import InventoryFamily
from .locomotion import (
    AntDirFamily,
    AntGoalFamily,
    AntVelFamily,
    HalfCheetahDirFamily,
    HalfCheetahVelFamily,
)
from .navigation import Navigation2DFamily
from .tabular_mdp import TabularMDPFamily

__all__ = ["FAMILIES", "check_family", "family_arguments", "make_family"]

#: Family classes by name (the ``<Name>`` of ``MetaRL/<Name>-v0``).
FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (BernoulliBanditFamily, TabularMDPFamily, Navigation2DFamily, HalfCheetahVelFamily,
                HalfCheetahDirFamily, AntVelFamily, AntDirFamily, AntGoalFamily)
}
FAMILIES[InventoryFamily.name] = InventoryFamily  # chapter "Applications"


def family_arguments(name: str) -> list[str]:
    """The keyword arguments family ``name`` accepts (its constructor's parameters), in order."""
    params = inspect.signature(_family_class(name).__init__).parameters
    return [p for p in params if p != "self"]


def _family_class(name: str) -> type[TaskFamily]:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task family {name!r}{hint}; known families: {sorted(FAMILIES)}") from None


def make_family(name: str, **kwargs: Any) -> TaskFamily:
    """The family called ``name`` (see :data:`FAMILIES`), built with ``kwargs``.

    Raises:
        ValueError: an unknown ``name`` (naming the known ones), or a value out of the family's range.
        TypeError: a keyword the family does not take (naming the ones it does).
    """
    cls = _family_class(name)
    allowed = family_arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        hints = [f"{u!r} -> {c[0]!r}" for u in unknown if (c := difflib.get_close_matches(u, allowed, n=1))]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise TypeError(f"{name}: unknown keyword argument(s) {unknown}{hint}; allowed: {', '.join(allowed)}")
    return cls(**kwargs)


def check_family(owner: str, name: Any, kwargs: Any) -> None:
    """A config's ``family`` and ``family_kwargs`` checked by building the family once (cheap: no
    environment is made), so a bad value fails when the config is made, not when the trainer starts.

    Args:
        owner: the config class's name, for the messages (``"MAMLTRPOConfig"``).

    Raises:
        ValueError: naming ``<owner>.family`` or ``<owner>.family_kwargs``, the value and what is allowed.
    """
    if not isinstance(name, str) or name not in FAMILIES:
        try:
            _family_class(str(name))
        except ValueError as err:
            raise ValueError(f"{owner}.family: {err}") from None
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{owner}.family_kwargs must be a dict of {name}'s keyword arguments "
                         f"({', '.join(family_arguments(name))}), got {kwargs!r}")
    try:
        make_family(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{owner}.family_kwargs={kwargs!r}: {err}") from None
