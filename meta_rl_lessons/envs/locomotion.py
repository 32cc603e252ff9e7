r"""MuJoCo locomotion task families on gymnasium's v5 models (Finn et al. 2017; Rothfuss et al. 2019).

The physics, observations and resets are gymnasium's ``HalfCheetahEnv`` / ``AntEnv`` (v5); only the reward
(and, for the ant goal task, the observation of the position and the termination rule) change with the task.
Rewards follow the MAML paper's reference implementations (pytorch-maml-rl; ProMP for the ant goal), with
:math:`v_x` the forward velocity of the torso over one control step (``dt = 0.05`` s), :math:`a` the action,
and :math:`F` the external contact forces of the ant's bodies (``cfrc_ext``):

==================  ========================  =========================================================
family              task                      reward per step
==================  ========================  =========================================================
``HalfCheetahVel``  :math:`v^* \sim U[0, 2]`  :math:`-|v_x - v^*| - 0.05\lVert a\rVert^2`
``HalfCheetahDir``  :math:`d \in \{-1, 1\}`   :math:`d\, v_x - 0.05\lVert a\rVert^2`
``AntVel``          :math:`v^* \sim U[0, 3]`  :math:`-|v_x - v^*| + 1.05 - 0.005\lVert a\rVert^2 - c(F)`
``AntDir``          :math:`d \in \{-1, 1\}`   :math:`d\, v_x + 0.05 - 0.005\lVert a\rVert^2 - c(F)`
``AntGoal``         :math:`g` uniform in the  :math:`-\lVert p_{xy} - g\rVert_1 - 0.1\lVert a\rVert^2 - c(F)`
                    disk of radius 3
==================  ========================  =========================================================

with the contact cost :math:`c(F) = 0.0005\,\lVert \mathrm{clip}(F, -1, 1)\rVert^2`.

The ant velocity and direction tasks terminate when the torso height leaves ``[0.2, 1.0]`` (as gymnasium's Ant
and pytorch-maml-rl); the ant goal task never terminates (as ProMP) and observes its ``x, y`` position.
The cost uses the action as given (MuJoCo clamps the control to ``[-1, 1]``), as the references do.
Episodes are truncated after ``horizon`` steps (default 200, the MAML paper's; pytorch-maml-rl used 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from meta_rl_lessons.mujoco_log import mujoco_warnings_to_python

from .base import MetaEnvMixin, TaskFamily, check_int, check_range


@dataclass(frozen=True)
class VelocityTask:
    """Target forward velocity :math:`v^*` (m/s)."""

    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    """Running direction :math:`d`: ``+1`` forward, ``-1`` backward."""

    direction: int


@dataclass(frozen=True)
class GoalTask:
    """Goal position :math:`g = (x, y)` for the ant's torso (m)."""

    goal: tuple[float, float]


# ---------------------------------------------------------------------------------------------- rewards
# Vectorised over N copies: the gymnasium envs call them with N = 1, the batched MuJoCo env with N copies
# and the Warp env with N worlds (torch tensors), so all share one definition. Shapes: xy_velocity [N, 2],
# xy [N, 2], action [N, nu], contact [N, nb, 6], param [N] (velocity or direction) or [N, 2] (goal).

# Written with operators and methods that NumPy arrays and torch tensors share (abs, *, .clip, .sum), so the
# Warp backend (torch tensors on the device) computes its rewards with these same functions.
def _sq(x):
    return (x * x).reshape(len(x), -1).sum(1)


def cheetah_vel_reward(xy_velocity, xy, action, contact, param):
    forward = -abs(xy_velocity[:, 0] - param)
    ctrl = 0.05 * _sq(action)
    return forward - ctrl, {"reward_forward": forward, "reward_ctrl": -ctrl}


def cheetah_dir_reward(xy_velocity, xy, action, contact, param):
    forward = param * xy_velocity[:, 0]
    ctrl = 0.05 * _sq(action)
    return forward - ctrl, {"reward_forward": forward, "reward_ctrl": -ctrl}


def _ant_costs(action, contact, ctrl_weight):
    return ctrl_weight * _sq(action), 0.5e-3 * _sq(contact.clip(-1.0, 1.0))


