"""MuJoCo Warp physics for the locomotion families: ``K x E`` worlds batched on a device, zero-copy to torch.

:class:`WarpBatchedEnv` is the drop-in counterpart of
:class:`~meta_rl_lessons.envs.mujoco_batched.BatchedMujocoEnv` (same methods, same observations, rewards,
terminations and truncations), chosen with the family's ``physics="warp"``::

    family = envs.make_family("HalfCheetahDir", physics="warp")
    sampler = envs.MetaBatchSampler(family, 40, 20, device="cuda")   # 800 worlds on the GPU

How it works:

* the model is gymnasium's own XML file (the family's gymnasium env is built once as a template, exactly as
  the C-MuJoCo path does), copied to the device with ``mujoco_warp.put_model``; one ``Data`` holds
  ``nworld = num_tasks x num_envs`` worlds;
* ``qpos``, ``qvel``, ``ctrl``, ``xpos`` and ``cfrc_ext`` are read and written through ``wp.to_torch`` views
  of Warp's arrays (no copies); observations, the families' rewards (the same functions as the C path, see
  :mod:`~meta_rl_lessons.envs.locomotion`), terminations, truncations and the reset noise are torch
  operations on the device;
* one env step is ``frame_skip`` physics steps (5 for HalfCheetah and Ant, as gymnasium v5) followed, for
  the Ant, by ``rne_postconstraint`` (the contact forces ``cfrc_ext`` of the observation and the contact
  cost, as the C path's ``mj_rnePostConstraint``). On a CUDA device this sequence is captured once in a
  CUDA graph and replayed, so a step is one graph launch instead of hundreds of kernel launches;
* actions are written to ``ctrl`` as given; MuJoCo (and MuJoCo Warp) clamp the control to the actuators'
  ``ctrlrange`` ([-1, 1]), and the control cost uses the action as given, as gymnasium v5 and the C path;
* reset: ``qpos = init_qpos + U(-s, s)``, ``qvel = init_qvel + s N(0, 1)`` (gymnasium's ``reset_model``),
  drawn from a torch generator on the device (:attr:`generator`, seeded by ``seed``), after
  ``mujoco_warp.reset_data`` of the worlds being reset;
* every world is simulated at every step (a GPU does not gain from skipping finished ones): the sampler's
  masks make the steps after an episode's end padding, as with the C path.

Agreement with C MuJoCo: Warp computes in float32, C MuJoCo in float64. From the same state and actions the
two agree to about 1e-6 per step without contacts. In contact they find the same contacts, normals and normal
forces, but MuJoCo Warp orients a contact's tangent directions differently, so the pyramidal friction cone
(both models' ``cone="pyramidal"``) is rotated about the normal and the friction forces differ; with a
contact at its margin active in one precision only, the trajectories then separate like any chaotic system's
(Ant: from its first touchdown, 0.15 s after a reset; HalfCheetah: after about 10 steps). Same task, same
model, statistically the same physics; not the same trajectories. The parity tests
(``tests/test_envs_warp.py``) state the horizons and tolerances.

Contact buffers are sized from the model: every geom may touch every geom it can collide with (two contacts
per capsule-plane pair, as MuJoCo generates), times the constraint rows one contact needs for its cone
(4 for the Ant's pyramidal ``condim=3``), plus the joint limits, doubled; ``nconmax``/``njmax`` override.

The CPU device runs the same kernels (for tests and development; slow: about 10 ms per HalfCheetah env step
for a handful of worlds on one core). The first use compiles the kernels (about 20-60 s), cached in
``~/.cache/warp`` afterwards.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .mujoco_batched import adopt_template, observation_parts, unhealthy

if TYPE_CHECKING:  # the locomotion families build this env (lazily): no import back at run time
    from .locomotion import LocomotionFamily

__all__ = ["WarpBatchedEnv", "warp_available", "warp_devices", "WARP_MISSING"]

#: The message raised when ``physics="warp"`` is asked for but MuJoCo Warp is not installed.
WARP_MISSING = ("physics='warp' needs MuJoCo Warp (Python >= 3.11): pip install 'meta-rl-lessons[warp]' "
                "(mujoco-warp and warp-lang)")


def _import_warp():
    try:
        import mujoco_warp as mjw
        import warp as wp
    except ImportError as err:
        raise ImportError(f"{WARP_MISSING}; import failed: {err}") from err
    # No banner and no line per kernel module loaded (hundreds on first use); warnings still show.
    wp.config.quiet = True
    if hasattr(wp, "LOG_WARNING"):
        wp.config.log_level = wp.LOG_WARNING
    _init_without_driver_notice(wp)
    return wp, mjw


def _init_without_driver_notice(wp) -> None:
    """``wp.init()``, minus the line its native code prints on every machine without an NVIDIA driver.

    That line ("Could not find or load the NVIDIA CUDA driver") goes straight to file descriptor 2, past
    ``wp.config.quiet``, and so into every page of the book built on a CPU machine. Everything else the
    initialisation writes there is passed on unchanged.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            wp.init()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if "NVIDIA CUDA driver" not in line]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


