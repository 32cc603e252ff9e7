"""Deep RL basics: policies, sampling, returns and advantages, REINFORCE, TRPO and PPO.

================================  =====================================================================
module                            contents
================================  =====================================================================
:mod:`~.rl.batch`                 :class:`EpisodeBatch`, the padded ``[T, *B]`` experience container
:mod:`~.rl.policies`              Gaussian / categorical MLP policies, value network; ``params=`` and
                                  ``per_task`` (vmap over per-task parameters)
:mod:`~.rl.sampling`              :class:`VectorSampler` for gymnasium vector envs (SAME_STEP autoreset)
:mod:`~.rl.advantages`            discounted returns, GAE, advantage normalisation, linear baseline
:mod:`~.rl.reinforce`             REINFORCE / VPG with or without a baseline
:mod:`~.rl.trpo`                  Fisher-vector products, conjugate gradient, line search, TRPO
:mod:`~.rl.ppo`                   PPO (clipped objective)
:mod:`~.rl.tabular`               a tiny tabular MDP with the exact policy gradient (for checking)
:mod:`~.rl.utils`                 seeding, devices, progress bars, CSV logs, running mean/std
================================  =====================================================================
"""

from meta_rl_lessons.rl.advantages import (
    LinearFeatureBaseline,
    discounted_returns,
    gae,
    normalize_advantages,
)
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    ValueNetwork,
    expand_params,
    make_policy,
    stack_params,
)
from meta_rl_lessons.rl.ppo import PPO, PPOConfig
from meta_rl_lessons.rl.reinforce import REINFORCE, REINFORCEConfig, reinforce_loss
from meta_rl_lessons.rl.sampling import VectorSampler, make_vector_env
from meta_rl_lessons.rl.trpo import (
    TRPO,
    TRPOConfig,
    cg_solve,
    conjugate_gradient,
    fisher_vector_product,
    line_search,
)
from meta_rl_lessons.rl.utils import CSVLogger, RunningMeanStd, resolve_device, set_seed

__all__ = [
    "CSVLogger",
    "CategoricalMLPPolicy",
    "EpisodeBatch",
    "GaussianMLPPolicy",
    "LinearFeatureBaseline",
    "PPO",
    "PPOConfig",
    "REINFORCE",
    "REINFORCEConfig",
    "RunningMeanStd",
    "TRPO",
    "TRPOConfig",
    "ValueNetwork",
    "VectorSampler",
    "cg_solve",
    "conjugate_gradient",
    "discounted_returns",
    "expand_params",
    "fisher_vector_product",
    "gae",
    "line_search",
    "make_policy",
    "make_vector_env",
    "normalize_advantages",
    "reinforce_loss",
    "resolve_device",
    "set_seed",
    "stack_params",
]
