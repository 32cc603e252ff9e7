"""RL²: recurrent meta-RL (Duan et al. 2016).

``policy``: the GRU actor-critic; ``sampler``: many trials in parallel on batched torch envs;
``ppo``: recurrent PPO over whole trials; ``baselines``: the bandit and tabular-MDP baselines of the
paper's tables.
"""

from meta_rl_lessons.rl2.policy import RL2Policy
from meta_rl_lessons.rl2.ppo import RL2Config, RL2Trainer, bandit_config, mdp_config
from meta_rl_lessons.rl2.sampler import TrialBatch, TrialSampler

__all__ = [
    "RL2Config", "RL2Policy", "RL2Trainer", "TrialBatch", "TrialSampler", "bandit_config", "mdp_config",
]