def warp_available() -> bool:
    """Whether MuJoCo Warp and Warp import here."""
    try:
        _import_warp()
    except ImportError:
        return False
    return True


def warp_devices() -> list[str]:
    """Torch device names on which Warp can run here: ``"cpu"``, plus ``"cuda:N"`` for each CUDA device
    that both torch and Warp see (empty if Warp is not installed)."""
    if not warp_available():
        return []
    wp, _ = _import_warp()
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(min(torch.cuda.device_count(), wp.get_cuda_device_count()))]
    return out


def _buffer_sizes(model: Any) -> tuple[int, int]:
    """``(nconmax, njmax)`` per world for ``model``: room for every possible contact and constraint row."""
    geoms = range(model.ngeom)
    pairs = 0
    for a, b in itertools.combinations(geoms, 2):
        if model.geom_bodyid[a] == model.geom_bodyid[b]:
            continue
        ca, cb = model.geom_contype, model.geom_conaffinity
        if (ca[a] & cb[b]) or (ca[b] & cb[a]):
            pairs += 1
    nconmax = max(8, 2 * pairs)  # capsule-plane and box-plane pairs give several contacts
    condim = int(model.geom_condim.max()) if model.ngeom else 1
    rows = condim if model.opt.cone == 1 else max(1, 2 * (condim - 1))  # elliptic: condim; pyramidal: 2(d-1)
    limits = int(np.sum(model.jnt_limited))
    njmax = 2 * (nconmax * rows + limits)
    return nconmax, njmax


