"""Show the package's own source inside a chapter, so code is never pasted twice.

``show_source(obj)`` returns a :class:`SourceListing`. In Jupyter (and so in the built book, which stores
the notebook's HTML output) it renders as syntax-highlighted code headed by the file and line numbers it
came from; anywhere else (a terminal, ``print``, a plain-text doctest) it is the plain source text::

    from meta_rl_lessons.show import show_source
    from meta_rl_lessons import budget
    show_source(budget.pick)
"""

from __future__ import annotations

import ast
import functools
import html
import inspect
import json
import re
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
        # A collapsed box: the summary names the object and where it lives; opened, the docstring comes
        # first as text (reST roles rendered, math typeset by the page's MathJax), then the code without it.
        # Inline styles (noclasses) so the listing looks the same in Jupyter, the book and exported HTML;
        # line numbers match the file so readers can find the code; long lines wrap instead of being cut off.
        doc, pieces = split_docstring(self.source, self.first_line)
        # One highlighted block per contiguous piece of the file (the signature, then the body after the
        # docstring), each numbered from its own first line, so every number is the line in the file.
        body = "".join(
            highlight(code, PythonLexer(), HtmlFormatter(
                noclasses=True, style="friendly", linenos="inline", linenostart=start, wrapcode=True,
                prestyles="white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.85em; margin: 0",
            ))
            for code, start in pieces if code.strip()
        )
        summary = (f"<code>{html.escape(self.name)}</code> "
                   f'<span style="color:#555">— {html.escape(self.location)}</span>')
        # tex2jax_process: the book's MathJax skips cell outputs unless a container asks for it.
        docstring = f'<div class="meta-rl-doc tex2jax_process">{docstring_html(doc)}</div>' if doc else ""
        return (f'<details class="meta-rl-source"><summary>Source: {summary}</summary>'
                f"{docstring}{body}</details>")


# ============================================================================ docstrings as text
_SECTION = re.compile(r"^(Args|Arguments|Returns|Yields|Raises|Attributes|Shapes|Example|Examples|Note|Notes"
                      r"|Parameters|Keyword arguments|See also):\s*$")
#: Sections whose lines are ``name: description`` items.
_LIST_SECTIONS = {"Args", "Arguments", "Attributes", "Raises", "Parameters", "Keyword arguments", "Shapes"}
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|file|exc|doc|ref|envvar|const):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def split_docstring(source: str, first_line: int) -> tuple[str, list[tuple[str, int]]]:
    """``(docstring, pieces)`` of one object's source: the object's own docstring (a module's, class's or
    function's; nested methods keep theirs) and the rest of the code as ``(text, first line in the file)``
    pieces. Without a docstring: ``("", [(source, first_line)])``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "", [(source, first_line)]
    node: ast.AST = tree
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if len(tree.body) == 1 and isinstance(tree.body[0], definitions):
        node = tree.body[0]
    body = getattr(node, "body", [])
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return "", [(source, first_line)]
    expr = body[0]
    lines = source.splitlines(keepends=True)
    start, end = expr.lineno - 1, expr.end_lineno or expr.lineno  # 0-based first line, exclusive end
    while end < len(lines) and not lines[end].strip():
        end += 1  # the blank lines after a docstring go with it
    pieces = [("".join(lines[:start]), first_line), ("".join(lines[end:]), first_line + end)]
    return inspect.cleandoc(expr.value.value), [(text, line) for text, line in pieces if text]


#: A labelled display: a ```{math} block whose options name a label, or ``$$ ... $$ (label)``.
_EQ_LABELS = re.compile(r"^[ \t]*(?:`{3,}|:{3,})\{math\}[ \t]*\n(?:[ \t]*:\w+:.*\n)*?[ \t]*:label:[ \t]*(\S+)"
                        r"|\$\$[ \t]*\(([^)\s]+)\)[ \t]*$", re.MULTILINE)
#: ``eq. gae``, ``(eq. ``maml-inner``)``, ``eqs. a, b``: a docstring citing the chapters' equations by label.
_ONE_LABEL = re.compile(r"(?:``)?[a-z0-9][\w-]*(?:``)?")
_EQ_REF = re.compile(r"\b(eqs?\.) ((?:``)?[a-z0-9][\w-]*(?:``)?(?:,\s*(?:``)?[a-z0-9][\w-]*(?:``)?)*)")


@functools.lru_cache(maxsize=1)
def equation_numbers() -> dict[str, tuple[str, str]]:
    """``label -> (page, number)`` for the labelled equations of the chapters, numbered as the book numbers
    them: ``chapter.k``, the chapter's place among the numbered parts of ``_toc.yml`` and ``k`` counting its
    labelled displays in order (e.g. ``"gae" -> ("chapters/01-drl-basics", "1.9")``). Empty outside a checkout
    of the book (an installed wheel has no chapters) or without PyYAML.
    """
    root = _PACKAGE_ROOT.parent
    try:
        import yaml

        toc = yaml.safe_load((root / "_toc.yml").read_text())
    except (ImportError, OSError):
        return {}
    numbers: dict[str, tuple[str, str]] = {}
    chapter = 0
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            page = entry["file"]
            chapter += 1 if part.get("numbered") else 0
            path = root / f"{page}.ipynb"
            if not path.is_file():
                continue
            cells = json.loads(path.read_text())["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
            for k, match in enumerate(_EQ_LABELS.finditer(text), start=1):
                label = match.group(1) or match.group(2)
                numbers.setdefault(label, (page, f"{chapter}.{k}" if part.get("numbered") else str(k)))
    return numbers


def _equation_links(text: str) -> str:
    """Labels of equations cited in ``text`` replaced by their numbers, linked to the equation's page."""
    numbers = equation_numbers()

    def link(match: re.Match) -> str:
        label = match.group(0).strip("`")
        if label not in numbers:
            return match.group(0)  # not a chapter's label: left as written
        page, number = numbers[label]
        return f'<a href="../{page}.html#equation-{label}">{number}</a>'

    def cite(match: re.Match) -> str:
        return f"{match.group(1)} {_ONE_LABEL.sub(link, match.group(2))}"

    return _EQ_REF.sub(cite, text)


