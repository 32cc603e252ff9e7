import inspect
from pathlib import Path

import pytest

from meta_rl_lessons import budget
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.show import SourceListing, show_source

ROOT = Path(__file__).resolve().parent.parent


def test_function_source_and_location():
    listing = show_source(budget.pick)
    assert isinstance(listing, SourceListing)
    assert listing.source == inspect.getsource(budget.pick)
    assert listing.path == "meta_rl_lessons/budget.py"
    lines = open(budget.__file__).read().splitlines()
    # The reported line numbers point at the function in the file.
    assert lines[listing.first_line - 1].startswith("def pick(")
    assert listing.last_line - listing.first_line + 1 == len(listing.source.splitlines())


def test_plain_text_outside_jupyter():
    listing = show_source(budget.pick)
    assert str(listing) == listing.source
    assert repr(listing).startswith("# pick  (meta_rl_lessons/budget.py, lines ")
    assert "<span" not in repr(listing)


def test_html_is_highlighted_with_caption():
    html = show_source(EpisodeBatch)._repr_html_()
    assert "EpisodeBatch" in html and "meta_rl_lessons/batch.py" in html
    assert 'style="' in html and "<span" in html  # inline-styled tokens, no stylesheet needed
    assert "class EpisodeBatch" not in html  # keywords are wrapped in highlighting spans


def test_methods_properties_and_modules():
    assert show_source(EpisodeBatch.task).source.lstrip().startswith("def task(")
    assert "def horizon" in show_source(EpisodeBatch.horizon).source
    assert show_source(budget).first_line == 1


def test_rejects_objects_without_source():
    with pytest.raises(TypeError, match="int"):
        show_source(3)
    with pytest.raises(TypeError, match="show_source"):
        show_source(len)


def test_listing_is_collapsed_with_the_docstring_rendered_and_taken_out_of_the_code():
    from meta_rl_lessons.rl import advantages

    listing = show_source(advantages.gae)
    page = listing._repr_html_()
    assert page.startswith('<details class="meta-rl-source">') and "<summary>" in page
    doc_part, code_part = page.split('<div class="highlight"', 1)
    assert ":math:" not in page and "``" not in page  # reST markup rendered, not shown raw
    assert r"\(V(s_t)\)" in doc_part  # math typeset by the page's MathJax
    assert "<li><code>rewards</code>: <code>[T, *B]</code>.</li>" in doc_part  # Args: as a list of items
    assert "Generalized advantage estimation" not in code_part  # the docstring is not repeated in the code
    assert "white-space: pre-wrap" in code_part  # long lines wrap rather than being cut off


def test_line_numbers_of_the_code_after_the_docstring_are_the_file_lines():
    import re

    from meta_rl_lessons.rl import advantages
    from meta_rl_lessons.show import split_docstring

    listing = show_source(advantages.gae)
    doc, pieces = split_docstring(listing.source, listing.first_line)
    assert doc.startswith("Generalized advantage estimation")
    file_lines = open(advantages.__file__).read().splitlines()
    for text, first in pieces:
        for offset, line in enumerate(text.splitlines()):
            assert file_lines[first - 1 + offset] == line
    # The numbers printed in the HTML are the same lines.
    numbers = [int(n) for n in re.findall(r"padding-right: 5px;\">\s*(\d+)</span>", listing._repr_html_())]
    assert numbers[0] == listing.first_line and numbers[-1] == listing.last_line
    assert len(numbers) == sum(len(text.splitlines()) for text, _ in pieces)


def test_object_without_docstring_is_listed_whole():
    from meta_rl_lessons.show import split_docstring

    assert split_docstring("def f():\n    return 1\n", 5) == ("", [("def f():\n    return 1\n", 5)])


def test_docstrings_cite_equations_by_the_numbers_the_book_shows():
    # show.equation_numbers and tools/math_widths.py number the chapters' equations independently (the
    # latter parses every display as Sphinx sees it); they must agree on every label.
    import math_widths

    from meta_rl_lessons.show import _equation_links, equation_numbers

    numbers = equation_numbers()
    assert numbers["return"] == ("chapters/01-drl-basics", "1.1")
    chapters = math_widths.chapter_numbers()
    seen = 0
    for page in [*chapters, "chapters/A1-task-families"]:  # the numbered chapters and an unnumbered one
        for eq in math_widths.equations_of(ROOT / f"{page}.ipynb", chapters):
            if eq.label:
                assert numbers[eq.label] == (page, eq.number.strip("()")), eq.label
                seen += 1
    assert seen == len(numbers) > 50
    page, number = numbers["gae"]
    assert _equation_links("(eq. gae)") == f'(eq. <a href="../{page}.html#equation-gae">{number}</a>)'
    assert _equation_links("eq. ``gae``, eq. unknown-label") .startswith("eq. <a ")
    assert _equation_links("eq. unknown-label") == "eq. unknown-label"  # not a chapter's label: left alone
