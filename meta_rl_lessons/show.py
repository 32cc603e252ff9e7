"""Show the package's own source inside a chapter, so code is never pasted twice.

``show_source(obj)`` returns a :class:`SourceListing`. In Jupyter (and so in the built book, which stores
the notebook's HTML output) it renders as syntax-highlighted code headed by the file and line numbers it
came from; anywhere else (a terminal, ``print``, a plain-text doctest) it is the plain source text::

    from meta_rl_lessons.show import show_source
    from meta_rl_lessons import budget
    show_source(budget.pick)
"""

from __future__ import annotations

import html
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

import meta_rl_lessons

_PACKAGE_ROOT = Path(meta_rl_lessons.__file__).resolve().parent


@dataclass(frozen=True)
class SourceListing:
    """The source of one object: its text, the file it lives in and its first line number."""

    name: str
    source: str
    path: str
    first_line: int

    @property
    def last_line(self) -> int:
        return self.first_line + self.source.count("\n") - (1 if self.source.endswith("\n") else 0)

    @property
    def location(self) -> str:
        """``meta_rl_lessons/rl/gae.py, lines 10-42``."""
        return f"{self.path}, lines {self.first_line}-{self.last_line}"

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"# {self.name}  ({self.location})\n{self.source}"

    def _repr_html_(self) -> str:
        # Inline styles (noclasses) so the listing looks the same in Jupyter, the book, and exported HTML
        # without depending on a stylesheet; line numbers match the file so readers can find the code.
        formatter = HtmlFormatter(
            noclasses=True, style="friendly", linenos="inline", linenostart=self.first_line, wrapcode=True
        )
        body = highlight(self.source, PythonLexer(), formatter)
        caption = html.escape(f"{self.name} — {self.location}")
        return (
            '<div class="meta-rl-source">'
            f'<div class="meta-rl-source-caption" style="font-size:0.85em;color:#555;margin-bottom:2px">'
            f"<code>{caption}</code></div>{body}</div>"
        )


def _display_path(file: str) -> str:
    path = Path(file).resolve()
    try:
        return str(Path("meta_rl_lessons") / path.relative_to(_PACKAGE_ROOT))
    except ValueError:
        return str(path)


def show_source(obj: object) -> SourceListing:
    """Return the source of a module, class, function or method from the package, ready to display.

    Args:
        obj: any object :func:`inspect.getsource` understands (module, class, function, method,
            ``functools.partial`` is unwrapped, a property shows its getter).

    Raises:
        TypeError: if ``obj`` has no Python source (a builtin, an instance of a C type, a number).
    """
    target = obj
    if isinstance(target, property):
        target = target.fget
    target = inspect.unwrap(getattr(target, "func", target)) if callable(target) else target
    try:
        lines, first_line = inspect.getsourcelines(target)
        file = inspect.getsourcefile(target) or "<unknown>"
    except (TypeError, OSError) as err:
        raise TypeError(
            f"show_source() needs a module, class, function or method defined in Python source; "
            f"got {obj!r} of type {type(obj).__name__} ({err})"
        ) from None
    source = textwrap.dedent("".join(lines))
    name = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
    return SourceListing(name=name, source=source, path=_display_path(file), first_line=max(first_line, 1))
