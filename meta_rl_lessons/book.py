"""What a chapter shows besides code: its figure style, captions, tables and "How this was made" boxes.

One source for the notebook in Jupyter and for the rendered book. A chapter starts with::

    from meta_rl_lessons import book
    chapter = book.Chapter("01-drl-basics")     # SVG figures, legible fonts, the budget and the command

and then, in the cells that build figures and tables (hidden with the ``hide-input`` tag)::

    chapter.caption("Figure 1.2: reward-to-go needs fewer episodes than REINFORCE for the same error.")
    chapter.caption("Figure 2.4: MAML on 2D navigation.", *runs)   # the caption, then the runs' box
    book.table(rows, columns=["method", "return"], caption="Table: returns on $n = 10$ arms.")
    book.provenance(result_a, result_b)         # a collapsed box: command, budget, seed, commit, machine
    chapter.provenance()                        # the box for the figures this notebook made itself

Numbers in captions and tables: :func:`pm` (``"0.67 ± 0.05"``), :func:`mean_std` (over seeds),
:func:`mean_ci95` (a mean and the half-width of its 95% interval over seeds), :func:`rank_correlation`.
What a result's ``eval.json`` says about adaptation, whichever algorithm wrote it: :func:`adaptation_summary`
(one :class:`AdaptationSummary` for MAML, RL², PPO, TRPO and the adaptive search), and for a table of results
:func:`group_by_setting`, :func:`adaptation_cells`, :func:`training_cost`.

Captions and tables are Markdown outputs: Jupyter renders them, and the book parses them as MyST
(``nb_render_markdown_format: myst`` in ``_config.yml``), so their tables and ``$...$`` math render on the
page. Provenance boxes are HTML ``<details>`` elements with the class ``provenance``: closed by default, so
the machinery stays out of the reader's way, and the site check (``tools/check_site.py``) knows them.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meta_rl_lessons import budget

__all__ = [
    "AdaptationSummary",
    "Caption",
    "CaptionWithSources",
    "Chapter",
    "Provenance",
    "RUN_ONLY",
    "Stat",
    "T_975",
    "Table",
    "adaptation_cells",
    "adaptation_summary",
    "caption",
    "duration",
    "group_by_setting",
    "last_value",
    "mean_ci95",
    "mean_std",
    "millions",
    "no_break",
    "pm",
    "provenance",
    "rank_correlation",
    "ranks",
    "table",
    "training_cost",
    "use_book_style",
]

#: Matplotlib settings of every figure in the book. Figures are drawn 7 in wide, close to the text column's
#: width at 1280 px (about 730 CSS px), so 10-pt text shows at about 10 pt; SVG keeps them sharp at any zoom.
BOOK_RC: dict[str, Any] = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 200,          # for PNG output where SVG is not used (e.g. `meta-rl plot --out fig.png`)
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",      # text as outlines: the page looks the same without the fonts installed
    "svg.hashsalt": "meta-rl-lessons",  # deterministic element ids, so re-executing gives the same SVG
}


def use_book_style() -> None:
    """Apply :data:`BOOK_RC` and, inside IPython, show inline figures as SVG."""
    import matplotlib

    matplotlib.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing is displayed inline
        return
    if get_ipython() is not None:
        # bbox_inches="tight" is the inline backend's default; metadata Date=None keeps the SVG reproducible.
        set_matplotlib_formats("svg", metadata={"Date": None})


# ============================================================================ captions
@dataclass(frozen=True)
class Caption:
    """A figure or table caption: italic Markdown (math in ``$...$`` renders in Jupyter and in the book)."""

    text: str

    def _repr_markdown_(self) -> str:
        return f"*{self.text.strip()}*"

    def __str__(self) -> str:
        return self.text


def caption(text: str) -> Caption:
    """A :class:`Caption` to display under a figure (``display(caption(...))`` or the last line of a cell)."""
    return Caption(text)


# ============================================================================ tables
def _cell(value: Any, fmt: str | Callable[[Any], str]) -> str:
    """One table cell as Markdown: numbers through ``fmt``, NaN and None as an en dash, ``|`` escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "–"
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        text = fmt(value) if callable(fmt) else fmt.format(value)
    else:
        text = str(value)
    return text.replace("|", r"\|").replace("\n", " ")


