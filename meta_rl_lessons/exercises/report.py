"""What a ``check_*`` function returns: a :class:`CheckReport` of cases, readable in a terminal and in
Jupyter.

Every check runs a student's function on several seeded inputs, compares it with the package's reference and
records one :class:`Case` per input: what the input was, the largest absolute and relative error, and, for the
first failing case, a diagnosis (which step, which boundary, which known mistake the output matches). A
student function that raises, returns the wrong type, shape or dtype, or modifies its inputs gives a failed
case with that message; the check itself never crashes because of the student's code.

The helpers below (:func:`call`, :func:`compare`, :func:`as_tensor`) are what the chapter-specific modules use
to build their cases.
"""

from __future__ import annotations

import html
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Case",
    "CheckReport",
    "ExerciseFailed",
    "StudentError",
    "as_tensor",
    "call",
    "compare",
    "first_mismatch",
    "match_known_mistake",
    "run_case",
]


class ExerciseFailed(AssertionError):
    """Raised by :meth:`CheckReport.raise_if_failed`; its message is the whole report."""


class StudentError(Exception):
    """The student's function raised or returned something unusable; the message says what and where."""


@dataclass
class Case:
    """One input on which the student's function was compared with the reference."""

    description: str
    """What the input was, in words (sizes, where episodes end, what the edge case is)."""
    passed: bool
    """Whether the output matched the reference within the tolerance."""
    max_abs_error: float | None = None
    """Largest absolute difference from the reference (``None`` when no comparison was possible)."""
    max_rel_error: float | None = None
    """Largest difference relative to ``max(|reference|, 1e-8)`` elementwise (``None`` as above)."""
    diagnosis: str = ""
    """Why the case failed: the first mismatch and, where recognisable, the mistake that explains it."""


@dataclass
class CheckReport:
    """The outcome of one ``check_*`` call.

    ``passed`` is true when every case passed (a report without cases never passes). ``str(report)`` is a
    plain-text table; in Jupyter the report renders as an HTML table; :meth:`raise_if_failed` turns a failure
    into an exception (for scripts and ``assert``-style use).
    """

    exercise: str
    """Name of the exercise, e.g. ``"GAE (eq. gae)"``."""
    reference: str
    """The package object the student's function is compared with."""
    cases: list[Case] = field(default_factory=list)
    """One entry per input, in the order they were run."""
    notes: list[str] = field(default_factory=list)
    """Remarks that are not tied to one case (e.g. the check stopped after the student's function raised)."""

    @property
    def passed(self) -> bool:
        """True when there is at least one case and every case passed."""
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def num_failed(self) -> int:
        """Number of failed cases."""
        return sum(not c.passed for c in self.cases)

    def first_failure(self) -> Case | None:
        """The first failed case, or ``None``."""
        return next((c for c in self.cases if not c.passed), None)

    def raise_if_failed(self) -> CheckReport:
        """Raise :class:`ExerciseFailed` with the full report if any case failed; return ``self``
        otherwise."""
        if not self.passed:
            raise ExerciseFailed(str(self))
        return self

    # ------------------------------------------------------------------ rendering
    def _headline(self) -> str:
        n = len(self.cases)
        if self.passed:
            return f"PASSED  {self.exercise}: all {n} cases match {self.reference}"
        if not n:
            return f"FAILED  {self.exercise}: no case could be run"
        return f"FAILED  {self.exercise}: {self.num_failed} of {n} cases differ from {self.reference}"

    def __str__(self) -> str:
        lines = [self._headline()]
        for i, c in enumerate(self.cases, 1):
            if c.passed:
                err = "" if c.max_abs_error is None else f" (max abs error {_fmt(c.max_abs_error)})"
                lines.append(f"  [ok  ] case {i}: {c.description}{err}")
                continue
            lines.append(f"  [FAIL] case {i}: {c.description}")
            if c.max_abs_error is not None:
                lines.append(
                    f"         max abs error {_fmt(c.max_abs_error)}, max rel error {_fmt(c.max_rel_error)}"
                )
            if c.diagnosis:
                lines += [f"         {line}" for line in c.diagnosis.splitlines()]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        rows = ["| | case | max abs error | max rel error | diagnosis |", "|---|---|---|---|---|"]
        for c in self.cases:
            cells = [
                "✓" if c.passed else "✗ failed",  # text symbols: emoji need a font many machines lack
                c.description,
                _fmt(c.max_abs_error),
                _fmt(c.max_rel_error),
                c.diagnosis,
            ]
            rows.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
        notes = "".join(f"\n\n*note:* {_md_escape(n)}" for n in self.notes)
        return f"**{_md_escape(self._headline())}**\n\n" + "\n".join(rows) + notes

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        head = f'<p style="font-weight:bold;color:{colour}">{html.escape(self._headline())}</p>'
        th = "".join(
            f'<th style="text-align:left;padding:2px 8px">{h}</th>'
            for h in ("", "case", "max abs error", "max rel error", "diagnosis")
        )
        body = []
        for c in self.cases:
            mark = "&#x2705;" if c.passed else "&#x274C;"
            diag = html.escape(c.diagnosis).replace("\n", "<br>")
            tds = [mark, html.escape(c.description), _fmt(c.max_abs_error), _fmt(c.max_rel_error), diag]
            body.append(
                "<tr>"
                + "".join(
                    f'<td style="text-align:left;padding:2px 8px;vertical-align:top">{x}</td>' for x in tds
                )
                + "</tr>"
            )
        notes = "".join(f"<p><em>note:</em> {html.escape(n)}</p>" for n in self.notes)
        return f"{head}<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.1e}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


