"""The RL² recipe study (rl2.study, tools/rl2_study.py) and the table commands (tools/rl2_tables.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
from pathlib import Path

import pytest
import torch

from meta_rl_lessons import experiments as ex
from meta_rl_lessons.rl2 import study
from meta_rl_lessons.rl2.ppo import BANDIT_DEFAULTS, MDP_DEFAULTS, RL2Config

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list(study.STUDIES))
def test_every_arm_makes_a_valid_config_with_the_same_env_steps(name):
    spec = study.STUDIES[name]
    assert "base" in spec.arms and spec.arms["base"] == {}
    kind, n, *_ = spec.setting
    steps_per_trial = n if kind == "bandit" else 10 * n
    for arm, change in spec.arms.items():
        cfg = study.study_config(name, arm, seed=1)
        assert isinstance(cfg, RL2Config) and cfg.seed == 1 and cfg.episodes_per_trial == n
        for key, value in {**spec.base, **change}.items():
            assert getattr(cfg, key) == value, (arm, key)
        steps = cfg.total_iterations * cfg.num_trials * steps_per_trial
        assert steps == spec.env_steps, (arm, steps)  # every arm trains for the same number of steps


def test_unknown_study_arm_and_row_are_named():
    with pytest.raises(study.StudyError, match="unknown study 'nope'; allowed: bandit-n100k5"):
        study.study_config("nope", "base", 0)
    with pytest.raises(study.StudyError, match="unknown arm 'wide' of bandit-n100k5; allowed: base"):
        study.study_config("bandit-n100k5", "wide", 0)
    with pytest.raises(study.StudyError, match="unknown table row 'n3k3'; allowed: n10k5"):
        study.table_command("n3k3", 0)


def test_load_study_names_the_folder_when_nothing_finished(tmp_path):
    with pytest.raises(study.StudyError, match=str(tmp_path / "mdp-n10")):
        study.load_study("mdp-n10", tmp_path)


TINY = study.StudySpec(setting=("bandit", 4, 2),
                       base={"num_trials": 8, "num_minibatches": 2, "hidden_size": 8, "update_epochs": 1},
                       arms={"base": {}, "lr-small": {"learning_rate": 1e-4}}, env_steps=8 * 4 * 3,
                       eval_every=2, curve_tasks=16, seeds=(0, 1))


def test_a_run_writes_its_curve_and_load_study_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setitem(study.STUDIES, "tiny", TINY)
    tool = _tool("rl2_study")
    threads = torch.get_num_threads()
    try:
        msg = tool.run_one("tiny", "lr-small", 1, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert msg.startswith("tiny/lr-small-s1: final eval")
    st = study.load_study("tiny", tmp_path)
    assert list(st.runs) == ["lr-small"]  # the arm with no finished seed is left out
    (run,) = st.runs["lr-small"]
    assert [r["iteration"] for r in run.rows] == [1, 2, 3]
    # evaluated at iterations 2 (every eval_every) and 3 (the last); NaN elsewhere
    assert run.env_steps.tolist() == [64, 96] and math.isnan(run.rows[0]["eval_return"])
    assert 0 <= run.final <= 4 and run.meta["config"]["learning_rate"] == 1e-4
    assert run.meta["final_eval"] == run.final and run.meta["provenance"]["cpu_model"]
    s = st.summary()["lr-small"]
    assert s["seeds"] == 1 and s["final"] == run.final and math.isnan(s["se"]) and s["s_per_Msteps"] > 0
    assert "tools/rl2_study.py run tiny" in str(st.provenance())
    # an unfinished run (a CSV without its JSON, as a kill leaves it) is not read
    (tmp_path / "tiny" / "base-s0.csv").write_text("iteration,env_steps\n1,32\n")
    assert list(study.load_study("tiny", tmp_path).runs) == ["lr-small"]


def test_the_runner_skips_finished_runs_and_rejects_unknown_arms(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(study.STUDIES, "tiny", TINY)
    tool = _tool("rl2_study")
    for arm in TINY.arms:
        for seed in TINY.seeds:
            (tmp_path / "tiny").mkdir(exist_ok=True)
            (tmp_path / "tiny" / f"{arm}-s{seed}.json").write_text("{}")
    assert tool.main(["run", "tiny", "--out", str(tmp_path)]) == 0
    assert "0 run(s) to do" in capsys.readouterr().out
    assert tool.main(["run", "tiny", "--arms", "wide", "--out", str(tmp_path)]) == 2
    assert "unknown arm(s) ['wide'] of tiny; allowed: base, lr-small" in capsys.readouterr().err


# ------------------------------------------------------------------------ the family recipes and the tables
def test_book_preset_of_bandits_and_mdps_is_the_family_recipe():
    for family, recipe in (("BernoulliBandit", BANDIT_DEFAULTS), ("TabularMDP", MDP_DEFAULTS)):
        fields = ex.preset("rl2", "book", family)
        assert {k: fields[k] for k in recipe} == recipe
        full = ex.preset("rl2", "full", family)
        assert full["num_trials"] == ex.PRESETS["rl2"]["full"]["num_trials"]  # the paper's sizes at full
    # other families keep the generic preset (the recorded 2D-navigation results rebuild unchanged)
    assert ex.preset("rl2", "book", "Navigation2D") == ex.PRESETS["rl2"]["book"]


@pytest.mark.parametrize("row", list(study.TABLE_ROWS))
def test_each_table_command_builds_the_rows_setting(row):
    cmd = study.table_command(row, 1, out="runs/x")
    assert cmd[:3] == ["meta-rl", "train", "rl2"] and cmd[-2:] == ["--out", "runs/x"]
    args = cmd[3:-2]
    env = args[args.index("--env") + 1]
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    _, cfg, _ = ex.build_config("rl2", env=env, budget="book", seed=1, overrides=overrides, threads=1)
    kind, n, *rest = study.TABLE_ROWS[row]["paper"]
    assert cfg.episodes_per_trial == n and cfg.seed == 1
    if kind == "bandit":
        assert cfg.family == "BernoulliBandit" and cfg.family_kwargs["num_arms"] == rest[0]
        assert cfg.learning_rate == BANDIT_DEFAULTS["learning_rate"]
    else:
        assert cfg.family == "TabularMDP" and cfg.gamma == MDP_DEFAULTS["gamma"]
    assert study.table_result_name(row, 1).endswith("-s1") and shlex.join(cmd)  # quotable


def test_tables_tool_prints_the_commands_and_rejects_unknown_rows(capsys):
    tool = _tool("rl2_tables")
    assert tool.main(["--rows", "n10k5", "--seeds", "7", "--print"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == shlex.join(study.table_command("n10k5", 7, out="runs/rl2-BernoulliBandit-n10k5-s7"))
    assert tool.main(["--rows", "n3k3", "--print"]) == 2
    assert "unknown row(s) ['n3k3']" in capsys.readouterr().err
    json.dumps(study.TABLE_ROWS)  # the rows are plain data
