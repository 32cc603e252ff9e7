"""The search space over PPO on MuJoCo's InvertedPendulum that chapter 4 uses for its MuJoCo comparison.

``InvertedPendulum-v5``: a cart on a rail balances a pole with a continuous force in [-3, 3]; reward +1 per
step the pole stays up, episodes end when it falls or after 1000 steps (return at most 1000). A good PPO
configuration reaches 1000 in a few tens of thousands of environment steps, a poor one stays below 100: the
spread between configurations shows within a budget a 2-core CPU trains in minutes.

The space mirrors :func:`~meta_rl_lessons.adaptive.cartpole.cartpole_space` (depth, per-layer width and
activation; log-uniform learning rate and entropy coefficient; rl-baselines3-zoo's categorical choices for the
discount, GAE lambda, clip range and epochs) with two changes for a Gaussian policy: the entropy coefficient's
range is lower (1e-6 to 1e-2: a large bonus keeps the action noise wide), and the initial log standard
deviation of the policy, ``init_log_std``, is searched too. Like the architecture, it is fixed when a trial is
built, so PBT copies it with the weights and never perturbs it (:data:`HYPERPARAMETER_KEYS`).
"""

from __future__ import annotations

from typing import Any

from meta_rl_lessons.adaptive.cartpole import HYPERPARAMETER_KEYS, architecture, architecture_dims
from meta_rl_lessons.adaptive.space import Categorical, Float, SearchSpace
from meta_rl_lessons.adaptive.trial import DEFAULT_PPO_BASE

__all__ = ["HYPERPARAMETER_KEYS", "INVERTED_PENDULUM_BASE", "architecture", "inverted_pendulum_space"]

#: PPO settings shared by every trial: 4 environments x 128 steps per rollout (512 env steps), minibatches of
#: 128, observations normalised with running statistics (copied by PBT's exploit with the weights), no
#: learning-rate annealing (a trial's length is not known in advance).
INVERTED_PENDULUM_BASE: dict[str, Any] = {**DEFAULT_PPO_BASE, "env_id": "InvertedPendulum-v5",
                                          "normalize_observations": True}


def inverted_pendulum_space(max_layers: int = 3) -> SearchSpace:
    """Architecture (depth, per-layer width, activation), initial action noise and PPO hyperparameters."""
    dims = architecture_dims(max_layers) + [
        Categorical("init_log_std", (-1.0, -0.5, 0.0)),
        Float("learning_rate", 1e-4, 1e-2, log=True),
        Categorical("gamma", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        Categorical("gae_lambda", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        Categorical("clip_coef", (0.1, 0.2, 0.3, 0.4)),
        Float("entropy_coef", 1e-6, 1e-2, log=True),
        Categorical("update_epochs", (1, 2, 4, 8)),
    ]
    return SearchSpace(dims)
