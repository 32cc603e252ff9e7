"""MAML-RL against exact references on an enumerable MDP (float64), with episodes longer than one step.

Horizon-2 episodes on a 2-state, 2-action MDP with Bernoulli rewards: every batch of E <= 2 episodes can be
enumerated (meta_rl_lessons.maml.exact), so the meta-objective J, its gradient and each estimator's
expectation are exact sums. Tested here:

* the enumeration and the exact return are right (probabilities sum to 1; the mean return over batches is
  the return computed by propagating the state distribution), and grad J matches finite differences;
* DiCE's expectation is grad J at gamma in {1, 0.9, 0.5}, with and without the baseline, with two inner
  steps; the original and LVC estimators, first-order DiCE and advantage normalisation are measurably not;
* the trainer's *sampled* meta-gradients average to those exact expectations (z-scores);
* the trust-region step lands on the boundary of the KL the line search measures, to second order, for
  every estimator and alpha in {0.1, 0.5};
* mutation checks: plausible one-line breakages of maml/rl.py, loaded from a modified copy of its source,
  fail these checks (so the checks can fail).
"""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch

from meta_rl_lessons.envs import Navigation2DFamily
from meta_rl_lessons.maml import exact
from meta_rl_lessons.maml import rl as maml_rl
from meta_rl_lessons.rl.trpo import flat_concat, unflatten_like

torch.set_num_threads(1)

FAMILY, TASK = exact.small_mdp()


def _trainer(module=maml_rl, **overrides):
    """A MAML-TRPO trainer on the small MDP (exact.small_mdp_config: two episodes per batch, gamma = alpha =
    0.5, the baseline on) with exact.generic_policy's float64 parameters."""
    cfg = exact.small_mdp_config(**overrides)
    trainer = module.MAMLTRPO(module.MAMLTRPOConfig(**vars(cfg)), family=FAMILY)
    trainer.policy = exact.generic_policy(cfg, FAMILY)
    return trainer


def _dice_error(**overrides) -> float:
    trainer = _trainer(estimator="dice", **overrides)
    out = exact.exact_meta_gradients(trainer.policy, trainer.config, FAMILY, TASK, estimators=("dice",))
    return exact.relative_error(out["dice"], out["exact"])


# ---------------------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("num_episodes", [1, 2])
def test_enumeration_is_a_distribution_and_the_exact_return_is_its_mean(num_episodes):
    policy = _trainer().policy
    enum = exact.enumerate_batches(FAMILY, TASK, num_episodes)
    n = (2 * 2) ** 2 * 2  # (2A)^H S^(H-1) episodes
    assert enum.num_batches == math.comb(n + num_episodes - 1, num_episodes)
    b = enum.batch
    with torch.no_grad():
        logp = policy(b.observations).log_prob(b.actions).sum(dim=(0, 2))  # [N]
        prob = (logp + enum.log_weight).exp()
        assert float(prob.sum()) == pytest.approx(1.0, abs=1e-12)
        gamma = 0.7
        g0 = (b.rewards * gamma ** torch.arange(2, dtype=torch.float64).view(2, 1, 1)).sum(0).mean(-1)
        theta = {k: v.unsqueeze(0) for k, v in policy.named_parameters()}
        F = exact.exact_return(policy, theta, FAMILY, TASK, gamma)
    assert float((prob * g0).sum()) == pytest.approx(float(F[0]), abs=1e-12)


@pytest.mark.parametrize("overrides", [dict(gamma=0.9, normalize_advantages=True),
                                       dict(gamma=0.9, inner_steps=2, num_episodes=1, fvp_method="direct")])
