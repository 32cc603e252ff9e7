r"""Supervised MAML on the sinusoid family: second-order MAML, first-order MAML, Reptile, and pretraining.

Chapter "MAML: the derivation" (``chapters/02-maml.ipynb``). Everything is *functional*: a model is an
``nn.Module`` used only as a function through :func:`torch.func.functional_call`, its parameters are a plain
dict ``name -> tensor``, and every per-task computation is :func:`torch.func.vmap`-ed over the tasks of a
meta-batch, so there is no Python loop over tasks and no copy of a module.

Equations (labels as in the chapter):

* inner update, :math:`m` steps of gradient descent on the support loss (eq. ``maml-inner``):
  :math:`\theta^{(j+1)}_i = \theta^{(j)}_i - \alpha \nabla L^{\mathrm{tr}}_i(\theta^{(j)}_i)`,
  :math:`\theta^{(0)}_i = \theta`, :math:`\theta'_i = \theta^{(m)}_i`;
* meta-objective (eq. ``maml-objective``): :math:`\mathcal L(\theta) = \frac1n \sum_i L^{\mathrm{val}}_i
  (\theta'_i(\theta))`;
* meta-gradient (eq. ``maml-metagrad``): :math:`\nabla\mathcal L = \frac1n\sum_i \prod_{j=m-1}^{0}
  (I - \alpha H^{\mathrm{tr}}_i(\theta^{(j)}_i))^\top \nabla L^{\mathrm{val}}_i(\theta'_i)`, with the Hessians
  of the support loss; first-order MAML (eq. ``maml-fo``) drops every Hessian:
  :math:`\frac1n\sum_i \nabla L^{\mathrm{val}}_i(\theta'_i)`;
* Reptile (eq. ``reptile``): :math:`\theta \leftarrow \theta + \epsilon\,(\frac1n\sum_i \phi_i - \theta)`,
  with :math:`\phi_i` the result of ``k`` SGD steps on task ``i``.

Shapes: ``n`` tasks, ``K`` points per task, inputs and targets ``[n, K, 1]`` (a batch of tasks) or ``[K, 1]``
(one task). Parameter dicts hold the model's own shapes; *stacked* dicts carry a leading ``n``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from meta_rl_lessons.rl.utils import (
    CSVLogger,
    check_config_choice,
    check_config_common,
    check_positive_ints,
    check_state,
    config_state,
    resolve_device,
)
from meta_rl_lessons.serialization import to_safe
from meta_rl_lessons.trainer import Row, TrainerBase, load_rng_state, rng_state

__all__ = [
    "METHODS",
    "SinusoidConfig",
    "SinusoidFamily",
    "SinusoidResult",
    "SinusoidTasks",
    "SinusoidTrainer",
    "adapt",
    "adapt_tasks",
    "evaluate_adaptation",
    "make_regressor",
    "meta_gradient",
    "meta_loss",
    "mse_loss",
    "peak_memory_bytes",
    "pretrain_gradient",
    "reptile_update",
    "train_sinusoid",
]

Params = Mapping[str, Tensor]

#: Training methods :func:`train_sinusoid` knows.
METHODS: tuple[str, ...] = ("maml", "fomaml", "reptile", "pretrain")


# ============================================================================ the task family
@dataclass(frozen=True)
class SinusoidTasks:
    r"""A batch of sinusoid tasks :math:`y = A \sin(x - \varphi)`: ``amplitude [n]``, ``phase [n]``."""

    amplitude: Tensor
    phase: Tensor

    def __len__(self) -> int:
        return self.amplitude.shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        """Targets of task ``i`` at ``x[i]``: ``x [n, K, 1] -> y [n, K, 1]``."""
        if x.dim() != 3 or x.shape[0] != len(self):
            raise ValueError(f"x must have shape [n={len(self)}, K, 1], got {tuple(x.shape)}")
        a = self.amplitude.to(x).view(-1, 1, 1)
        p = self.phase.to(x).view(-1, 1, 1)
        return a * torch.sin(x - p)


@dataclass(frozen=True)
class SinusoidFamily:
    """The sinusoid regression tasks of Finn et al. (2017): amplitude, phase and inputs uniform."""

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    """Amplitude :math:`A \\sim U[0.1, 5]`."""
    phase_range: tuple[float, float] = (0.0, math.pi)
    r"""Phase :math:`\varphi \sim U[0, \pi]`."""
    x_range: tuple[float, float] = (-5.0, 5.0)
    """Inputs :math:`x \\sim U[-5, 5]`."""

    def sample_tasks(self, n: int, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32) -> SinusoidTasks:
        """``n`` tasks (on the CPU; move data, not tasks, to a device)."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"number of tasks must be a positive int, got {n!r}")
        lo, hi = self.amplitude_range
        amp = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=dtype)
        lo, hi = self.phase_range
        phase = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=dtype)
        return SinusoidTasks(amp, phase)

    def sample_data(self, tasks: SinusoidTasks, k: int, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, Tensor]:
        """``k`` points per task, ``x`` uniform: ``(x [n, k, 1], y [n, k, 1])``."""
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"number of points per task must be a positive int, got {k!r}")
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand(len(tasks), k, 1, generator=generator, dtype=tasks.amplitude.dtype)
        return x, tasks(x)


