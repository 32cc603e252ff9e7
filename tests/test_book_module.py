"""meta_rl_lessons.book: the tables, captions and provenance boxes the chapters display."""

from __future__ import annotations

import math

import pytest

from meta_rl_lessons import book


def test_table_is_a_pipe_table_with_caption_alignment_and_escaping():
    t = book.table([("RL²", 78.71, 3), ("a | b", math.nan, None)], columns=["method", "return", "n"],
                   caption="Returns on $n = 10$ arms.")
    lines = t._repr_markdown_().splitlines()
    assert lines[0] == "*Returns on $n = 10$ arms.*" and lines[1] == ""
    assert lines[2] == "| method | return | n |"
    assert lines[3] == "|:--|--:|--:|"  # text left, numbers right
    assert lines[4] == "| RL² | 78.7 | 3 |"
    assert lines[5] == r"| a \| b | – | – |"  # a pipe in a cell does not split it; NaN and None are a dash


def test_table_from_mappings_and_custom_format():
    t = book.table([{"x": 1.23456, "y": "a"}, {"x": 2.0, "y": "b"}], fmt="{:.2f}")
    assert t.columns == ("x", "y")
    assert "| 1.23 | a |" in str(t)


def test_table_rejects_ragged_rows_and_missing_columns():
    with pytest.raises(ValueError, match="row 1 has 1 cells but there are 2 columns"):
        book.table([(1, 2), (3,)], columns=["a", "b"])
    with pytest.raises(ValueError, match="needs `columns`"):
        book.table([(1, 2)])
    with pytest.raises(ValueError, match="align"):
        book.table([(1, 2)], columns=["a", "b"], align=["x", "r"])


class _FakeResult:
    name = "maml-Navigation2D-book-s0"
    config = {"budget": "book", "seed": 0}
    provenance = {
        "command": ["meta-rl", "train", "maml", "--env", "MetaRL/Navigation2D-v0", "--seed", "0",
                    "--out", "/somewhere/runs/nav-s0"],
        "git": {"commit": "0123456789abcdef", "dirty": True, "root": "/somewhere/checkout"},
        "cpu_model": "Some CPU", "cpu_count": 2, "gpus": [], "end_time": "2026-11-30T10:00:00Z",
    }


def test_provenance_box_is_collapsed_and_says_plainly_when_the_tree_was_dirty():
    box = book.provenance(_FakeResult())._repr_html_()
    assert box.startswith('<details class="provenance"><summary>How this was made</summary>')
    assert "results/maml-Navigation2D-book-s0" in box
    assert "<code>meta-rl train maml --env MetaRL/Navigation2D-v0 --seed 0</code>" in box
    assert "0123456789 with uncommitted changes" in box
    assert "Some CPU, 2 cores, no GPU" in box and "2026-11-30" in box
    assert "/somewhere" not in box  # the build machine's paths never reach the page


def test_caption_renders_as_italic_markdown():
    assert book.caption("Figure 1.1: $\\alpha = 0.1$.")._repr_markdown_() == "*Figure 1.1: $\\alpha = 0.1$.*"


def test_chapter_knows_its_command_and_shows_svg_figures(monkeypatch):
    import matplotlib

    monkeypatch.setenv("META_RL_BUDGET", "smoke")
    chapter = book.Chapter("01-drl-basics")
    assert chapter.command == "META_RL_BUDGET=smoke jupyter execute chapters/01-drl-basics.ipynb"
    assert matplotlib.rcParams["svg.hashsalt"] == "meta-rl-lessons"
    box = chapter.provenance()._repr_html_()
    assert "chapters/01-drl-basics.ipynb" in box and "budget: smoke" in box
    assert " s<" not in box  # no timings
