r"""The state baseline :math:`b(s)` that REINFORCE and TRPO share (chapter 1, eqs. baseline and gae).

``config.baseline`` picks one of three:

==========  ===============================================================================================
``"value"``  a :class:`~meta_rl_lessons.rl.policies.ValueNetwork` fitted by ``iters`` full-batch Adam steps
             on the Monte-Carlo returns of each batch
``"linear"`` the :class:`~meta_rl_lessons.rl.advantages.LinearFeatureBaseline` (eq. linear-baseline), refitted
             in closed form on each batch
``"none"``   no baseline: :meth:`StateBaseline.values` returns ``None``
==========  ===============================================================================================

Both trainers score a batch with the baseline *before* refitting it on that batch (fitting first would make
the baseline depend on the actions it scores), then call :meth:`StateBaseline.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from meta_rl_lessons.rl.advantages import LinearFeatureBaseline
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import ValueNetwork
from meta_rl_lessons.rl.utils import check_finite, make_adam

__all__ = ["BASELINES", "StateBaseline"]

BASELINES = ("value", "linear", "none")
"""The allowed values of ``config.baseline``."""


class StateBaseline:
    """One of :data:`BASELINES`, with its optimiser and its state.

    Args:
        kind: ``"value"``, ``"linear"`` or ``"none"``.
        obs_dim: observation size (the value network's input).
        hidden_sizes, activation: the value network's layers.
        learning_rate: Adam step size of the value network.
        iters: full-batch Adam steps per :meth:`fit`.
        device: where the value network lives.

    Attributes:
        value: the value network (``"value"``) or ``None``; optimizer: its Adam or ``None``;
        linear: the linear baseline (``"linear"``) or ``None``.
    """

    def __init__(self, kind: str, obs_dim: int, hidden_sizes: Sequence[int], activation: str,
                 learning_rate: float, iters: int, device: torch.device | str = "cpu") -> None:
        if kind not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
        self.kind, self.iters, self.device = kind, int(iters), torch.device(device)
        self.value: ValueNetwork | None = None
        self.optimizer: torch.optim.Adam | None = None
        self.linear: LinearFeatureBaseline | None = None
        if kind == "value":
            self.value = ValueNetwork(obs_dim, hidden_sizes, activation).to(self.device)
            self.optimizer = make_adam(self.value.parameters(), learning_rate)
        elif kind == "linear":
            self.linear = LinearFeatureBaseline()

    @torch.no_grad()
    def values(self, batch: EpisodeBatch) -> tuple[Tensor, Tensor] | None:
        """``(V(s_t), V(s'_t))``, each ``[T, B]`` and zero on padding, from the baseline as it is now; zeros
        for a linear baseline not fitted yet; ``None`` without a baseline."""
        if self.value is not None:
            m = batch.mask
            return self.value(batch.observations) * m, self.value(batch.next_observations) * m
        if self.linear is not None:
            if self.linear.weights is None:
                zeros = torch.zeros_like(batch.rewards)
                return zeros, zeros
            return self.linear.predict(batch), self.linear.predict_next(batch)
        return None

    def fit(self, batch: EpisodeBatch, targets: Tensor, what: str = "value") -> float:
        """Fit to the ``[T, B]`` ``targets`` over the real steps; returns the final mean squared error (NaN
        without a baseline). ``what`` names the trainer in the error a non-finite loss raises."""
        mask = batch.mask
        if self.linear is not None:
            self.linear.fit(batch, targets)
            return float(((self.linear.predict(batch) - targets) ** 2 * mask).sum() / mask.sum())
        if self.value is None:
            return math.nan
        for _ in range(self.iters):
            err = (self.value(batch.observations) - targets) ** 2
            loss = check_finite(f"{what} value loss", (err * mask).sum() / mask.sum())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.item())

    def state_dict(self) -> dict[str, Any]:
        """The network and its Adam state, or the linear weights (``None`` where they do not apply)."""
        return {"kind": self.kind,
                "value": None if self.value is None else self.value.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "linear_weights": None if self.linear is None else self.linear.weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`.

        Raises:
            ValueError: the state is of another kind of baseline.
        """
        if state.get("kind") != self.kind:
            raise ValueError(f"the state holds a {state.get('kind')!r} baseline, this one is {self.kind!r}")
        if self.value is not None:
            self.value.load_state_dict(state["value"])
            self.optimizer.load_state_dict(state["optimizer"])
        if self.linear is not None:
            w = state["linear_weights"]
            self.linear.weights = None if w is None else w.to(self.device)
