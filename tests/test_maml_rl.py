"""MAML-RL: the meta-gradient estimators against the exact meta-gradient of a bandit (float64), the
meta-KL Hessian-vector shortcuts against the full autograd Hessian, errors, and a short learning test."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import DEVICES

from meta_rl_lessons.envs import BanditTask, Navigation2DFamily, warp_available
from meta_rl_lessons.maml import rl as maml_rl
from meta_rl_lessons.maml.rl import (
    MAMLTRPO,
    MAMLTRPOConfig,
    adapt,
    meta_fvp_direct,
    meta_fvp_factorized,
)
from meta_rl_lessons.rl.trpo import flat_concat, unflatten_like

torch.set_num_threads(1)

MEANS = (0.9, 0.2)  # two-armed Bernoulli bandit
ALPHA = 1.0  # inner step: large, so the missing term is large
N_PRE = 2  # pre-update episodes (one pull each) per task


def _bandit_trainer(estimator: str, num_tasks: int, seed: int = 0) -> MAMLTRPO:
    cfg = MAMLTRPOConfig(family="BernoulliBandit", family_kwargs=dict(num_arms=2, episode_length=1),
                         meta_batch_size=num_tasks, num_episodes=N_PRE, gamma=1.0, normalize_advantages=False,
                         baseline=False, hidden_sizes=(3,), estimator=estimator, inner_lr=ALPHA, seed=seed)
    trainer = MAMLTRPO(cfg)
    trainer.policy.double()
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():  # a generic point: the default init gives near-uniform logits
        for p in trainer.policy.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return trainer


def _exact_meta_gradients(policy) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Enumerate every pre-update outcome (arm, reward) x N_PRE of the bandit, independently of the package.

    With theta'(o) = theta + alpha/N sum_i r_i grad log pi(a_i) and F(theta') = sum_a pi_theta'(a) p_a, the
    exact objective is J(theta) = sum_o P_theta(o) F(theta'(o)). Returns (grad J, the expectation of the
    original estimator sum_o P(o) d/dtheta F(theta'(o)) [no score term], and the expectation of the LVC
    estimator [inner Hessian with the grad log pi grad log pi^T r term, no score term])."""
    params = dict(policy.named_parameters())
    names, theta = list(params), list(params.values())
    obs = torch.zeros(1, 1, dtype=torch.float64)
    p = torch.tensor(MEANS, dtype=torch.float64)

    def log_pi(prm):
        return torch.log_softmax(policy.raw(obs, prm)[0], -1)

    def post_return(prm):
        return (log_pi(prm).exp() * p).sum()

    def step(grads):
        return {n: t + ALPHA * g for n, t, g in zip(names, theta, grads, strict=True)}

    J, e_maml, e_lvc = 0.0, 0.0, 0.0
    for outcome in itertools.product(itertools.product(range(2), range(2)), repeat=N_PRE):
        lp = log_pi(params)
        prob = torch.stack([lp[a].exp() * (p[a] if r else 1 - p[a]) for a, r in outcome]).prod()
        inner = sum(lp[a] * r for a, r in outcome) / N_PRE
        F = post_return(step(torch.autograd.grad(inner, theta, create_graph=True)))
        J = J + prob * F
        e_maml = e_maml + prob.detach() * flat_concat(torch.autograd.grad(F, theta, retain_graph=True))
        inner_lvc = sum(torch.exp(lp[a] - lp[a].detach()) * r for a, r in outcome) / N_PRE
        F_lvc = post_return(step(torch.autograd.grad(inner_lvc, theta, create_graph=True)))
        e_lvc = e_lvc + prob.detach() * flat_concat(torch.autograd.grad(F_lvc, theta, retain_graph=True))
    return flat_concat(torch.autograd.grad(J, theta)), e_maml, e_lvc


def _monte_carlo(estimator: str, num_tasks: int = 2000, chunks: int = 20):
    """Mean and standard error of the package's meta-gradient (ascent direction), chunks x tasks samples."""
    trainer = _bandit_trainer(estimator, num_tasks)
    tasks = [BanditTask(MEANS)] * num_tasks
    grads = torch.stack([-trainer.meta_gradient(trainer.sample_meta_batch(tasks))["g"]
                         for _ in range(chunks)])
    return grads.mean(0), grads.std(0) / chunks**0.5


