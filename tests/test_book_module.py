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


# ============================================================================ captions with provenance
def test_chapter_caption_with_results_displays_the_caption_then_their_box(monkeypatch):
    import IPython.display

    monkeypatch.setenv("META_RL_BUDGET", "smoke")
    chapter = book.Chapter("02b-maml-rl")
    assert isinstance(chapter.caption("Figure 2.1."), book.Caption)  # without results: the caption alone
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    both = chapter.caption("Figure 2.2: $x$.", _FakeResult(), note="a note")
    both._ipython_display_()
    assert [type(o) for o in shown] == [book.Caption, book.Provenance]
    assert shown[0]._repr_markdown_() == "*Figure 2.2: $x$.*"
    box = shown[1]._repr_html_()
    assert "results/maml-Navigation2D-book-s0" in box and "a note" in box


# ============================================================================ numbers in text
def test_number_formats():
    assert book.pm(0.6712, 0.049) == "0.67 ± 0.05"
    assert book.pm(3.14159) == "3.14"
    assert book.pm(12.0, 1.26, "{:.1f}") == "12.0 ± 1.3"
    assert book.mean_std([1.0, 2.0, 3.0]) == "2.0 ± 1.0"  # sample standard deviation (ddof = 1)
    assert book.mean_std([4.25], "{:.2f}") == "4.25"
    assert book.mean_std([]) == "n/a" and book.mean_std([math.nan]) == "n/a"
    assert book.mean_std([1.0, math.nan, 3.0]) == "2.0 ± 1.4"  # NaN ignored
    assert book.duration([30.0, 30.0]) == "30.0 ± 0.0 s"
    assert book.duration([600.0]) == "10.0 min" and book.duration([7200.0 * 2]) == "4.0 h"
    assert book.millions([1.5e6, 2.5e6]) == "2.00 ± 0.71 M"
    assert book.no_break("3e-15") == "3e\u201115"


def test_mean_ci95_uses_student_t_over_seeds():
    mean, half = book.mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert half == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5))
    with pytest.raises(ValueError, match="2 to 10 values"):
        book.mean_ci95([1.0])


def test_rank_correlation_is_spearmans_with_ties_averaged():
    assert list(book.ranks([10, 30, 20, 20])) == [0.0, 3.0, 1.5, 1.5]
    assert book.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert book.rank_correlation([1, 2, 3, 4], [4, 1, 0, -5]) == pytest.approx(-1.0)
    assert book.rank_correlation([1, 2, 3], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)


# ============================================================================ eval.json
def _entry(values):
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "n": len(v), "values": v.tolist()}


MAML_EVAL = {"algorithm": "maml", "env": "MetaRL/Navigation2D-v0", "iterations_done": 40,
             "protocol": "3 held-out test tasks (task seed 10000), 20 episodes per task, REINFORCE steps of "
                         "sizes [0.1, 0.05] (Finn et al. 2017)",
             "task_seed": 10000,
             "return_after_steps": {"0": _entry([-40, -42, -38]), "2": _entry([-5, -6, -4]),
                                    "1": _entry([-10, -12, -8])}}
RL2_EVAL = {"algorithm": "rl2", "env": "MetaRL/Navigation2D-v0", "iterations_done": 70,
            "protocol": "one trial of 2 episodes on each of 4 held-out test tasks drawn with seed 123",
            "trial_return": _entry([-30, -32, -28, -30]),
            "return_per_episode": {"2": {"mean": -12.0, "std": 1.0, "n": 4},
                                   "1": {"mean": -18.0, "std": 2.0, "n": 4}}}
PPO_EVAL = {"algorithm": "ppo", "env": "CartPole-v1", "iterations_done": 12,
            "protocol": "5 episodes, deterministic policy, env seeds 0...",
            "episode_return": _entry([500] * 5)}
SEARCH_EVAL = {"best_score": 276.3, "best_params": {"n_layers": 2}, "total_steps": 196608}