@dataclass(frozen=True)
class Table:
    """A table shown as Markdown: a caption line, then a pipe table.

    Attributes:
        columns: the header cells.
        rows: one sequence of cells per row, as long as ``columns``.
        caption: shown above the table (Markdown, math allowed); empty for none.
        align: per column ``"l"``, ``"r"`` or ``"c"``; default: right for columns whose cells are all numbers.
        fmt: format of non-integer numbers (a ``str.format`` pattern or a function).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""
    align: tuple[str, ...] | None = None
    fmt: str | Callable[[Any], str] = "{:.3g}"

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table row {i} has {len(row)} cells but there are {len(self.columns)} "
                                 f"columns ({', '.join(self.columns)}): {row!r}")
        if self.align is not None:
            if len(self.align) != len(self.columns) or set(self.align) - {"l", "r", "c"}:
                raise ValueError(f"align needs one of 'l', 'r', 'c' per column ({len(self.columns)}), "
                                 f"got {self.align!r}")

    def _alignment(self) -> tuple[str, ...]:
        if self.align is not None:
            return self.align

        def numeric(value: Any) -> bool:
            return value is None or isinstance(value, numbers.Real) and not isinstance(value, bool)

        return tuple("r" if self.rows and all(numeric(row[j]) for row in self.rows) else "l"
                     for j in range(len(self.columns)))

    def to_markdown(self) -> str:
        rule = {"l": ":--", "r": "--:", "c": ":-:"}
        lines = []
        if self.caption:
            lines += [f"*{self.caption.strip()}*", ""]
        lines.append("| " + " | ".join(_cell(c, "{}") for c in self.columns) + " |")
        lines.append("|" + "|".join(rule[a] for a in self._alignment()) + "|")
        lines += ["| " + " | ".join(_cell(v, self.fmt) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_markdown()


def table(rows: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
          caption: str = "", *, align: Sequence[str] | None = None,
          fmt: str | Callable[[Any], str] = "{:.3g}") -> Table:
    """A :class:`Table` from rows (sequences, with ``columns``; or mappings, whose keys are the columns).

    Raises:
        ValueError: no columns can be found, or a row's length differs from the number of columns.
    """
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        if columns is None:
            columns = list(rows[0])
        body = tuple(tuple(row.get(c) for c in columns) for row in rows)  # type: ignore[union-attr]
    else:
        if columns is None:
            raise ValueError("table() needs `columns` when the rows are sequences (or pass mappings)")
        body = tuple(tuple(row) for row in rows)
    return Table(columns=tuple(columns), rows=body, caption=caption,
                 align=None if align is None else tuple(align), fmt=fmt)


# ============================================================================ provenance boxes
@dataclass(frozen=True)
class Provenance:
    """A collapsed "How this was made" box: one entry per source, each a list of (field, value) pairs.

    Values are shown as code where the field is ``command``, as text otherwise; everything is escaped.
    """

    entries: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    note: str = ""
    title: str = "How this was made"

    def _repr_html_(self) -> str:
        parts = [f'<details class="provenance"><summary>{html.escape(self.title)}</summary>']
        if self.note:
            parts.append(f"<p>{html.escape(self.note)}</p>")
        for heading, fields in self.entries:
            parts.append(f"<p><strong>{html.escape(heading)}</strong></p><ul>")
            for key, value in fields:
                shown = f"<code>{html.escape(value)}</code>" if key == "command" else html.escape(value)
                parts.append(f"<li>{html.escape(key)}: {shown}</li>")
            parts.append("</ul>")
        parts.append("</details>")
        return "".join(parts)

    def __str__(self) -> str:
        lines = [self.title + ":"] + ([self.note] if self.note else [])
        for heading, fields in self.entries:
            lines.append(f"  {heading}")
            lines += [f"    {key}: {value}" for key, value in fields]
        return "\n".join(lines)


def commit_text(git: Mapping[str, Any] | None) -> str:
    """A provenance record's ``git`` entry as the box shows it: the short commit, and a warning when the
    checkout had uncommitted changes."""
    if not git or not git.get("commit"):
        return "not made in a git checkout"
    text = str(git["commit"])[:10]
    if git.get("dirty"):
        text += " with uncommitted changes to tracked files (the exact code is not recoverable from git)"
    return text


def result_fields(result: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The provenance of one :class:`meta_rl_lessons.results.Result` as a box entry."""
    from meta_rl_lessons.results import machine_summary, short_command, train_command

    prov, cfg = result.provenance, result.config
    try:
        # Without --out DIR: where the run was written is the build machine's business, not the reader's.
        command = short_command(train_command(prov))
    except ValueError:
        command = "unknown"
    date = str(prov.get("end_time") or prov.get("start_time") or "unknown")[:10]
    fields = (
        ("command", command),
        ("budget", str(cfg.get("budget"))),
        ("seed", str(cfg.get("seed"))),
        ("commit", commit_text(prov.get("git"))),
        ("machine", machine_summary(prov)),
        ("finished", date),
    )
    return f"results/{result.name}", fields


