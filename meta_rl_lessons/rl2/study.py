"""The RL² recipe studies (chapter 4, "What the recipe needs"): definitions, and reading their results.

A study is a setting, a base recipe and *arms* that each change one thing of it; every (arm, seed) is trained
for the same number of environment steps, and its policy is evaluated every ``eval_every`` iterations on the
study's fixed *curve tasks*. ``tools/rl2_study.py run STUDY`` trains them (two processes at a time on two
cores) into ``results/rl2-study/STUDY/ARM-sSEED.{csv,json}``; :func:`load_study` reads them back for the
chapter's curves and table.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meta_rl_lessons.rl2.ppo import RL2Config, bandit_config, mdp_config

__all__ = ["EVAL_TASKS", "STUDIES", "TABLE_ROWS", "Study", "StudyError", "StudySpec", "curve_tasks",
           "load_study", "study_config", "table_command", "table_result_name"]

#: Where ``tools/rl2_study.py`` writes by default.
STUDY_DIR = Path(__file__).resolve().parents[2] / "results" / "rl2-study"


class StudyError(ValueError):
    """A study, arm or result that does not exist (the message names it and what is there)."""


@dataclass(frozen=True)
class StudySpec:
    """One study: ``setting`` is ``("bandit", n, k)`` or ``("mdp", n)``; ``base`` the recipe's
    :class:`~meta_rl_lessons.rl2.ppo.RL2Config` fields; ``arms`` name -> fields changed from ``base``
    (``"base"`` changes nothing); every run trains for ``env_steps`` environment steps."""

    setting: tuple
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    env_steps: int
    eval_every: int = 5
    curve_tasks: int = 500
    seeds: tuple[int, ...] = (0, 1, 2)
    notes: dict[str, str] = field(default_factory=dict)


#: The recipe for bandits with n = 100 pulls: 256 trials per iteration (25 600 steps), minibatches of 128
#: whole trials (a CPU GRU processes a trial about 1.6 times faster in a batch of 128 than of 32), 4 epochs,
#: Adam at 2e-3 decaying linearly to 0, gamma .99, lambda .95, entropy bonus .01, a GRU of 128.
BANDIT_BASE: dict[str, Any] = {"num_trials": 256, "num_minibatches": 2, "update_epochs": 4,
                               "hidden_size": 128, "learning_rate": 2e-3, "anneal_lr": True, "gamma": 0.99,
                               "gae_lambda": 0.95, "entropy_coef": 0.01}

#: The recipe for tabular MDPs (:data:`~meta_rl_lessons.rl2.ppo.MDP_DEFAULTS` as the study found them):
#: 512 trials (51 200 steps) per iteration in 8 minibatches of 64 trials, 4 epochs, Adam at 2e-3 (constant),
#: gamma .8, lambda .9, entropy bonus .01, a GRU of 128.
MDP_BASE: dict[str, Any] = {"num_trials": 512, "num_minibatches": 8, "update_epochs": 4, "hidden_size": 128,
                            "learning_rate": 2e-3, "anneal_lr": False, "gamma": 0.8, "gae_lambda": 0.9,
                            "entropy_coef": 0.01}

STUDIES: dict[str, StudySpec] = {
    "bandit-n100k5": StudySpec(
        setting=("bandit", 100, 5), base=BANDIT_BASE, env_steps=60 * 25_600,
        arms={"base": {},
              "hidden-256": {"hidden_size": 256},
              "trials-1024": {"num_trials": 1024, "num_minibatches": 8},
              "lr-constant": {"anneal_lr": False},
              "entropy-0": {"entropy_coef": 0.0},
              "lambda-1": {"gae_lambda": 1.0},
              "epochs-8": {"update_epochs": 8},
              "minibatches-8": {"num_minibatches": 8},
              "bptt-10": {"bptt": 10},
              # the two changes that helped, together (added after the first nine arms had run)
              "mb8-epochs8": {"num_minibatches": 8, "update_epochs": 8},
              "mb8-epochs8-lr-constant": {"num_minibatches": 8, "update_epochs": 8, "anneal_lr": False}}),
    "mdp-n10": StudySpec(
        setting=("mdp", 10), base=MDP_BASE, env_steps=30 * 51_200,
        arms={"base": {},
              "gamma-0.9": {"gamma": 0.9},
              "gamma-0.99": {"gamma": 0.99, "gae_lambda": 0.95}}),
}


def _spec(study: str) -> StudySpec:
    if study not in STUDIES:
        raise StudyError(f"unknown study {study!r}; allowed: {', '.join(STUDIES)}")
    return STUDIES[study]


def study_config(study: str, arm: str, seed: int) -> RL2Config:
    """The :class:`RL2Config` of one (arm, seed): the base recipe, the arm's change, and as many iterations
    as make ``env_steps`` at the arm's trials per iteration."""
    spec = _spec(study)
    if arm not in spec.arms:
        raise StudyError(f"unknown arm {arm!r} of {study}; allowed: {', '.join(spec.arms)}")
    fields = {**spec.base, **spec.arms[arm], "seed": seed}
    kind, n, *rest = spec.setting
    cfg = bandit_config(n, rest[0], **fields) if kind == "bandit" else mdp_config(n, **fields)
    # steps per trial from the config itself (episodes x the family's episode length), not assumed
    steps_per_trial = cfg.episodes_per_trial * int(cfg.family_kwargs.get("episode_length", 1))
    iterations = max(1, spec.env_steps // (cfg.num_trials * steps_per_trial))
    return dataclasses.replace(cfg, total_iterations=iterations)


def curve_tasks(study: str) -> list[Any]:
    """The fixed tasks every run of ``study`` is evaluated on during training (seed 555)."""
    from meta_rl_lessons.envs import BernoulliBanditFamily, TabularMDPFamily

    spec = _spec(study)
    kind, n, *rest = spec.setting
    family = BernoulliBanditFamily(rest[0], 1) if kind == "bandit" else TabularMDPFamily()
    return family.sample_tasks(spec.curve_tasks, 555)


@dataclass
class StudyRun:
    """One finished (arm, seed): its curve (``env_steps``, ``eval_return`` at the evaluated iterations) and
    its metadata (config, wall and training time, provenance)."""

    arm: str
    seed: int
    env_steps: np.ndarray
    eval_return: np.ndarray
    rows: list[dict[str, float]]
    meta: dict[str, Any]

    @property
    def final(self) -> float:
        return float(self.eval_return[-1])

    @property
    def seconds_per_million_steps(self) -> float:
        return self.meta["train_time"] / (self.env_steps[-1] / 1e6)


@dataclass
class Study:
    """The finished runs of one study, by arm."""

    name: str
    spec: StudySpec
    runs: dict[str, list[StudyRun]]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per arm: mean final evaluation over seeds, its standard error over seeds, the number of seeds and
        the mean training seconds per million environment steps."""
        out = {}
        for arm, runs in self.runs.items():
            finals = np.array([r.final for r in runs])
            se = float(finals.std(ddof=1) / math.sqrt(len(finals))) if len(finals) > 1 else float("nan")
            out[arm] = {"final": float(finals.mean()), "se": se, "seeds": len(finals),
                        "s_per_Msteps": float(np.mean([r.seconds_per_million_steps for r in runs]))}
        return out


    def provenance(self) -> Any:
        """The collapsed "How this was made" box of the study's figure and table: the command, the commits
        and machines the runs were made on, how many runs and when."""
        from meta_rl_lessons.book import Provenance, commit_text
        from meta_rl_lessons.results import machine_summary

        metas = [r.meta for runs in self.runs.values() for r in runs]
        commits = sorted({commit_text(m["provenance"].get("git")) for m in metas})
        machines = sorted({machine_summary(m["provenance"]) for m in metas})
        dates = sorted(m.get("started", m["provenance"].get("start_time", "")) for m in metas)
        fields = (("command", f"python tools/rl2_study.py run {self.name} --jobs 2"),
                  ("runs", f"{len(metas)} finished (arms x seeds), one torch thread each, two at a time"),
                  ("commit", "; ".join(commits)), ("machine", "; ".join(machines)),
                  ("dates", f"{dates[0][:16]} to {dates[-1][:16]} UTC"))
        return Provenance(entries=((f"results/rl2-study/{self.name}", fields),))


def load_study(study: str, root: str | Path | None = None) -> Study:
    """The finished runs of ``study`` under ``root`` (default ``results/rl2-study``), in the order of its
    arms; an arm with no finished seed is left out.

    Raises:
        StudyError: an unknown study, or no finished run at all (naming the folder).
    """
    spec = _spec(study)
    d = Path(root or STUDY_DIR) / study
    runs: dict[str, list[StudyRun]] = {}
    for arm in spec.arms:
        for seed in spec.seeds:
            meta_path = d / f"{arm}-s{seed}.json"
            if not meta_path.is_file():
                continue
            with open(d / f"{arm}-s{seed}.csv") as f:
                rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
            evaluated = [r for r in rows if math.isfinite(r["eval_return"])]
            runs.setdefault(arm, []).append(StudyRun(
                arm, seed, np.array([r["env_steps"] for r in evaluated]),
                np.array([r["eval_return"] for r in evaluated]), rows, json.loads(meta_path.read_text())))
    if not runs:
        raise StudyError(f"no finished run of study {study!r} in {d} (run `python tools/rl2_study.py run "
                         f"{study}`)")
    return Study(study, spec, runs)


# ============================================================================ the paper's tables
#: Held-out tasks of every table run's ``meta-rl eval`` (drawn from the whole task distribution, seed 10000).
EVAL_TASKS = 1000

#: One ``meta-rl train rl2 --budget book`` command per row of Duan et al.'s Tables 1 and 2: the environment
#: and the ``--set`` fields beside the family's recipe (``rl2.ppo.FAMILY_RECIPES``).
TABLE_ROWS: dict[str, dict[str, Any]] = {
    "n10k5": {"env": "MetaRL/BernoulliBandit-v0", "paper": ("bandit", 10, 5),
              "set": {"episodes_per_trial": 10, "num_trials": 1024, "total_iterations": 100}},
    "n10k10": {"env": "MetaRL/BernoulliBandit-v0", "paper": ("bandit", 10, 10),
               "set": {"episodes_per_trial": 10, "num_trials": 1024, "total_iterations": 100,
                       "family_kwargs": {"num_arms": 10, "episode_length": 1}}},
    "n100k5": {"env": "MetaRL/BernoulliBandit-v0", "paper": ("bandit", 100, 5),
               "set": {"episodes_per_trial": 100, "total_iterations": 120}},
    "n100k10": {"env": "MetaRL/BernoulliBandit-v0", "paper": ("bandit", 100, 10),
                "set": {"episodes_per_trial": 100, "total_iterations": 120,
                        "family_kwargs": {"num_arms": 10, "episode_length": 1}}},
    "mdp-n10": {"env": "MetaRL/TabularMDP-v0", "paper": ("mdp", 10),
                "set": {"episodes_per_trial": 10, "total_iterations": 100}},
    "mdp-n25": {"env": "MetaRL/TabularMDP-v0", "paper": ("mdp", 25),
                "set": {"episodes_per_trial": 25, "total_iterations": 40}},
}


def _table_row(row: str) -> dict[str, Any]:
    if row not in TABLE_ROWS:
        raise StudyError(f"unknown table row {row!r}; allowed: {', '.join(TABLE_ROWS)}")
    return TABLE_ROWS[row]


def table_result_name(row: str, seed: int) -> str:
    """``results/`` name of a table run: ``rl2-BernoulliBandit-n100k5-s0``, ``rl2-TabularMDP-n10-s1``."""
    family = _table_row(row)["env"].split("/")[1].removesuffix("-v0")
    return f"rl2-{family}-{row.removeprefix('mdp-')}-s{seed}"


def table_command(row: str, seed: int, out: str | None = None) -> list[str]:
    """The ``meta-rl train`` command line (a list of arguments) of one table row and seed."""
    r = _table_row(row)
    cmd = ["meta-rl", "train", "rl2", "--env", r["env"], "--budget", "book", "--seed", str(seed),
           "--threads", "1", "--no-progress"]
    for key, value in r["set"].items():
        cmd += ["--set", f"{key}={json.dumps(value) if isinstance(value, dict) else value}"]
    return cmd + (["--out", out] if out else [])
