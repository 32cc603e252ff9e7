r"""The meta-KL's Hessian-vector products in closed form, layer by layer, for MLP policies.

Chapter "MAML for RL", section on the trust region (eq. ``meta-kl-hessian``). The product MAML-TRPO's
conjugate gradient needs ten times per meta-step is

.. math::
    P v = \frac1K\sum_k J_k^\top F_k J_k\, v + \lambda v, \qquad J_k = I - \alpha H_k,

with :math:`H_k` the Hessian of task :math:`k`'s inner loss at :math:`\theta` (on the pre-update batch)
and :math:`F_k` the Hessian of its post-update KL at :math:`\theta'_{k,\mathrm{old}}`.
:func:`~meta_rl_lessons.maml.rl.meta_fvp_factorized` gets the three factors from autograd, by double
backward passes over graphs it keeps; every pass recomputes the activations' first and second derivatives
(most of its time goes to elementwise products inside ``tanh``'s double backward). Here the network is a
known MLP (``Linear`` layers and ``tanh``/``ReLU``), so everything that does not depend on :math:`v` is
computed once, when the product is built, and each product is a fixed sequence of batched matrix products:

* :math:`H_k u` by Pearlmutter's R-operator (forward-over-reverse by hand): a tangent forward pass
  :math:`\dot z_l = \dot x_{l-1}W_l^\top + x_{l-1}\dot W_l^\top + \dot b_l`, :math:`\dot x_l = \phi'(z_l)
  \odot\dot z_l`; the output-level Hessian of the per-step loss applied to :math:`\dot z_L`; a tangent
  backward pass :math:`\dot\delta_l = (\dot\delta_{l+1}W_{l+1} + \delta_{l+1}\dot W_{l+1})\odot\phi'(z_l)
  + (\delta_{l+1}W_{l+1})\odot\phi''(z_l)\odot\dot z_l`, and :math:`(H u)_{W_l} = \dot\delta_l^\top x_{l-1}
  + \delta_l^\top\dot x_{l-1}`. The cached tensors are the layer inputs :math:`x_l`, :math:`\phi'(z_l)`,
  the backward signals :math:`\delta_l` and :math:`(\delta_{l+1}W_{l+1})\odot\phi''(z_l)`.
* :math:`F_k u` as a Gauss-Newton product :math:`J_{\mathrm{out}}^\top M J_{\mathrm{out}} u`: at
  :math:`\theta'_{\mathrm{old}}` the KL's gradient with respect to the network's outputs vanishes, so its
  Hessian is exactly that, with :math:`M` the KL's Hessian in the outputs (Gaussian: :math:`1/\sigma^2` for
  the mean, 2 for each log-std; categorical: :math:`\mathrm{diag}(p) - pp^\top` in the logits). One tangent
  forward pass and one backward pass, no second derivative of the network.

The numbers are those of :func:`~meta_rl_lessons.maml.rl.meta_fvp_factorized` and
:func:`~meta_rl_lessons.maml.rl.meta_fvp_direct` to float rounding (``tests/test_maml_curvature.py``
checks all three in float64); ``bench/maml_profile.py`` times them.

Shapes: ``K`` tasks; the ``[T, E]`` steps of a batch are flattened to ``M = T * E`` rows; stacked
parameters have a leading ``K``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from meta_rl_lessons.rl.trpo import flat_concat, unflatten_like

__all__ = ["CHUNK_BYTES", "InnerLossHessian", "MLPLayout", "OutputCurvature", "PostUpdateFisher",
           "StackedMLP", "default_tasks_per_chunk", "meta_fvp_analytic", "mlp_layout"]


# ============================================================================ the network's structure
@dataclass(frozen=True)
class MLPLayout:
    """Where an MLP policy keeps its layers: parameter names per ``Linear``, the hidden activation, and the
    Gaussian head's log-std (``None`` for a categorical policy)."""

    weights: tuple[str, ...]
    biases: tuple[str, ...]
    activation: str  # "tanh" or "relu"
    log_std: str | None