def test_adaptation_summary_reads_every_eval_format_the_same_way():
    maml = book.adaptation_summary(MAML_EVAL)
    assert (maml.algorithm, maml.kind, maml.labels) == ("maml", "gradient steps", ("0", "1", "2"))
    assert maml.means() == [-40.0, -10.0, -5.0] and maml.gain == 35.0
    assert (maml.num_tasks, maml.task_seed, maml.held_out, maml.iterations_done) == (3, 10000, True, 40)
    assert maml.total is None and maml.before.values == (-40.0, -42.0, -38.0)
    assert maml.before.se == pytest.approx(2 / math.sqrt(3))

    rl2 = book.adaptation_summary(RL2_EVAL)
    assert (rl2.kind, rl2.labels, rl2.means()) == ("episodes", ("1", "2"), [-18.0, -12.0])
    assert rl2.total.mean == -30.0 and rl2.total.n == 4 and rl2.after.values is None
    assert (rl2.num_tasks, rl2.task_seed, rl2.held_out) == (4, 123, True)
    old = book.adaptation_summary({k: v for k, v in RL2_EVAL.items() if k != "return_per_episode"})
    assert old.curve == () and old.total.mean == -30.0  # eval.json of older RL² runs

    ppo = book.adaptation_summary(PPO_EVAL)
    assert (ppo.kind, ppo.total.mean, ppo.num_tasks, ppo.task_seed, ppo.held_out) == ("none", 500.0, 5, None,
                                                                                     None)
    search = book.adaptation_summary(SEARCH_EVAL)
    assert (search.algorithm, search.best_score, search.curve) == ("adaptive", 276.3, ())
    with pytest.raises(ValueError, match="no known format"):
        book.adaptation_summary({"protocol": "?"})


class _Run:
    def __init__(self, algorithm, seed, report, progress=(), **config):
        self.name = f"{algorithm}-s{seed}"
        self.algorithm = algorithm
        self.config = {"algorithm": algorithm, "env": "MetaRL/X-v0", "budget": "book", "seed": seed,
                       "config": {"seed": seed, "device": "cpu", **config}}
        self.eval = report
        self.progress = list(progress)


def test_adaptation_summary_of_a_result_says_what_a_new_task_costs():
    run = _Run("maml", 0, MAML_EVAL, num_episodes=20)
    assert book.adaptation_summary(run).cost == "20 episodes and one gradient step per adaptation step"
    with pytest.raises(ValueError, match="not evaluated"):
        book.adaptation_summary(_Run("maml", 0, None, num_episodes=20))


def test_adaptation_cells_aggregate_over_seeds():
    maml = [_Run("maml", s, MAML_EVAL, num_episodes=20) for s in (0, 1)]
    cost, text = book.adaptation_cells(maml)
    assert cost.startswith("20 episodes")
    assert text == "-40.0 ± 0.0 → -5.0 ± 0.0 after 2 steps ($\\Delta_2$ = 35.0 ± 0.0; 3 tasks)"
    _, text = book.adaptation_cells([_Run("rl2", 0, RL2_EVAL, episodes_per_trial=2)])
    assert text == "trial -30.0 (4 tasks); episode 1: -18.00 → episode 2: -12.00"
    _, text = book.adaptation_cells([_Run("ppo", 0, PPO_EVAL)])
    assert text == "episode return 500.0"
    rows = [{"score": 20.0, "best_score": 20.0}, {"score": 9.0, "best_score": 31.0}]
    search = _Run("adaptive", 0, None, rows, method="random", num_trials=2, steps_per_trial=1000)
    assert book.adaptation_cells([search]) == ("a new random search: 2 PPO runs × 1,000 steps",
                                               "first trial 20.0 → best of the search 31.0")
    unevaluated = [_Run("maml", 0, None, num_episodes=20)]
    assert book.adaptation_cells(unevaluated)[1] == "not evaluated (no eval.json)"


def test_group_by_setting_joins_runs_that_differ_only_in_seed_and_device():
    runs = [_Run("maml", 1, None, estimator="maml"), _Run("maml", 0, None, estimator="maml"),
            _Run("maml", 0, None, estimator="dice")]
    runs[1].config["config"]["device"] = "cuda"
    groups = book.group_by_setting(runs)
    assert sorted(len(g) for g in groups.values()) == [1, 2]
    same = next(g for g in groups.values() if len(g) == 2)
    assert [r.config["seed"] for r in same] == [0, 1]  # sorted by seed


def test_adaptation_summary_reads_every_stored_result():
    from meta_rl_lessons.results import list_results, load_result

    for name in list_results():
        r = load_result(name)
        if r.eval is None:
            continue
        s = book.adaptation_summary(r)
        assert s.algorithm == r.algorithm, name
        if r.algorithm in ("maml", "rl2"):
            assert s.num_tasks == (s.curve[0].n if s.algorithm == "maml" else s.total.n), name
            assert s.task_seed is not None and s.cost, name


