"""The built book: a page per table-of-contents entry, and a browser check that passes and can fail.

`make test` builds the book at the smoke budget and points ``META_RL_SITE`` at it. Run alone, these tests
skip with a reason unless ``META_RL_SITE`` names a built site.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


@needs_site
def test_built_pages_pass_the_browser_check():
    problems, reports = check_site(SITE)
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


def _break(page: Path, pattern: str, replacement: str, count: int = 1) -> None:
    text = page.read_text()
    broken, n = re.subn(pattern, replacement, text, count=count)
    assert n, f"could not break {page}: {pattern!r} not found"
    page.write_text(broken)


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

    problems, _ = check_site(site)
    found = {(p.page, p.kind) for p in problems}
    assert ("book/notation.html", "math") in found
    assert ("book/setup.html", "image") in found
    assert ("book/how-to-use.html", "console") in found
    assert ("book/intro.html", "offline") in found
    # index.html redirects to the intro, so it shows the intro's breakage too; every other page stays clean.
    broken = {"book/notation.html", "book/setup.html", "book/how-to-use.html", "book/intro.html"}
    broken.add("index.html")
    assert {p.page for p in problems} <= broken, [str(p) for p in problems if p.page not in broken]