def ant_vel_reward(xy_velocity, xy, action, contact, param):
    forward = -abs(xy_velocity[:, 0] - param) + 1.0
    ctrl, cont = _ant_costs(action, contact, 0.5e-2)
    return forward + 0.05 - ctrl - cont, {"reward_forward": forward, "reward_ctrl": -ctrl,
                                          "reward_contact": -cont}


def ant_dir_reward(xy_velocity, xy, action, contact, param):
    forward = param * xy_velocity[:, 0]
    ctrl, cont = _ant_costs(action, contact, 0.5e-2)
    return forward + 0.05 - ctrl - cont, {"reward_forward": forward, "reward_ctrl": -ctrl,
                                          "reward_contact": -cont}


def ant_goal_reward(xy_velocity, xy, action, contact, param):
    goal = -abs(xy - param).sum(1)
    ctrl, cont = _ant_costs(action, contact, 0.1)
    return goal - ctrl - cont, {"reward_goal": goal, "reward_ctrl": -ctrl, "reward_contact": -cont}


# ---------------------------------------------------------------------------------------------- families
#: The physics backends of the batched locomotion envs (the ``physics`` argument of the families).
PHYSICS: tuple[str, ...] = ("mujoco", "warp")


class LocomotionFamily(TaskFamily):
    """Common parts of the MuJoCo families. Subclasses set ``env_class`` and the task distribution.

    Args:
        horizon: steps per episode.
        physics: backend of :meth:`make_batched` (what the meta-batch sampler steps): ``"mujoco"``, C MuJoCo
            on the CPU (:class:`~meta_rl_lessons.envs.mujoco_batched.BatchedMujocoEnv`), or ``"warp"``,
            MuJoCo Warp on the sampler's device (:class:`~meta_rl_lessons.envs.warp_batched.WarpBatchedEnv`;
            needs the ``[warp]`` extra). The gymnasium env of :meth:`make_env` is C MuJoCo either way.
    """

    env_class: ClassVar[type]

    def __init__(self, horizon: int = 200, physics: str = "mujoco") -> None:
        check_int(self.name, "horizon", horizon, 1)
        if physics not in PHYSICS:
            raise ValueError(f"{self.name}: physics={physics!r} is not allowed; use one of {PHYSICS}")
        self.horizon = int(horizon)
        self.physics = physics

    def task_params(self, tasks) -> np.ndarray:  # pragma: no cover - abstract
        """The task parameters as an array ``[n]`` or ``[n, 2]`` for the vectorised reward."""
        raise NotImplementedError

    def make_env(self, **kwargs: Any):
        kwargs.setdefault("horizon", self.horizon)
        return self.env_class(family=self, **kwargs)

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any):
        """The batched env of :attr:`physics` with ``num_tasks x num_envs`` copies (``kwargs``: its
        arguments; the Warp env takes ``device``, the C-MuJoCo env ``num_workers`` and ``num_threads``)."""
        if self.physics == "warp":
            from .warp_batched import WarpBatchedEnv

            kwargs.pop("num_workers", None)  # process and thread options of the C path; Warp batches worlds
            kwargs.pop("num_threads", None)
            return WarpBatchedEnv(self, num_tasks, num_envs, **kwargs)
        from .mujoco_batched import BatchedMujocoEnv

        return BatchedMujocoEnv(self, num_tasks, num_envs, **kwargs)


class _VelocityFamily(LocomotionFamily):
    task_type = VelocityTask
    default_range: ClassVar[tuple[float, float]]

    def __init__(self, velocity_range: tuple[float, float] | None = None, horizon: int = 200,
                 physics: str = "mujoco") -> None:
        super().__init__(horizon, physics)
        try:
            lo, hi = velocity_range if velocity_range is not None else self.default_range
            ok = bool(np.isfinite(lo) and np.isfinite(hi) and lo < hi)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{self.name}: velocity_range must be (low, high) with finite low < high, got "
                             f"{velocity_range!r}")
        self.velocity_range = (float(lo), float(hi))

    def _sample(self, n, rng):
        return [VelocityTask(float(v)) for v in rng.uniform(*self.velocity_range, size=n)]

    def split_coordinates(self, tasks):
        lo, hi = self.velocity_range
        return np.array([[(t.velocity - lo) / (hi - lo)] for t in tasks])

    def _check(self, task):
        check_range("velocity", task.velocity, *self.velocity_range, self.name)

    def task_params(self, tasks):
        return np.array([t.velocity for t in tasks], dtype=np.float64)