# ============================================================================ model and losses
def make_regressor(hidden_sizes: Sequence[int] = (40, 40), dtype: torch.dtype = torch.float32) -> nn.Module:
    """The paper's regressor: ``1 -> 40 -> ReLU -> 40 -> ReLU -> 1`` (PyTorch's default initialisation)."""
    if any((not isinstance(h, int)) or h <= 0 for h in hidden_sizes):
        raise ValueError(f"hidden sizes must be positive ints, got {tuple(hidden_sizes)}")
    sizes = [1, *hidden_sizes]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], 1))
    return nn.Sequential(*layers).to(dtype)


def mse_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    r"""Mean squared error :math:`L(\theta) = \frac1K\sum_k (f_\theta(x_k) - y_k)^2` of one task.

    Args:
        model: the network, evaluated functionally with ``params``.
        params: ``name -> tensor`` (the names of ``dict(model.named_parameters())``).
        x, y: ``[K, d_in]``, ``[K, d_out]``.
    """
    return ((functional_call(model, dict(params), (x,)) - y) ** 2).mean()


def _check_step(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"number of inner steps must be a non-negative int, got {steps!r}")


def _check_task_data(*arrays: Tensor) -> None:
    shapes = [tuple(a.shape) for a in arrays]
    if any(a.dim() != 3 for a in arrays) or len({s[0] for s in shapes}) != 1:
        raise ValueError(f"task data must be [n_tasks, K, dim] with one n_tasks for all arrays, got {shapes}")


def adapt(model: nn.Module, params: Params, x: Tensor, y: Tensor, inner_lr: float, steps: int
          ) -> dict[str, Tensor]:
    r"""``steps`` gradient steps on one task's support loss (eq. ``maml-inner``), differentiably.

    The result is a function of ``params`` that ``torch.func.grad`` (or autograd) can differentiate through,
    Hessians included: this is what second-order MAML backpropagates through.

    Args:
        x, y: support set of one task, ``[K, d]``.
        inner_lr: :math:`\alpha > 0`.
        steps: :math:`m \ge 0`.

    Returns:
        :math:`\theta'` as a parameter dict.
    """
    _check_step("inner_lr", inner_lr)
    _check_steps(steps)
    params = dict(params)
    for _ in range(steps):
        g = grad(mse_loss, argnums=1)(model, params, x, y)
        params = {k: p - inner_lr * g[k] for k, p in params.items()}
    return params


def adapt_tasks(model: nn.Module, params: Params, x: Tensor, y: Tensor, inner_lr: float, steps: int
                ) -> dict[str, Tensor]:
    """:func:`adapt` for every task at once: ``x, y [n, K, d]`` -> stacked adapted params ``[n, *shape]``."""
    _check_task_data(x, y)
    return vmap(lambda xi, yi: adapt(model, params, xi, yi, inner_lr, steps))(x, y)


