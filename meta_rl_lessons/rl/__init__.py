"""Deep RL basics: policies, sampling, returns and advantages, REINFORCE, TRPO and PPO."""

from meta_rl_lessons.rl.batch import EpisodeBatch

__all__ = ["EpisodeBatch"]
