r"""Exercises of the RL² chapter: the RL² input sequence, and the UCB1 arm choice.

================================  ===================================================  =======================
exercise                          compared with                                        in chapter 4 (RL²)
================================  ===================================================  =======================
:func:`rl2_inputs_template`       what :class:`meta_rl_lessons.envs.rl2.RL2BatchedEnv`  the RL² policy's input
                                  feeds the policy on real tabular-MDP trials
:func:`ucb1_template`             :func:`meta_rl_lessons.rl2.baselines.ucb1_rule`       the UCB1 baseline
================================  ===================================================  =======================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.envs.rl2 import RL2BatchedEnv
from meta_rl_lessons.envs.tabular_mdp import TabularMDPFamily
from meta_rl_lessons.exercises.report import (
    Case,
    CheckReport,
    StudentError,
    call,
    compare,
    run_case,
)
from meta_rl_lessons.rl2.baselines import ucb1_rule, ucb1_scores

__all__ = [
    "check_rl2_inputs",
    "check_ucb1",
    "reference_rl2_inputs",
    "reference_ucb1",
    "rl2_inputs_template",
    "ucb1_template",
]


# ============================================================================ RL² inputs
def rl2_inputs_template(
    observations: Tensor,
    actions: Tensor,
    rewards: Tensor,
    episode_ends: Tensor,
    trial_starts: Tensor,
    num_actions: int,
) -> Tensor:
    r"""The inputs :math:`x_t = [s_t, \mathrm{onehot}(a_{t-1}), r_{t-1}, d_{t-1}]` of the RL² policy
    (the RL² policy's input of chapter 4), for recorded trials.

    Each column holds one or more *trials* back to back (a new trial is a new task: nothing carries over from
    the previous one). Within a trial, episodes follow each other; ``d_{t-1} = 1`` on the first step of every
    episode except the trial's first. At the first step of a trial, the previous action, reward and done flag
    are all zero (there is no previous step).

    Args:
        observations: ``[T, B, obs_dim]`` float, :math:`s_t` (after any reset: the first observation of the
            new episode at an episode start).
        actions: ``[T, B]`` int64 in ``[0, num_actions)``, :math:`a_t`.
        rewards: ``[T, B]`` float, :math:`r_t`.
        episode_ends: ``[T, B]`` bool, step ``t`` ended an episode.
        trial_starts: ``[T, B]`` bool, step ``t`` is the first step of a trial (always true at ``t = 0``).
        num_actions: size of the one-hot action part.

    Returns:
        ``[T, B, obs_dim + num_actions + 2]``, dtype of ``observations``; layout
        ``[obs | one-hot previous action | previous reward | previous done]``.
    """
    raise NotImplementedError(
        "exercise: build the RL² inputs (the policy's input of chapter 4), then run "
        "rl2.check_rl2_inputs(your_function)"
    )


def reference_rl2_inputs(
    observations: Tensor,
    actions: Tensor,
    rewards: Tensor,
    episode_ends: Tensor,
    trial_starts: Tensor,
    num_actions: int,
) -> Tensor:
    """A vectorised construction of the same layout; the check compares with the environment's own output."""
    T, B = rewards.shape
    keep = (~trial_starts[1:]).to(observations.dtype)  # 0 where row t starts a trial
    prev_a = torch.zeros(T, B, num_actions, dtype=observations.dtype, device=observations.device)
    prev_a[1:] = (
        torch.nn.functional.one_hot(actions[:-1].long(), num_actions).to(observations.dtype) * keep[..., None]
    )
    prev_r = torch.zeros_like(rewards, dtype=observations.dtype)
    prev_r[1:] = rewards[:-1].to(observations.dtype) * keep
    prev_d = torch.zeros_like(prev_r)
    prev_d[1:] = episode_ends[:-1].to(observations.dtype) * keep
    return torch.cat([observations, prev_a, prev_r[..., None], prev_d[..., None]], dim=-1)


@dataclass
class _Trials:
    """Recorded trials: the student's inputs and the environment's augmented observations."""

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    episode_ends: Tensor
    trial_starts: Tensor
    env_inputs: Tensor
    num_actions: int


def _run_trial(family: TabularMDPFamily, episodes: int, seed: int) -> dict[str, Tensor]:
    """One trial of ``episodes`` episodes on one task, random actions, through :class:`RL2BatchedEnv`."""
    rng = np.random.default_rng(seed)
    env = RL2BatchedEnv(family.make_batched(1, 1, seed=seed), episodes)
    env.set_tasks(family.sample_tasks(1, rng))
    x = env.reset()
    gen = torch.Generator().manual_seed(seed)
    rec: dict[str, list[Tensor]] = {k: [] for k in ("x", "a", "r", "end")}
    for _ in range(env.max_episode_steps):
        a = torch.randint(0, family.num_actions, (1, 1), generator=gen)
        x_next, r, term, trunc = env.step(a)
        # an inner episode ended at this step: the env restarted it (done flag in x_next) or the trial ended
        end = (x_next[..., -1] > 0.5) | term | trunc
        rec["x"].append(x)
        rec["a"].append(a)
        rec["r"].append(r)
        rec["end"].append(end)
        x = x_next
        if bool((term | trunc).all()):
            break
    return {k: torch.cat(v, 0).reshape(len(v), *v[0].shape[2:]) for k, v in rec.items()}


def _make_trials(
    columns: list[list[tuple[int, int]]], num_states: int, num_actions: int, seed: int
) -> _Trials:
    """``columns[b]`` lists ``(episodes, horizon)`` of the trials in column ``b``, back to back."""
    cols = []
    k = 0
    for trials in columns:
        parts = []
        for episodes, horizon in trials:
            family = TabularMDPFamily(num_states, num_actions, horizon)
            run = _run_trial(family, episodes, seed * 1000 + k)
            k += 1
            start = torch.zeros(run["a"].shape[0], dtype=torch.bool)
            start[0] = True
            parts.append({**run, "start": start})
        cols.append({key: torch.cat([p[key] for p in parts], 0) for key in parts[0]})
    lengths = {c["a"].shape[0] for c in cols}
    if len(lengths) != 1:
        raise ValueError(f"columns of different lengths {sorted(lengths)}")
    stack = lambda key: torch.stack([c[key] for c in cols], 1)  # noqa: E731
    x = stack("x")
    obs_dim = num_states
    return _Trials(
        x[..., :obs_dim].clone(), stack("a"), stack("r"), stack("end"), stack("start"), x, num_actions
    )


def _rl2_part(index: int, obs_dim: int, num_actions: int) -> str:
    if index < obs_dim:
        return f"the observation part (entry {index})"
    if index < obs_dim + num_actions:
        return f"the one-hot previous action (action {index - obs_dim})"
    return "the previous reward" if index == obs_dim + num_actions else "the done flag"


def _rl2_diagnosis(got: Tensor, tr: _Trials) -> str:
    want = tr.env_inputs
    T, B, D = want.shape
    obs_dim, A = tr.observations.shape[-1], tr.num_actions
    bad = ~((got - want).abs() <= 1e-6)
    t, b, i = (int(v) for v in bad.nonzero()[0])
    if bool(tr.trial_starts[t, b]) and t > 0:
        where = f"t={t}, the first step of a new trial (a new task) in column b={b}"
    elif t == 0:
        where = f"t=0, the first step of the first trial in column b={b}"
    elif bool(tr.episode_ends[t - 1, b]):
        where = f"t={t}, the first step of a new episode inside a trial in column b={b}"
    else:
        where = f"t={t} inside an episode, column b={b}"
    lines = [
        f"first wrong entry: {_rl2_part(i, obs_dim, A)} at {where} (got {float(got[t, b, i]):.4g}, "
        f"expected {float(want[t, b, i]):.4g})"
    ]
    # named mistakes: recompute with one rule changed and compare the whole output
    no_start = torch.zeros_like(tr.trial_starts)
    no_start[0] = True
    variants = [
        (
            "the previous action, reward and done flag are not reset at the start of a trial: a new "
            "trial is a "
            "new task, and nothing from the previous trial may leak into it",
            reference_rl2_inputs(tr.observations, tr.actions, tr.rewards, tr.episode_ends, no_start, A),
        ),
        (
            "you use the current step's action, reward and done flag: x_t holds a_{t−1}, r_{t−1}, "
            "d_{t−1} (the "
            "policy cannot see the reward of an action it has not taken yet)",
            _current_step_variant(tr),
        ),
    ]
    for message, variant in variants:
        if variant.shape == got.shape and bool(((got - variant).abs() <= 1e-6).all()):
            lines.insert(0, f"looks like: {message}")
            break
    else:
        part = _rl2_part(i, obs_dim, A)
        if "done" in part and bool(tr.trial_starts[t, b]):
            lines.append(
                "the done flag is 0 at the start of a trial (only episodes *inside* a trial announce "
                "themselves with d = 1)"
            )
        elif "reward" in part or "action" in part:
            if bool(tr.trial_starts[t, b]):
                what = "reward" if "reward" in part else "action"
                lines.append(
                    f"the previous {what} is not reset at the start of a trial: a new trial is a new task, "
                    "and its first step has previous action, reward and done flag all zero"
                )
        if (
            "reward" in part
            and not bool(tr.trial_starts[t, b])
            and abs(float(got[t, b, D - 1]) - float(want[t, b, D - 2])) < 1e-6
        ):
            lines.append(
                "the reward and done entries look swapped: the layout is [obs | one-hot action | "
                "reward | done]"
            )
    return "\n".join(lines)


def _current_step_variant(tr: _Trials) -> Tensor:
    A = tr.num_actions
    x = tr.observations
    a = torch.nn.functional.one_hot(tr.actions.long(), A).to(x.dtype)
    return torch.cat([x, a, tr.rewards.to(x.dtype)[..., None], tr.episode_ends.to(x.dtype)[..., None]], -1)


def check_rl2_inputs(student: Callable[..., Tensor], *, seed: int = 0) -> CheckReport:
    """Check an RL² input construction (signature of :func:`rl2_inputs_template`) against the augmented
    observations that :class:`~meta_rl_lessons.envs.rl2.RL2BatchedEnv` produced on real tabular-MDP trials
    (random actions). Columns hold one or several trials of different episode counts and horizons, so trial
    starts, episode starts and ordinary steps fall on different rows."""
    specs: list[tuple[str, list[list[tuple[int, int]]], int, int]] = [
        (
            "B=2 columns, one trial each of 3 episodes x 3 steps; 4 states, 3 actions",
            [[(3, 3)], [(3, 3)]],
            4,
            3,
        ),
        (
            "B=3, two trials per column back to back (2x3 + 3x2 | 3x2 + 2x3 | 1x6 + 2x3 steps); 5 states, "
            "2 actions",
            [[(2, 3), (3, 2)], [(3, 2), (2, 3)], [(1, 6), (2, 3)]],
            5,
            2,
        ),
        (
            "B=2, three short trials per column (episodes of 1 to 2 steps); 3 states, 4 actions",
            [[(2, 1), (1, 2), (2, 2)], [(1, 2), (2, 2), (2, 1)]],
            3,
            4,
        ),
        (
            "B=1, one trial of 5 episodes x 2 steps; 2 states, 5 actions (one-hot size differs from obs_dim)",
            [[(5, 2)]],
            2,
            5,
        ),
    ]
    report = CheckReport(
        "RL² inputs (the policy's input of chapter 4)",
        "meta_rl_lessons.envs.rl2.RL2BatchedEnv (its observations on real trials)",
    )
    for i, (desc, columns, S, A) in enumerate(specs):
        tr = _make_trials(columns, S, A, seed * 10 + i)

        def body(desc=desc, tr=tr) -> Case:
            want = tr.env_inputs
            out = call(
                student,
                tr.observations.clone(),
                tr.actions.clone(),
                tr.rewards.clone(),
                tr.episode_ends.clone(),
                tr.trial_starts.clone(),
                tr.num_actions,
            )
            if not isinstance(out, Tensor):
                raise StudentError(f"expected a tensor, got {type(out).__name__}")
            obs_dim = tr.observations.shape[-1]
            if tuple(out.shape[:-1]) == tuple(want.shape[:-1]) and out.shape[-1] != want.shape[-1]:
                raise StudentError(
                    f"your inputs have {out.shape[-1]} features per step, expected obs_dim + "
                    "num_actions + 2 = "
                    f"{obs_dim} + {tr.num_actions} + 2 = {want.shape[-1]} (is the one-hot of size "
                    "num_actions?)"
                )
            if tuple(out.shape) != tuple(want.shape):
                raise StudentError(f"your inputs have shape {tuple(out.shape)}, expected {tuple(want.shape)}")
            if out.dtype != want.dtype:
                raise StudentError(
                    f"your inputs have dtype {out.dtype}, expected {want.dtype} (observations')"
                )
            got = out.detach()
            ok, err_abs, err_rel = compare(got, want, 1e-6, 0.0)
            return Case(desc, ok, err_abs, err_rel, "" if ok else _rl2_diagnosis(got, tr))

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ UCB1
def ucb1_template(successes: np.ndarray, failures: np.ndarray, t: int, c: float = 1.0) -> np.ndarray:
    r"""UCB1's choice of arm for ``M`` Bernoulli bandits at once (chapter 4, the UCB1 baseline).

    During the first ``k`` pulls (``t < k``) pull every arm once, in order: arm ``t``. Afterwards pull
    :math:`\arg\max_i \bar x_i + c\sqrt{2\ln t / N_i}` with the empirical mean :math:`\bar x_i = s_i / N_i`,
    :math:`N_i = s_i + f_i` pulls of arm ``i`` and ``t`` pulls so far in total. Ties may be broken any way.

    Args:
        successes, failures: ``[M, k]`` float counts :math:`s_i`, :math:`f_i` per task and arm.
        t: number of pulls so far (the same for every task), ``t = N.sum(1)``.
        c: exploration scale (``c = 1`` is Auer et al.'s rule).

    Returns:
        arms ``[M]`` (integers).
    """
    raise NotImplementedError("exercise: implement UCB1's arm choice, then run rl2.check_ucb1(your_function)")


def reference_ucb1(successes: np.ndarray, failures: np.ndarray, t: int, c: float = 1.0) -> np.ndarray:
    """The package's :func:`~meta_rl_lessons.rl2.baselines.ucb1_rule` (ties broken at random, seed 0)."""
    return ucb1_rule(c)(successes, failures, t, np.random.default_rng(0))


def _acceptable(s: np.ndarray, f: np.ndarray, t: int, c: float) -> list[set[int]]:
    """For every task, the set of arms UCB1 may pull (several when scores tie)."""
    k = s.shape[1]
    if t < k:
        return [{t} for _ in range(s.shape[0])]
    scores = ucb1_scores(s, f, t, c)
    best = scores.max(1, keepdims=True)
    return [set(np.flatnonzero(row >= b - 1e-12).tolist()) for row, b in zip(scores, best, strict=True)]


def _ucb_counts(rng: np.random.Generator, M: int, k: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``t`` pulls spread over ``k`` arms (each arm at least once when ``t >= k``)."""
    s, f = np.zeros((M, k)), np.zeros((M, k))
    p = rng.random((M, k))
    for m in range(M):
        pulls = np.zeros(k, dtype=int)
        if t >= k:
            pulls += 1
            extra = rng.multinomial(t - k, rng.dirichlet(np.ones(k)))
            pulls += extra
        else:
            pulls[:t] = 1
        wins = rng.binomial(pulls, p[m])
        s[m], f[m] = wins, pulls - wins
    return s, f


def check_ucb1(student: Callable[..., np.ndarray], *, seed: int = 0, num_random: int = 3) -> CheckReport:
    """Check a UCB1 arm choice (signature of :func:`ucb1_template`): every task's arm must maximise the UCB1
    score (any of the tied arms is accepted), and the first ``k`` pulls go to arms ``0, 1, ..., k - 1``."""
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, np.ndarray, np.ndarray, int, float]] = []
    s, f = _ucb_counts(rng, 6, 5, 2)
    specs.append(("initial round: t=2 of k=5 arms pulled once each so far: pull arm 2", s, f, 2, 1.0))
    s, f = _ucb_counts(rng, 8, 5, 30)
    specs.append(("M=8 tasks, k=5 arms, t=30 pulls, c=1", s, f, 30, 1.0))
    s = np.array([[3.0, 0.0, 9.0], [3.0, 3.0, 3.0]])
    f = np.array([[1.0, 1.0, 7.0], [4.0, 4.0, 4.0]])
    specs.append(
        (
            "t=21: an arm pulled once with mean 0 beats arms with means 0.75 and 0.56 (task 0); "
            "all arms tied (task 1: any arm is fine)",
            s,
            f,
            21,
            1.0,
        )
    )
    s = np.array([[8.0, 5.0, 0.0, 1.0]])
    f = np.array([[2.0, 15.0, 1.0, 0.0]])
    specs.append(
        (
            "c=0: the largest empirical mean s/N (1/1 beats 8/10; the posterior mean (1+s)/(2+N) "
            "would pick 8/10)",
            s,
            f,
            32,
            0.0,
        )
    )
    s, f = _ucb_counts(rng, 6, 4, 40)
    specs.append(("M=6, k=4, t=40, c=2 (more exploration)", s, f, 40, 2.0))
    for _ in range(num_random):
        k = int(rng.integers(2, 8))
        t = int(rng.integers(k, 60))
        c = float(rng.choice([0.5, 1.0, 1.5]))
        s, f = _ucb_counts(rng, 10, k, t)
        specs.append((f"random: M=10, k={k}, t={t}, c={c}", s, f, t, c))
    # the fixed cases' totals must be the t they claim
    for desc, s, f, t, _ in specs:
        if not np.all((s + f).sum(1) == t):
            raise AssertionError(f"internal: counts of {desc!r} do not sum to t={t}")
    report = CheckReport("UCB1 arm choice (chapter 4)", "meta_rl_lessons.rl2.baselines.ucb1_rule")
    for desc, s, f, t, c in specs:

        def body(desc=desc, s=s, f=f, t=t, c=c) -> Case:
            ok_sets = _acceptable(s, f, t, c)
            ref = ucb1_rule(c)(s, f, t, np.random.default_rng(0))
            if any(int(a) not in ok for a, ok in zip(ref, ok_sets, strict=True)):
                raise AssertionError("internal: the package's UCB1 disagrees with the UCB1 formula")
            with np.errstate(divide="ignore", invalid="ignore"):
                out = call(student, s.copy(), f.copy(), t, c)
            try:
                arms = np.asarray(out).reshape(-1)
            except Exception as err:  # any unusable return value
                raise StudentError(
                    f"expected an array of {s.shape[0]} arms, got {type(out).__name__}"
                ) from err
            if arms.shape != (s.shape[0],):
                raise StudentError(f"expected {s.shape[0]} arms (one per task), got shape {np.shape(out)}")
            if not np.issubdtype(arms.dtype, np.integer):
                if not np.all(np.isfinite(arms.astype(float))) or not np.all(arms == np.round(arms)):
                    raise StudentError(f"arms must be integers, got {arms.tolist()}")
                arms = arms.astype(int)
            wrong = [m for m, (a, ok) in enumerate(zip(arms, ok_sets, strict=True)) if int(a) not in ok]
            if not wrong:
                return Case(desc, True)
            m = wrong[0]
            n = s[m] + f[m]
            lines = [
                f"task {m}: you pulled arm {int(arms[m])}, UCB1 pulls {sorted(ok_sets[m])} "
                f"(successes {s[m].astype(int).tolist()}, pulls {n.astype(int).tolist()}, t={t}, c={c})"
            ]
            if t < s.shape[1]:
                lines.append(
                    "during the first k pulls UCB1 pulls every arm once, in order (arm t): the bonus "
                    "is infinite for an arm never pulled"
                )
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    alts = [
                        (
                            "the posterior mean (1+s)/(2+N) instead of the empirical mean s/N",
                            (1 + s) / (2 + s + f) + c * np.sqrt(2 * math.log(t) / (s + f)),
                        ),
                        (
                            "a bonus c·sqrt(ln t / N) without the factor 2",
                            s / (s + f) + c * np.sqrt(math.log(t) / (s + f)),
                        ),
                        ("a bonus that does not shrink with N_i", s / (s + f) + c * np.sqrt(2 * math.log(t))),
                        ("the arm with the *smallest* score", -ucb1_scores(s, f, t, c)),
                        (
                            "failures in place of successes",
                            f / (s + f) + c * np.sqrt(2 * math.log(t) / (s + f)),
                        ),
                    ]
                for message, scores in alts:
                    if np.all(arms == scores.argmax(1)) and not np.all(
                        [int(a) in ok for a, ok in zip(scores.argmax(1), ok_sets, strict=True)]
                    ):
                        lines.append(f"looks like: {message}")
                        break
                sc = ucb1_scores(s[m : m + 1], f[m : m + 1], t, c)[0]
                lines.append(f"UCB1 scores of task {m}: {[round(float(x), 4) for x in sc]}")
            return Case(
                desc, False, diagnosis="\n".join(lines) + f"\n({len(wrong)} of {s.shape[0]} tasks wrong)"
            )

        report.cases.append(run_case(desc, body))
    return report
