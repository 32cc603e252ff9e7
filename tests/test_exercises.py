"""Exercises that check themselves: every ``check_*`` passes the package's reference, fails realistic student
bugs with a report naming the problem, survives a function that raises, and passes the solutions printed in
the chapters' ``{solution}`` dropdowns."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES
from torch.func import functional_call

from meta_rl_lessons.adaptive.pbt import PBTConfig, pbt
from meta_rl_lessons.adaptive.space import Float, SearchSpace
from meta_rl_lessons.adaptive.successive_halving import SuccessiveHalvingConfig, successive_halving
from meta_rl_lessons.exercises import CHECKS, CheckReport, ExerciseFailed, adaptive, drl, maml, maml_rl, rl2
from meta_rl_lessons.exercises.report import Case

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
TENSOR_CHECKS = {
    "drl.check_gae",
    "drl.check_line_search",
    "drl.check_ppo_clip_loss",
    "maml.check_inner_step",
    "maml.check_reptile_update",
    "maml_rl.check_magic_box",
    "maml_rl.check_inner_loss",
}


# ============================================================================ the references pass
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_reference_passes(name):
    check, reference = CHECKS[name]
    report = check(reference)
    assert isinstance(report, CheckReport)
    assert report.passed, str(report)
    assert len(report.cases) >= 4  # edge cases, not a single input
    report.raise_if_failed()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(TENSOR_CHECKS))
def test_reference_passes_on_device(name, device):
    check, reference = CHECKS[name]
    assert check(reference, device=device).passed


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_a_function_that_raises_fails_with_its_message(name):
    check, _ = CHECKS[name]

    def broken(*args, **kwargs):
        raise ValueError("student bug 1234")

    report = check(broken)
    assert not report.passed
    assert "ValueError" in str(report) and "student bug 1234" in str(report)
    assert "broken" in str(report)  # where it was raised
    with pytest.raises(ExerciseFailed, match="student bug 1234"):
        report.raise_if_failed()


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_templates_fail_with_not_implemented(name):
    module, check_name = name.split(".")
    mod = {"drl": drl, "maml": maml, "maml_rl": maml_rl, "rl2": rl2, "adaptive": adaptive}[module]
    templates = [getattr(mod, t) for t in mod.__all__ if t.endswith("_template")]
    check = getattr(mod, check_name)
    # the template belonging to this check: the one whose NotImplementedError names the check
    template = next(t for t in templates if check_name in _not_implemented_message(t))
    report = check(template)
    assert not report.passed and "NotImplementedError" in str(report)


def _not_implemented_message(fn) -> str:
    try:
        fn(*([None] * fn.__code__.co_argcount))
    except NotImplementedError as err:
        return str(err)
    return ""


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_checks_are_deterministic(name):
    check, reference = CHECKS[name]
    assert str(check(reference, seed=3)) == str(check(reference, seed=3))


# ============================================================================ chapter 1
def gae_ignores_done(r, v, nv, term, trunc, gamma, lam):
    adv, run = torch.zeros_like(r), torch.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] + gamma * nv[t] * (~term[t]) - v[t]
        run = delta + gamma * lam * run  # never reset at a boundary
        adv[t] = run
    return adv


def gae_reset_observation(r, v, nv, term, trunc, gamma, lam):
    adv, run = torch.zeros_like(r), torch.zeros_like(r[0])
    T = r.shape[0]
    for t in reversed(range(T)):
        v_next = v[t + 1] if t < T - 1 else nv[t]  # the next row: the reset observation at a boundary
        delta = r[t] + gamma * v_next * (~term[t]) - v[t]
        run = delta + gamma * lam * run * (~(term[t] | trunc[t]))
        adv[t] = run
    return adv


def gae_truncation_as_termination(r, v, nv, term, trunc, gamma, lam):
    done = term | trunc
    adv, run = torch.zeros_like(r), torch.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] + gamma * nv[t] * (~done[t]) - v[t]
        run = delta + gamma * lam * run * (~done[t])
        adv[t] = run
    return adv


def gae_gamma_only(r, v, nv, term, trunc, gamma, lam):
    adv, run = torch.zeros_like(r), torch.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] + gamma * nv[t] * (~term[t]) - v[t]
        run = delta + gamma * run * (~(term[t] | trunc[t]))  # forgot lambda
        adv[t] = run
    return adv


def gae_float32(r, v, nv, term, trunc, gamma, lam):
    return drl.reference_gae(r, v, nv, term, trunc, gamma, lam).float()


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (gae_ignores_done, "run across episode boundaries"),
        (gae_reset_observation, "reset* observation"),
        (gae_truncation_as_termination, "truncation like termination"),
        (gae_gamma_only, "by γ only"),
        (gae_float32, "dtype torch.float32"),
    ],
)
def test_gae_check_catches(wrong, words):
    report = drl.check_gae(wrong)
    assert not report.passed
    assert words in str(report), str(report)


def search_never_backtracks(evaluate, full_step, loss_before, max_kl, ratio=0.5, max_backtracks=10):
    return full_step.clone()


def search_ignores_kl(evaluate, full_step, loss_before, max_kl, ratio=0.5, max_backtracks=10):
    for i in range(max_backtracks):
        step = ratio**i * full_step
        loss, _ = evaluate(step)
        if loss < loss_before:
            return step
    return torch.zeros_like(full_step)


def search_not_strict(evaluate, full_step, loss_before, max_kl, ratio=0.5, max_backtracks=10):
    for i in range(max_backtracks):
        step = ratio**i * full_step
        loss, kl = evaluate(step)
        if kl <= max_kl and loss <= loss_before:
            return step
    return torch.zeros_like(full_step)


def search_returns_last_try(evaluate, full_step, loss_before, max_kl, ratio=0.5, max_backtracks=10):
    for i in range(max_backtracks):
        step = ratio**i * full_step
        loss, kl = evaluate(step)
        if kl <= max_kl and loss < loss_before:
            break
    return step


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (search_never_backtracks, "exceeds max_kl"),
        (search_ignores_kl, "exceeds max_kl"),
        (search_not_strict, "improvement is strict"),
        (search_returns_last_try, "must be zero"),
    ],
)
def test_line_search_check_catches(wrong, words):
    report = drl.check_line_search(wrong)
    assert not report.passed
    assert words in str(report), str(report)


def ppo_no_min(lp, old, adv, eps):
    return -((lp - old).exp().clamp(1 - eps, 1 + eps) * adv).mean()


def ppo_no_exp(lp, old, adv, eps):
    ratio = lp - old
    return -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()


def ppo_numpy(lp, old, adv, eps):
    ratio = np.exp(lp.detach().numpy() - old.numpy())
    a = adv.numpy()
    return torch.tensor(-np.minimum(ratio * a, np.clip(ratio, 1 - eps, 1 + eps) * a).mean())


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (ppo_no_min, "takes the minimum"),
        (ppo_no_exp, "exp(log π − log π_old)"),
        (ppo_numpy, "not differentiable"),
    ],
)
def test_ppo_check_catches(wrong, words):
    report = drl.check_ppo_clip_loss(wrong)
    assert not report.passed
    assert words in str(report), str(report)


def test_ppo_reference_matches_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    lp, old, adv = (torch.randn(9, generator=gen, dtype=torch.float64) for _ in range(3))
    eps = 0.2
    terms = []
    for i in range(9):
        ratio = math.exp(float(lp[i] - old[i]))
        clipped = min(max(ratio, 1 - eps), 1 + eps)
        terms.append(min(ratio * float(adv[i]), clipped * float(adv[i])))
    assert float(drl.reference_ppo_clip_loss(lp, old, adv, eps)) == pytest.approx(-sum(terms) / 9, rel=1e-12)


def test_gae_diagnosis_loop_is_the_reference_without_switches():
    # the plain loop behind the diagnoses is an independent GAE: with no mistake switched on it must agree
    gen = torch.Generator().manual_seed(1)
    inp = drl._gae_inputs(gen, 9, 3, [(2, 0), (8, 1)], [(4, 2), (6, 0)], torch.device("cpu"))
    loop = drl._gae_loop(*inp.values(), 0.9, 0.7)
    assert torch.allclose(loop, drl.reference_gae(*inp.values(), 0.9, 0.7), atol=1e-12)


# ============================================================================ chapter 2
def inner_step(model, params, x, y, lr, create_graph=True, sign=-1.0, reduce="mean"):
    err = (functional_call(model, params, (x,)) - y) ** 2
    loss = err.mean() if reduce == "mean" else err.sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {k: p + sign * lr * g for (k, p), g in zip(params.items(), grads, strict=True)}


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda *a: inner_step(*a, create_graph=False), "create_graph=True"),
        (lambda *a: inner_step(*a, sign=1.0), "stepped uphill"),
        (lambda *a: inner_step(*a, reduce="sum"), "*mean* squared error"),
        (lambda m, p, x, y, lr: {k: v.detach() for k, v in inner_step(m, p, x, y, lr).items()}, "detached"),
    ],
)
def test_inner_step_check_catches(wrong, words):
    report = maml.check_inner_step(wrong)
    assert not report.passed
    assert words in str(report), str(report)


def test_inner_step_solution_with_create_graph_passes():
    assert maml.check_inner_step(inner_step).passed


def reptile(model, params, x, y, lr, steps, eps, mode="ok"):
    phis, start = [], {k: v.detach() for k, v in params.items()}
    for i in range(x.shape[0]):
        p = dict(start) if mode != "sequential" else (phis[-1] if phis else dict(start))
        for _ in range(1 if mode == "one_step" else steps):
            p = {k: v.detach().requires_grad_(True) for k, v in p.items()}
            loss = ((functional_call(model, p, (x[i],)) - y[i]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(p.values()))
            p = {k: (v - lr * g).detach() for (k, v), g in zip(p.items(), grads, strict=True)}
        phis.append(p)
    direction = -1.0 if mode == "backwards" else 1.0
    return {
        k: start[k] + direction * eps * (torch.stack([ph[k] for ph in phis]).mean(0) - start[k])
        for k in start
    }


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("backwards", "move away from the tasks"),
        ("sequential", "must start from θ"),
        ("one_step", "one inner step"),
    ],
)
def test_reptile_check_catches(mode, words):
    assert maml.check_reptile_update(reptile).passed  # the student-style loop is right in mode "ok"
    report = maml.check_reptile_update(lambda *a: reptile(*a, mode=mode))
    assert not report.passed
    assert words in str(report), str(report)


# ============================================================================ chapter 2b
@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda x: 1 + x - x.detach(), "second derivative"),
        (lambda x: torch.exp(x) / torch.exp(x).detach(), "overflows or underflows"),
        (lambda x: torch.ones_like(x), "no gradient"),
        (lambda x: torch.exp(x.detach() - x), "−∇f"),
    ],
)
def test_magic_box_check_catches(wrong, words):
    report = maml_rl.check_magic_box(wrong)
    assert not report.passed
    assert words in str(report), str(report)


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda lp, a, m: -(lp * a * m).mean(dim=(1, 2)), "padding included"),
        (lambda lp, a, m: (lp * a * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)), "wrong sign"),
        (lambda lp, a, m: -(lp * a).sum(dim=(1, 2)) / m.sum(dim=(1, 2)), "multiply by the mask"),
        (lambda lp, a, m: -((lp * a * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2))).detach(), "not differentiable"),
    ],
)
def test_inner_loss_check_catches(wrong, words):
    report = maml_rl.check_inner_loss(wrong)
    assert not report.passed
    assert words in str(report), str(report)


# ============================================================================ chapter 3
def rl2_loop(
    obs,
    actions,
    rewards,
    ends,
    starts,
    num_actions,
    *,
    reset_at_trial=True,
    onehot=None,
    current=False,
    done_at_trial_start=False,
):
    T, B, _ = obs.shape
    n = num_actions if onehot is None else onehot
    out = torch.zeros(T, B, obs.shape[-1] + n + 2, dtype=obs.dtype)
    for b in range(B):
        prev_a, prev_r, prev_d = None, 0.0, 0.0
        for t in range(T):
            if bool(starts[t, b]):
                prev_d = 1.0 if (done_at_trial_start and t > 0) else 0.0
                if reset_at_trial:
                    prev_a, prev_r = None, 0.0
            out[t, b, : obs.shape[-1]] = obs[t, b]
            a, r, d = (
                (actions[t, b], rewards[t, b], float(ends[t, b])) if current else (prev_a, prev_r, prev_d)
            )
            if a is not None:
                out[t, b, obs.shape[-1] + int(a)] = 1.0
            out[t, b, -2], out[t, b, -1] = r, d
            prev_a, prev_r, prev_d = actions[t, b], float(rewards[t, b]), float(ends[t, b])
    return out


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(reset_at_trial=False), "not reset at the start of a trial"),
        (dict(onehot=4), "one-hot of size num_actions"),
        (dict(current=True), "current step's action"),
        (dict(done_at_trial_start=True), "done flag is 0 at the start of a trial"),
    ],
)
def test_rl2_inputs_check_catches(kwargs, words):
    assert rl2.check_rl2_inputs(rl2_loop).passed  # the loop is right without a mistake switched on
    report = rl2.check_rl2_inputs(lambda *a: rl2_loop(*a, **kwargs))
    assert not report.passed
    assert words in str(report), str(report)


def ucb(s, f, t, c=1.0, mean="empirical", two=2.0, pick=np.argmax):
    k = s.shape[1]
    if t < k:
        return np.full(s.shape[0], t)
    n = s + f
    m = s / n if mean == "empirical" else (1 + s) / (2 + n)
    return pick(m + c * np.sqrt(two * math.log(t) / n), axis=1)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(mean="posterior"), "posterior mean"),
        (dict(two=1.0), "without the factor 2"),
        (dict(pick=np.argmin), "*smallest* score"),
    ],
)
def test_ucb1_check_catches(kwargs, words):
    assert rl2.check_ucb1(ucb).passed
    report = rl2.check_ucb1(lambda *a: ucb(*a, **kwargs))
    assert not report.passed
    assert words in str(report), str(report)


# ============================================================================ chapter 4
def exploit(scores, q, rng, *, donors="top", nan="low", size="ceil"):
    s = np.asarray(scores, dtype=float)
    if nan == "low":
        s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(s, kind="stable")  # ascending: worst first (NaN last unless replaced)
    n = min(math.ceil(q * len(s)), len(s) // 2) if size == "ceil" else int(q * len(s))
    bottom, top = order[:n], order[len(s) - n :]
    pool = {"top": top, "bottom": bottom, "best": top[-1:]}[donors]
    return {int(i): int(pool[rng.integers(len(pool))]) for i in bottom}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(donors="bottom"), "not in the top quantile"),
        (dict(nan="argsort"), "NaN score must rank below every number"),
        (dict(donors="best"), "whole top quantile"),
        (dict(size="floor"), "rounded down"),
    ],
)
def test_pbt_exploit_check_catches(kwargs, words):
    assert adaptive.check_pbt_exploit(exploit).passed
    report = adaptive.check_pbt_exploit(lambda *a: exploit(*a, **kwargs))
    assert not report.passed
    assert words in str(report), str(report)


def promote(ids, scores, eta, *, order="best", count="floor", at_least_one=True, positions=False):
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=float))
    ranked = np.argsort(-s, kind="stable") if order == "best" else np.argsort(s, kind="stable")
    m = len(ids) // eta if count == "floor" else math.ceil(len(ids) / eta)
    m = max(1, m) if at_least_one else m
    return [int(j) if positions else ids[j] for j in ranked[:m]]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(order="worst"), "*worst*"),
        (dict(count="ceil"), "ceil(m/η)"),
        (dict(at_least_one=False), "keep at least one"),
        (dict(positions=True), "positions in the list"),
    ],
)
def test_promote_check_catches(kwargs, words):
    assert adaptive.check_promote(promote).passed
    report = adaptive.check_promote(lambda *a: promote(*a, **kwargs))
    assert not report.passed
    assert words in str(report), str(report)


class _Fixed:
    """A trainable whose score is its parameter ``x`` plus a small step-dependent term (distinct scores)."""

    def __init__(self, params, seed=0):
        self.params, self.seed, self.steps_done, self.curve = dict(params), seed, 0, []

    def train(self, steps):
        self.steps_done += steps
        rows = [{"step": self.steps_done, "score": self.score()}]
        self.curve += rows
        return rows

    def score(self):
        return math.sin(5 * self.params["x"]) + 0.01 * math.log(self.steps_done)

    def set_hyperparameters(self, params):
        self.params.update(params)

    def state_dict(self):
        return {
            "params": self.params,
            "seed": self.seed,
            "learner": {"steps": self.steps_done},
            "curve": self.curve,
        }

    def load_state_dict(self, state):
        self.params, self.steps_done = dict(state["params"]), int(state["learner"]["steps"])
        self.curve = list(state["curve"])


def test_reference_promote_matches_a_real_successive_halving_run(tmp_path):
    space = SearchSpace([Float("x", -2.0, 2.0)])
    res = successive_halving(
        space, _Fixed, SuccessiveHalvingConfig(num_trials=20, min_steps=5, eta=3, seed=4), run_dir=tmp_path
    )
    rungs = res.extra["rungs"]
    assert len(rungs) >= 3
    for rung in rungs[:-1]:
        assert adaptive.reference_promote(rung["trials"], rung["scores"], 3) == rung["promoted"]


def test_reference_exploit_agrees_with_a_real_pbt_run(tmp_path):
    space = SearchSpace([Float("x", -2.0, 2.0)])
    cfg = PBTConfig(population=8, generations=4, steps_per_generation=3, seed=5, explore=False)
    res = pbt(space, _Fixed, cfg, run_dir=tmp_path)
    schedules = res.extra["schedules"]
    for g in range(cfg.generations - 1):
        scores = [schedules[i][g]["score"] for i in range(8)]
        copied = {
            i: schedules[i][g + 1]["exploited_from"]
            for i in range(8)
            if schedules[i][g + 1]["exploited_from"] is not None
        }
        ref = adaptive.reference_pbt_exploit(scores, cfg.quantile, np.random.default_rng(0))
        assert set(copied) == set(ref)  # the same members copy ...
        top = sorted(range(8), key=lambda i: -scores[i])[: len(ref)]
        assert set(copied.values()) <= set(top)  # ... from the same top quantile


# ============================================================================ the report itself
def test_report_renders_in_text_html_and_markdown():
    report = CheckReport(
        "demo <exercise>",
        "ref.fn",
        [
            Case("first | case", True, 0.0, 0.0),
            Case("second case", False, 1.5, 0.25, "looks like: a <bug>\nsecond line"),
        ],
        notes=["a note"],
    )
    text = str(report)
    assert text.startswith("FAILED  demo <exercise>: 1 of 2 cases differ from ref.fn")
    assert "[FAIL] case 2: second case" in text and "second line" in text and "note: a note" in text
    html = report._repr_html_()
    assert "<table>" in html and "&lt;bug&gt;" in html and "<bug>" not in html
    md = report._repr_markdown_()
    assert "first \\| case" in md and "<br>second line" in md
    assert (
        not report.passed and report.num_failed == 1 and report.first_failure().description == "second case"
    )
    assert not CheckReport("empty", "ref").passed  # no cases never passes


def test_a_function_that_mutates_its_input_fails():
    def in_place(r, v, nv, term, trunc, gamma, lam):
        out = drl.reference_gae(r, v, nv, term, trunc, gamma, lam)
        r.zero_()
        return out

    report = drl.check_gae(in_place)
    assert not report.passed and "in place" in str(report)


def test_wrong_shape_is_reported():
    report = drl.check_gae(lambda r, *a: drl.reference_gae(r, *a)[:-1])
    assert not report.passed and "has shape" in str(report)


# ============================================================================ the solutions in the chapters
#: label of the exercise -> (check, name of the function the solution defines)
SOLUTIONS = {
    "ex-gae-check": ("drl.check_gae", "my_gae"),
    "ex-trpo-line-search": ("drl.check_line_search", "my_line_search"),
    "ex-ppo-clip-loss": ("drl.check_ppo_clip_loss", "my_ppo_clip_loss"),
    "ex-maml-inner-step": ("maml.check_inner_step", "my_inner_step"),
    "ex-reptile-update": ("maml.check_reptile_update", "my_reptile_update"),
    "ex-magic-box-check": ("maml_rl.check_magic_box", "my_magic_box"),
    "ex-maml-rl-inner-loss": ("maml_rl.check_inner_loss", "my_inner_loss"),
    "ex-rl2-inputs": ("rl2.check_rl2_inputs", "my_rl2_inputs"),
    "ex-ucb1": ("rl2.check_ucb1", "my_ucb1"),
    "ex-pbt-exploit": ("adaptive.check_pbt_exploit", "my_pbt_exploit"),
    "ex-sh-promote": ("adaptive.check_promote", "my_promote"),
}
#: exercises whose chapters another engineer owns: the lead inserts them (tests skip until then)
PENDING = {"ex-magic-box-check", "ex-maml-rl-inner-loss", "ex-rl2-inputs", "ex-ucb1"}


def _solution_blocks() -> dict[str, list[str]]:
    """Python code blocks of every ``{solution} <label>`` in the chapters' markdown cells."""
    out: dict[str, list[str]] = {}
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for m in re.finditer(r"^(`{4,})\{solution\} (\S+)\n(.*?)^\1\s*$", text, re.S | re.M):
                out.setdefault(m.group(2), []).extend(
                    re.findall(r"^```python\n(.*?)^```", m.group(3), re.S | re.M)
                )
    return out


@pytest.mark.parametrize("label", sorted(SOLUTIONS))
def test_solution_in_the_book_passes_its_check(label):
    blocks = _solution_blocks().get(label)
    if not blocks:
        if label in PENDING:
            pytest.skip(f"{label}: exercise not yet inserted into its chapter (the lead pastes it in)")
        pytest.fail(f"no {{solution}} {label} with a python block in chapters/*.ipynb")
    namespace: dict = {}
    exec(compile("\n".join(blocks), f"<solution {label}>", "exec"), namespace)  # noqa: S102
    check_name, fn_name = SOLUTIONS[label]
    assert fn_name in namespace, f"the solution of {label} must define {fn_name}"
    report = CHECKS[check_name][0](namespace[fn_name])
    assert report.passed, str(report)
