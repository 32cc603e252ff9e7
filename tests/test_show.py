import inspect

import pytest

from meta_rl_lessons import budget
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.show import SourceListing, show_source


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
    assert "EpisodeBatch" in html and "meta_rl_lessons/rl/batch.py" in html
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