class _DirectionFamily(LocomotionFamily):
    task_type = DirectionTask

    def _sample(self, n, rng):
        return [DirectionTask(int(d)) for d in 2 * rng.integers(0, 2, size=n) - 1]

    def _check(self, task):
        if task.direction not in (-1, 1):
            raise ValueError(f"{self.name}: direction={task.direction!r} is not allowed; use +1 or -1")

    def task_params(self, tasks):
        return np.array([t.direction for t in tasks], dtype=np.float64)


class HalfCheetahVelFamily(_VelocityFamily):
    name = "HalfCheetahVel"
    default_range = (0.0, 2.0)


class HalfCheetahDirFamily(_DirectionFamily):
    name = "HalfCheetahDir"


class AntVelFamily(_VelocityFamily):
    name = "AntVel"
    default_range = (0.0, 3.0)


class AntDirFamily(_DirectionFamily):
    name = "AntDir"


class AntGoalFamily(LocomotionFamily):
    r"""Goals uniform in the disk of radius ``radius`` (ProMP):
    :math:`g = 3\sqrt{u}\,(\cos\theta, \sin\theta)`,
    :math:`u \sim U[0, 1]`, :math:`\theta \sim U[0, 2\pi)`."""

    name = "AntGoal"
    task_type = GoalTask

    def __init__(self, radius: float = 3.0, horizon: int = 200, physics: str = "mujoco") -> None:
        super().__init__(horizon, physics)
        if not (isinstance(radius, (int, float)) and np.isfinite(radius) and radius > 0):
            raise ValueError(f"{self.name}: radius must be a finite number > 0, got {radius!r}")
        self.radius = float(radius)

    def _sample(self, n, rng):
        theta = rng.uniform(0.0, 2 * np.pi, size=n)
        r = self.radius * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        xs, ys = r * np.cos(theta), r * np.sin(theta)
        return [GoalTask((float(a), float(b))) for a, b in zip(xs, ys, strict=True)]

    def split_coordinates(self, tasks):
        g = np.array([t.goal for t in tasks], dtype=np.float64)
        return (g + self.radius) / (2 * self.radius)

    def _check(self, task):
        if len(task.goal) != 2 or not np.all(np.isfinite(task.goal)):
            raise ValueError(f"{self.name}: goal must be 2 finite numbers, got {task.goal!r}")
        if math.hypot(*task.goal) > self.radius + 1e-12:
            raise ValueError(
                f"{self.name}: goal={task.goal!r} is outside the allowed disk of radius {self.radius}"
            )

    def task_params(self, tasks):
        return np.array([t.goal for t in tasks], dtype=np.float64)


# ---------------------------------------------------------------------------------------------- envs
class _LocomotionMixin(MetaEnvMixin):
    """Task handling, the per-task reward and the horizon on top of a gymnasium MuJoCo env."""

    reward_fn: ClassVar[Any]
    horizon: int

    def _setup(self, family: LocomotionFamily, horizon: int, task: Any) -> None:
        self.family = family
        self.horizon = int(horizon)
        self._t = 0
        self._param = None
        if task is not None:
            self.set_task(task)

    def _on_task_set(self, task: Any) -> None:
        self._param = self.family.task_params([task])

    def _contact(self) -> np.ndarray | None:
        return None

    def _xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._ensure_task(options)
        self._t = 0
        return obs, info

    def _task_reward(self, xy_velocity: np.ndarray, action: np.ndarray):
        contact = self._contact()
        reward, terms = type(self).reward_fn(
            xy_velocity[None], self._xy()[None], np.asarray(action, dtype=np.float64)[None],
            None if contact is None else contact[None], self._param,
        )
        return float(reward[0]), {k: float(v[0]) for k, v in terms.items()}

    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        self._t += 1
        return obs, reward, terminated, self._t >= self.horizon, info


