"""The search space over PPO on CartPole that chapter 4 and ``bench/adaptive.py`` use.

Architecture: 1 to 3 hidden layers, each with its own width (conditional dimensions ``width_1``, ``width_2``),
and the activation. Hyperparameters: the learning rate (log-uniform), and rl-baselines3-zoo's categorical
choices for the discount, GAE lambda, clip range, epochs; the entropy coefficient (log-uniform).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meta_rl_lessons.adaptive.space import Categorical, Float, SearchSpace
from meta_rl_lessons.adaptive.trial import DEFAULT_PPO_BASE

__all__ = ["CARTPOLE_BASE", "HYPERPARAMETER_KEYS", "architecture", "architecture_dims", "cartpole_space"]

#: PPO settings shared by every trial: 4 CartPole environments x 128 steps per rollout (512 env steps),
#: minibatches of 128, no learning-rate annealing (a trial's length is not known in advance).
CARTPOLE_BASE: dict[str, Any] = {**DEFAULT_PPO_BASE, "env_id": "CartPole-v1"}

#: The dimensions PBT may perturb (the architecture is copied with the weights, never perturbed).
HYPERPARAMETER_KEYS = ("learning_rate", "gamma", "gae_lambda", "clip_coef", "entropy_coef", "update_epochs")

WIDTHS = (8, 16, 32, 64, 128)


def architecture_dims(max_layers: int = 3) -> list:
    """Depth, per-layer widths (``width_i`` exists only when ``n_layers > i``) and activation.

    Shared by every PPO search space, in this order (the order of dimensions fixes what a seed samples).
    """
    if max_layers not in (1, 2, 3):
        raise ValueError(f"max_layers must be 1, 2 or 3, got {max_layers!r}")
    layers = tuple(range(1, max_layers + 1))
    dims = [Categorical("n_layers", layers), Categorical("width_0", WIDTHS)]
    for i in range(1, max_layers):
        dims.append(Categorical(f"width_{i}", WIDTHS, when={"n_layers": tuple(n for n in layers if n > i)}))
    return [*dims, Categorical("activation", ("tanh", "relu"))]


def cartpole_space(max_layers: int = 3) -> SearchSpace:
    """Architecture (depth, per-layer width, activation) and PPO hyperparameters for CartPole."""
    dims = architecture_dims(max_layers) + [
        Float("learning_rate", 1e-4, 1e-2, log=True),
        Categorical("gamma", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        Categorical("gae_lambda", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        Categorical("clip_coef", (0.1, 0.2, 0.3, 0.4)),
        Float("entropy_coef", 1e-5, 1e-1, log=True),
        Categorical("update_epochs", (1, 2, 4, 8)),
    ]
    return SearchSpace(dims)


def architecture(params: Mapping[str, Any]) -> str:
    """``"2x[64, 16] tanh"``: the network a configuration builds."""
    n = int(params["n_layers"])
    widths = [int(params[f"width_{i}"]) for i in range(n)]
    return f"{n}x{widths} {params.get('activation', 'tanh')}"
