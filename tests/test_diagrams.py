"""The book's explanatory diagrams (``meta_rl_lessons.diagrams``): they draw legibly, the committed SVGs in
``book/_static/diagrams/`` are exactly what the package draws and are referenced by the book's pages."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from meta_rl_lessons import diagrams

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "book" / "_static" / "diagrams"
NAMES = list(diagrams.DIAGRAMS)
REGENERATE = "run `python tools/make_diagrams.py` and commit book/_static/diagrams/"


def test_the_six_names_other_pages_reference():
    assert NAMES == ["meta-optimization-levels", "maml-two-paths", "maml-trpo-iteration", "rl2-trial",
                     "successive-halving", "pbt-exploit-explore"]


def _drawn_texts(fig: Figure) -> list[Text]:
    """Every non-empty text the figure draws (tick labels only of ticks inside the axis' view)."""
    fig.canvas.draw()
    tick_labels, drawn_ticks = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                labels = {id(tick.label1), id(tick.label2)}
                tick_labels |= labels
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    drawn_ticks |= labels
    texts = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if id(t) in tick_labels and id(t) not in drawn_ticks:
            continue
        texts.append(t)
    return texts


@pytest.mark.parametrize("name", NAMES)
def test_draws_legibly(name):
    with matplotlib.rc_context(diagrams.STYLE):
        fig = diagrams.DIAGRAMS[name]()
        assert isinstance(fig, Figure)
        width, height = fig.get_size_inches()
        assert width <= 7.5 and height <= 8.0, "wider than the book's text column"
        texts = _drawn_texts(fig)
        assert texts
        small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 10]
        assert not small, f"text below 10 pt: {small}"
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        figure_box = fig.bbox
        outside = [s for s, b in boxes if b.x0 < figure_box.x0 - 1 or b.x1 > figure_box.x1 + 1
                   or b.y0 < figure_box.y0 - 1 or b.y1 > figure_box.y1 + 1]
        assert not outside, f"text cut off at the figure's edge: {outside}"
        overlaps = []
        for i, (s1, b1) in enumerate(boxes):
            for s2, b2 in boxes[i + 1:]:
                if min(b1.x1, b2.x1) - max(b1.x0, b2.x0) > 1 and min(b1.y1, b2.y1) - max(b1.y0, b2.y0) > 1:
                    overlaps.append((s1, s2))
        assert not overlaps, f"overlapping text: {overlaps}"


def test_committed_svgs_are_what_the_package_draws(tmp_path):
    fresh = diagrams.write_all(tmp_path)
    assert [p.name for p in fresh] == [f"{n}.svg" for n in NAMES]
    missing = [p.name for p in fresh if not (COMMITTED / p.name).is_file()]
    assert not missing, f"not committed: {missing}; {REGENERATE}"
    stale = [p.name for p in fresh if (COMMITTED / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"stale: {stale}; {REGENERATE}"
    extra = sorted({p.name for p in COMMITTED.glob("*.svg")} - {p.name for p in fresh})
    assert not extra, f"files no function draws: {extra}"


def test_write_all_is_deterministic(tmp_path):
    first = diagrams.write_all(tmp_path / "a", names=["rl2-trial"])[0].read_bytes()
    second = diagrams.write_all(tmp_path / "b", names=["rl2-trial"])[0].read_bytes()
    assert first == second


@pytest.mark.parametrize("name", NAMES)
def test_svg_is_valid_and_scalable(name):
    path = COMMITTED / f"{name}.svg"
    assert path.stat().st_size < 150_000, "keep each diagram under about 150 kB"
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    view_box = [float(v) for v in root.attrib["viewBox"].split()]
    assert view_box[2] > 0 and view_box[3] > 0
    assert root.attrib["width"].endswith("pt") and float(root.attrib["width"][:-2]) <= 7.5 * 72
    assert b"<image" not in path.read_bytes(), "a diagram is vector graphics, with no embedded raster"


def test_importing_the_module_is_cheap():
    code = ("import sys, meta_rl_lessons.diagrams; "
            "bad = [m for m in ('torch', 'mujoco', 'matplotlib.pyplot') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# The book's pages must show every diagram. This check fails until each chapter references its diagram (the
# chapters are written by others); its message lists exactly the references that are missing. Do not skip it.
WHERE = {
    "meta-optimization-levels": "book/intro.md",
    "maml-two-paths": "chapters/02b-maml-rl.ipynb",
    "maml-trpo-iteration": "chapters/02b-maml-rl.ipynb",
    "rl2-trial": "chapters/03-rl2.ipynb",
    "successive-halving": "chapters/04-adaptive-drl.ipynb",
    "pbt-exploit-explore": "chapters/04-adaptive-drl.ipynb",
}


def _snippet(name: str) -> str:
    page = WHERE[name]
    prefix = "../book/" if page.startswith("chapters/") else ""
    return f"  {page}: ```{{figure}} {prefix}_static/diagrams/{name}.svg  (with :name: fig-{name})"


def test_every_diagram_is_referenced_from_the_book():
    pages = sorted(ROOT.glob("book/*.md")) + sorted(ROOT.glob("chapters/*.ipynb"))
    text = [p.read_text(encoding="utf-8") for p in pages]
    missing = [name for name in NAMES if not any(f"diagrams/{name}.svg" in t for t in text)]
    assert not missing, "diagrams that no page of the book references (page, snippet to add):\n" + "\n".join(
        _snippet(name) for name in missing)