def test_exact_objective_gradient_matches_finite_differences(overrides):
    trainer = _trainer(**overrides)
    policy = trainer.policy
    names, theta = zip(*policy.named_parameters(), strict=True)
    J = exact.exact_objective(policy, trainer.config, FAMILY, TASK)
    grad = flat_concat(torch.autograd.grad(J, theta))
    flat0 = flat_concat([t.detach() for t in theta])

    def J_at(flat):
        with torch.no_grad():
            for p, v in zip(theta, unflatten_like(flat, list(theta)), strict=True):
                p.copy_(v)
        with torch.no_grad():
            return float(exact.exact_objective(policy, trainer.config, FAMILY, TASK))

    h = 1e-6
    fd = torch.stack([torch.tensor((J_at(flat0 + h * e) - J_at(flat0 - h * e)) / (2 * h))
                      for e in torch.eye(flat0.numel(), dtype=torch.float64)]).to(torch.float64)
    J_at(flat0)
    assert float(grad.norm()) > 1e-2
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------- exact expectations
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("baseline", [False, True])
def test_dice_expectation_is_the_exact_meta_gradient(gamma, baseline):
    assert _dice_error(gamma=gamma, baseline=baseline) < 1e-9


@pytest.mark.parametrize("gamma", [0.9, 0.5])
def test_dice_is_exact_with_two_inner_steps(gamma):
    assert _dice_error(gamma=gamma, inner_steps=2, num_episodes=1, fvp_method="direct") < 1e-9


def test_the_other_estimators_and_approximations_are_measurably_biased():
    """Exact facts at alpha = 0.5, gamma = 0.5 (the chapter's table): the original estimator and LVC miss the
    pre-update sampling term (and the discount); first-order DiCE misses the inner Jacobian (measured at
    gamma = 0.9 without a baseline, where that Jacobian matters most here); per-task
    normalisation divides by a random spread, so only the direction can be compared, and it is close."""
    trainer = _trainer()
    out = exact.exact_meta_gradients(trainer.policy, trainer.config, FAMILY, TASK)
    assert exact.relative_error(out["dice"], out["exact"]) < 1e-9
    assert exact.relative_error(out["maml"], out["exact"]) > 0.1
    assert exact.relative_error(out["lvc"], out["exact"]) > 0.1
    fo = _trainer(estimator="dice", first_order=True, gamma=0.9, baseline=False)
    out_fo = exact.exact_meta_gradients(fo.policy, fo.config, FAMILY, TASK, estimators=("dice",))
    assert exact.relative_error(out_fo["dice"], out_fo["exact"]) > 0.05
    normalised = _trainer(normalize_advantages=True)
    out_n = exact.exact_meta_gradients(normalised.policy, normalised.config, FAMILY, TASK, ("dice",))
    assert 1e-3 < exact.relative_error(out_n["dice"], out_n["exact"], up_to_scale=True) < 0.1