def test_dice_matches_the_exact_meta_gradient_and_the_original_estimator_does_not():
    """The decisive test (seeded; 40k sampled meta-batches of one task each, in 20 chunks).

    Exact quantities by enumeration; z-scores are (Monte-Carlo mean - reference) / standard error per
    coordinate (coordinates with zero gradient, the first layer's weights times a zero observation, are
    skipped)."""
    exact, e_maml, e_lvc = _exact_meta_gradients(_bandit_trainer("maml", 2).policy)
    # Exact facts: the pre-update sampling term is large here; LVC recovers most of it (to first order).
    assert float((e_maml - exact).norm()) > 0.3 * float(exact.norm())
    assert float((e_lvc - exact).norm()) < 0.2 * float((e_maml - exact).norm())

    means = {}
    for estimator, reference in (("dice", exact), ("maml", e_maml), ("lvc", e_lvc)):
        mean, se = _monte_carlo(estimator)
        live = se > 0
        z_own = ((mean - reference) / se)[live].abs().max()
        assert z_own < 4.0, (estimator, z_own)  # unbiased for what it estimates
        means[estimator] = (mean, se, live)
    # DiCE is unbiased for the exact meta-gradient; the original estimator is not, significantly.
    mean, se, live = means["dice"]
    assert ((mean - exact) / se)[live].abs().max() < 4.0
    mean, se, live = means["maml"]
    assert ((mean - exact) / se)[live].abs().max() > 20.0
    direction = (exact - e_maml) / (exact - e_maml).norm()
    gap = float((exact - mean) @ direction)
    assert gap > 20.0 * float(((se * direction) ** 2).sum().sqrt())


