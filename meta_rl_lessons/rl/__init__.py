"""Deep RL basics: policies, sampling, returns and advantages, REINFORCE, TRPO and PPO."""

from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    ValueNetwork,
    expand_params,
    stack_params,
)

__all__ = [
    "CategoricalMLPPolicy",
    "EpisodeBatch",
    "GaussianMLPPolicy",
    "ValueNetwork",
    "expand_params",
    "stack_params",
]