def meta_loss(model: nn.Module, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor,
              query_y: Tensor, inner_lr: float, steps: int) -> Tensor:
    r"""The meta-objective (eq. ``maml-objective``): mean over tasks of the query loss after adaptation.

    Args:
        support_x, support_y: ``[n, K, d]`` (the data the inner update sees).
        query_x, query_y: ``[n, Q, d]`` (the data the adapted model is scored on).
    """
    _check_task_data(support_x, support_y, query_x, query_y)

    def one(sx, sy, qx, qy):
        return mse_loss(model, adapt(model, params, sx, sy, inner_lr, steps), qx, qy)

    return vmap(one)(support_x, support_y, query_x, query_y).mean()


def meta_gradient(model: nn.Module, params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                  query_y: Tensor, inner_lr: float, steps: int, first_order: bool = False
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    r"""The MAML meta-gradient (eq. ``maml-metagrad``) or its first-order approximation (eq. ``maml-fo``).

    Second order: ``torch.func.grad`` of :func:`meta_loss`, which differentiates *through* the inner
    gradient steps (the Hessian-vector products :math:`H^{\mathrm{tr}} v` happen inside autograd; the
    Hessian is never formed). First order: adapt without tracking how :math:`\theta'` depends on
    :math:`\theta` and return :math:`\frac1n\sum_i\nabla L^{\mathrm{val}}_i(\theta'_i)`, the gradient of the
    query loss *at the adapted parameters*.

    Returns:
        ``(loss, grads)``: the meta-loss (a scalar) and a dict shaped like ``params``.
    """
    _check_task_data(support_x, support_y, query_x, query_y)
    params = {k: v.detach() for k, v in params.items()}
    if not first_order:
        def objective(p):
            loss = meta_loss(model, p, support_x, support_y, query_x, query_y, inner_lr, steps)
            return loss, loss

        grads, loss = grad(objective, has_aux=True)(params)
    else:
        adapted = adapt_tasks(model, params, support_x, support_y, inner_lr, steps)
        adapted = {k: v.detach() for k, v in adapted.items()}

        def query(p, qx, qy):
            loss = mse_loss(model, p, qx, qy)
            return loss, loss

        per_task, losses = vmap(grad(query, has_aux=True))(adapted, query_x, query_y)
        grads = {k: g.mean(0) for k, g in per_task.items()}
        loss = losses.mean()
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError(f"meta-loss is not finite ({loss.item()}); lower inner_lr or meta_lr")
    return loss.detach(), grads


def pretrain_gradient(model: nn.Module, params: Params, x: Tensor, y: Tensor
                      ) -> tuple[Tensor, dict[str, Tensor]]:
    """Gradient of the plain regression loss pooled over all tasks (the "pretrained" baseline), no
    adaptation: ``x, y [n, K, d]``."""
    _check_task_data(x, y)
    params = {k: v.detach() for k, v in params.items()}

    def pooled(p):
        loss = vmap(lambda xi, yi: mse_loss(model, p, xi, yi))(x, y).mean()
        return loss, loss

    grads, loss = grad(pooled, has_aux=True)(params)
    return loss.detach(), grads


def reptile_update(model: nn.Module, params: Params, x: Tensor, y: Tensor, inner_lr: float, inner_steps: int,
                   outer_step: float) -> dict[str, Tensor]:
    r"""One Reptile meta-step (eq. ``reptile``): :math:`\theta + \epsilon(\bar\phi - \theta)`.

    :math:`\phi_i` is ``inner_steps`` steps of full-batch gradient descent with step ``inner_lr`` on task
    ``i``'s data ``x[i], y[i]`` (``[n, K, d]``), all tasks in one vmapped call. No second derivatives.
    """
    _check_step("outer_step", outer_step)
    if not isinstance(inner_steps, int) or inner_steps <= 0:
        raise ValueError(f"Reptile needs inner_steps >= 1, got {inner_steps!r}")
    params = {k: v.detach() for k, v in params.items()}
    phi = adapt_tasks(model, params, x, y, inner_lr, inner_steps)
    return {k: p + outer_step * (phi[k].mean(0) - p) for k, p in params.items()}


# ============================================================================ training and evaluation
@dataclass
class SinusoidConfig:
    """Hyper-parameters of :class:`SinusoidTrainer` and :func:`train_sinusoid` (defaults: Finn et al. 2017,
    appendix A.1)."""

    method: str = "maml"
    """``"maml"`` (second order), ``"fomaml"`` (first order), ``"reptile"`` or ``"pretrain"``."""
    k_shot: int = 10
    """``K``: support points per task in the inner update."""
    k_query: int = 10
    """Query points per task on which the adapted model is scored (the meta-objective's data)."""
    inner_steps: int = 1
    """Gradient steps in the inner update during meta-training (Reptile: SGD steps per task)."""
    inner_lr: float = 0.01
    r"""Inner step size :math:`\alpha`."""
    meta_lr: float = 1e-3
    r"""Adam step size :math:`\beta` of the meta-update (MAML, first-order MAML, pretraining)."""
    reptile_step: float = 0.1
    r"""Reptile's outer step :math:`\epsilon` in (eq. ``reptile``)."""
    meta_batch_size: int = 25
    """Tasks per meta-update."""
    iterations: int = 70_000
    """Meta-updates (the paper's 70k; the book uses fewer, see ``budget``)."""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """Hidden widths of the ReLU regressor."""
    seed: int = 0
    """Seed of the initialisation and of the task/data generator."""
    device: str = "cpu"
    """``"cpu"`` or ``"cuda"``: where the model and the data live."""
    log_every: int = 100
    """Record the training loss every this many iterations."""

    def __post_init__(self) -> None:
        # Every message names SinusoidConfig.<field>, the value and what is allowed.
        check_config_choice(self, "method", METHODS)
        check_positive_ints(self, "k_shot", "k_query", "meta_batch_size", "iterations", "log_every")
        s = self.inner_steps
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"SinusoidConfig.inner_steps must be a non-negative int, got {s!r}")
        if self.method == "reptile" and self.inner_steps == 0:
            raise ValueError("SinusoidConfig: Reptile needs inner_steps >= 1, got 0")
        _check_step("SinusoidConfig.inner_lr", self.inner_lr)
        _check_step("SinusoidConfig.meta_lr", self.meta_lr)
        _check_step("SinusoidConfig.reptile_step", self.reptile_step)
        check_config_common(self)  # hidden_sizes (made a tuple), seed, device


