"""Experiment budgets: one place that scales every experiment in the book.

Every experiment in the book comes in three sizes:

========  ==========================================  =================================================
budget    what it is for                              typical scale
========  ==========================================  =================================================
``smoke``  tests and ``nbval``: does the code run?    seconds per chapter
``book``   what the rendered book shows               minutes per chapter on a 2-core laptop CPU
``full``   paper scale                                hours, a GPU and many cores
========  ==========================================  =================================================

The budget comes from the ``META_RL_BUDGET`` environment variable (default ``book``). A chapter asks for
its sizes in one line, so the same notebook runs at every scale::

    from meta_rl_lessons import budget
    total_steps = budget.pick(smoke=2_000, book=100_000, full=1_000_000)
    print(budget.current())            # Budget('book')

Tests pin a budget without touching the environment with ``with budget.use("smoke"): ...``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: The environment variable that selects the budget.
ENV_VAR = "META_RL_BUDGET"
#: The allowed budget names, smallest first.
NAMES: tuple[str, ...] = ("smoke", "book", "full")
#: The budget used when ``META_RL_BUDGET`` is unset or empty.
DEFAULT = "book"

_override: str | None = None


@dataclass(frozen=True)
class Budget:
    """A named experiment scale: one of :data:`NAMES`."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(
                f"unknown experiment budget {self.name!r}; allowed budgets are "
                f"{', '.join(NAMES)} (set {ENV_VAR} to one of them, default {DEFAULT!r})"
            )

    def pick(self, *, smoke: T, book: T, full: T) -> T:
        """Return the value given for this budget."""
        return {"smoke": smoke, "book": book, "full": full}[self.name]

    @property
    def is_smoke(self) -> bool:
        return self.name == "smoke"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Budget({self.name!r})"


def current() -> Budget:
    """The budget in force: a :func:`use` override, else ``$META_RL_BUDGET``, else ``book``.

    Raises:
        ValueError: if ``META_RL_BUDGET`` holds anything but ``smoke``, ``book`` or ``full``
            (surrounding whitespace and case are ignored).
    """
    if _override is not None:
        return Budget(_override)
    raw = os.environ.get(ENV_VAR, "")
    name = raw.strip().lower() or DEFAULT
    try:
        return Budget(name)
    except ValueError:
        raise ValueError(
            f"{ENV_VAR}={raw!r} is not a known experiment budget; allowed values are "
            f"{', '.join(NAMES)} (unset means {DEFAULT!r})"
        ) from None


def pick(*, smoke: T, book: T, full: T) -> T:
    """The value for the current budget: ``pick(smoke=1, book=10, full=100)``."""
    return current().pick(smoke=smoke, book=book, full=full)


@contextlib.contextmanager
def use(name: str) -> Iterator[Budget]:
    """Temporarily force a budget (for tests and scripts), whatever the environment says."""
    global _override
    chosen = Budget(name)  # validates
    previous, _override = _override, chosen.name
    try:
        yield chosen
    finally:
        _override = previous
