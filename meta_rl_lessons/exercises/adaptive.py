r"""Exercises of chapter 5 (adaptive deep RL): PBT's exploit step and successive halving's promotion.

* :func:`pbt_exploit_template` (PBT's exploit step) is compared with the exploit step of
  :func:`meta_rl_lessons.adaptive.pbt.pbt` (:func:`~meta_rl_lessons.adaptive.search.rank`,
  :func:`~meta_rl_lessons.adaptive.pbt.truncation_sizes`, a uniform donor from the top quantile);
* :func:`promote_template` (the successive-halving rule) with the promotion in
  :func:`meta_rl_lessons.adaptive.successive_halving.run_halving`.

Ties between scores may be broken any way (the package keeps the earlier index first); the checks accept every
selection that a valid tie-break gives. A NaN score (a diverged member) ranks below every number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from meta_rl_lessons.adaptive.pbt import truncation_sizes
from meta_rl_lessons.adaptive.search import rank
from meta_rl_lessons.exercises.report import Case, CheckReport, StudentError, call, run_case

__all__ = [
    "check_pbt_exploit",
    "check_promote",
    "pbt_exploit_template",
    "promote_template",
    "reference_pbt_exploit",
    "reference_promote",
]


def _key(x: float) -> float:
    return -math.inf if x is None or math.isnan(x) else float(x)


def _fmt_scores(scores: Sequence[float]) -> str:
    return "[" + ", ".join("nan" if math.isnan(s) else f"{s:g}" for s in scores) + "]"


# ============================================================================ PBT exploit
def pbt_exploit_template(
    scores: Sequence[float], quantile: float, rng: np.random.Generator
) -> dict[int, int]:
    r"""PBT's exploit step by truncation selection (chapter 5, the exploit step of PBT).

    Rank the ``N`` members by score, best first; a NaN score ranks below every number. The bottom and the top
    quantile each hold :math:`n = \min(\lceil qN \rceil, \lfloor N/2 \rfloor)` members. Every member in the
    bottom quantile copies a *donor* drawn uniformly at random from the top quantile (with ``rng``; two bottom
    members may draw the same donor).

    Args:
        scores: ``N`` scores, higher is better.
        quantile: :math:`q \in (0, 0.5]`.
        rng: the random generator for the donor draws.

    Returns:
        ``{bottom member index: donor index}``, one entry per bottom member.
    """
    raise NotImplementedError(
        "exercise: implement PBT's exploit step (chapter 5), then run "
        "adaptive.check_pbt_exploit(your_function)"
    )


def reference_pbt_exploit(
    scores: Sequence[float], quantile: float, rng: np.random.Generator
) -> dict[int, int]:
    """The exploit step of :func:`~meta_rl_lessons.adaptive.pbt.pbt`: :func:`rank`, :func:`truncation_sizes`
    and a uniform donor from the top for each bottom member (in increasing member order)."""
    n = truncation_sizes(len(scores), quantile)
    if n == 0:
        return {}
    order = rank(list(scores))
    top, bottom = order[:n], order[-n:]
    return {i: int(top[int(rng.integers(len(top)))]) for i in sorted(bottom)}


def _valid_bottom(scores: Sequence[float], chosen: set[int], n: int) -> bool:
    """``chosen`` is a set of ``n`` worst members under some tie-break."""
    if len(chosen) != n:
        return False
    rest = [i for i in range(len(scores)) if i not in chosen]
    return (
        not rest or not chosen or max(_key(scores[i]) for i in chosen) <= min(_key(scores[i]) for i in rest)
    )


def _top_threshold(scores: Sequence[float], n: int) -> float:
    return sorted((_key(s) for s in scores), reverse=True)[n - 1]


def check_pbt_exploit(
    student: Callable[..., Mapping[int, int]], *, seed: int = 0, repeats: int = 60
) -> CheckReport:
    """Check a PBT exploit step (signature of :func:`pbt_exploit_template`).

    Each case checks which members copy (exactly the bottom quantile, NaN scores lowest, any tie-break) and
    that every donor belongs to the top quantile; ``repeats`` calls with different generators check that the
    donor is drawn at random from the whole top quantile (not always the single best member).
    """
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, list[float], float]] = [
        ("N=8 distinct scores, q=0.25 (2 copy from the top 2)", list(rng.normal(size=8).round(3)), 0.25),
        ("N=10, q=0.25: ceil(2.5) = 3 members in each quantile", list(rng.normal(size=10).round(3)), 0.25),
        ("N=2, q=0.25: the worse member copies the better one", [0.3, 0.9], 0.25),
        (
            "N=6 with ties at both quantile boundaries, q=0.25 (any tie-break is fine)",
            [1.0, 2.0, 1.0, 3.0, 2.0, 0.5],
            0.25,
        ),
        (
            "N=6, two members diverged (NaN score): they must be in the bottom, never donors",
            [0.4, math.nan, 1.2, 0.9, math.nan, 0.1],
            0.25,
        ),
        ("N=7, q=0.5: floor(7/2) = 3 members in each quantile", list(rng.normal(size=7).round(3)), 0.5),
        ("N=3, q=0.2: one member copies", [5.0, -1.0, 2.0], 0.2),
    ]
    report = CheckReport(
        "PBT exploit step, truncation selection (chapter 5, the exploit step of PBT)",
        "the exploit step of meta_rl_lessons.adaptive.pbt.pbt (rank, truncation_sizes)",
    )
    for desc, scores, q in specs:

        def body(desc=desc, scores=scores, q=q) -> Case:
            N = len(scores)
            n = truncation_sizes(N, q)
            ref = reference_pbt_exploit(scores, q, np.random.default_rng(0))
            threshold = _top_threshold(scores, n)
            seen: set[int] = set()
            for r in range(repeats):
                out = call(student, list(scores), q, np.random.default_rng(1000 * seed + r))
                if not isinstance(out, Mapping):
                    raise StudentError(f"expected a dict {{bottom member: donor}}, got {type(out).__name__}")
                try:
                    pairs = {int(i): int(j) for i, j in out.items()}
                except (TypeError, ValueError) as err:
                    raise StudentError(
                        f"keys and values must be member indices (ints), got {dict(out)}"
                    ) from err
                if any(not 0 <= x < N for p in pairs.items() for x in p):
                    raise StudentError(f"member indices must lie in [0, {N}), got {pairs}")
                diag_head = f"scores {_fmt_scores(scores)}, q={q}: "
                if len(pairs) != n:
                    hint = ""
                    if len(pairs) == int(q * N):
                        hint = (
                            " (that is int(q·N), rounded down; the quantile size is ceil(q·N), at "
                            "most N // 2)"
                        )
                    elif len(pairs) == math.ceil(q * N):
                        hint = " (ceil(q·N) must be capped at N // 2)"
                    return Case(
                        desc,
                        False,
                        diagnosis=f"{diag_head}{len(pairs)} members copy, expected n = "
                        f"min(ceil(q·N), N // 2) = {n}{hint}; the package's choice: {ref}",
                    )
                if not _valid_bottom(scores, set(pairs), n):
                    nan_top = [i for i in pairs.values() if math.isnan(scores[i])]
                    hint = (
                        "; a NaN score must rank below every number (np.argsort puts NaN last, i.e. "
                        "*best* in an ascending sort)"
                        if any(math.isnan(s) for s in scores)
                        else ""
                    )
                    return Case(
                        desc,
                        False,
                        diagnosis=f"{diag_head}members {sorted(pairs)} copy, but the bottom "
                        f"quantile is {sorted(ref)} (the {n} worst){hint}"
                        + (f"; NaN donors {nan_top}" if nan_top else ""),
                    )
                bad = {i: j for i, j in pairs.items() if _key(scores[j]) < threshold or j in pairs}
                if bad:
                    lowest = min(_key(scores[k]) for k in pairs)
                    worst = all(j in pairs or _key(scores[j]) <= lowest for j in bad.values())
                    hint = (
                        "; looks like you copy from the bottom (the worst), not from the top" if worst else ""
                    )
                    return Case(
                        desc,
                        False,
                        diagnosis=f"{diag_head}donors {bad} are not in the top quantile "
                        f"(the {n} best, score >= {threshold:g}){hint}",
                    )
                seen.update(pairs.values())
            tops = {i for i in range(N) if _key(scores[i]) >= threshold}
            if n >= 2 and len(tops) == n and seen != tops:
                return Case(
                    desc,
                    False,
                    diagnosis=f"over {repeats} calls with different generators the donors "
                    f"were only {sorted(seen)}; truncation selection draws each donor uniformly from the "
                    f"whole top quantile {sorted(tops)} (always copying the single best member makes the "
                    "population collapse onto one member)",
                )
            return Case(desc, True)

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ successive halving
def promote_template(trial_ids: Sequence[int], scores: Sequence[float], eta: int) -> list[int]:
    r"""Successive halving's promotion from one rung to the next (chapter 5, the successive-halving rule).

    Of the :math:`m` trials in the rung, keep the :math:`\max(1, \lfloor m / \eta \rfloor)` with the best
    scores (higher is better; a NaN score ranks below every number).

    Args:
        trial_ids: the ids of the trials in this rung (not necessarily ``0..m-1``: earlier rungs
        removed some).
        scores: their scores, ``scores[i]`` belongs to ``trial_ids[i]``.
        eta: the reduction factor :math:`\eta \ge 2`.

    Returns:
        the ids of the promoted trials (any order).
    """
    raise NotImplementedError(
        "exercise: implement successive halving's promotion (chapter 5), then run "
        "adaptive.check_promote(your_function)"
    )


def reference_promote(trial_ids: Sequence[int], scores: Sequence[float], eta: int) -> list[int]:
    """The promotion of :func:`~meta_rl_lessons.adaptive.successive_halving.run_halving` (ties: earlier
    index first)."""
    order = rank(list(scores))
    return sorted(trial_ids[j] for j in order[: max(1, len(trial_ids) // eta)])


def check_promote(student: Callable[..., Sequence[int]], *, seed: int = 0) -> CheckReport:
    """Check a promotion step (signature of :func:`promote_template`): how many are kept, which (any tie-break
    among equal scores; NaN lowest), and that ids, not positions, are returned."""
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, list[int], list[float], int]] = [
        ("m=27 trials, η=3: keep 9", list(range(27)), list(rng.normal(size=27).round(4)), 3),
        ("m=10, η=3: keep floor(10/3) = 3", list(range(10)), list(rng.normal(size=10).round(4)), 3),
        ("m=2, η=3: floor(2/3) = 0, but at least one is kept", [4, 9], [0.2, 0.7], 3),
        (
            "m=5 surviving trials with ids [3, 7, 8, 12, 20], η=2: return ids, not positions",
            [3, 7, 8, 12, 20],
            [0.5, 2.0, -1.0, 1.5, 0.1],
            2,
        ),
        (
            "m=6, η=3 with a tie at the cut (either tied trial may be kept)",
            [0, 1, 2, 3, 4, 5],
            [1.0, 3.0, 2.0, 2.0, 0.0, -1.0],
            3,
        ),
        (
            "m=6, η=2, two diverged trials (NaN): never promoted",
            [0, 1, 2, 3, 4, 5],
            [math.nan, 0.3, math.nan, -0.2, 0.8, 0.1],
            2,
        ),
    ]
    report = CheckReport(
        "successive halving promotion (chapter 5, the successive-halving rule)",
        "the promotion in meta_rl_lessons.adaptive.successive_halving.run_halving",
    )
    for desc, ids, scores, eta in specs:

        def body(desc=desc, ids=ids, scores=scores, eta=eta) -> Case:
            m = len(ids)
            keep = max(1, m // eta)
            ref = reference_promote(ids, scores, eta)
            out = call(student, list(ids), list(scores), eta)
            try:
                got = [int(x) for x in out]
            except (TypeError, ValueError) as err:
                raise StudentError(f"expected a list of trial ids, got {out!r}") from err
            head = f"ids {ids}, scores {_fmt_scores(scores)}, η={eta}: you promoted {got}; "
            if len(set(got)) != len(got):
                return Case(desc, False, diagnosis=head + "a trial appears twice")
            if len(got) != keep:
                hint = ""
                if len(got) == 0:
                    hint = " (floor(m/η) is 0 here: keep at least one)"
                elif len(got) == math.ceil(m / eta):
                    hint = " (that is ceil(m/η); successive halving keeps floor(m/η))"
                elif len(got) == m - m // eta:
                    hint = " (that is how many are *dropped*)"
                return Case(
                    desc, False, diagnosis=head + f"expected {keep} = max(1, floor({m}/{eta})) trials{hint}"
                )
            if not set(got) <= set(ids):
                positions = set(got) <= set(range(m))
                return Case(
                    desc,
                    False,
                    diagnosis=head
                    + "some are not ids of this rung"
                    + ("; these look like positions in the list: return trial_ids[i]" if positions else ""),
                )
            pos = {t: i for i, t in enumerate(ids)}
            chosen = {pos[t] for t in got}
            rest = [i for i in range(m) if i not in chosen]
            if rest and min(_key(scores[i]) for i in chosen) < max(_key(scores[i]) for i in rest):
                worst = max(_key(scores[i]) for i in chosen) <= min(_key(scores[i]) for i in rest)
                nan = any(math.isnan(scores[i]) for i in chosen)
                hint = (
                    "; these are the *worst* (higher scores are better)"
                    if worst
                    else "; a NaN score must rank below every number"
                    if nan
                    else ""
                )
                return Case(desc, False, diagnosis=head + f"the {keep} best are {ref}{hint}")
            return Case(desc, True)

        report.cases.append(run_case(desc, body))
    return report
