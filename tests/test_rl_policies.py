"""Policies: the functional calling convention, per-task vmap, shapes and bad input."""

import pytest
import torch

from meta_rl_lessons.rl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    ValueNetwork,
    expand_params,
    stack_params,
)

torch.set_num_threads(1)


def _perturbed(module, n, scale=0.3):
    named = list(module.named_parameters())
    return [{k: v.detach() + scale * torch.randn_like(v) for k, v in named} for _ in range(n)]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gaussian_shapes_and_log_prob(activation):
    torch.manual_seed(0)
    pol = GaussianMLPPolicy(3, 2, hidden_sizes=(16,), activation=activation, init_log_std=-0.7)
    obs = torch.randn(5, 4, 3)
    dist = pol(obs)
    a = dist.sample()
    assert a.shape == (5, 4, 2)
    assert dist.log_prob(a).shape == (5, 4)
    # independent check of the diagonal-Gaussian log density
    mean = pol.mode(obs)
    std = torch.full((2,), -0.7).exp()
    log2pi = torch.log(torch.tensor(2 * torch.pi))
    manual = (-0.5 * ((a - mean) / std) ** 2 - torch.log(std) - 0.5 * log2pi).sum(-1)
    torch.testing.assert_close(dist.log_prob(a), manual)


def test_params_none_equals_own_params_and_is_differentiable():
    torch.manual_seed(1)
    pol = CategoricalMLPPolicy(4, 3, hidden_sizes=(8, 8))
    obs = torch.randn(10, 4)
    own = dict(pol.named_parameters())
    torch.testing.assert_close(pol(obs).logits, pol(obs, own).logits)
    # adapted params theta' = theta - alpha*g stay in the graph: gradient w.r.t. theta flows through them
    adapted = {k: v - 0.1 * torch.ones_like(v) for k, v in own.items()}
    pol(obs, adapted).log_prob(torch.zeros(10, dtype=torch.long)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pol.parameters())
    # different params give different outputs
    assert not torch.allclose(pol(obs).logits, pol(obs, adapted).logits)


@pytest.mark.parametrize("kind", ["gaussian", "categorical", "value"])
def test_per_task_equals_loop_of_single_calls(kind):
    torch.manual_seed(2)
    net = {"gaussian": lambda: GaussianMLPPolicy(3, 2, (16, 16)),
           "categorical": lambda: CategoricalMLPPolicy(3, 4, (16, 16)),
           "value": lambda: ValueNetwork(3, (16, 16))}[kind]()
    K, N = 6, 9
    params = _perturbed(net, K)
    obs = torch.randn(K, N, 3)
    batched = net.per_task(obs, stack_params(params))
    singles = [net(obs[k], params[k]) for k in range(K)]
    if kind == "value":
        torch.testing.assert_close(batched, torch.stack(singles))
        return
    assert batched.batch_shape == (K, N)
    actions = batched.sample()
    lp = batched.log_prob(actions)
    torch.testing.assert_close(lp, torch.stack([d.log_prob(actions[k]) for k, d in enumerate(singles)]))
    torch.testing.assert_close(batched.entropy(), torch.stack([d.entropy() for d in singles]))


def test_per_task_gradients_match_loop():
    torch.manual_seed(3)
    pol = GaussianMLPPolicy(3, 2, (8,))
    K = 4
    obs, act = torch.randn(K, 5, 3), torch.randn(K, 5, 2)
    params = [{k: v.clone().requires_grad_(True) for k, v in p.items()} for p in _perturbed(pol, K)]
    pol.per_task(obs, stack_params(params)).log_prob(act).sum().backward()
    g1 = [{k: v.grad.clone() for k, v in p.items()} for p in params]
    for p in params:
        for v in p.values():
            v.grad = None
    sum(pol(obs[k], params[k]).log_prob(act[k]).sum() for k in range(K)).backward()
    for a, p in zip(g1, params, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], p[k].grad)


def test_expand_params_shares_one_parameter_set():
    torch.manual_seed(4)
    pol = CategoricalMLPPolicy(3, 2, (8,))
    obs = torch.randn(3, 5, 3)
    d = pol.per_task(obs, expand_params(dict(pol.named_parameters()), 3))
    torch.testing.assert_close(d.logits, pol(obs).logits)


def test_bad_inputs_name_the_value():
    pol = GaussianMLPPolicy(3, 2)
    with pytest.raises(ValueError, match=r"obs_dim=3.*\(5, 4\)"):
        pol(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="activation='sigmoid'"):
        GaussianMLPPolicy(3, 2, activation="sigmoid")
    with pytest.raises(ValueError, match="positive integer"):
        CategoricalMLPPolicy(3, 0)
    with pytest.raises(KeyError, match="unknown parameter names"):
        pol(torch.zeros(3), {"weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="leading dimension"):
        pol.per_task(torch.zeros(4, 2, 3), expand_params(dict(pol.named_parameters()), 3))
    with pytest.raises(ValueError, match="empty"):
        stack_params([])