@dataclass
class SinusoidResult:
    """What :func:`train_sinusoid` returns."""

    config: SinusoidConfig
    model: nn.Module
    """The network (a function: its own parameters are not trained)."""
    params: dict[str, Tensor]
    """The trained (meta-)parameters."""
    iterations: list[int] = field(default_factory=list)
    """Iterations at which the loss was recorded."""
    losses: list[float] = field(default_factory=list)
    """Meta-loss (post-adaptation query MSE; pretrain: pooled MSE; Reptile: pre-update MSE) averaged over
    the last ``log_every`` iterations."""
    seconds: float = 0.0
    """Wall-clock training time."""


class SinusoidTrainer(TrainerBase):
    """Meta-training (or pretraining) of the sinusoid regressor, one meta-update per :meth:`iteration`, on a
    fresh batch of ``meta_batch_size`` tasks each time; follows the trainer protocol
    (:mod:`meta_rl_lessons.trainer`).

    Example::

        trainer = SinusoidTrainer(SinusoidConfig(method="maml", iterations=2000))
        trainer.train()
        result = trainer.result()          # what train_sinusoid returns

    Attributes:
        family: the task family; model: the network (a function: its own parameters are not trained);
        params: the trained (meta-)parameters ``name -> tensor``; optimizer: Adam on ``params`` (``None`` for
        Reptile, whose meta-step is an interpolation); generator: draws the tasks and the data points;
        logger: one row per iteration (``iteration``, ``loss``, ``train_time``).
    """

    name = "sinusoid"
    return_key = "loss"

    def __init__(self, config: SinusoidConfig, family: SinusoidFamily | None = None) -> None:
        self.config = c = config
        self.family = family or SinusoidFamily()
        torch.manual_seed(c.seed)
        self.device = resolve_device(c.device)
        self.model = make_regressor(c.hidden_sizes).to(self.device)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in self.model.named_parameters()}
        self.optimizer = (torch.optim.Adam(self.params.values(), lr=c.meta_lr) if c.method != "reptile"
                          else None)
        self.generator = torch.Generator().manual_seed(c.seed + 1)
        self.logger = CSVLogger(None)
        self.iterations_done = 0
        self.train_time = 0.0
        # The loss record of SinusoidResult: means over log_every iterations, and the running sum behind them.
        self.recorded_iterations: list[int] = []
        self.recorded_losses: list[float] = []
        self._running, self._count = 0.0, 0

    @property
    def total_iterations(self) -> int:
        """Meta-updates of a full run (``config.iterations``)."""
        return self.config.iterations

    def iteration(self) -> Row:
        """One meta-update (MAML, first-order MAML, Reptile) or pretraining step on fresh tasks; returns the
        row ``{"iteration", "loss", "train_time"}``.

        Raises:
            FloatingPointError: the loss is not finite (naming the method and the iteration).
        """
        c, family, model, params, device = self.config, self.family, self.model, self.params, self.device
        gen = self.generator
        start = time.perf_counter()
        it = self.iterations_done + 1
        tasks = family.sample_tasks(c.meta_batch_size, gen)
        sx, sy = (t.to(device) for t in family.sample_data(tasks, c.k_shot, gen))
        if c.method == "reptile":
            with torch.no_grad():
                loss = vmap(lambda xi, yi: mse_loss(model, params, xi, yi))(sx, sy).mean()
            new = reptile_update(model, params, sx, sy, c.inner_lr, c.inner_steps, c.reptile_step)
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(new[k])
        else:
            if c.method == "pretrain":
                loss, grads = pretrain_gradient(model, params, sx, sy)
            else:
                qx, qy = (t.to(device) for t in family.sample_data(tasks, c.k_query, gen))
                loss, grads = meta_gradient(model, params, sx, sy, qx, qy, c.inner_lr, c.inner_steps,
                                            first_order=c.method == "fomaml")
            for k, p in params.items():
                p.grad = grads[k]
            self.optimizer.step()
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"{c.method}: loss {float(loss)} at iteration {it}; lower meta_lr")
        self._running += float(loss)
        self._count += 1
        if it % c.log_every == 0 or it == c.iterations:
            self.recorded_iterations.append(it)
            self.recorded_losses.append(self._running / self._count)
            self._running, self._count = 0.0, 0
        self.iterations_done = it
        self.train_time += time.perf_counter() - start
        row = {"iteration": it, "loss": float(loss), "train_time": self.train_time}
        self.logger.log(row)
        return row

    def result(self) -> SinusoidResult:
        """The run so far as a :class:`SinusoidResult` (its ``params`` share storage with :attr:`params`)."""
        return SinusoidResult(self.config, self.model, {k: v.detach() for k, v in self.params.items()},
                              list(self.recorded_iterations), list(self.recorded_losses), self.train_time)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything the next meta-updates depend on (a ``weights_only``-safe snapshot): the config, the
        parameters, Adam's moments, the iteration count, the loss record (with its running sum) and the
        random generators (the task and data generator, and the process-wide ones)."""
        return to_safe({
            "config": config_state(self.config), "params": dict(self.params),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "iterations_done": self.iterations_done, "train_time": self.train_time,
            "recorded_iterations": self.recorded_iterations, "recorded_losses": self.recorded_losses,
            "running": self._running, "count": self._count, "rng": rng_state({"data": self.generator})})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (as returned, or as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`), on a trainer built from the same config.

        Raises:
            ValueError: a state with missing entries or saved with another config (naming the fields).
        """
        check_state(type(self).__name__, self.config, state,
                    ("params", "optimizer", "iterations_done", "train_time", "recorded_iterations",
                     "recorded_losses", "running", "count", "rng"))
        saved = state["params"]
        if set(saved) != set(self.params):
            raise ValueError(f"SinusoidTrainer.load_state_dict: the state has parameters {sorted(saved)}, "
                             f"the model has {sorted(self.params)}")
        with torch.no_grad():  # in place: the optimiser holds these tensors
            for k, p in self.params.items():
                p.copy_(saved[k])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.iterations_done = int(state["iterations_done"])
        self.train_time = float(state["train_time"])
        self.recorded_iterations = [int(i) for i in state["recorded_iterations"]]
        self.recorded_losses = [float(x) for x in state["recorded_losses"]]
        self._running, self._count = float(state["running"]), int(state["count"])
        load_rng_state(state["rng"], {"data": self.generator})  # last: nothing may draw after it


