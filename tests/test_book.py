"""The built book: a page per table-of-contents entry, and a browser check that passes and can fail.

`make test` builds the book at the smoke budget and points ``META_RL_SITE`` at it. Run alone, these tests
skip with a reason unless ``META_RL_SITE`` names a built site.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from check_site import check_site

ROOT = Path(__file__).resolve().parent.parent
SITE = os.environ.get("META_RL_SITE")
needs_site = pytest.mark.skipif(not SITE, reason="META_RL_SITE is unset: build the book first (make test)")


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [section["file"] for section in chapter.get("sections", [])]
    return files


def test_toc_entries_exist_and_every_chapter_is_listed():
    files = toc_files()
    for entry in files:
        exists = any((ROOT / f"{entry}{suffix}").exists() for suffix in (".md", ".ipynb"))
        assert exists, f"{entry} is missing"
    listed = {f for f in files if f.startswith("chapters/")}
    on_disk = {f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb")}
    assert on_disk == listed, f"chapters not in _toc.yml: {sorted(on_disk - listed)}"


@needs_site
def test_a_page_per_toc_entry():
    site = Path(SITE)
    assert (site / "index.html").exists()
    for entry in toc_files():
        assert (site / f"{entry}.html").exists(), f"no page built for {entry}"


@functools.cache
def checked_site() -> tuple[list, list]:
    """check_site on the built site, run once for the tests that need it."""
    return check_site(SITE)


@needs_site
def test_built_pages_pass_the_browser_check():
    problems, reports = checked_site()
    assert not problems, "\n".join(map(str, problems))
    assert len(reports) >= len(toc_files())
    by_page = {r.page: r for r in reports}
    # The notation page is mostly math; make sure the check actually saw it typeset.
    assert by_page["book/notation.html"].maths > 10
    # Every notebook cell that shows a matplotlib figure must leave an image in the page (a non-inline
    # backend, e.g. MPLBACKEND=Agg in the build's environment, silently drops them all).
    for notebook in sorted((ROOT / "chapters").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        shown = sum("plt.show()" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")
        page = by_page[f"chapters/{notebook.stem}.html"]
        assert page.output_images >= shown, f"{notebook.name}: {shown} figures, {page.output_images} in page"
    assert by_page["chapters/00-setup-check.html"].output_images >= 1
    # Issue 12's acceptance: the explanatory diagrams are on the pages, and output figures are sharp.
    assert len({name for r in reports for name in r.diagram_names}) >= 6
    figures = sum(r.figures for r in reports)
    sharp = sum(r.sharp_figures for r in reports)
    assert sharp >= 0.8 * figures, f"{sharp} of {figures} output figures are SVG or high-density: under 80%"


def _break(page: Path, pattern: str, html: str, count: int = 1, put: str = "instead") -> None:
    """Put ``html`` (literal text) ``instead`` of, ``after`` or ``before`` the first ``count`` matches of
    ``pattern`` in ``page`` (``count=0``: every match)."""
    text = page.read_text()

    def replace(match: re.Match) -> str:
        return {"instead": html, "after": match.group(0) + html, "before": html + match.group(0)}[put]

    broken, n = re.subn(pattern, replace, text, count=count)
    assert n, f"could not break {page}: {pattern!r} not found"
    page.write_text(broken)


def _tiny_png(size: int = 8) -> str:
    """A grey ``size`` x ``size`` PNG as a data URI (a figure far too coarse for its displayed width)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * size for _ in range(size))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


# A display equation far wider than any text column: forty terms on one line.
WIDE_TEX = " + ".join(rf"\frac{{\partial x_{{{i}}}}}{{\partial \theta}}" for i in range(40))
CELL_OUTPUT = r'<div class="cell_output docutils container">'


