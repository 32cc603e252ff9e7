"""What a chapter shows besides code: its figure style, captions, tables and "How this was made" boxes.

One source for the notebook in Jupyter and for the rendered book. A chapter starts with::

    from meta_rl_lessons import book
    chapter = book.Chapter("01-drl-basics")     # SVG figures, legible fonts, the budget and the command

and then, in the cells that build figures and tables (hidden with the ``hide-input`` tag)::

    chapter.caption("Figure 1.2: reward-to-go needs fewer episodes than REINFORCE for the same error.")
    book.table(rows, columns=["method", "return"], caption="Table: returns on $n = 10$ arms.")
    book.provenance(result_a, result_b)         # a collapsed box: command, budget, seed, commit, machine
    chapter.provenance()                        # the box for the figures this notebook made itself

Captions and tables are Markdown outputs: Jupyter renders them, and the book parses them as MyST
(``nb_render_markdown_format: myst`` in ``_config.yml``), so their tables and ``$...$`` math render on the
page. Provenance boxes are HTML ``<details>`` elements with the class ``provenance``: closed by default, so
the machinery stays out of the reader's way, and the site check (``tools/check_site.py``) knows them.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meta_rl_lessons import budget

__all__ = ["Caption", "Chapter", "Provenance", "Table", "caption", "provenance", "table", "use_book_style"]

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


def _commit_text(git: Mapping[str, Any] | None) -> str:
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
        ("commit", _commit_text(prov.get("git"))),
        ("machine", machine_summary(prov)),
        ("finished", date),
    )
    return f"results/{result.name}", fields


def provenance(*results: Any, note: str = "") -> Provenance:
    """A collapsed box naming how each of ``results`` (from :func:`meta_rl_lessons.results.load_result`)
    was made: the ``meta-rl`` command, budget, seed, commit (saying plainly when the tree had uncommitted
    changes), machine and date."""
    return Provenance(entries=tuple(result_fields(r) for r in results), note=note)


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

    def caption(self, text: str) -> Caption:
        """A figure caption (display it, or make it the cell's last expression)."""
        return Caption(text)

    def provenance(self, note: str = "") -> Provenance:
        """The box for the figures and tables this notebook computes when it runs: command, budget, commit
        and machine of the execution (no timings: how long a build took is not the chapter's content)."""
        from meta_rl_lessons.results import machine_summary
        from meta_rl_lessons.runs import git_info, machine_info

        fields = (
            ("command", self.command),
            ("budget", self.budget),
            ("commit", _commit_text(git_info())),
            ("machine", machine_summary(machine_info())),
        )
        default = ("Every figure and table on this page without a box of its own was computed by executing "
                   "this notebook top to bottom, with the seeds set in its cells.")
        return Provenance(entries=((f"chapters/{self.notebook}.ipynb", fields),), note=note or default)