def mlp_layout(policy: nn.Module) -> MLPLayout:
    """The :class:`MLPLayout` of a :class:`GaussianMLPPolicy` or :class:`CategoricalMLPPolicy`.

    Raises:
        TypeError: another kind of policy, or a network that is not ``Linear`` layers with ``tanh`` or
            ``ReLU`` between them (use ``fvp_method="factorized"``, which works for any network).
    """
    if isinstance(policy, GaussianMLPPolicy):
        body, prefix, log_std = policy.net.mean, "net.mean.", "net.log_std"
    elif isinstance(policy, CategoricalMLPPolicy):
        body, prefix, log_std = policy.net, "net.", None
    else:
        raise TypeError(f"closed-form curvature needs a GaussianMLPPolicy or CategoricalMLPPolicy, got "
                        f"{type(policy).__name__}; use fvp_method='factorized'")
    modules = list(body) if isinstance(body, nn.Sequential) else []
    linear = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    acts = {type(m) for i, m in enumerate(modules) if i not in linear}
    kinds = {nn.Tanh: "tanh", nn.ReLU: "relu"}
    expected = [j for i in linear[:-1] for j in (i, i + 1)] + linear[-1:]
    if not linear or len(acts) > 1 or not acts <= set(kinds) or list(range(len(modules))) != expected:
        raise TypeError(f"closed-form curvature needs Linear layers with one tanh or ReLU activation between "
                        f"them, got {[type(m).__name__ for m in modules]}; use fvp_method='factorized'")
    activation = kinds[acts.pop()] if acts else "tanh"
    return MLPLayout(tuple(f"{prefix}{i}.weight" for i in linear), tuple(f"{prefix}{i}.bias" for i in linear),
                     activation, log_std)


# ============================================================================ per-step losses at the outputs
@dataclass
class OutputCurvature:
    r"""The per-step loss's first and second derivatives in the network's outputs, as operators.

    ``grad [K, M, A]`` is :math:`\partial\ell/\partial z_L` (the backward pass starts from it);
    ``hess(z_dot, log_std_dot)`` returns :math:`\dot\delta_L [K, M, A]`, the output-level Hessian applied to
    the outputs' tangent (and, for a Gaussian head, to the log-std's tangent ``[K, A]``), and
    ``log_std_hvp(z_dot, log_std_dot)`` the log-std block of the product ``[K, A]`` (``None``: no log-std).
    """

    grad: Tensor
    hess: Callable[[Tensor, Tensor | None], Tensor]
    log_std_hvp: Callable[[Tensor, Tensor | None], Tensor] | None


def _gaussian_inner(mean: Tensor, log_std: Tensor, actions: Tensor, w: Tensor) -> OutputCurvature:
    # l = w [ 1/2 sum_j (a_j - mu_j)^2 exp(-2 rho_j) + sum_j rho_j ]  (minus log pi, weighted)
    inv_var = torch.exp(-2.0 * log_std).unsqueeze(1)  # [K, 1, A]
    r = (mean - actions) * inv_var  # (mu - a) / sigma^2
    w3 = w.unsqueeze(-1)
    grad = w3 * r
    h_mm = w3 * inv_var  # d2l / dmu2
    h_mr = -2.0 * w3 * r  # d2l / dmu drho
    h_rr = 2.0 * w3 * r * (mean - actions)  # d2l / drho2 = 2 w (a - mu)^2 / sigma^2

    def hess(z_dot: Tensor, rho_dot: Tensor | None) -> Tensor:
        out = h_mm * z_dot
        return out if rho_dot is None else out + h_mr * rho_dot.unsqueeze(1)

    def log_std_hvp(z_dot: Tensor, rho_dot: Tensor | None) -> Tensor:
        out = (h_mr * z_dot).sum(1)
        return out if rho_dot is None else out + (h_rr * rho_dot.unsqueeze(1)).sum(1)

    return OutputCurvature(grad, hess, log_std_hvp)


def _softmax_hessian(p: Tensor, w3: Tensor, z_dot: Tensor) -> Tensor:
    """``w (diag p - p p^T) z_dot`` per step: the Hessian in the logits of ``-log softmax(z)_a`` and of
    ``KL(p || softmax(z))`` at ``softmax(z) = p``."""
    pz = p * z_dot
    return w3 * (pz - p * pz.sum(-1, keepdim=True))