def provenance(*results: Any, note: str = "") -> Provenance:
    """A collapsed box naming how each of ``results`` (from :func:`meta_rl_lessons.results.load_result`)
    was made: the ``meta-rl`` command, budget, seed, commit (saying plainly when the tree had uncommitted
    changes), machine and date."""
    return Provenance(entries=tuple(result_fields(r) for r in results), note=note)


@dataclass(frozen=True)
class CaptionWithSources:
    """A caption followed by the provenance box of the results it shows: two outputs, as if each had been
    displayed on its own (the caption as Markdown, the box as HTML)."""

    caption: Caption
    provenance: Provenance

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.caption)
        display(self.provenance)

    def __str__(self) -> str:
        return f"{self.caption}\n{self.provenance}"


# ============================================================================ numbers in text
def pm(value: float, spread: float | None = None, fmt: str = "{:.2f}") -> str:
    """``"value ± spread"``, both through ``fmt``; just the value when ``spread`` is ``None``.

    >>> pm(0.6712, 0.049)
    '0.67 ± 0.05'
    """
    if spread is None:
        return fmt.format(value)
    return f"{fmt.format(value)} ± {fmt.format(spread)}"


def mean_std(values: Iterable[float], fmt: str = "{:.1f}") -> str:
    """Mean ± sample standard deviation (``ddof=1``) of ``values`` ignoring NaN, through ``fmt``: the value
    alone for one value, ``"n/a"`` for none (or none finite). For results over seeds."""
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    if v.size == 0 or not np.isfinite(v).any():
        return "n/a"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(np.nanmean(v))} ± {fmt.format(np.nanstd(v, ddof=1))}"


#: The 97.5% quantile of Student's t distribution by *sample size* (degrees of freedom + 1), for 95%
#: intervals over a handful of seeds.
T_975: dict[int, float] = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306,
                           10: 2.262}


def mean_ci95(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, half-width of its 95% confidence interval)`` over ``values`` (seeds): Student's t with
    ``n - 1`` degrees of freedom times the standard error.

    Raises:
        ValueError: fewer than 2 or more than 10 values (no quantile in :data:`T_975`).
    """
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    if len(v) not in T_975:
        raise ValueError(f"mean_ci95 needs 2 to 10 values (seeds), got {len(v)}")
    return float(v.mean()), T_975[len(v)] * float(v.std(ddof=1)) / math.sqrt(len(v))


def ranks(x: Iterable[float]) -> Any:
    """Ranks ``0 .. n-1`` of ``x`` (a NumPy array), ties sharing their average rank."""
    import numpy as np

    x = np.asarray(list(x), dtype=float)
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    for v in np.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def rank_correlation(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's rank correlation of ``x`` and ``y``: the correlation of their :func:`ranks`."""
    import numpy as np

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def no_break(text: str) -> str:
    """``text`` with its hyphens made non-breaking, so ``3e-15`` does not wrap in a narrow table column."""
    return text.replace("-", "\u2011")


def duration(seconds: Sequence[float]) -> str:
    """Mean ± std of wall-clock times (seeds) in the unit that suits their mean: s, min or h."""
    import numpy as np

    mean = float(np.nanmean(seconds)) if len(seconds) else math.nan
    scale, unit = (1, "s") if not mean >= 120 else (60, "min") if mean < 7200 else (3600, "h")
    return f"{mean_std([x / scale for x in seconds])} {unit}"


def millions(steps: Sequence[float]) -> str:
    """Mean ± std of step counts (seeds) in millions: ``"1.23 ± 0.01 M"``."""
    return mean_std([s / 1e6 for s in steps], "{:.2f}") + " M"


