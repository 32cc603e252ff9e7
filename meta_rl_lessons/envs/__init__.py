"""Meta-RL task families on gymnasium and MuJoCo, with batched pure-torch versions of the cheap ones.

Every family is registered with gymnasium as ``MetaRL/<Name>-v0``, without importing this module first (see
:mod:`meta_rl_lessons.registration`); ``gym.make`` returns the environment inside gymnasium's wrappers, so
task methods are reached through ``env.unwrapped`` (or ``env.get_wrapper_attr("set_task")``)::

    import gymnasium as gym
    import meta_rl_lessons.envs as envs

    family = envs.make_family("HalfCheetahVel")            # or envs.HalfCheetahVelFamily()
    tasks = family.sample_tasks(40, rng=0, split="train")  # list[VelocityTask]
    env = gym.make("MetaRL/HalfCheetahVel-v0")
    env.unwrapped.set_task(tasks[0])

=====================  ==========================  ====================================================
family                 task                        environments
=====================  ==========================  ====================================================
``BernoulliBandit``    :class:`BanditTask`         gymnasium, batched torch
``TabularMDP``         :class:`MDPTask`            gymnasium, batched torch
``Navigation2D``       :class:`NavigationTask`     gymnasium, batched torch
``HalfCheetahVel``     :class:`VelocityTask`       gymnasium (MuJoCo v5), batched MuJoCo or MuJoCo Warp
``HalfCheetahDir``     :class:`DirectionTask`      gymnasium (MuJoCo v5), batched MuJoCo or MuJoCo Warp
``AntVel``             :class:`VelocityTask`       gymnasium (MuJoCo v5), batched MuJoCo or MuJoCo Warp
``AntDir``             :class:`DirectionTask`      gymnasium (MuJoCo v5), batched MuJoCo or MuJoCo Warp
``AntGoal``            :class:`GoalTask`           gymnasium (MuJoCo v5), batched MuJoCo or MuJoCo Warp
``Inventory``          :class:`InventoryTask`      gymnasium, batched torch
=====================  ==========================  ====================================================

:class:`MetaBatchSampler` collects whole episodes for many tasks at once into one ``EpisodeBatch`` with
``B = (num_tasks, num_episodes)``; :class:`RL2Wrapper` / :class:`RL2BatchedEnv` build RL² trials. The
MuJoCo families' batched envs step C MuJoCo on the CPU (``physics="mujoco"``, the default) or MuJoCo Warp
on the sampler's device (``make_family("HalfCheetahDir", physics="warp")``, the ``[warp]`` extra);
:class:`WarpVectorEnv` is the gymnasium vector env of a locomotion id on MuJoCo Warp, what PPO and TRPO step
with ``physics="warp"`` (``rl.sampling.make_vector_env(..., physics="warp")``).
"""

from __future__ import annotations

from meta_rl_lessons import gl
from meta_rl_lessons.registration import ENV_IDS, register_envs

# The MuJoCo families below import mujoco, which reads MUJOCO_GL at import: choose the backend first.
gl.configure()

from .bandit import BanditTask, BatchedBernoulliBandit, BernoulliBanditEnv, BernoulliBanditFamily
from .base import MetaEnvMixin, TaskFamily, as_generator
from .batched import BatchedEnv
from .families import FAMILIES, check_family, family_arguments, make_family
from .inventory import BatchedInventory, InventoryEnv, InventoryFamily, InventoryTask
from .locomotion import (
    AntDirEnv,
    AntDirFamily,
    AntGoalEnv,
    AntGoalFamily,
    AntVelEnv,
    AntVelFamily,
    DirectionTask,
    GoalTask,
    HalfCheetahDirEnv,
    HalfCheetahDirFamily,
    HalfCheetahVelEnv,
    HalfCheetahVelFamily,
    VelocityTask,
)
from .mujoco_batched import BatchedMujocoEnv
from .navigation import BatchedNavigation2D, Navigation2DEnv, Navigation2DFamily, NavigationTask
from .rl2 import RL2BatchedEnv, RL2Wrapper
from .sampler import MetaBatchSampler, sample_episodes
from .tabular_mdp import (
    BatchedTabularMDP,
    MDPTask,
    TabularMDPEnv,
    TabularMDPFamily,
    optimal_value,
    random_policy_value,
)
from .warp_batched import WarpBatchedEnv, warp_available, warp_devices
from .warp_vector import WarpVectorEnv

register_envs()

__all__ = [
    "ENV_IDS", "FAMILIES", "check_family", "family_arguments", "make_family", "TaskFamily", "MetaEnvMixin",
    "as_generator", "BatchedEnv",
    "BanditTask", "BernoulliBanditFamily", "BernoulliBanditEnv", "BatchedBernoulliBandit",
    "MDPTask", "TabularMDPFamily", "TabularMDPEnv", "BatchedTabularMDP", "optimal_value",
    "random_policy_value", "NavigationTask", "Navigation2DFamily", "Navigation2DEnv", "BatchedNavigation2D",
    "VelocityTask", "DirectionTask", "GoalTask", "HalfCheetahVelFamily", "HalfCheetahDirFamily",
    "AntVelFamily", "AntDirFamily", "AntGoalFamily", "HalfCheetahVelEnv", "HalfCheetahDirEnv", "AntVelEnv",
    "AntDirEnv", "AntGoalEnv", "BatchedMujocoEnv", "WarpBatchedEnv", "WarpVectorEnv", "warp_available",
    "warp_devices",
    "MetaBatchSampler", "sample_episodes", "RL2Wrapper",
    "RL2BatchedEnv",
]
__all__ += ["InventoryTask", "InventoryFamily", "InventoryEnv", "BatchedInventory"]