def _categorical_inner(logits: Tensor, actions: Tensor, w: Tensor) -> OutputCurvature:
    # l = -w log softmax(z)_a:  dl/dz = w (p - onehot(a)),  d2l/dz2 = w (diag p - p p^T)
    p = torch.softmax(logits, -1)
    onehot = torch.nn.functional.one_hot(actions.long(), p.shape[-1]).to(p.dtype)
    w3 = w.unsqueeze(-1)
    return OutputCurvature(w3 * (p - onehot), lambda z_dot, _rho: _softmax_hessian(p, w3, z_dot), None)


# ============================================================================ a stacked MLP with its cache
def _weight_grad(delta: Tensor, x: Tensor) -> Tensor:
    """``delta [K, M, out]``, ``x [K, M, in]`` -> ``sum_m delta_m x_m^T [K, out, in]``.

    MKL's batched kernel is several times slower when the *second* factor is the thin one (``in`` = 2 for
    2D navigation's first layer), so that case is computed transposed."""
    if x.shape[-1] < delta.shape[-1]:
        return torch.bmm(x.transpose(1, 2), delta).transpose(1, 2)
    return torch.bmm(delta.transpose(1, 2), x)


class StackedMLP:
    """An MLP evaluated with per-task parameters on per-task inputs, its activations kept for products.

    Args:
        layout: :func:`mlp_layout` of the policy.
        params: stacked parameters ``{name: [K, *shape]}`` (or shared ``[*shape]``, expanded).
        obs: ``[K, M, obs_dim]``.
    """

    def __init__(self, layout: MLPLayout, params: Mapping[str, Tensor], obs: Tensor) -> None:
        self.layout = layout
        K = obs.shape[0]
        ex = lambda t, d: t if t.dim() == d + 1 else t.unsqueeze(0).expand(K, *t.shape)  # noqa: E731
        # contiguous copies, W and W^T, made once: MKL's batched kernel is slower on a transposed view or
        # a batch of stride 0 (shared parameters expanded to K tasks) than on a plain array
        self.W = [ex(params[n].detach(), 2).contiguous() for n in layout.weights]
        self.Wt = [W.transpose(1, 2).contiguous() for W in self.W]
        self.b = [ex(params[n].detach(), 1) for n in layout.biases]
        self.log_std = None if layout.log_std is None else ex(params[layout.log_std].detach(), 1)
        x = obs.to(self.W[0].dtype)
        self.inputs = [x]  # x_0 .. x_{L-1}: the input of every Linear
        self.slopes: list[Tensor] = []  # phi'(z_l) of every hidden layer
        for Wt, b in zip(self.Wt[:-1], self.b[:-1], strict=True):
            z = torch.bmm(x, Wt).add_(b.unsqueeze(1))
            if layout.activation == "tanh":
                x = torch.tanh(z)
                self.slopes.append(1.0 - x * x)
            else:
                x = torch.relu(z)
                self.slopes.append((z > 0).to(z.dtype))
            self.inputs.append(x)
        self.out = torch.bmm(x, self.Wt[-1]).add_(self.b[-1].unsqueeze(1))  # [K, M, A]

    # -- first order --------------------------------------------------------------------------------
    def jvp(self, dW: list[Tensor], db: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Tangent forward pass: ``(z_dot_L [K, M, A], z_dot of the hidden layers, x_dot of the layer
        inputs)`` for the weight and bias tangents ``dW[l] [K, out, in]``, ``db[l] [K, out]``."""
        x_dot: list[Tensor | None] = [None]
        z_dots = []
        for i, (Wt, x) in enumerate(zip(self.Wt, self.inputs, strict=True)):
            z_dot = torch.bmm(x, dW[i].transpose(1, 2).contiguous()).add_(db[i].unsqueeze(1))
            if x_dot[i] is not None:
                z_dot = z_dot.baddbmm_(x_dot[i], Wt)
            if i < len(self.slopes):
                z_dots.append(z_dot)
                x_dot.append(self.slopes[i] * z_dot)
            else:
                return z_dot, z_dots, x_dot
        raise AssertionError("unreachable")

    def vjp(self, delta: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Backward pass from output cotangents ``delta [K, M, A]``: per-task ``(dW, db)``."""
        L = len(self.W)
        gW: list[Tensor] = [None] * L  # type: ignore[list-item]
        gb: list[Tensor] = [None] * L  # type: ignore[list-item]
        for i in range(L - 1, -1, -1):
            gW[i] = _weight_grad(delta, self.inputs[i])
            gb[i] = delta.sum(1)
            if i > 0:
                delta = torch.bmm(delta, self.W[i]).mul_(self.slopes[i - 1])
        return gW, gb


class InnerLossHessian:
    """:math:`u \\mapsto H_k u_k` for the inner loss of every task (Pearlmutter's R-operator, by hand).

    Built once per meta-step: the backward pass of the inner loss at :math:`\\theta`, keeping each layer's
    signal :math:`\\delta_l` and, for ``tanh``, :math:`(\\delta_{l+1}W_{l+1})\\odot\\phi''(z_l)`
    (:math:`\\phi'' = -2\\tanh\\,\\phi'`). A call takes the tangents ``(dW, db, d_log_std)`` (each with
    a leading ``K``) and returns the blocks of :math:`H_k u_k` in the same layout."""

    def __init__(self, net: StackedMLP, loss: OutputCurvature) -> None:
        self.net, self.loss = net, loss
        tanh = net.layout.activation == "tanh"
        L = len(net.W)
        self.deltas: list[Tensor] = [None] * L  # type: ignore[list-item]
        self.curv: list[Tensor | None] = [None] * L  # (delta_{l+1} W_{l+1}) * phi''(z_l), hidden layers
        delta = loss.grad
        for i in range(L - 1, -1, -1):
            self.deltas[i] = delta
            if i > 0:
                e = torch.bmm(delta, net.W[i])
                if tanh:  # phi'' = -2 tanh phi'  (ReLU: phi'' = 0)
                    self.curv[i - 1] = -2.0 * net.inputs[i] * net.slopes[i - 1] * e
                delta = e * net.slopes[i - 1]

    def __call__(self, dW: list[Tensor], db: list[Tensor], d_log_std: Tensor | None
                 ) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        net = self.net
        out_dot, z_dots, x_dots = net.jvp(dW, db)
        delta_dot = self.loss.hess(out_dot, d_log_std)
        L = len(net.W)
        hW: list[Tensor] = [None] * L  # type: ignore[list-item]
        hb: list[Tensor] = [None] * L  # type: ignore[list-item]
        for i in range(L - 1, -1, -1):
            hW[i] = _weight_grad(delta_dot, net.inputs[i])
            if x_dots[i] is not None:
                hW[i] = hW[i] + _weight_grad(self.deltas[i], x_dots[i])
            hb[i] = delta_dot.sum(1)
            if i > 0:  # in place: a fresh 10 MB tensor per operation costs more than the operation
                delta_dot = torch.bmm(delta_dot, net.W[i]).baddbmm_(self.deltas[i], dW[i])
                delta_dot.mul_(net.slopes[i - 1])
                if self.curv[i - 1] is not None:
                    delta_dot.addcmul_(self.curv[i - 1], z_dots[i - 1])
        h_rho = None if self.loss.log_std_hvp is None else self.loss.log_std_hvp(out_dot, d_log_std)
        return hW, hb, h_rho


class PostUpdateFisher:
    """:math:`u \\mapsto F_k u_k`, the Hessian of the post-update KL at :math:`\\theta'_{\\mathrm{old}}`, as
    :math:`J_{\\mathrm{out}}^\\top M J_{\\mathrm{out}}`: one tangent forward pass, the metric :math:`M`
    of the outputs, one backward pass (``step_weights [K, M]``: each step's weight in the task-mean KL)."""

    def __init__(self, net: StackedMLP, step_weights: Tensor) -> None:
        self.net = net
        w3 = step_weights.unsqueeze(-1)  # [K, M, 1]: mask / (real steps) / K
        if net.log_std is not None:
            inv_var = torch.exp(-2.0 * net.log_std).unsqueeze(1)
            self.metric = lambda z_dot: w3 * inv_var * z_dot  # KL(N(mu_o, s_o) || N(mu, s)): d2/dmu2 = 1/s^2
            self.rho_weight = 2.0 * step_weights.sum(1, keepdim=True)  # d2/drho2 = 2 per step
        else:
            p = torch.softmax(net.out, -1)
            self.metric = lambda z_dot: _softmax_hessian(p, w3, z_dot)
            self.rho_weight = None

    def __call__(self, dW: list[Tensor], db: list[Tensor], d_log_std: Tensor | None
                 ) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        out_dot, _, _ = self.net.jvp(dW, db)
        fW, fb = self.net.vjp(self.metric(out_dot))
        f_rho = None if d_log_std is None else self.rho_weight * d_log_std
        return fW, fb, f_rho


#: About this many bytes per hidden activation of one chunk of tasks (see :func:`default_tasks_per_chunk`).
CHUNK_BYTES = 3 * 2**20


def default_tasks_per_chunk(rows_per_task: int, width: int, target_bytes: int = CHUNK_BYTES) -> int:
    """Tasks per chunk of the closed-form products: a hidden activation ``[tasks, rows, width]`` (float32)
    of about ``target_bytes``, and at least 2 tasks.

    Why chunks: a product is a chain of about forty batched operations over tensors of ``rows x width``
    per task; on the whole meta-batch each intermediate (20 MB for HalfCheetahVel's 40 x 2000 x 64) leaves
    the cache before the next operation reads it, on a chunk of a few tasks it stays there.
    ``bench/maml_profile.py --task cheetah --threads 2 --chunks 0 8 6 4 2`` on the 2-core machine: 212 ms
    per product unchunked, 157 / 149 / 162 / 194 ms with 8 / 6 / 4 / 2 tasks per chunk (2D navigation,
    20 tasks: no difference, 74 and 76 ms). A batch of one task takes another kernel, slower and rounding
    differently (``--chunks 0 6 1`` in a later run: 173 / 146 / 197 ms, the last 1.6e-7 from the others
    relative to the largest entry), hence the floor of 2.
    """
    return max(2, int(target_bytes // max(1, rows_per_task * width * 4)))


def _step_weights(mask: Tensor, num_steps: Tensor) -> Tensor:
    """``[K, M]``: each real step's weight in a per-task mean (``task_mean``: divided by the real steps,
    at least 1)."""
    K = mask.shape[0]
    return mask.reshape(K, -1) / num_steps.clamp_min(1.0).view(K, 1)


def meta_fvp_analytic(policy: GaussianMLPPolicy | CategoricalMLPPolicy, params: Mapping[str, Tensor], pre,
                      post, inner_lr: float, fisher_point: Mapping[str, Tensor], first_order: bool = False,
                      damping: float = 0.0, tasks_per_chunk: int | None = None) -> Callable[[Tensor], Tensor]:
    r"""``v -> (\frac1K\sum_k J_k^\top F_k J_k + \lambda I)v`` in closed form (see the module docstring).

    The same product as :func:`~meta_rl_lessons.maml.rl.meta_fvp_factorized` with ``estimator="maml"``
    (the trust region's curvature is that of the REINFORCE step actually deployed).

    Args:
        policy: an MLP policy (:func:`mlp_layout`).
        params: the shared :math:`\theta` ``{name: [*shape]}``.
        pre, post: the pre- and post-update :class:`~meta_rl_lessons.maml.rl.TaskData` (possibly episode
            subsamples).
        inner_lr: :math:`\alpha`.
        fisher_point: the stacked :math:`\theta'_{k,\mathrm{old}}` ``[K, *shape]`` at which the post-update
            KL is expanded: the policies that sampled ``post``'s weights' old log-probabilities, where the
            KL's gradient vanishes (so its Hessian is the Gauss-Newton product, exactly).
        first_order: :math:`J_k = I`.
        damping: :math:`\lambda`.
        tasks_per_chunk: tasks computed together in one pass of the product (the per-task results are
            summed over all tasks at the end, so the numbers do not depend on it); default
            :func:`default_tasks_per_chunk`.

    Raises:
        TypeError: a policy that is not an MLP of ``Linear`` layers with ``tanh``/``ReLU``.
        ValueError: ``tasks_per_chunk < 1``, or parameter names that are not the policy's.
    """
    layout = mlp_layout(policy)
    names = list(params)
    order = [*layout.weights, *layout.biases] + ([layout.log_std] if layout.log_std else [])
    if sorted(order) != sorted(names):
        raise ValueError(f"parameter names {names} do not match the policy's layers {order}")
    theta = [params[n] for n in names]
    K = pre.num_tasks
    flat = lambda x: x.reshape(K, -1, x.shape[-1])  # noqa: E731  [K, T, E, d] -> [K, M, d]
    if tasks_per_chunk is None:
        rows = max(flat(post.obs).shape[1], flat(pre.obs).shape[1])
        tasks_per_chunk = default_tasks_per_chunk(rows, max(params[n].shape[0] for n in layout.weights))
    elif tasks_per_chunk < 1:
        raise ValueError(f"tasks_per_chunk must be a positive number of tasks, got {tasks_per_chunk}")
    chunks = [(k, min(K, k + tasks_per_chunk)) for k in range(0, K, tasks_per_chunk)]
    post_w = _step_weights(post.mask, post.num_steps) / K
    post_obs = flat(post.obs)
    if not first_order:  # the inner loss's data, for all tasks (sliced per chunk below)
        pre_dtype = params[layout.weights[0]].dtype  # that of the pre-update network's outputs
        pre_obs = flat(pre.obs)
        pre_w = _step_weights(pre.mask, pre.num_steps) * pre.weights.reshape(K, -1).to(pre_dtype)
        pre_actions = (flat(pre.actions).to(pre_dtype) if layout.log_std is not None
                       else pre.actions.reshape(K, -1))
    pieces = []  # (fisher, hessian) per chunk of tasks
    for lo, hi in chunks:
        post_net = StackedMLP(layout, {n: t[lo:hi] for n, t in fisher_point.items()}, post_obs[lo:hi])
        fisher = PostUpdateFisher(post_net, post_w[lo:hi])
        hessian = None
        if not first_order:
            pre_net = StackedMLP(layout, params, pre_obs[lo:hi])
            if layout.log_std is not None:
                loss = _gaussian_inner(pre_net.out, pre_net.log_std, pre_actions[lo:hi], pre_w[lo:hi])
            else:
                loss = _categorical_inner(pre_net.out, pre_actions[lo:hi], pre_w[lo:hi])
            hessian = InnerLossHessian(pre_net, loss)
        pieces.append((fisher, hessian))
    dtype = pieces[0][0].net.out.dtype

    def split(d: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        return ([d[n] for n in layout.weights], [d[n] for n in layout.biases],
                d[layout.log_std] if layout.log_std else None)

    def jacobian(hessian, parts):  # J u = u - alpha H u  (J is symmetric: also J^T)
        if hessian is None:
            return parts
        hW, hb, hr = hessian(*parts)
        dW, db, dr = parts
        return ([a - inner_lr * h for a, h in zip(dW, hW, strict=True)],
                [a - inner_lr * h for a, h in zip(db, hb, strict=True)],
                None if dr is None else dr - inner_lr * hr)

    def product(v: Tensor) -> Tensor:
        v = v.detach()
        shared = dict(zip(names, unflatten_like(v, theta), strict=True))
        per_task: dict[str, list[Tensor]] = {n: [] for n in names}
        # chunk by chunk: each chunk's intermediates stay in cache between the operations that use them
        for (lo, hi), (fisher, hessian) in zip(chunks, pieces, strict=True):
            parts = split({n: t.to(dtype).unsqueeze(0).expand(hi - lo, *t.shape) for n, t in shared.items()})
            out_W, out_b, out_r = jacobian(hessian, fisher(*jacobian(hessian, parts)))
            out = dict(zip(layout.weights, out_W, strict=True)) | dict(zip(layout.biases, out_b, strict=True))
            if layout.log_std:
                out[layout.log_std] = out_r
            for n in names:
                per_task[n].append(out[n])
        # the task sum over all chunks at once: the same order of additions whatever the chunking
        result = flat_concat([torch.cat(per_task[n]).sum(0).to(v.dtype) for n in names])
        return result + damping * v

    return product
