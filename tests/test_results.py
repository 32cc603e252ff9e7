"""Tests of meta_rl_lessons.results: reading results/ (load_result, list_results, policy.json, captions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from meta_rl_lessons import cli, results

ROOT = Path(__file__).resolve().parent.parent
PPO = ["train", "ppo", "--env", "CartPole-v1", "--budget", "smoke", "--seed", "4", "--threads", "1",
       "--no-progress"]


def run_cli(*args: str) -> int:
    """``meta-rl ARGS`` in this process, restoring the caller's torch thread count."""
    threads = torch.get_num_threads()
    try:
        return cli.main(list(args))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke PPO run directory (a real `meta-rl train`)."""
    run = tmp_path_factory.mktemp("runs") / "ppo"
    assert run_cli(*PPO, "--out", str(run)) == 0
    return run


def copy_result(run: Path, dest: Path, files=results.REQUIRED_FILES) -> Path:
    """What a result directory holds: the run's files, copied verbatim (without its checkpoint)."""
    dest.mkdir(parents=True)
    for f in files:
        shutil.copyfile(run / f, dest / f)
    return dest


@pytest.fixture
def results_root(tmp_path, monkeypatch, smoke_run) -> Path:
    """A temporary results/ (via META_RL_RESULTS) holding one result, ``ppo-smoke``."""
    root = tmp_path / "results"
    copy_result(smoke_run, root / "ppo-smoke")
    monkeypatch.setenv("META_RL_RESULTS", str(root))
    return root


# ---------------------------------------------------------------------------------------------- load_result
def test_default_results_dir_is_the_repository_results_folder(monkeypatch):
    monkeypatch.delenv("META_RL_RESULTS", raising=False)
    assert results.results_dir() == ROOT / "results"
    assert results.DEFAULT_RESULTS_DIR == ROOT / "results"