def _inline(text: str) -> str:
    """Escape one paragraph and render its reST inline markup: math as MathJax ``\\(...\\)``, roles and
    double back-quotes as code, ``*emphasis*`` and ``**strong**``."""
    text = _equation_links(html.escape(text, quote=False))
    text = _MATH.sub(lambda m: f"\\({m.group(1)}\\)", text)
    text = _ROLE.sub(lambda m: f"<code>{m.group(1)}</code>", text)
    text = re.sub(r"``([^`]+)``", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", text)


def docstring_html(doc: str) -> str:
    """A Google-style docstring as HTML: paragraphs, ``Args:``-like sections as lists of items, literal
    blocks (after ``::``) and indented blocks as preformatted text."""
    out: list[str] = []
    literal_next = False
    for block in re.split(r"\n\s*\n", doc.strip("\n")):
        lines = block.splitlines()
        if literal_next or lines[0].startswith((" ", "\t")) or lines[0].startswith(">>>"):
            out.append(f'<pre style="white-space: pre-wrap">{html.escape(textwrap.dedent(block))}</pre>')
            literal_next = block.rstrip().endswith("::")
            continue
        section = _SECTION.match(lines[0].strip())
        if section:
            name = section.group(1)
            out.append(f'<p style="margin-bottom:0"><strong>{html.escape(name)}</strong></p>')
            rest = [line for line in lines[1:] if line.strip()]
            if name not in _LIST_SECTIONS or not rest:
                out.append(f"<p>{_inline(' '.join(line.strip() for line in rest))}</p>")
                literal_next = False
                continue
            base = min(len(line) - len(line.lstrip()) for line in rest)
            items: list[list[str]] = []
            for line in rest:
                if items and len(line) - len(line.lstrip()) > base:
                    items[-1].append(line.strip())  # a continuation of the item above
                else:
                    items.append([line.strip()])
            entries = []
            for item in items:
                head, _, text = item[0].partition(": ")
                text = " ".join([text, *item[1:]]).strip()
                entries.append(f"<li><code>{html.escape(head.rstrip(':'))}</code>: {_inline(text)}</li>")
            out.append(f"<ul>{''.join(entries)}</ul>")
            literal_next = False
            continue
        paragraph = " ".join(line.strip() for line in lines)
        literal_next = paragraph.endswith("::")
        if literal_next:
            paragraph = paragraph[:-1]  # "text::" shows as "text:"
        out.append(f"<p>{_inline(paragraph)}</p>")
    return "".join(out)


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