class _CheetahBase(_LocomotionMixin, HalfCheetahEnv):
    def __init__(self, family: LocomotionFamily, horizon: int = 200, task: Any = None,
                 **kwargs: Any) -> None:
        with mujoco_warnings_to_python():
            HalfCheetahEnv.__init__(self, **kwargs)
        utils.EzPickle.__init__(self, family=family, horizon=horizon, task=task, **kwargs)
        self._setup(family, horizon, task)

    def _get_rew(self, x_velocity: float, action):
        return self._task_reward(np.array([x_velocity, 0.0]), action)


class _AntBase(_LocomotionMixin, AntEnv):
    def __init__(self, family: LocomotionFamily, horizon: int = 200, task: Any = None,
                 **kwargs: Any) -> None:
        with mujoco_warnings_to_python():
            AntEnv.__init__(self, **kwargs)
        utils.EzPickle.__init__(self, family=family, horizon=horizon, task=task, **kwargs)
        self._setup(family, horizon, task)

    def _contact(self) -> np.ndarray:
        return self.data.cfrc_ext.copy()

    def _xy(self) -> np.ndarray:
        return self.data.body(self._main_body).xpos[:2].copy()

    def step(self, action):
        # gymnasium's Ant computes the velocity and calls _get_rew(x_velocity, action); we need both velocity
        # components, which are recomputed here from the torso position (the same numbers gymnasium uses).
        self._xy_before = self._xy()
        return super().step(action)

    def _get_rew(self, x_velocity: float, action):
        xy_velocity = (self._xy() - self._xy_before) / self.dt
        return self._task_reward(xy_velocity, action)


class HalfCheetahVelEnv(_CheetahBase):
    r"""Half-cheetah running at a target velocity: :math:`r = -|v_x - v^*| - 0.05\lVert a\rVert^2`."""

    reward_fn = staticmethod(cheetah_vel_reward)

    def __init__(self, family: HalfCheetahVelFamily | None = None, **kwargs: Any) -> None:
        super().__init__(family or HalfCheetahVelFamily(), **kwargs)


class HalfCheetahDirEnv(_CheetahBase):
    r"""Half-cheetah running forward or backward: :math:`r = d\,v_x - 0.05\lVert a\rVert^2`."""

    reward_fn = staticmethod(cheetah_dir_reward)

    def __init__(self, family: HalfCheetahDirFamily | None = None, **kwargs: Any) -> None:
        super().__init__(family or HalfCheetahDirFamily(), **kwargs)


class AntVelEnv(_AntBase):
    r"""Ant at a target velocity:
    :math:`r = -|v_x - v^*| + 1.05 - 0.005\lVert a\rVert^2 - 0.0005\lVert\mathrm{clip}(F,-1,1)\rVert^2`."""

    reward_fn = staticmethod(ant_vel_reward)

    def __init__(self, family: AntVelFamily | None = None, **kwargs: Any) -> None:
        super().__init__(family or AntVelFamily(), **kwargs)


class AntDirEnv(_AntBase):
    r"""Ant running forward or backward:
    :math:`r = d\,v_x + 0.05 - 0.005\lVert a\rVert^2 - 0.0005\lVert\mathrm{clip}(F,-1,1)\rVert^2`."""

    reward_fn = staticmethod(ant_dir_reward)

    def __init__(self, family: AntDirFamily | None = None, **kwargs: Any) -> None:
        super().__init__(family or AntDirFamily(), **kwargs)


class AntGoalEnv(_AntBase):
    r"""Ant walking to a goal in the plane (observes its ``x, y``; never terminates);
    :math:`r = -\lVert p_{xy} - g\rVert_1 - 0.1\lVert a\rVert^2
    - 0.0005\lVert\mathrm{clip}(F,-1,1)\rVert^2`."""

    reward_fn = staticmethod(ant_goal_reward)

    def __init__(self, family: AntGoalFamily | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("exclude_current_positions_from_observation", False)
        kwargs.setdefault("terminate_when_unhealthy", False)
        super().__init__(family or AntGoalFamily(), **kwargs)


HalfCheetahVelFamily.env_class = HalfCheetahVelEnv
HalfCheetahDirFamily.env_class = HalfCheetahDirEnv
AntVelFamily.env_class = AntVelEnv
AntDirFamily.env_class = AntDirEnv
AntGoalFamily.env_class = AntGoalEnv