# ============================================================================ calling the student's code
def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the student's ``fn``; any exception becomes a :class:`StudentError` naming it and where it was
    raised.

    Tensor arguments are passed as clones and compared afterwards, so a function that modifies its inputs in
    place is reported (the reference would otherwise see corrupted inputs) rather than silently accepted.
    """
    if not callable(fn):
        raise StudentError(f"expected a function, got {type(fn).__name__} {fn!r}")
    clones = [a.detach().clone() if isinstance(a, Tensor) else None for a in args]
    try:
        out = fn(*args, **kwargs)
    except Exception as err:  # the student's code: report it, never crash the check
        raise StudentError(_describe_exception(err)) from err
    for i, (a, c) in enumerate(zip(args, clones, strict=True)):
        if c is not None and not _same(a.detach(), c):
            raise StudentError(
                f"your function modified its argument {i + 1} (shape {tuple(a.shape)}) in place; "
                "work on a copy (e.g. x.clone()) instead"
            )
    return out


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(
        ((a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else (a == b)).all()
    )


def _describe_exception(err: BaseException) -> str:
    """``"ValueError: message (raised in my_gae, line 7)"``: the last frame outside this package."""
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    frames = traceback.extract_tb(err.__traceback__)
    outside = [f for f in frames if "meta_rl_lessons/exercises" not in f.filename.replace("\\", "/")]
    # prefer the student's own line over a frame inside torch or NumPy that the bad call ended in
    user = [
        f for f in outside if "site-packages" not in f.filename and "/torch/" not in f.filename
    ] or outside
    if user:
        f = user[-1]
        where = f"{f.name}, line {f.lineno}" + (f": {f.line.strip()}" if f.line else "")
        text += f"\n(raised in {where})"
    return f"your function raised {text}"


def as_tensor(value: Any, name: str, like: Tensor) -> Tensor:
    """The student's output as a tensor shaped and typed like the reference ``like``, or
    :class:`StudentError`.

    Accepts tensors (and, for convenience, NumPy arrays and nested lists of numbers, converted to ``like``'s
    dtype); a floating tensor of another dtype is an error, because a float32 result of float64 inputs has
    thrown away precision (create outputs with ``torch.zeros_like(input)`` or ``torch.empty_like``).
    """
    if isinstance(value, Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(value, dtype=like.dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise StudentError(
                f"{name}: expected a tensor shaped {tuple(like.shape)}, got {type(value).__name__} ({err})"
            ) from err
    if tuple(t.shape) != tuple(like.shape):
        raise StudentError(f"{name} has shape {tuple(t.shape)}, expected {tuple(like.shape)}")
    if like.is_floating_point() and t.dtype != like.dtype:
        raise StudentError(
            f"{name} has dtype {t.dtype}, expected {like.dtype} (the dtype of the inputs); "
            "create outputs with torch.zeros_like / torch.empty_like of an input"
        )
    if t.device != like.device:
        raise StudentError(f"{name} is on {t.device}, expected {like.device} (the device of the inputs)")
    return t


def compare(got: Tensor, want: Tensor, atol: float, rtol: float) -> tuple[bool, float, float]:
    """``(ok, max abs error, max rel error)``; ``ok`` means ``|got - want| <= atol + rtol |want|`` everywhere
    (NaN where the reference is finite is a failure)."""
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    if got.numel() == 0:
        return True, 0.0, 0.0
    diff = (got - want).abs()
    diff = torch.where(torch.isnan(got) & ~torch.isnan(want), torch.full_like(diff, math.inf), diff)
    diff = torch.where(torch.isnan(got) & torch.isnan(want), torch.zeros_like(diff), diff)
    rel = diff / want.abs().clamp_min(1e-8)
    ok = bool((diff <= atol + rtol * want.abs().nan_to_num(0.0)).all())
    return ok, float(diff.max()), float(rel.max())


def first_mismatch(got: Tensor, want: Tensor, atol: float, rtol: float) -> tuple[int, ...] | None:
    """Index of the first entry (in row-major order) outside the tolerance, or ``None``."""
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    bad = ~((got - want).abs() <= atol + rtol * want.abs())
    if not bool(bad.any()):
        return None
    return tuple(int(i) for i in bad.nonzero()[0])


def match_known_mistake(
    got: Tensor, mistakes: Iterable[tuple[str, Callable[[], Tensor | None]]], atol: float, rtol: float
) -> str | None:
    """The message of the first known mistake whose output ``got`` reproduces, or ``None``.

    ``mistakes`` pairs a message with a function computing what that mistake would have returned on this
    case (``None`` when the mistake changes nothing here). A match means the student's output equals the
    mistaken computation within the tolerance *and* the mistake actually changes the result.
    """
    for message, wrong in mistakes:
        try:
            w = wrong()
        except Exception:  # a variant that cannot be computed on this input is simply not a candidate
            continue
        if w is None or w.shape != got.shape:
            continue
        if compare(got, w, atol, rtol)[0]:
            return message
    return None


def run_case(description: str, body: Callable[[], Case]) -> Case:
    """``body()``, or a failed :class:`Case` carrying the :class:`StudentError` message if it raised one."""
    try:
        return body()
    except StudentError as err:
        return Case(description, False, diagnosis=str(err))


def describe_bools(flags: Tensor, name: str, limit: int = 6) -> str:
    """``"terminated at (t=2, b=0), (t=5, b=1)"``-style list of the True entries of a ``[T, B]`` tensor."""
    idx = flags.nonzero().tolist()
    if not idx:
        return f"no {name} step"
    parts = [f"(t={t}, b={b})" for t, b in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{name} at " + ", ".join(parts) + more


def seq(values: Sequence[float], digits: int = 3) -> str:
    """Short printable list of numbers."""
    return "[" + ", ".join(f"{v:.{digits}g}" for v in values) + "]"