def train_sinusoid(config: SinusoidConfig, family: SinusoidFamily | None = None) -> SinusoidResult:
    """Meta-train (or pretrain) the sinusoid regressor; a fresh task batch every iteration
    (:class:`SinusoidTrainer` run to the end).

    Example::

        result = train_sinusoid(SinusoidConfig(method="maml", iterations=2000))
        curves = evaluate_adaptation(result.model, result.params, k_shot=10, steps=(0, 1, 10))
    """
    trainer = SinusoidTrainer(config, family)
    trainer.train()
    return trainer.result()


def evaluate_adaptation(model: nn.Module, params: Params, k_shot: int, steps: Sequence[int] = (0, 1, 5, 10),
                        inner_lr: float = 0.01, num_tasks: int = 600, num_query: int = 100, seed: int = 12345,
                        family: SinusoidFamily | None = None) -> dict[int, Tensor]:
    """Query MSE on fresh test tasks after each number of adaptation steps in ``steps``.

    Every task gets ``k_shot`` support points (seeded, so two models are compared on the same tasks and
    points) and ``num_query`` query points; adaptation is plain gradient descent with ``inner_lr``.

    Returns:
        ``{steps: per-task MSE [num_tasks]}`` (mean and spread over tasks are the caller's choice).
    """
    family = family or SinusoidFamily()
    if any((not isinstance(s, int)) or s < 0 for s in steps):
        raise ValueError(f"steps must be non-negative ints, got {tuple(steps)}")
    device = next(iter(params.values())).device
    gen = torch.Generator().manual_seed(seed)
    tasks = family.sample_tasks(num_tasks, gen)
    sx, sy = (t.to(device) for t in family.sample_data(tasks, k_shot, gen))
    qx, qy = (t.to(device) for t in family.sample_data(tasks, num_query, gen))
    params = {k: v.detach() for k, v in params.items()}
    out: dict[int, Tensor] = {}
    current = {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}
    done = 0
    for s in sorted(set(steps)):
        if s > done:
            more = s - done
            current = vmap(lambda p, xi, yi, n=more: adapt(model, p, xi, yi, inner_lr, n))(current, sx, sy)
            done = s
        out[s] = vmap(lambda p, xi, yi: mse_loss(model, p, xi, yi))(current, qx, qy).detach().cpu()
    return {s: out[s] for s in steps}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ profiler's start/stop lines (they go to file descriptor 2, not to ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak bytes allocated by torch while ``fn()`` runs, above what was allocated before it started.

    On CUDA this is ``torch.cuda.max_memory_allocated``; on the CPU it replays the allocations and frees
    that :mod:`torch.profiler` records (``profile_memory=True``) in time order. Used for the chapter's cost
    table: what second-order MAML keeps alive so it can differentiate through the inner update.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage != 0]
    events.sort(key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:  # "[memory]" events are frees outside any op; ops carry their own net allocations
        current += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, current)
    return int(peak)