# ---------------------------------------------------------------------------------------- sampled = exact
def _sampled(trainer, chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of the trainer's meta-gradient (ascent direction) over meta-batches."""
    tasks = [TASK] * trainer.config.meta_batch_size
    grads = torch.stack([-trainer.meta_gradient(trainer.sample_meta_batch(tasks))["g"]
                         for _ in range(chunks)])
    return grads.mean(0), grads.std(0) / chunks**0.5


@pytest.mark.parametrize(
    "overrides",
    [dict(estimator="maml"), dict(estimator="lvc"), dict(estimator="dice"),
     dict(estimator="dice", normalize_advantages=True),
     dict(estimator="dice", inner_steps=2, num_episodes=1, fvp_method="direct")],
    ids=["maml", "lvc", "dice", "dice-normalised", "dice-two-steps"],
)
def test_sampled_meta_gradients_average_to_their_exact_expectation(overrides):
    """Seeded: 16 meta-batches of 2,000 tasks each through the trainer's sampler and meta_gradient (the
    leave-one-task-out baseline included); every coordinate within 4.5 standard errors of the exact
    expectation. The original estimator's average is, significantly, not grad J."""
    trainer = _trainer(meta_batch_size=2000, **overrides)
    expected = exact.exact_estimator_mean(trainer.policy, trainer.config, FAMILY, TASK)
    mean, se = _sampled(trainer, chunks=16)
    z = ((mean - expected) / se).abs()
    assert float(z.max()) < 4.5, (z, mean, expected)
    if overrides["estimator"] == "maml":
        grad_J = exact.exact_meta_gradients(trainer.policy, trainer.config, FAMILY, TASK, ())["exact"]
        assert float(((mean - grad_J / FAMILY.episode_length) / se).abs().max()) > 10.0  # surrogate units


# ---------------------------------------------------------------------------------------- trust region
def _nav_step(module=maml_rl, **overrides):
    """One trust-region proposal on a small 2D-navigation meta-batch, in float64, and the exact Hessian of the
    KL of the policy the line search deploys: theta' from the plain REINFORCE step(s), by autograd."""
    cfg = dict(family="Navigation2D", family_kwargs=dict(horizon=10), meta_batch_size=4, num_episodes=8,
               hidden_sizes=(8,), max_kl=1e-2, cg_damping=1e-12, seed=1, init_log_std=-0.5)
    cfg.update(overrides)
    trainer = module.MAMLTRPO(module.MAMLTRPOConfig(**cfg), family=Navigation2DFamily(horizon=10))
    trainer.policy.double()
    sample = trainer.sample_meta_batch(trainer.family.sample_tasks(4, 0))
    cast = lambda d: maml_rl.TaskData(*(x.double() if x.is_floating_point() else x  # noqa: E731
                                        for x in (d.obs, d.actions, d.mask, d.weights, d.returns, d.scale,
                                                  d.num_steps)))
    sample = {"pre": [cast(d) for d in sample["pre"]], "post": cast(sample["post"])}
    step, evaluate, _ = trainer.trust_region_step(sample)
    policy = trainer.policy
    names, theta = zip(*policy.named_parameters(), strict=True)
    alpha = trainer.config.inner_lr
    with torch.no_grad():
        old, _ = maml_rl.adapt_steps(policy, dict(policy.named_parameters()), sample["pre"], alpha, "maml",
                                     create_graph=False)
        old_dist = policy.per_task(sample["post"].obs, old)

    def deployed_kl(flat):
        prm = dict(zip(names, unflatten_like(flat, list(theta)), strict=True))
        adapted, _ = maml_rl.adapt_steps(policy, prm, sample["pre"], alpha, "maml", create_graph=True)
        return maml_rl.mean_kl(policy, adapted, sample["post"], old_dist)

    hessian = torch.autograd.functional.hessian(deployed_kl, flat_concat([t.detach() for t in theta]))
    return trainer, step, evaluate, hessian


@pytest.mark.parametrize("alpha", [0.1, 0.5])
@pytest.mark.parametrize("estimator", maml_rl.ESTIMATORS)
@pytest.mark.parametrize("variant", [dict(), dict(fvp_method="factorized"), dict(fvp_method="direct"),
                                     dict(first_order=True), dict(fvp_method="direct", inner_steps=2)],
                         ids=["analytic", "factorized", "direct", "first-order", "two-steps"])
def test_trust_region_step_lands_on_the_kl_boundary_to_second_order(estimator, alpha, variant):
    """1/2 s^T H s = delta with H the Hessian of the KL the line search measures (so KL(theta + s) = delta +
    O(|s|^3)); and that KL, by the trainer's own evaluate(), has this curvature: a symmetric second difference
    with Richardson extrapolation."""
    trainer, step, evaluate, hessian = _nav_step(estimator=estimator, inner_lr=alpha, **variant)
    delta = trainer.config.max_kl
    assert 0.5 * float(step @ hessian @ step) == pytest.approx(delta, rel=1e-6)

    def second_difference(h):
        return (evaluate(h * step)[1] + evaluate(-h * step)[1]) / (2 * h * h)

    curvature = (4 * second_difference(0.005) - second_difference(0.01)) / 3
    assert curvature == pytest.approx(delta, rel=1e-3)


# ---------------------------------------------------------------------------------------- mutation checks
SOURCE = Path(maml_rl.__file__).read_text()


def _mutant(old: str, new: str) -> types.ModuleType:
    """maml/rl.py with one line changed, loaded as a separate module (the package is untouched)."""
    assert SOURCE.count(old) == 1, f"mutation target not found exactly once: {old!r}"
    module = types.ModuleType("maml_rl_mutant")
    module.__file__ = maml_rl.__file__
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is created
    try:
        exec(compile(SOURCE.replace(old, new), maml_rl.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


#: (name, original text, broken text, settings where the slip shows): plausible slips, each one a real bug of
#: some MAML-RL implementation. The settings are the exact checks' (gamma = 0.5, with the baseline) unless the
#: slip shows more clearly elsewhere: the score term and the inner Jacobian matter most without a baseline.
PLAIN = dict(baseline=False)  # the score term is largest relative to grad J with plain returns
MUTATIONS = [
    ("scale-per-batch", "scale = episode_len * std", "scale = num_steps * std", PLAIN),
    ("score-first-step-only", "log_p = sum((lp * d.mask).sum(dim=(1, 2))",
     "log_p = sum((lp[:, :1] * d.mask[:, :1]).sum(dim=(1, 2))", PLAIN),
    ("no-discount-weights", "discount_weights=exact, leave_one_out=exact",
     "discount_weights=False, leave_one_out=exact", {}),
    ("score-detached", "(magic_box(log_p) - 1.0)", "(magic_box(log_p.detach()) - 1.0)", PLAIN),
    ("inner-gradient-detached", "create_graph=create_graph and not first_order)", "create_graph=False)",
     dict(gamma=0.9, baseline=False)),
    ("baseline-fitted-on-own-episode", "discount_weights=exact, leave_one_out=exact",
     "discount_weights=exact, leave_one_out=False", {}),
]


@pytest.mark.parametrize(("name", "old", "new", "settings"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutations_of_the_estimator_fail_the_exact_check(monkeypatch, name, old, new, settings):
    """The exact reference calls maml_rl's functions; swapped for a mutant's, DiCE is no longer exact (while
    the real code is, at the same settings, to 1e-9)."""
    assert _dice_error(**settings) < 1e-9
    mutant = _mutant(old, new)
    for attr in ("task_data", "config_task_data", "adapt", "adapt_steps", "outer_loss", "inner_loss",
                 "_log_probs"):
        monkeypatch.setattr(maml_rl, attr, getattr(mutant, attr))
    assert _dice_error(**settings) > 1e-2, name


def test_mutation_of_the_trust_region_curvature_fails_the_boundary_check():
    """LVC's conjugate gradient with the Hessian through its own inner surrogate (J_lvc^T F J_lvc, the old
    behaviour of the autograd products), and the closed-form products given the first-order flag (J = I, the
    curvature of a step nobody deploys): the step no longer lands on the boundary of the KL that the line
    search measures."""
    mutant = _mutant('pre_c, post_c, dist_c, c.inner_lr, "maml",\n',
                     "pre_c, post_c, dist_c, c.inner_lr, c.estimator,\n")
    trainer, step, _, hessian = _nav_step(mutant, estimator="lvc", inner_lr=0.5, fvp_method="factorized")
    assert abs(0.5 * float(step @ hessian @ step) / trainer.config.max_kl - 1) > 0.02
    mutant = _mutant("pre_c, post_c, c.inner_lr, old, False,",
                     "pre_c, post_c, c.inner_lr, old, c.first_order,")
    trainer, step, _, hessian = _nav_step(mutant, first_order=True, inner_lr=0.5)
    assert abs(0.5 * float(step @ hessian @ step) / trainer.config.max_kl - 1) > 0.02