# ---------------------------------------------------------------------------------------- meta-KL products
def _nav_problem(device, estimator="maml", num_tasks=3, num_episodes=4, horizon=6):
    cfg = MAMLTRPOConfig(family="Navigation2D", family_kwargs=dict(horizon=horizon),
                         meta_batch_size=num_tasks, num_episodes=num_episodes, hidden_sizes=(4,),
                         estimator=estimator, device=device, init_log_std=-0.5)
    trainer = MAMLTRPO(cfg, family=Navigation2DFamily(horizon=horizon))
    trainer.policy.double()
    sample = trainer.sample_meta_batch(trainer.family.sample_tasks(num_tasks, 0))
    cast = lambda d: maml_rl.TaskData(*(x.double() if x.is_floating_point() else x  # noqa: E731
                                        for x in (d.obs, d.actions, d.mask, d.weights, d.returns, d.scale,
                                                  d.num_steps)))
    return trainer, cast(sample["pre"][0]), cast(sample["post"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("estimator", "first_order"), [("maml", False), ("lvc", False), ("maml", True)])
def test_factorized_and_direct_meta_kl_products_equal_the_full_autograd_hessian(device, estimator,
                                                                                first_order):
    trainer, pre, post = _nav_problem(device, estimator)
    policy = trainer.policy
    params = dict(policy.named_parameters())
    names, theta = list(params), list(params.values())
    with torch.no_grad():
        old = adapt(policy, params, pre, 0.1, estimator, create_graph=False)
        old_dist = policy.per_task(post.obs, {k: v.detach() for k, v in old.items()})

    def kl_of_flat(flat):  # the meta-KL as a plain function of the flat meta-parameters
        prm = dict(zip(names, unflatten_like(flat, theta), strict=True))
        adapted = adapt(policy, prm, pre, 0.1, estimator, create_graph=True, first_order=first_order)
        return maml_rl.mean_kl(policy, adapted, post, old_dist)

    flat0 = flat_concat([t.detach() for t in theta])
    hessian = torch.autograd.functional.hessian(kl_of_flat, flat0)
    v = torch.randn(flat0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    expected = hessian @ v
    assert float(expected.norm()) > 0

    direct = meta_fvp_direct(
        lambda: maml_rl.mean_kl(policy, adapt(policy, params, pre, 0.1, estimator, create_graph=True,
                                               first_order=first_order), post, old_dist), theta)
    factorized = meta_fvp_factorized(policy, params, pre, post, old_dist, 0.1, estimator, first_order)
    for product in (direct, factorized):
        torch.testing.assert_close(product(v), expected, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(product(2 * v), 2 * expected, rtol=1e-8, atol=1e-10)  # graph reused


def test_curvature_subsample_keeps_the_product_positive_and_all_episodes_means_identity():
    trainer, pre, post = _nav_problem("cpu", num_episodes=6)
    assert pre.subsample(1.0) is pre
    sub = pre.subsample(0.5, torch.Generator().manual_seed(0))
    assert sub.obs.shape[2] == 3 and torch.equal(sub.num_steps, sub.mask.sum(dim=(1, 2)))
    policy = trainer.policy
    params = dict(policy.named_parameters())
    with torch.no_grad():
        old = adapt(policy, params, pre, 0.1, create_graph=False)
        post_sub = post.subsample(0.5, torch.Generator().manual_seed(1))
        dist = policy.per_task(post_sub.obs, {k: v.detach() for k, v in old.items()})
    fvp = meta_fvp_factorized(policy, params, sub, post_sub, dist, 0.1, damping=1e-6,
                              fisher_point={k: v.detach() for k, v in old.items()})
    for seed in range(3):
        v = torch.randn(sum(p.numel() for p in params.values()), dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
        assert float(v @ fvp(v)) > 0


# ---------------------------------------------------------------------------------------- errors
# (config errors: tests/test_bad_inputs_meta.py)
def test_adapt_rejects_bad_step_and_nan_loss():
    trainer, pre, _ = _nav_problem("cpu")
    params = dict(trainer.policy.named_parameters())
    with pytest.raises(ValueError, match="inner_lr must be a finite number > 0, got 0"):
        adapt(trainer.policy, params, pre, 0.0)
    with pytest.raises(ValueError, match="unknown meta-gradient estimator 'mmal'"):
        adapt(trainer.policy, params, pre, 0.1, "mmal")
    bad = maml_rl.TaskData(pre.obs, pre.actions, pre.mask, pre.weights * float("nan"), pre.returns, pre.scale,
                           pre.num_steps)
    with pytest.raises(FloatingPointError, match="inner loss is not finite"):
        adapt(trainer.policy, params, bad, 0.1)


# ---------------------------------------------------------------------------------------- learning
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_maml_trpo_learns_to_adapt_on_2d_navigation(device):
    """Seeded, about 15 s: after a few meta-iterations, one adaptation step on held-out goals raises the
    return clearly (the adaptation gain of the paper's 2D navigation table), and the 0-step return improves
    over the initial policy's."""
    cfg = MAMLTRPOConfig(meta_batch_size=10, num_episodes=10, iterations=10, curvature_subsample=0.5,
                         seed=0, device=device)
    trainer = MAMLTRPO(cfg)
    test_tasks = trainer.family.sample_tasks(10, 99, split="test")
    before = trainer.evaluate(test_tasks, step_sizes=(0.1,))
    trainer.train()
    after = trainer.evaluate(test_tasks, step_sizes=(0.1, 0.05))
    assert after.shape == (3, 10)
    gain = float((after[1] - after[0]).mean())
    assert gain > 3.0, after.mean(1)
    assert float(after[1].mean()) > float(before[1].mean()) + 3.0, (before.mean(1), after.mean(1))


# ---------------------------------------------------------------------------------------- trainer paths
def _tiny(**kwargs) -> MAMLTRPO:
    cfg = dict(family="Navigation2D", family_kwargs=dict(horizon=8), meta_batch_size=3, num_episodes=4,
               hidden_sizes=(8,), iterations=1, seed=3)
    cfg.update(kwargs)
    return MAMLTRPO(MAMLTRPOConfig(**cfg), family=Navigation2DFamily(horizon=8))


@pytest.mark.parametrize(
    "kwargs",
    [dict(estimator="maml"), dict(estimator="lvc"), dict(estimator="dice"), dict(first_order=True),
     dict(inner_steps=2, fvp_method="direct"), dict(estimator="dice", inner_steps=2, fvp_method="direct"),
     dict(curvature_subsample=0.5)],
)
def test_every_trainer_path_takes_a_finite_step(kwargs):
    trainer = _tiny(**kwargs)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    row = trainer.iteration()
    assert all(math.isfinite(v) for v in row.values()), row
    assert row["kl"] <= trainer.config.max_kl + 1e-9
    moved = any(not torch.equal(b, p) for b, p in zip(before, trainer.policy.parameters(), strict=True))
    assert moved == bool(row["accepted"])


def test_direct_and_factorized_meta_steps_agree():
    """Same seed, same samples: the two ways of computing the meta-KL products give the same TRPO step (up to
    the conditioning of conjugate gradient; a wrong Jacobian would change the step by order one)."""
    steps = []
    for method in ("direct", "factorized"):
        trainer = _tiny(fvp_method=method, cg_damping=1e-3)
        trainer.policy.double()
        before = flat_concat([p.detach().clone() for p in trainer.policy.parameters()])
        assert trainer.iteration()["accepted"] == 1.0
        steps.append(flat_concat([p.detach() for p in trainer.policy.parameters()]) - before)
    assert float(steps[0].norm()) > 0
    assert float((steps[0] - steps[1]).norm() / steps[0].norm()) < 1e-4


def test_evaluate_protocol_shape_and_step_size_check():
    trainer = _tiny()
    tasks = trainer.family.sample_tasks(2, 0, split="test")
    assert trainer.evaluate(tasks, step_sizes=(0.1, 0.05, 0.05)).shape == (4, 2)
    with pytest.raises(ValueError, match="evaluation step size must be a finite number > 0, got -0.05"):
        trainer.evaluate(tasks, step_sizes=(0.1, -0.05))


def _rows(trainer, n):
    timing = {"sample_time", "update_time"}
    return [{k: v for k, v in trainer.iteration().items() if k not in timing} for _ in range(n)]


@pytest.mark.parametrize("kwargs", [
    dict(estimator="dice", inner_steps=2, fvp_method="direct"),
    dict(estimator="lvc", curvature_subsample=0.5),
    dict(family="HalfCheetahVel", family_kwargs={"horizon": 10}, num_workers=2),
    pytest.param(dict(family="HalfCheetahVel", family_kwargs={"horizon": 8, "physics": "warp"}),
                 marks=pytest.mark.skipif(not warp_available(), reason="MuJoCo Warp is not installed")),
], ids=["dice-two-steps", "lvc-curvature-subsample", "halfcheetah-vel-workers", "halfcheetah-vel-warp"])
def test_state_dict_resumes_exactly(kwargs, tmp_path) -> None:
    """A trainer that loads another's state (through a checkpoint file) continues with the same rows and
    parameters: the task and curvature generators, the sampler's environment generators (the MuJoCo reset
    noise, here in worker processes) and the process-wide generators all travel in the state."""
    from meta_rl_lessons.serialization import load_checkpoint, save_checkpoint

    def make():
        return MAMLTRPO(MAMLTRPOConfig(meta_batch_size=3, num_episodes=2, iterations=4, hidden_sizes=(6,),
                                       cg_iters=2, seed=1, **kwargs))

    with make() as a:
        a.iteration()
        save_checkpoint(a.state_dict(), tmp_path / "m.pt")
        rows_a = _rows(a, 2)
        params_a = [p.detach().clone() for p in a.policy.parameters()]
    torch.manual_seed(5)
    with make() as b:
        b.load_state_dict(load_checkpoint(tmp_path / "m.pt"))
        rows_b = _rows(b, 2)
        assert all(torch.equal(p, q) for p, q in zip(params_a, b.policy.parameters(), strict=True))
    assert rows_a == rows_b


def test_load_state_dict_refuses_another_config() -> None:
    small = dict(meta_batch_size=2, num_episodes=2, iterations=2, hidden_sizes=(4,), cg_iters=2)
    with MAMLTRPO(MAMLTRPOConfig(**small)) as a, MAMLTRPO(MAMLTRPOConfig(**small, inner_lr=0.2)) as b:
        with pytest.raises(ValueError, match=r"different MAMLTRPOConfig \(inner_lr: 0.1 in the state, "
                                             r"0.2 here\)"):
            b.load_state_dict(a.state_dict())
        with MAMLTRPO(MAMLTRPOConfig(**small, progress=True, log_path=None)) as c:
            c.load_state_dict(a.state_dict())  # where output goes is not part of the computation