@needs_site
def test_browser_check_catches_each_kind_of_breakage(tmp_path):
    site = tmp_path / "html"
    shutil.copytree(SITE, site)
    # Math left untypeset: drop the page's MathJax loader.
    mathjax_loader = r'<script[^>]*src="[^"]*mathjax/tex-chtml\.js[^"]*"[^>]*></script>'
    _break(site / "book/notation.html", mathjax_loader, "", 0)
    # An image that does not load.
    _break(site / "book/setup.html", r"</article>", '<img src="missing-figure.png" alt="gone"></article>')
    # An error in the console.
    console_error = '<script>console.error("deliberately broken")</script></body>'
    _break(site / "book/how-to-use.html", r"</body>", console_error)
    # A resource from outside the machine: the book must work offline.
    external = '<script src="https://cdn.example.invalid/lib.js"></script></head>'
    _break(site / "book/intro.html", r"</head>", external)

    setup_check = site / "chapters/00-setup-check.html"
    # A Markdown table in an output that was never rendered (as myst-nb shows text/markdown: smart dashes).
    raw_table = "<p>| budget | seconds |\n|\u2014|\u2014|\n| smoke | 12 |\n| book | 340 |</p>"
    _break(setup_check, CELL_OUTPUT, raw_table, put="after")
    # TeX in an output that nothing typesets, next to a printed price that is not TeX.
    raw_tex = r"<p>The inner step size $\alpha_{\mathrm{in}}$ was tuned on a budget of $5 per $10 run.</p>"
    _break(setup_check, CELL_OUTPUT, raw_tex, put="after")
    # A low-resolution raster figure, shown ten times wider than its pixels.
    _break(setup_check, CELL_OUTPUT, f'<img alt="coarse" src="{_tiny_png()}" width="600">', put="after")
    # A diagram (SVG) whose caption leaks a path and a dirty working tree; a collapsed provenance box that may
    # say "uncommitted changes" plainly but not print a path.
    diagrams = site / "_static/diagrams"
    diagrams.mkdir(parents=True, exist_ok=True)
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="90"><rect width="9" height="9"/></svg>'
    (diagrams / "test-loop.svg").write_text(svg)
    caption = "The loop, made in /root/meta-rl/runs/loop-7 (with uncommitted changes)."
    figure = ('<figure><img src="../_static/diagrams/test-loop.svg" alt="loop" style="width: 400px">'
              f"<figcaption>{caption}</figcaption></figure>")
    box = ('<details class="provenance"><summary>How this was made</summary><p>commit 1a2b3c4, built '
           "with uncommitted changes from /home/builder/book</p></details>")
    _break(setup_check, r"</article>", figure + box, put="before")
    # An equation wider than the column, typeset by the page's MathJax.
    wide = f'<div class="math notranslate nohighlight" id="equation-too-wide">\\[{WIDE_TEX}\\]</div>'
    first_equation = r'<div class="math notranslate nohighlight"'
    _break(site / "chapters/01-drl-basics.html", first_equation, wide, put="before")

    baseline, _ = checked_site()
    problems, reports = check_site(site)
    added = Counter(map(str, problems)) - Counter(map(str, baseline))
    new = [p for p in problems if added[str(p)] > 0]

    def found(page: str, kind: str, text: str = "") -> bool:
        return any(p.page == page and p.kind == kind and text in p.detail for p in new)

    assert found("book/notation.html", "math")
    assert found("book/setup.html", "image")
    assert found("book/how-to-use.html", "console")
    assert found("book/intro.html", "offline")
    page = "chapters/00-setup-check.html"
    assert found(page, "raw-table", "| budget | seconds |")
    assert found(page, "raw-tex", r"$\alpha_{\mathrm{in}}$")
    assert not found(page, "raw-tex", "$5")
    assert found(page, "low-res-figure", "8 px wide for 600 px shown")
    assert found(page, "leak", "/root/meta-rl/runs/loop-7")
    assert found(page, "leak", "/home/builder/book")  # a path, even in the provenance box
    phrases = [p.detail for p in new if p.page == page and p.detail.startswith("'uncommitted' in")]
    assert len(phrases) == 1 and "loop-7 (with uncommitted changes)" in phrases[0], phrases  # the caption's
    assert found("chapters/01-drl-basics.html", "wide-math", r"#equation-too-wide")
    assert found("chapters/01-drl-basics.html", "wide-math", r"\frac{\partial x_{0}}")
    report = {r.page: r for r in reports}[page]
    assert report.diagrams == {r.page: r for r in checked_site()[1]}[page].diagrams + 1
    assert "test-loop" in report.diagram_names
    # index.html redirects to the intro, so it shows the intro's breakage too; every other page shows exactly
    # what it showed before.
    broken = {"book/notation.html", "book/setup.html", "book/how-to-use.html", "book/intro.html"}
    broken |= {"index.html", page, "chapters/01-drl-basics.html"}
    assert {p.page for p in new} <= broken, [str(p) for p in new if p.page not in broken]
    lost = Counter(map(str, baseline)) - Counter(map(str, problems))
    assert not [p for p in baseline if lost[str(p)] > 0 and p.page not in broken]
    for kind, n in Counter(p.kind for p in new if p.page == page).items():
        assert n == {"raw-table": 1, "raw-tex": 1, "low-res-figure": 1, "leak": 3}.get(kind), (kind, n)