# ============================================================================ plotting helpers
def test_moving_average_full_windows_and_partial_windows():
    import numpy as np

    from meta_rl_lessons import plotting

    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert plotting.moving_average(x, 2).tolist() == [1.5, 2.5, 3.5, 4.5]
    assert plotting.moving_average(x, 3, partial=True).tolist() == [1.0, 1.5, 2.0, 3.0, 4.0]
    out = plotting.moving_average([math.nan, math.nan, 3.0], 2, partial=True)
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] == 3.0
    with pytest.raises(ValueError, match="window"):
        plotting.moving_average(x, 0)


def test_common_and_step_grids():
    import numpy as np

    from meta_rl_lessons import plotting

    grid, curves = plotting.common_grid([[0, 5, 10], [0, 5, 10]], [[math.nan, 5.0, 10.0], [1.0, 2.0, 3.0]],
                                        points=2)
    assert grid.tolist() == [5.0, 10.0] and curves.tolist() == [[5.0, 10.0], [2.0, 3.0]]  # NaN points dropped
    grid, curves = plotting.common_grid([[0, 10], [0, 10, 20]], [[0.0, 10.0], [0.0, 5.0, 0.0]], points=3)
    assert grid.tolist() == [0.0, 5.0, 10.0] and curves.tolist() == [[0.0, 5.0, 10.0], [0.0, 2.5, 5.0]]
    grid, one = plotting.common_grid([[0, 4]], [[0.0, 4.0]], points=5)  # one run is interpolated too
    assert one.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    grid, best = plotting.step_grid([(np.array([1, 3]), np.array([5.0, 7.0])),
                                     (np.array([2, 4]), np.array([1.0, 2.0]))], points=4)
    assert grid.tolist() == pytest.approx([2.0, 8 / 3, 10 / 3, 4.0])
    assert best.tolist() == [[5.0, 5.0, 7.0, 7.0], [1.0, 1.0, 1.0, 2.0]]


def test_band_draws_the_mean_and_the_min_max_range():
    import matplotlib

    matplotlib.use("Agg")
    from meta_rl_lessons import plotting

    fig, ax = plotting.new_figure()
    line = plotting.band(ax, [0, 1], [[0.0, 2.0], [2.0, 4.0]], "o-", label="mean", band_label="range")
    assert line.get_ydata().tolist() == [1.0, 3.0]
    assert [h.get_label() for h in ax.get_legend_handles_labels()[0]] == ["mean", "range"]


# ============================================================================ chapters use the helpers
#: Helpers that chapters once defined in their cells, under the names they had there, and book.py or
#: plotting.py now provides (with the name it has there).
FORMER_CHAPTER_HELPERS = {
    "smooth": "plotting.moving_average", "learning_curves": "plotting.common_grid",
    "seed_interval": "book.mean_ci95", "after_steps": "book.adaptation_summary(r).means()",
    "no_break": "book.no_break", "fmt": "book.pm", "summary": "book.adaptation_summary / Stat.se",
    "eval_tasks": "book.adaptation_summary(r).num_tasks, .task_seed",
    "protocol_tasks": "book.adaptation_summary", "training_cost": "book.training_cost", "ranks": "book.ranks",
    "rank_correlation": "book.rank_correlation",
    "mean_std": "book.mean_std", "duration": "book.duration", "millions": "book.millions",
    "last": "book.last_value", "adaptation": "book.adaptation_cells", "setting": "book.group_by_setting",
    "env_name": "book.env_name",
}


def test_no_chapter_cell_defines_a_helper_the_package_provides():
    import ast
    import json
    from pathlib import Path

    from meta_rl_lessons import plotting

    provided = {name: f"book.{name}" for name in book.__all__}
    provided.update({name: f"plotting.{name}" for name in plotting.__all__})
    provided.update(FORMER_CHAPTER_HELPERS)
    chapters = sorted((Path(__file__).resolve().parent.parent / "chapters").glob("*.ipynb"))
    assert chapters
    found = []
    for path in chapters:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            tree = ast.parse("".join(cell["source"]))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in provided:
                    found.append(f"{path.name} cell {i} defines {node.name}(): use {provided[node.name]}")
    assert not found, "\n".join(found)