class WarpBatchedEnv:
    """``[num_tasks, num_envs]`` worlds of a locomotion family's model in MuJoCo Warp, stepped together.

    Interface of :class:`~meta_rl_lessons.envs.mujoco_batched.BatchedMujocoEnv` (``set_tasks``, ``seed``,
    ``reset(mask)``, ``step(actions)``, ``set_state``), with tensors on ``device``.

    Args:
        family: a :class:`~meta_rl_lessons.envs.locomotion.LocomotionFamily`.
        num_tasks, num_envs: batch shape ``K x E`` (``nworld = K * E``).
        device: torch device of the worlds and of every tensor returned (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
        seed: seed of the reset noise (a ``torch.Generator`` on ``device``).
        graph: capture the ``frame_skip`` substeps in a CUDA graph (``None``: on CUDA devices; never on CPU).
        nconmax, njmax: contacts and constraint rows per world (``None``: sized from the model).
        env_kwargs: passed to the family's gymnasium env (e.g. ``reset_noise_scale``).
    """

    num_actions = None
    #: Every world is stepped; finished episodes are masked by the sampler.
    skips_inactive = False

    def __init__(self, family: LocomotionFamily, num_tasks: int, num_envs: int,
                 device: torch.device | str = "cpu", seed: int | None = None, graph: bool | None = None,
                 nconmax: int | None = None, njmax: int | None = None, **env_kwargs: Any) -> None:
        if int(num_tasks) < 1 or int(num_envs) < 1:
            raise ValueError(f"num_tasks and num_envs must be >= 1, got {num_tasks} and {num_envs}")
        wp, mjw = _import_warp()
        self._wp, self._mjw = wp, mjw
        self.family = family
        self.num_tasks, self.num_envs = int(num_tasks), int(num_envs)
        self.n = self.num_tasks * self.num_envs
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device={str(device)!r}: CUDA is not available here; use device='cpu'")
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            self._wdev = f"cuda:{self.device.index}"
        elif self.device.type == "cpu":
            self._wdev = "cpu"
        else:
            raise ValueError(f"device={str(device)!r} is not supported by MuJoCo Warp; use 'cpu' or "
                             "'cuda[:N]'")
        adopt_template(self, family, env_kwargs)
        env = self.template
        auto_con, auto_j = _buffer_sizes(self.model)
        self.nconmax = int(nconmax or auto_con)
        self.njmax = int(njmax or auto_j)
        with wp.ScopedDevice(self._wdev):
            self._m = mjw.put_model(self.model)
            self._d = mjw.make_data(self.model, nworld=self.n, nconmax=self.nconmax, njmax=self.njmax)
            self._reset_mask = wp.zeros(self.n, dtype=bool)
        d = self._d
        # Zero-copy views: writing them writes Warp's arrays, reading them reads the current state.
        self.qpos, self.qvel, self.ctrl = wp.to_torch(d.qpos), wp.to_torch(d.qvel), wp.to_torch(d.ctrl)
        self._xpos, self._cfrc = wp.to_torch(d.xpos), wp.to_torch(d.cfrc_ext)  # [n, nbody, 3], [n, nbody, 6]
        self._qacc = wp.to_torch(d.qacc)  # [n, nv], for tests
        self._reset_mask_t = wp.to_torch(self._reset_mask)
        f32 = dict(dtype=torch.float32, device=self.device)
        self.init_qpos = torch.as_tensor(env.init_qpos, **f32)
        self.init_qvel = torch.as_tensor(env.init_qvel, **f32)
        # What the step reads after the physics (as the C path's buffers): the position the velocity is taken
        # from, and the contact forces of the observation. Kept apart from Warp's xpos/cfrc_ext so a reset's
        # forward pass over all worlds does not change them for the worlds not being reset.
        self.xy = torch.zeros(self.n, 2, **f32)
        self.contact = torch.zeros(self.n, self.model.nbody, 6, **f32) if self.is_ant else None
        self.steps = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        self.tasks: list[Any] | None = None
        self.params: Tensor | None = None
        self.use_graph = self.device.type == "cuda" if graph is None else bool(graph)
        if self.use_graph and self.device.type != "cuda":
            raise ValueError("graph=True needs a CUDA device (CUDA graphs); use graph=None or False on "
                             "the CPU")
        self._graph = None
        if self.use_graph:
            self._capture()

    # ------------------------------------------------------------------ physics
    def _substeps(self) -> None:
        m, d, mjw = self._m, self._d, self._mjw
        for _ in range(self.frame_skip):
            mjw.step(m, d)
        if self.is_ant:  # contact forces for the observation and the contact cost, as gymnasium reads them
            mjw.rne_postconstraint(m, d)

    def _on_warp(self, fn) -> None:
        """Run Warp work ``fn`` ordered after the torch work queued so far and before what follows.

        On CUDA, torch and Warp use different streams: Warp's stream waits for torch's (the actions written
        to ``ctrl``) and torch's for Warp's (the state read back), device-side, without a host sync.
        """
        wp = self._wp
        if self.device.type != "cuda":
            with wp.ScopedDevice(self._wdev):
                fn()
            return
        torch_stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
        with wp.ScopedDevice(self._wdev):
            warp_stream = wp.get_stream()
            warp_stream.wait_stream(torch_stream)
            fn()
            torch_stream.wait_stream(warp_stream)

    def _capture(self) -> None:
        wp = self._wp

        def capture():
            self._substeps()  # compile and load every kernel before the capture
            with wp.ScopedCapture() as cap:
                self._substeps()
            self._graph = cap.graph

        self._on_warp(capture)

    def _simulate(self) -> None:
        if self._graph is not None:
            self._on_warp(lambda: self._wp.capture_launch(self._graph))
        else:
            self._on_warp(self._substeps)

    def _read(self, idx: Tensor | None = None) -> None:
        """Copy the position (and contact forces) the step reads into :attr:`xy` (and :attr:`contact`)."""
        sel = slice(None) if idx is None else idx
        if self.is_ant:
            self.xy[sel] = self._xpos[sel, 1, :2]  # torso, as gymnasium's Ant reads it after the step
            self.contact[sel] = self._cfrc[sel]
        else:
            self.xy[sel, 0] = self.qpos[sel, 0]  # HalfCheetah: root x position

    # ------------------------------------------------------------------ API
    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.num_tasks, self.num_envs)

    def seed(self, seed: int | None = None) -> None:
        """Re-seed the reset noise (``None``: a fresh random seed)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.generator.manual_seed(int(seed))

    def generators(self) -> dict[str, Any]:
        """The random generators the env draws from: the reset noise's (``torch.Generator`` on the device)."""
        return {"reset_noise": self.generator}

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} tasks (one per row), got {len(tasks)}")
        self.tasks = [self.family.validate(t) for t in tasks]
        params = torch.as_tensor(self.family.task_params(self.tasks), dtype=torch.float32, device=self.device)
        self.params = params.repeat_interleave(self.num_envs, dim=0)  # [K*E] or [K*E, 2]

    def close(self) -> None:
        """Nothing to stop (no processes); drops the CUDA graph."""
        self._graph = None

    def set_state(self, qpos: Tensor | np.ndarray, qvel: Tensor | np.ndarray,
                  mask: Tensor | np.ndarray | None = None) -> None:
        """Put the worlds in ``mask [K*E]`` (all if ``None``) in states ``qpos [m, nq]``, ``qvel [m, nv]``
        (``m`` the number of worlds set), as gymnasium's ``set_state`` after ``mj_resetData``."""
        idx = self._indices(mask)
        qpos = torch.as_tensor(np.asarray(qpos) if not isinstance(qpos, Tensor) else qpos,
                               dtype=torch.float32, device=self.device).reshape(len(idx), self.model.nq)
        qvel = torch.as_tensor(np.asarray(qvel) if not isinstance(qvel, Tensor) else qvel,
                               dtype=torch.float32, device=self.device).reshape(len(idx), self.model.nv)
        self._reset_mask_t.zero_()
        self._reset_mask_t[idx] = True
        self._on_warp(lambda: self._mjw.reset_data(self._m, self._d, self._reset_mask))
        self.qpos[idx] = qpos
        self.qvel[idx] = qvel
        self._on_warp(lambda: self._mjw.forward(self._m, self._d))
        self._read(idx)
        if self.contact is not None:
            self.contact[idx] = 0.0  # as after mj_resetData + mj_forward: no contact forces computed yet
        self.steps[idx] = 0

    def _indices(self, mask: Tensor | np.ndarray | None) -> Tensor:
        if mask is None:
            return torch.arange(self.n, device=self.device)
        m = torch.as_tensor(mask, device=self.device).reshape(-1)
        if m.dtype != torch.bool or m.numel() != self.n:
            raise ValueError(f"mask must be a bool tensor of {self.n} elements ([K, E] or [K*E]), got "
                             f"dtype {m.dtype} with {m.numel()} elements")
        return torch.nonzero(m).reshape(-1)

    def _obs(self) -> Tensor:
        return torch.cat(observation_parts(self.template, self.qpos, self.qvel, self.contact), dim=1)

    def reset(self, mask: Tensor | None = None) -> Tensor:
        """Observations ``[K, E, obs_dim]`` after resetting the worlds in ``mask [K, E]`` (all if ``None``).

        Same distribution as gymnasium's ``reset_model``: ``qpos = init_qpos + U(-s, s)``,
        ``qvel = init_qvel + s N(0, 1)`` with ``s = reset_noise_scale``.
        """
        if self.tasks is None:
            raise RuntimeError("WarpBatchedEnv: call set_tasks(tasks) before reset()/step()")
        idx = self._indices(mask)
        s = float(self.template._reset_noise_scale)
        kw = dict(generator=self.generator, device=self.device, dtype=torch.float32)
        qpos = self.init_qpos + (2 * torch.rand(len(idx), self.model.nq, **kw) - 1) * s
        qvel = self.init_qvel + s * torch.randn(len(idx), self.model.nv, **kw)
        self.set_state(qpos, qvel, None if mask is None else mask)
        return self._obs().reshape(*self.batch_shape, *self.observation_shape)

    def step(self, actions: Tensor, active: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``actions [K, E, act_dim]`` -> ``(obs [K, E, obs_dim], reward [K, E], terminated, truncated)``, all
        on :attr:`device`. ``active`` is accepted for interface compatibility and ignored (every world is
        stepped)."""
        if self.tasks is None:
            raise RuntimeError("WarpBatchedEnv: call set_tasks(tasks) before reset()/step()")
        if tuple(actions.shape) != (*self.batch_shape, self.action_dim):
            raise ValueError(f"actions must have shape {(*self.batch_shape, self.action_dim)}, "
                             f"got {tuple(actions.shape)}")
        a = actions.detach().to(self.device, torch.float32).reshape(self.n, self.action_dim)
        self.ctrl.copy_(a)
        xy_before = self.xy.clone()
        self._simulate()
        self._read()
        xy_velocity = (self.xy - xy_before) / self.dt
        if not self.is_ant:
            xy_velocity[:, 1] = 0.0
        pos = self.xy if self.is_ant else self.qpos[:, :2]
        reward, _ = self.reward_fn(xy_velocity, pos, a, self.contact, self.params)
        terminated = unhealthy(self.template, self.qpos, self.qvel, torch.isfinite) if self.is_ant else None
        if terminated is None:
            terminated = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        shape = self.batch_shape
        return (self._obs().reshape(*shape, *self.observation_shape), reward.reshape(shape),
                terminated.reshape(shape), truncated.reshape(shape))
