r"""The toy problem of Jaderberg et al. (2017, Fig. 2): a quadratic objective seen through a surrogate.

The objective we care about is :math:`Q(\theta) = 1.2 - (\theta_0^2 + \theta_1^2)` (maximum 1.2 at 0), but a
member can only climb the *surrogate*

.. math::
    \hat Q(\theta \mid h) = 1.2 - (h_0 \theta_0^2 + h_1 \theta_1^2),

whose hyperparameters :math:`h` decide which coordinates get pushed towards 0. One gradient-ascent step with
step size :math:`\alpha` is :math:`\theta \leftarrow \theta + \alpha \nabla_\theta \hat Q = \theta - 2\alpha\,
h \odot \theta`. With :math:`h = (1, 0)` a member only shrinks :math:`\theta_0`, with :math:`h = (0, 1)` only
:math:`\theta_1`: alone, each gets stuck at :math:`Q = 1.2 - 0.9^2 = 0.39` from :math:`\theta = (0.9, 0.9)`.
PBT's exploit copies the better :math:`\theta`, its explore changes :math:`h`, and the population reaches
:math:`Q \approx 1.2`.

:class:`QuadraticToy` is a :class:`~meta_rl_lessons.adaptive.trial.Trainable` (a "step" is one gradient step),
so the same PBT code that trains PPO populations runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from meta_rl_lessons.adaptive.space import Float, SearchSpace
from meta_rl_lessons.adaptive.trial import trainable_path

__all__ = ["QuadraticToy", "objective", "surrogate", "toy_space"]


def objective(theta: torch.Tensor) -> torch.Tensor:
    r""":math:`Q(\theta) = 1.2 - (\theta_0^2 + \theta_1^2)`."""
    return 1.2 - (theta**2).sum(-1)


def surrogate(theta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat Q(\theta \mid h) = 1.2 - (h_0 \theta_0^2 + h_1 \theta_1^2)`."""
    return 1.2 - (h * theta**2).sum(-1)


def toy_space() -> SearchSpace:
    """``h0, h1`` in ``[0, 1]``: the hyperparameters PBT explores on the toy problem."""
    return SearchSpace([Float("h0", 0.0, 1.0), Float("h1", 0.0, 1.0)])


class QuadraticToy:
    """One member of the toy population: parameters :math:`\\theta`, hyperparameters ``params = {h0, h1}``.

    Args:
        params: ``{"h0": ..., "h1": ...}``.
        seed: unused (the toy is deterministic); kept for the :class:`Trainable` interface.
        step_size: gradient-ascent step size :math:`\\alpha`.
        theta0: initial parameters.
    """

    def __init__(self, params: Mapping[str, Any], seed: int = 0, step_size: float = 0.01,
                 theta0: tuple[float, float] = (0.9, 0.9)) -> None:
        self.params = toy_space().validate(params)
        if not (isinstance(step_size, (int, float)) and 0 < step_size < 1):
            raise ValueError(f"step_size must lie in (0, 1), got {step_size!r}")
        self.seed, self.step_size = int(seed), float(step_size)
        self.theta = torch.tensor(theta0, dtype=torch.float64)
        self.steps_done = 0
        self.curve: list[dict[str, float]] = [self._row()]

    def _row(self) -> dict[str, float]:
        return {"step": self.steps_done, "theta0": float(self.theta[0]), "theta1": float(self.theta[1]),
                "Q": self.score(), "h0": self.params["h0"], "h1": self.params["h1"]}

    def train(self, steps: int) -> list[dict[str, float]]:
        """``steps`` gradient-ascent steps on the surrogate; one curve row per step."""
        if not isinstance(steps, int) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        h = torch.tensor([self.params["h0"], self.params["h1"]], dtype=torch.float64)
        rows = []
        for _ in range(steps):
            theta = self.theta.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(surrogate(theta, h), theta)
            self.theta = (theta + self.step_size * grad).detach()  # ascent on Q^
            self.steps_done += 1
            rows.append(self._row())
        self.curve.extend(rows)
        return rows

    def score(self) -> float:
        """The true objective :math:`Q(\\theta)` (what PBT ranks members by)."""
        value = float(objective(self.theta))
        return value if math.isfinite(value) else -math.inf

    def set_hyperparameters(self, params: Mapping[str, Any]) -> None:
        self.params = toy_space().validate({**self.params, **params})

    def state_dict(self) -> dict[str, Any]:
        return {"kind": trainable_path(type(self)), "params": dict(self.params), "seed": self.seed,
                "settings": {"step_size": self.step_size}, "learner": {"theta": self.theta.clone()},
                "progress": {"steps_done": self.steps_done, "curve": [dict(r) for r in self.curve]}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.set_hyperparameters(state["params"])
        self.theta = state["learner"]["theta"].clone().to(torch.float64)
        self.steps_done = int(state["progress"]["steps_done"])
        self.curve = [dict(r) for r in state["progress"]["curve"]]
