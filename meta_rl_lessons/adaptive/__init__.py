"""Adaptive deep RL: meta-optimizers over the architecture and hyperparameters of an RL agent (chapter 4).

Modules, one idea each:

- :mod:`~meta_rl_lessons.adaptive.space`: search spaces (integer, float, log-uniform, categorical and
  conditional dimensions), validation, sampling and PBT-style perturbation;
- :mod:`~meta_rl_lessons.adaptive.trial`: a trial (a PPO learner built from a configuration) trained in
  segments, with checkpoints that continue bit for bit and that PBT can copy;
- :mod:`~meta_rl_lessons.adaptive.random_search`, :mod:`~meta_rl_lessons.adaptive.successive_halving`
  (and Hyperband), :mod:`~meta_rl_lessons.adaptive.pbt`: the meta-optimizers;
- :mod:`~meta_rl_lessons.adaptive.meta_gradient`: online meta-gradient adaptation of gamma and lambda;
- :mod:`~meta_rl_lessons.adaptive.executors`: serial, process-pool and Ray executors, resumable searches;
- :mod:`~meta_rl_lessons.adaptive.toy`: the quadratic toy problem of Jaderberg et al. (2017);
- :mod:`~meta_rl_lessons.adaptive.cartpole`: the search space over PPO on CartPole used by the chapter;
- :mod:`~meta_rl_lessons.adaptive.inverted_pendulum`: the search space over PPO on MuJoCo's
  InvertedPendulum-v5, for the chapter's MuJoCo comparison.
"""

from meta_rl_lessons.adaptive.executors import (
    ProcessPoolExecutor,
    RayExecutor,
    ResultStore,
    SerialExecutor,
    TrialError,
    make_executor,
)
from meta_rl_lessons.adaptive.inverted_pendulum import INVERTED_PENDULUM_BASE, inverted_pendulum_space
from meta_rl_lessons.adaptive.meta_gradient import MetaGradientAC, MetaGradientConfig
from meta_rl_lessons.adaptive.pbt import PBTConfig, pbt
from meta_rl_lessons.adaptive.random_search import RandomSearchConfig, random_search, random_search_plan
from meta_rl_lessons.adaptive.search import SearchResult
from meta_rl_lessons.adaptive.space import Categorical, Float, Integer, SearchSpace
from meta_rl_lessons.adaptive.successive_halving import (
    HyperbandConfig,
    SuccessiveHalvingConfig,
    hyperband,
    successive_halving,
)
from meta_rl_lessons.adaptive.trial import PPOTrial, Segment, SegmentResult, load_checkpoint, save_checkpoint

__all__ = [
    "Categorical",
    "Float",
    "HyperbandConfig",
    "INVERTED_PENDULUM_BASE",
    "Integer",
    "MetaGradientAC",
    "MetaGradientConfig",
    "PBTConfig",
    "PPOTrial",
    "ProcessPoolExecutor",
    "RandomSearchConfig",
    "RayExecutor",
    "ResultStore",
    "SearchResult",
    "SearchSpace",
    "Segment",
    "SegmentResult",
    "SerialExecutor",
    "SuccessiveHalvingConfig",
    "TrialError",
    "hyperband",
    "inverted_pendulum_space",
    "load_checkpoint",
    "make_executor",
    "pbt",
    "random_search",
    "random_search_plan",
    "save_checkpoint",
    "successive_halving",
]
