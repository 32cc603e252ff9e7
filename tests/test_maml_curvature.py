"""The closed-form meta-KL products (``meta_rl_lessons.maml.curvature``) against the full autograd Hessian of
the meta-KL and against the autograd products (float64), for Gaussian (tanh, ReLU) and categorical MLPs,
with and without the inner step's Jacobian and with subsampled curvature; the trainer with each method
on a seeded run; the errors."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES

from meta_rl_lessons.maml import rl as maml_rl
from meta_rl_lessons.maml.curvature import meta_fvp_analytic, mlp_layout
from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig, adapt, meta_fvp_direct, meta_fvp_factorized
from meta_rl_lessons.rl.policies import ValueNetwork
from meta_rl_lessons.rl.trpo import flat_concat, unflatten_like

torch.set_num_threads(1)

PROBLEMS = {
    # Navigation2D: Gaussian head, 2-d actions, episodes of 6 steps; two hidden layers so that the tangent
    # backward pass runs through a hidden-to-hidden layer
    "gaussian-tanh": dict(family="Navigation2D", family_kwargs=dict(horizon=6), hidden_sizes=(5, 4),
                          activation="tanh", init_log_std=-0.5),
    "gaussian-relu": dict(family="Navigation2D", family_kwargs=dict(horizon=6), hidden_sizes=(5, 4),
                          activation="relu", init_log_std=0.3),
    # tabular MDPs: categorical head over 3 actions, one-hot observations, 5-step episodes
    "categorical-tanh": dict(family="TabularMDP", family_kwargs=dict(num_states=3, num_actions=3,
                                                                     episode_length=5), hidden_sizes=(4, 3)),
}


def _problem(name: str, device: str = "cpu", num_tasks: int = 3, num_episodes: int = 4):
    cfg = MAMLTRPOConfig(**PROBLEMS[name], meta_batch_size=num_tasks, num_episodes=num_episodes, gamma=0.9,
                         device=device, seed=3)
    trainer = MAMLTRPO(cfg)
    trainer.policy.double()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # a generic point (the default init has a near-zero output layer)
        for p in trainer.policy.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    sample = trainer.sample_meta_batch(trainer.family.sample_tasks(num_tasks, 0))
    cast = lambda d: maml_rl.TaskData(*(x.double() if x.is_floating_point() else x  # noqa: E731
                                        for x in (d.obs, d.actions, d.mask, d.weights, d.returns, d.scale,
                                                  d.num_steps)))
    return trainer, cast(sample["pre"][0]), cast(sample["post"])


def _old(policy, params, pre, post):
    with torch.no_grad():
        old = {k: v.detach() for k, v in adapt(policy, params, pre, 0.1, create_graph=False).items()}
        return old, policy.per_task(post.obs, old)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("tasks_per_chunk", [1, None, 5])
def test_analytic_product_equals_the_full_hessian_of_the_meta_kl(device, name, first_order, tasks_per_chunk):
    """Five tasks, so that chunks of 1, the default (2: chunks of 2, 2 and 1) and 5 tasks all occur."""
    trainer, pre, post = _problem(name, device, num_tasks=5)
    policy = trainer.policy
    params = dict(policy.named_parameters())
    names, theta = list(params), list(params.values())
    old, old_dist = _old(policy, params, pre, post)

    def kl_of_flat(flat):  # the meta-KL as a plain function of the flat meta-parameters
        prm = dict(zip(names, unflatten_like(flat, theta), strict=True))
        adapted = adapt(policy, prm, pre, 0.1, create_graph=True, first_order=first_order)
        return maml_rl.mean_kl(policy, adapted, post, old_dist)

    flat0 = flat_concat([t.detach() for t in theta])
    hessian = torch.autograd.functional.hessian(kl_of_flat, flat0)
    analytic = meta_fvp_analytic(policy, params, pre, post, 0.1, old, first_order, damping=0.25,
                                 tasks_per_chunk=tasks_per_chunk)
    for seed in range(3):
        v = torch.randn(flat0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        v = v.to(flat0.device)
        expected = hessian @ v
        assert float(expected.norm()) > 1e-3
        torch.testing.assert_close(analytic(v), expected + 0.25 * v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_analytic_equals_factorized_and_direct_with_subsampled_curvature_and_the_inner_jacobian(name):
    """The inner step's Hessian makes J differ from I by a lot here (alpha = 0.1 on a generic point):
    dropping any of its terms (the activation's second derivative, the log-std cross terms) shows."""
    trainer, pre, post = _problem(name, num_episodes=6)
    policy = trainer.policy
    params = dict(policy.named_parameters())
    theta = list(params.values())
    old, old_dist = _old(policy, params, pre, post)
    gen = torch.Generator().manual_seed(1)
    pre_s, post_s = pre.subsample(0.5, gen), post.subsample(0.5, gen)
    with torch.no_grad():
        dist_s = policy.per_task(post_s.obs, old)
    n = sum(t.numel() for t in theta)
    v = torch.randn(n, dtype=torch.float64, generator=gen)
    direct = meta_fvp_direct(lambda: maml_rl.mean_kl(policy, adapt(policy, params, pre, 0.1), post, old_dist),
                             theta)(v)
    full = meta_fvp_analytic(policy, params, pre, post, 0.1, old)(v)
    torch.testing.assert_close(full, direct, rtol=1e-9, atol=1e-12)
    first_order = meta_fvp_analytic(policy, params, pre, post, 0.1, old, first_order=True)(v)
    assert float((first_order - full).norm()) > 1e-3 * float(full.norm())  # the Jacobian matters here
    sub_a = meta_fvp_analytic(policy, params, pre_s, post_s, 0.1, old)
    sub_f = meta_fvp_factorized(policy, params, pre_s, post_s, dist_s, 0.1, fisher_point=old)
    torch.testing.assert_close(sub_a(v), sub_f(v), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(sub_a(3 * v), 3 * sub_f(v), rtol=1e-9, atol=1e-12)  # cached state reused


@pytest.mark.parametrize("method", ["factorized", "direct"])
def test_trainer_takes_the_same_steps_with_every_product(method):
    """A seeded run of two meta-iterations, the policy in float64: the parameters after analytic and autograd
    products agree to 1e-7 (the two autograd products differ from each other by as much: the environment
    steps in float32, and ten conjugate-gradient iterations on this 51-parameter problem amplify rounding;
    in float32 throughout the differences reach a few percent of the step for any two methods, so a
    float32 comparison would say nothing)."""
    def run(**kw):
        cfg = MAMLTRPOConfig(**PROBLEMS["gaussian-tanh"], meta_batch_size=3, num_episodes=4, iterations=2,
                             seed=5, cg_damping=1e-3, **kw)
        trainer = MAMLTRPO(cfg)
        trainer.policy.double()
        rows = [trainer.iteration() for _ in range(2)]
        assert all(r["accepted"] == 1.0 for r in rows)
        return flat_concat([p.detach() for p in trainer.policy.parameters()]), rows

    (analytic, rows_a), (autograd, rows_b) = run(fvp_method="analytic"), run(fvp_method=method)
    torch.testing.assert_close(analytic, autograd, rtol=1e-6, atol=1e-7)
    assert [r["return_post"] for r in rows_a] == pytest.approx([r["return_post"] for r in rows_b], rel=1e-6)
    start = flat_concat([p.detach().double() for p in MAMLTRPO(MAMLTRPOConfig(
        **PROBLEMS["gaussian-tanh"], meta_batch_size=3, num_episodes=4, seed=5)).policy.parameters()])
    assert float((analytic - start).norm()) > 1e-2  # the steps were taken
    assert MAMLTRPOConfig().fvp_method == "analytic"


def test_layouts_and_refusals():
    trainer, pre, post = _problem("gaussian-tanh")
    lay = mlp_layout(trainer.policy)
    assert lay.weights == ("net.mean.0.weight", "net.mean.2.weight", "net.mean.4.weight")
    assert lay.log_std == "net.log_std" and lay.activation == "tanh"
    assert mlp_layout(_problem("categorical-tanh")[0].policy).log_std is None
    with pytest.raises(TypeError, match="needs a GaussianMLPPolicy or CategoricalMLPPolicy, got "
                                        "ValueNetwork; use fvp_method='factorized'"):
        mlp_layout(ValueNetwork(2))
    policy = trainer.policy
    policy.net.mean[1] = torch.nn.Sigmoid()
    with pytest.raises(TypeError, match=r"one tanh or ReLU activation between them, got \['Linear', "
                                        r"'Sigmoid', 'Linear', 'Tanh', 'Linear'\]"):
        mlp_layout(policy)


def test_chunks_of_tasks_must_be_positive():
    trainer, pre, post = _problem("gaussian-tanh")
    params = dict(trainer.policy.named_parameters())
    old, _ = _old(trainer.policy, params, pre, post)
    with pytest.raises(ValueError, match="tasks_per_chunk must be a positive number of tasks, got 0"):
        meta_fvp_analytic(trainer.policy, params, pre, post, 0.1, old, tasks_per_chunk=0)