def test_load_result_reads_every_file(results_root, smoke_run):
    r = results.load_result("ppo-smoke")
    assert r.name == "ppo-smoke" and r.path == results_root / "ppo-smoke"
    assert r.config == json.loads((smoke_run / "config.json").read_text())
    assert r.provenance == json.loads((smoke_run / "provenance.json").read_text())
    assert r.config["algorithm"] == "ppo" and r.config["seed"] == 4 and r.algorithm == "ppo"
    # progress: every cell of the CSV, numbers as floats (checked against the csv module directly)
    import csv

    with open(smoke_run / "progress.csv", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert len(r.progress) == len(raw) == 6
    for row, want in zip(r.progress, raw, strict=True):
        assert set(row) == set(want)
        for k, v in want.items():
            assert isinstance(row[k], float) and (row[k] == float(v) or (v == "nan" and row[k] != row[k]))
    assert r.column("iteration") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert r.eval is None


def test_eval_json_is_read_when_present(results_root):
    (results_root / "ppo-smoke" / "eval.json").write_text(json.dumps({"episode_return": {"mean": 9.5}}))
    assert results.load_result("ppo-smoke").eval == {"episode_return": {"mean": 9.5}}


def test_missing_result_names_the_directory_and_lists_what_exists(results_root):
    with pytest.raises(FileNotFoundError) as err:
        results.load_result("maml-nowhere")
    msg = str(err.value)
    assert str(results_root / "maml-nowhere") in msg and "ppo-smoke" in msg and "META_RL_RESULTS" in msg


def test_incomplete_result_names_the_missing_file(results_root):
    (results_root / "ppo-smoke" / "progress.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"progress\.csv missing.*config\.json"):
        results.load_result("ppo-smoke")


@pytest.mark.parametrize("bad", ["", "..", "a/b", "."])
def test_names_are_single_directory_names(results_root, bad):
    with pytest.raises(ValueError, match="one directory name"):
        results.load_result(bad)


def test_unknown_column_lists_the_columns(results_root):
    with pytest.raises(KeyError, match="no progress column 'nope'.*iteration"):
        results.load_result("ppo-smoke").column("nope")


def test_list_results_is_sorted_and_skips_non_results(results_root, smoke_run):
    copy_result(smoke_run, results_root / "a-first")
    (results_root / "not-a-result").mkdir()
    (results_root / "README.md").write_text("x")
    assert results.list_results() == ["a-first", "ppo-smoke"]
    assert results.list_results(results_root / "absent") == []


# ---------------------------------------------------------------------------------------------- policy.json
def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes reinterpreted as integers of the same width."""
    width = {torch.float32: torch.int32, torch.float64: torch.int64, torch.int64: torch.int64}[t.dtype]
    return t.contiguous().view(width)


def test_params_round_trip_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    params = {
        "w32": torch.randn(3, 4, generator=g) * 1e-3,
        "b64": torch.randn(5, generator=g, dtype=torch.float64),
        "edge": torch.tensor([1e-45, -0.0, 3.4028235e38, 1 / 3], dtype=torch.float32),  # subnormal, -0, max
        "scalar": torch.tensor(7.25, dtype=torch.float64),
        "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    payload = json.loads(json.dumps(results.params_to_json(params)))  # through JSON text, as on disk
    back = results.params_from_json(payload)
    assert list(back) == list(params)
    for k, v in params.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert torch.equal(bits(back[k]), bits(v))  # bit-level: torch.equal alone accepts -0.0 == 0.0


def test_params_from_json_rejects_bad_entries():
    with pytest.raises(ValueError, match="unknown dtype 'float7'"):
        results.params_from_json({"w": {"dtype": "float7", "shape": [1], "data": [1.0]}})
    with pytest.raises(ValueError, match=r"shape \[2\], recorded \[3\]"):
        results.params_from_json({"w": {"dtype": "float32", "shape": [3], "data": [1.0, 2.0]}})


def test_policy_params_without_policy_json_is_a_clear_error(results_root):
    with pytest.raises(FileNotFoundError, match="exported without the policy's parameters"):
        results.load_result("ppo-smoke").policy_params()


def test_policy_params_reads_policy_json(results_root):
    params = {"policy.w": torch.randn(2, 3)}
    (results_root / "ppo-smoke" / "policy.json").write_text(
        json.dumps({"format": 1, "parameters": results.params_to_json(params)}))
    back = results.load_result("ppo-smoke").policy_params()
    assert torch.equal(back["policy.w"], params["policy.w"])


# ---------------------------------------------------------------------------------------------- caption
def test_caption_names_command_budget_seed_commit_machine_and_date(results_root):
    r = results.load_result("ppo-smoke")
    cap = r.caption()
    prov = r.provenance
    assert "\n" not in cap
    assert "`meta-rl train ppo --env CartPole-v1 --budget smoke --seed 4 --threads 1`" in cap  # no --out
    assert "budget smoke" in cap and "seed 4" in cap
    assert prov["cpu_model"] in cap and str(prov["cpu_affinity"] or prov["cpu_count"]) + " cores" in cap
    assert prov["end_time"][:10] in cap and "results/ppo-smoke" in cap
    if prov["git"] is not None:
        assert f"commit {prov['git']['commit'][:7]}" in cap
        assert ("uncommitted" in cap) == prov["git"]["dirty"]
    assert ("no GPU" in cap) == (not prov["gpus"])


def test_train_command_rejects_other_commands():
    assert results.train_command({"command": ["meta-rl", "train", "ppo"]}) == ["meta-rl", "train", "ppo"]
    assert results.train_command({"command": "meta-rl train 'ppo'"}) == ["meta-rl", "train", "ppo"]
    for bad in (None, ["meta-rl", "eval", "runs/x"], ["python", "train", "ppo"], [1, 2, 3]):
        with pytest.raises(ValueError):
            results.train_command({"command": bad})


# ====================================================================== acceptance: results with provenance
# Every directory in the repository's results/ must be complete, name its commit and machine, and carry a
# `meta-rl train` command that rebuilds its config; every chapter cell that reads results/ must find its
# files; results/README.md's index must match the directory. The tests after these show that each check
# can fail.
REPO_RESULTS = results.DEFAULT_RESULTS_DIR
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_results_directory_has_results_and_a_readme():
    assert results.list_results(REPO_RESULTS), f"{REPO_RESULTS} holds no results"
    assert (REPO_RESULTS / "README.md").is_file()


@pytest.mark.parametrize("name", results.list_results(REPO_RESULTS))
def test_every_result_is_complete_and_its_command_rebuilds_its_config(name):
    assert results.check_result(name, REPO_RESULTS) == []


def test_every_results_subdirectory_is_a_result():
    """A directory without config.json would be invisible to list_results: it is an error, not a skip. The
    one exception is the RL² recipe study's folder (rl2.study.STUDY_DIR), read by rl2.study.load_study."""
    from meta_rl_lessons.rl2.study import STUDIES, STUDY_DIR, load_study

    dirs = sorted(p.name for p in REPO_RESULTS.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [d for d in dirs if d != STUDY_DIR.name] == results.list_results(REPO_RESULTS)
    assert STUDY_DIR.parent == REPO_RESULTS
    studies = sorted(p.name for p in STUDY_DIR.iterdir() if p.is_dir())
    assert studies == sorted(STUDIES)
    for name in studies:  # every arm has every seed, and no stray file
        st = load_study(name)
        assert {a: len(r) for a, r in st.runs.items()} == {a: len(st.spec.seeds) for a in st.spec.arms}
        expected = {f"{a}-s{s}.{ext}" for a in st.spec.arms for s in st.spec.seeds for ext in ("csv", "json")}
        assert {p.name for p in (STUDY_DIR / name).iterdir()} == expected


def test_every_chapter_reference_to_results_finds_its_files():
    refs = results.notebook_references(CHAPTERS)
    problems = [p for ref in refs for p in results.check_reference(ref, REPO_RESULTS)]
    assert problems == []


def test_readme_index_is_up_to_date():
    text = (REPO_RESULTS / "README.md").read_text()
    want = results.readme_with_index(text, results.index_table(REPO_RESULTS))
    assert text == want, "results/README.md is stale: run `python -m meta_rl_lessons.results --write-readme`"


# -- each check can fail ------------------------------------------------------------------------------------
def test_a_sound_result_passes_every_check(results_root):
    assert results.check_result("ppo-smoke") == []


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


CMD = ["meta-rl", "train", "ppo", "--env", "CartPole-v1"]


@pytest.mark.parametrize("command, message", [
    (["meta-rl", "eval", "runs/x"], "not a `meta-rl train ...` command"),
    (["meta-rl", "train", "ppo", "--sed", "4"], "the command line rejects"),
    (["meta-rl", "train", "sac", "--budget", "smoke"], "unknown algorithm 'sac'"),
    ([*CMD, "--budget", "smoke", "--seed", "5", "--threads", "1"], "builds seed = 5, but config.json has 4"),
    ([*CMD, "--budget", "book", "--seed", "4", "--threads", "1"], "builds budget = 'book'"),
    ([*CMD, "--budget", "smoke", "--seed", "4", "--threads", "1", "--set", "learning_rate=0.5"],
     "builds overrides = ['learning_rate=0.5']"),
    (["meta-rl", "train", "ppo", "--env", "Acrobot-v1", "--budget", "smoke", "--seed", "4", "--threads", "1"],
     "builds env = 'Acrobot-v1'"),
])
def test_a_broken_command_is_caught(results_root, command, message):
    edit_json(results_root / "ppo-smoke" / "provenance.json", command=command)
    problems = results.check_result("ppo-smoke")
    assert any(message in p for p in problems), problems


def test_a_config_the_command_does_not_build_is_caught(results_root):
    path = results_root / "ppo-smoke" / "config.json"
    data = json.loads(path.read_text())
    data["config"]["learning_rate"] *= 2  # as if the run had used another learning rate than its command says
    path.write_text(json.dumps(data))
    problems = results.check_result("ppo-smoke")
    assert len(problems) == 1 and "builds config = {'learning_rate'" in problems[0]


@pytest.mark.parametrize("missing", ["config.json", "provenance.json", "progress.csv"])
def test_a_missing_file_is_caught(results_root, missing):
    (results_root / "ppo-smoke" / missing).unlink()
    problems = results.check_result("ppo-smoke")
    assert len(problems) == 1 and f"{missing} missing" in problems[0]


def test_unparsable_and_empty_files_are_caught(results_root):
    (results_root / "ppo-smoke" / "policy.json").write_text(json.dumps({"parameters": {"w": {"dtype": "x"}}}))
    assert results.check_result("ppo-smoke") == ["ppo-smoke: policy.json does not parse: "
                                                 "ValueError(\"parameter 'w': unknown dtype 'x'\")"]
    (results_root / "ppo-smoke" / "eval.json").write_text("{not json")
    [problem] = results.check_result("ppo-smoke")
    assert "eval.json is not valid JSON" in problem
    (results_root / "ppo-smoke" / "eval.json").unlink()
    (results_root / "ppo-smoke" / "config.json").write_text("{")
    [problem] = results.check_result("ppo-smoke")
    assert "config.json is not valid JSON" in problem
    copy_result(results_root / "ppo-smoke", results_root / "empty", files=("provenance.json",))
    (results_root / "empty" / "config.json").write_text((results_root / "ppo-smoke" / "provenance.json")
                                                        .read_text())
    (results_root / "empty" / "progress.csv").write_text("")
    assert any("no rows" in p for p in results.check_result("empty"))


def test_missing_commit_machine_or_unfinished_status_is_caught(results_root):
    edit_json(results_root / "ppo-smoke" / "provenance.json", git=None, cpu_model="", status="interrupted")
    problems = "\n".join(results.check_result("ppo-smoke"))
    assert "names no git commit" in problems and "cpu_model" in problems and "'interrupted'" in problems


def write_notebook(path: Path, *cells: str) -> Path:
    nb = {"cells": [{"cell_type": "code", "source": c.splitlines(keepends=True), "metadata": {},
                     "outputs": [], "execution_count": None} for c in cells]
          + [{"cell_type": "markdown", "source": ['load_result("only-in-prose")'], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def test_dangling_references_are_caught(results_root, tmp_path):
    nb = write_notebook(
        tmp_path / "ch.ipynb",
        'r = load_result("ppo-smoke")\nr.progress',                         # fine
        'r = load_result("ppo-smoke")\nprint(r.eval["episode_return"])',    # needs eval.json: missing
        "r = load_result('maml-nowhere')",                                  # no such result
        'pd.read_csv("results/ppo-smoke/progress.csv")',                    # fine
        'open("../results/ppo-smoke/search.json")',                         # no such file
        'r = load_result("ppo-smoke")\nr.evaluate()',                       # a method, not .eval: fine
    )
    refs = results.notebook_references([nb])
    assert [(r.cell, r.name) for r in refs] == [(0, "ppo-smoke"), (1, "ppo-smoke"), (2, "maml-nowhere"),
                                                (3, "ppo-smoke"), (4, "ppo-smoke"), (5, "ppo-smoke")]
    problems = {r.cell: results.check_reference(r) for r in refs}
    assert problems[0] == problems[3] == problems[5] == []
    assert problems[1] == [f"{nb} cell 1 reads ppo-smoke/eval.json, which does not exist"]
    assert "reads result 'maml-nowhere'" in problems[2][0] and "ppo-smoke" in problems[2][0]
    assert problems[4] == [f"{nb} cell 4 reads ppo-smoke/search.json, which does not exist"]
    (results_root / "ppo-smoke" / "eval.json").write_text("{}")
    assert results.check_reference(refs[1]) == []


def test_a_stale_readme_index_is_caught(results_root, smoke_run, capsys):
    readme = results_root / "README.md"
    readme.write_text(f"# Results\n\n{results.INDEX_BEGIN}\n{results.INDEX_END}\n\nmore text\n")
    assert results.readme_with_index(readme.read_text(), results.index_table()) != readme.read_text()
    assert results.main(["--write-readme"]) == 0
    text = readme.read_text()
    assert results.readme_with_index(text, results.index_table()) == text and text.endswith("more text\n")
    row = ("| ppo-smoke | `meta-rl train ppo --env CartPole-v1 --budget smoke --seed 4 --threads 1` "
           "| smoke | 4 |")
    assert row in text
    copy_result(smoke_run, results_root / "ppo-smoke-2")  # a new result makes the table stale again
    assert results.readme_with_index(text, results.index_table()) != text
    with pytest.raises(ValueError, match="no index markers"):
        results.readme_with_index("# no markers\n", "")


def test_equivalent_settings_match_and_others_do_not():
    """fvp_method 'factorized' (how the recorded MAML runs were made) and 'analytic' (today's default)
    compute the same products (tests/test_maml_curvature.py); 'direct' is not declared equivalent here, and
    no other field is."""
    a = {"fvp_method": "analytic", "inner_lr": 0.1}
    assert results._same_config(a, {**a, "fvp_method": "factorized"})
    assert not results._same_config(a, {**a, "fvp_method": "direct"})
    assert not results._same_config(a, {**a, "inner_lr": 0.2})
    assert not results._same_config(a, {"fvp_method": "analytic"})
    assert not results._same_config({"estimator": "maml"}, {"estimator": "dice"})