# ============================================================================ results and eval.json
def last_value(result: Any, column: str) -> float:
    """The last numeric value of ``column`` in a result's ``progress.csv`` (NaN if it has none)."""
    values = [row[column] for row in result.progress if isinstance(row.get(column), float)]
    return values[-1] if values else math.nan


def training_cost(result: Any) -> str:
    """``"1,234,000 env steps, 5.2 min"``: what training a result took, from the last row of its log."""
    last = result.progress[-1]
    return f"{int(last['env_steps_total']):,d} env steps, {last['wall_time'] / 60:.1f} min"


def env_name(env_id: str) -> str:
    """``"MetaRL/Navigation2D-v0"`` -> ``"Navigation2D"`` (other ids unchanged)."""
    return env_id.removeprefix("MetaRL/").removesuffix("-v0")


@dataclass(frozen=True)
class Stat:
    """One evaluated quantity as ``eval.json`` stores it: mean and standard deviation over ``n`` tasks (or
    episodes), and the per-task ``values`` where they were kept."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] | None = None

    @property
    def se(self) -> float:
        """The standard error of the mean, ``std / sqrt(n)``."""
        return self.std / math.sqrt(self.n)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Stat:
        values = entry.get("values")
        return cls(mean=float(entry["mean"]), std=float(entry["std"]), n=int(entry["n"]),
                   values=None if values is None else tuple(float(v) for v in values))


@dataclass(frozen=True)
class AdaptationSummary:
    """What one ``eval.json`` says, the same way for every algorithm.

    Attributes:
        algorithm: ``"maml"``, ``"rl2"``, ``"ppo"``, ``"trpo"`` or ``"adaptive"``.
        kind: what the points of ``curve`` are: ``"gradient steps"`` (MAML: the return after 0, 1, ...
            adaptation steps), ``"episodes"`` (RL²: the return of episode 1, 2, ... of a trial), ``"none"``
            (PPO, TRPO: one task, no adaptation; the adaptive search).
        curve: one :class:`Stat` per point, in order (MAML: after 0..k steps; RL²: episode 1..n; PPO/TRPO:
            the one episode return; the adaptive search: empty).
        labels: the ``eval.json`` key of each point of ``curve`` (``"0"``, ``"1"``, ... steps for MAML,
            ``"1"``, ``"2"``, ... episodes for RL²; ``""`` for PPO/TRPO).
        total: the return the algorithm is evaluated on as a whole: RL²'s ``trial_return``, PPO/TRPO's
            ``episode_return``; ``None`` for MAML and the search.
        protocol: the evaluation protocol as ``meta-rl eval`` wrote it (``""`` for the search).
        num_tasks: evaluation tasks (MAML, RL²), episodes (PPO, TRPO), ``None`` for the search.
        task_seed: the seed the evaluation tasks were drawn with (MAML, RL²; ``None`` otherwise).
        held_out: whether the tasks came from the held-out test split (``None`` when there are no tasks).
        iterations_done: training iterations of the evaluated checkpoint (``None`` for the search).
        best_score: the search's best score (adaptive only).
        cost: what adapting to a new task costs, in words, from ``config.json`` (``""`` without a config).
    """

    algorithm: str
    kind: str
    curve: tuple[Stat, ...]
    labels: tuple[str, ...]
    total: Stat | None
    protocol: str
    num_tasks: int | None
    task_seed: int | None
    held_out: bool | None
    iterations_done: int | None
    best_score: float | None = None
    cost: str = ""

    @property
    def before(self) -> Stat:
        """The first point of :attr:`curve`: before adaptation (MAML) or the first episode (RL²)."""
        return self.curve[0]

    @property
    def after(self) -> Stat:
        """The last point of :attr:`curve`: after the last step (MAML) or the last episode (RL²)."""
        return self.curve[-1]

    @property
    def gain(self) -> float:
        """``after.mean - before.mean``: what adaptation added."""
        return self.after.mean - self.before.mean

    def means(self) -> list[float]:
        """The means of :attr:`curve`."""
        return [s.mean for s in self.curve]


def _adaptation_cost(algorithm: str, cfg: Mapping[str, Any]) -> str:
    if not cfg:
        return ""
    if algorithm == "maml":
        return f"{cfg['num_episodes']} episodes and one gradient step per adaptation step"
    if algorithm == "rl2":
        return f"one trial of {cfg['episodes_per_trial']} episodes, forward passes only"
    if algorithm == "adaptive":
        return (f"a new {cfg['method']} search: {cfg['num_trials']} PPO runs × "
                f"{cfg['steps_per_trial']:,} steps")
    return "(trains on one task; no adaptation)"


def _by_key(entries: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Stat, ...]]:
    labels = tuple(sorted(entries, key=int))
    return labels, tuple(Stat.from_json(entries[k]) for k in labels)


def adaptation_summary(result_or_eval: Any, algorithm: str | None = None) -> AdaptationSummary:
    """One :class:`AdaptationSummary` from a result (:class:`meta_rl_lessons.results.Result`, whose
    ``eval.json`` and ``config.json`` it reads) or from an ``eval.json`` dict.

    Args:
        result_or_eval: a result, or the parsed ``eval.json``.
        algorithm: needed only for an ``eval.json`` of the adaptive search, which does not name its
            algorithm (it is recognised by its ``best_score``).

    Raises:
        ValueError: the result was not evaluated (no ``eval.json``), or the report is of no known format.
    """
    if isinstance(result_or_eval, Mapping):
        report, cfg = result_or_eval, {}
    else:
        report, cfg = result_or_eval.eval, result_or_eval.config.get("config", {})
        algorithm = algorithm or result_or_eval.algorithm
        if report is None:
            raise ValueError(f"result {result_or_eval.name!r} was not evaluated: it has no eval.json "
                             f"(run `meta-rl eval` on its run directory)")
    algorithm = report.get("algorithm") or algorithm or ("adaptive" if "best_score" in report else None)
    protocol = str(report.get("protocol", ""))
    tasks = re.search(r"(\d+) (?:held-out test )?tasks", protocol)
    seed = report.get("task_seed")
    if seed is None:
        found = re.search(r"\bseed (\d+)", protocol)
        seed = int(found.group(1)) if found else None
    common = dict(algorithm=str(algorithm), protocol=protocol, task_seed=seed,
                  held_out=("held-out" in protocol) if tasks else None,
                  iterations_done=report.get("iterations_done"), cost=_adaptation_cost(str(algorithm), cfg))
    if "return_after_steps" in report:  # MAML
        labels, curve = _by_key(report["return_after_steps"])
        return AdaptationSummary(kind="gradient steps", curve=curve, labels=labels, total=None,
                                 num_tasks=int(tasks.group(1)) if tasks else curve[0].n, **common)
    if "trial_return" in report:  # RL² (eval.json of older runs has no return_per_episode)
        labels, curve = _by_key(report.get("return_per_episode", {}))
        total = Stat.from_json(report["trial_return"])
        return AdaptationSummary(kind="episodes", curve=curve, labels=labels, total=total,
                                 num_tasks=int(tasks.group(1)) if tasks else total.n, **common)
    if "episode_return" in report:  # PPO, TRPO
        total = Stat.from_json(report["episode_return"])
        return AdaptationSummary(kind="none", curve=(total,), labels=("",), total=total, num_tasks=total.n,
                                 **{**common, "task_seed": None, "held_out": None})
    if "best_score" in report:  # the adaptive search
        return AdaptationSummary(kind="none", curve=(), labels=(), total=None, num_tasks=None,
                                 best_score=float(report["best_score"]),
                                 **{**common, "algorithm": "adaptive", "task_seed": None, "held_out": None,
                                    "cost": _adaptation_cost("adaptive", cfg)})
    raise ValueError(f"an eval.json of no known format (keys: {', '.join(report)}); expected "
                     "return_after_steps (MAML), trial_return (RL²), episode_return (PPO, TRPO) or "
                     "best_score (adaptive search)")


def adaptation_cells(group: Sequence[Any]) -> tuple[str, str]:
    """``(what a new task costs, what adaptation achieved)`` for results that differ only in their seed, as
    text for a table: mean ± std over the seeds that were evaluated (:func:`mean_std`).

    MAML: the return before and after the last adaptation step and the gain; RL²: the trial return and the
    first and last episode's; the adaptive search: the first trial's score and the search's best (from the
    logs where there is no ``eval.json``); PPO, TRPO: the evaluation's episode return.
    """
    first = group[0]
    algorithm, cfg = first.algorithm, first.config.get("config", {})
    cost = _adaptation_cost(algorithm, cfg)
    if algorithm == "adaptive":
        scores = [r.progress[0]["score"] for r in group]
        best = [r.eval["best_score"] if r.eval is not None else last_value(r, "best_score") for r in group]
        return cost, f"first trial {mean_std(scores)} → best of the search {mean_std(best)}"
    summaries = [adaptation_summary(r) for r in group if r.eval is not None]
    if not summaries:
        return cost, "not evaluated (no eval.json)"
    s0 = summaries[0]
    if algorithm == "maml":
        before, after = [s.before.mean for s in summaries], [s.after.mean for s in summaries]
        gain = [b - a for a, b in zip(before, after, strict=True)]
        k = s0.labels[-1]
        return cost, (f"{mean_std(before)} → {mean_std(after)} after {k} steps "
                      f"($\\Delta_{k}$ = {mean_std(gain)}; {s0.before.n} tasks)")
    if algorithm == "rl2":
        text = f"trial {mean_std(s.total.mean for s in summaries)} ({s0.total.n} tasks)"
        per_episode = [s for s in summaries if s.curve]
        if per_episode:
            p0 = per_episode[0]
            first = mean_std((s.before.mean for s in per_episode), "{:.2f}")
            last = mean_std((s.after.mean for s in per_episode), "{:.2f}")
            text += f"; episode {p0.labels[0]}: {first} → episode {p0.labels[-1]}: {last}"
        return cost, text
    return cost, f"episode return {mean_std(s.total.mean for s in summaries)}"


#: Config fields that say how a run was executed, not what it computed: results that differ only in these
#: (and the seed) are the same setting.
RUN_ONLY: tuple[str, ...] = ("seed", "log_path", "progress", "device", "num_threads", "num_workers")


def group_by_setting(results: Iterable[Any]) -> dict[tuple[str, str, str, str], list[Any]]:
    """Results grouped by setting: ``(algorithm, env, budget, config without RUN_ONLY fields as JSON) ->
    results``, each group sorted by seed. Runs that differ only in their seed form one group."""
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for r in results:
        setting = json.dumps({k: v for k, v in r.config["config"].items() if k not in RUN_ONLY},
                             sort_keys=True, default=str)
        groups.setdefault((r.algorithm, r.config["env"], r.config["budget"], setting), []).append(r)
    return {key: sorted(group, key=lambda r: r.config["seed"]) for key, group in groups.items()}


# ============================================================================ the chapter
@dataclass
class Chapter:
    """A chapter notebook's context: applies the book's figure style and knows its budget and command.

    Args:
        notebook: the notebook's stem, e.g. ``"01-drl-basics"`` (``chapters/<notebook>.ipynb``).
    """

    notebook: str
    budget: str = field(init=False)

    def __post_init__(self) -> None:
        self.budget = budget.current().name
        use_book_style()

    @property
    def command(self) -> str:
        """The command that executes this chapter at its budget."""
        return f"META_RL_BUDGET={self.budget} jupyter execute chapters/{self.notebook}.ipynb"

    def caption(self, text: str, *results: Any, note: str = "") -> Caption | CaptionWithSources:
        """A figure caption (display it, or make it the cell's last expression).

        With ``results`` (from :func:`meta_rl_lessons.results.load_result`), the caption is followed by their
        "How this was made" box (:func:`provenance`, with ``note``): a figure and where its numbers came
        from in one call.
        """
        if not results:
            return Caption(text)
        return CaptionWithSources(Caption(text), provenance(*results, note=note))

    def provenance(self, note: str = "") -> Provenance:
        """The box for the figures and tables this notebook computes when it runs: command, budget, commit
        and machine of the execution (no timings: how long a build took is not the chapter's content)."""
        from meta_rl_lessons.results import machine_summary
        from meta_rl_lessons.runs import git_info, machine_info

        fields = (
            ("command", self.command),
            ("budget", self.budget),
            ("commit", commit_text(git_info())),
            ("machine", machine_summary(machine_info())),
        )
        default = ("Every figure and table on this page without a box of its own was computed by executing "
                   "this notebook top to bottom, with the seeds set in its cells.")
        return Provenance(entries=((f"chapters/{self.notebook}.ipynb", fields),), note=note or default)
