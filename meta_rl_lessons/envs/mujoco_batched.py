"""Batched MuJoCo stepping: one shared ``MjModel``, one ``MjData`` per copy, in this process or in workers.

Why this design (measured on the 2-core CPU machine of DESIGN §7 with mujoco 4.0; ``bench/sampler.py``
prints the current figures, with the physics limit measured in the same run):

* raw ``mujoco.mj_step`` on one ``MjData``: about 36-39k HalfCheetah env-steps/s per core (frame skip
  5), 6.8-7k for Ant;
* a Python loop over 800 ``MjData`` (set ``ctrl``, ``mj_step(nstep=5)``, copy ``qpos``/``qvel``) costs a
  few µs per copy: with the MLP policy in the loop the sampler does 83-84% of the raw physics' env-steps
  per CPU-second on HalfCheetah and 89-92% on Ant (the CPU-second figure holds on a busy machine too); on
  an idle machine, one thread gave 32-33k HalfCheetah env-steps/s, 87-98% of the 1-core limit;
* threads help, but less than processes: ``mj_step`` releases the GIL, the per-copy Python work does not
  (``bench/sampler.py`` on 2026-12-03, a slower day of the same machine type, raw physics 18k per core,
  with the policy in the loop: HalfCheetah 20.4k env-steps/s on 1 thread, 34.1k on 2, 44.0k with 2 worker
  processes pipelined; Ant 4.6k, 7.3k, 7.9k. An earlier measurement without the policy, in which 2 threads
  did no better than one on HalfCheetah, no longer holds);
* so, to use every core, the copies are split into contiguous blocks owned by **worker processes**
  (``multiprocessing`` ``spawn``), which read actions from and write ``qpos``/``qvel``/positions/contact
  forces to shared memory; the driver sends one short command per step over a pipe;
* with workers, the sampler pipelines: it begins one half of the episodes
  (:meth:`BatchedMujocoEnv.step_begin`) and runs the policy on the other half while the workers
  simulate, so a command is always waiting for them (``bench/sampler.py``: HalfCheetah 40 x 20 x 100
  from 76% to 84% of the 2-core limit);
* gymnasium's ``SyncVectorEnv``/``AsyncVectorEnv`` add per-step Python work (info dicts, wrappers,
  pickling through pipes) and, for async, one process per env: ``AsyncVectorEnv`` reached 10-25% of the
  2-core limit with 8 processes;
* ``mujoco.rollout`` with 2 threads: about 34k HalfCheetah env-steps/s, but it drops the solver warm-start
  between calls (trajectories then differ from gymnasium's) and cannot return the Ant's contact forces
  without an extra forward pass, so it is not used.

Everything but the physics (observations, rewards, termination) is vectorised in NumPy over all copies in
the driver, with the same reward functions as the gymnasium environments; the tests compare both step by
step, in-process and with workers. Copies whose episode has ended are not simulated.

Failures never hang: a worker that raises sends its traceback, which is raised in the driver; a worker that
dies (killed, segfault) is noticed through its process sentinel while the driver waits, and raises
``RuntimeError`` naming the worker and its exit code; a worker that stops answering raises ``TimeoutError``
after ``timeout`` seconds. After a failure the env closes its other workers and refuses further calls.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from torch import Tensor

from .base import as_generator

if TYPE_CHECKING:  # the locomotion families build this env (lazily): no import back at run time
    from .locomotion import LocomotionFamily


# ---------------------------------------------------------------------------------------------- shared
# Observations and termination from batched state arrays, written with what NumPy arrays and torch tensors
# share, so this env (NumPy, float64) and the Warp env (torch on the device) compute them the same way.
def observation_parts(env: Any, qpos: Any, qvel: Any, contact: Any | None) -> list[Any]:
    """The pieces of gymnasium's observation for ``N`` copies: ``qpos [N, nq - skipped]``, ``qvel [N, nv]``
    and, for the Ant, the clipped contact forces of the bodies but the world ``[N, (nbody - 1) * 6]``.

    Args:
        env: the family's gymnasium env (its observation options); qpos ``[N, nq]``, qvel ``[N, nv]``,
            contact ``[N, nbody, 6]`` or ``None`` (HalfCheetah): arrays or tensors.
    """
    skip = env.observation_structure["skipped_qpos"]
    parts = [qpos[:, skip:], qvel]
    if contact is not None and env._include_cfrc_ext_in_observation:
        lo, hi = env._contact_force_range
        parts.append(contact[:, 1:].clip(lo, hi).reshape(len(qpos), -1))
    return parts


def unhealthy(env: Any, qpos: Any, qvel: Any, isfinite: Any) -> Any | None:
    """Gymnasium Ant's termination ``[N]`` bool (non-finite state, or torso height outside the healthy
    range), or ``None`` when ``env`` never terminates; ``isfinite``: ``np.isfinite`` or ``torch.isfinite``."""
    if not getattr(env, "_terminate_when_unhealthy", False):
        return None
    lo, hi = env._healthy_z_range
    z = qpos[:, 2]
    return ~(isfinite(qpos).all(1) & isfinite(qvel).all(1) & (z >= lo) & (z <= hi))


def adopt_template(obj: Any, family: LocomotionFamily, env_kwargs: dict[str, Any]) -> None:
    """Build the family's gymnasium env as ``obj.template`` (model, options, reward function) and copy onto
    ``obj`` what a batched env reads from it: ``model``, ``frame_skip``, ``dt``, ``max_episode_steps``,
    ``is_ant``, ``reward_fn``, ``action_dim`` and ``observation_shape``."""
    obj.template = env = family.make_env(**env_kwargs)
    obj.model = env.model
    obj.frame_skip = env.frame_skip
    obj.dt = env.dt
    obj.max_episode_steps = env.horizon
    obj.is_ant = isinstance(env, AntEnv)  # the Ant families: contact forces in the observation
    obj.reward_fn = type(env).reward_fn
    obj.action_dim = obj.model.nu
    obj.observation_shape = env.observation_space.shape


# ---------------------------------------------------------------------------------------------- buffers
def _buffer_shapes(n: int, model: mujoco.MjModel, is_ant: bool) -> dict[str, tuple[int, ...]]:
    """Arrays shared by the driver and the physics (threads or worker processes), all float64."""
    nq, nv, nu = model.nq, model.nv, model.nu
    return {
        "ctrl": (n, nu), "qpos": (n, nq), "qvel": (n, nv), "xy": (n, 2),
        "contact": (n, model.nbody if is_ant else 0, 6),
        # one row of "active" per command slot: slot 0 for step(), slots 0 and 1 for the two groups of
        # copies of step_begin()/step_end(), which can be in flight at the same time
        "active": (2, n), "reset_flag": (n,), "reset_qpos": (n, nq), "reset_qvel": (n, nv),
    }


def _views(raws: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    # RawArrays are allocated with at least one element, so take exactly the elements each shape needs.
    return {k: np.frombuffer(raws[k], dtype=np.float64)[: int(np.prod(v))].reshape(v)
            for k, v in shapes.items()}


def _read(buf: dict[str, np.ndarray], i: int, d: mujoco.MjData, is_ant: bool) -> None:
    buf["qpos"][i] = d.qpos
    buf["qvel"][i] = d.qvel
    if is_ant:
        buf["xy"][i] = d.xpos[1, :2]  # torso position, as gymnasium's Ant reads it after the step
        buf["contact"][i] = d.cfrc_ext
    else:
        buf["xy"][i, 0] = d.qpos[0]  # HalfCheetah: root x position


def _step_copies(model, datas, offset, indices, buf, frame_skip, is_ant) -> None:
    """Step copies ``indices`` (global) whose ``MjData`` are ``datas[i - offset]``: the inner loop."""
    ctrl = buf["ctrl"]
    for i in indices:
        d = datas[i - offset]
        d.ctrl[:] = ctrl[i]
        mujoco.mj_step(model, d, frame_skip)
        if is_ant:  # contact forces for the observation and the contact cost (as gymnasium does)
            mujoco.mj_rnePostConstraint(model, d)
        _read(buf, i, d, is_ant)


def _reset_copies(model, datas, offset, indices, buf, is_ant) -> None:
    """Put copies ``indices`` in the states ``reset_qpos/reset_qvel``, as gymnasium's ``set_state``."""
    for i in indices:
        d = datas[i - offset]
        mujoco.mj_resetData(model, d)
        d.qpos[:] = buf["reset_qpos"][i]
        d.qvel[:] = buf["reset_qvel"][i]
        mujoco.mj_forward(model, d)
        _read(buf, i, d, is_ant)


def _worker_main(conn, family, env_kwargs, lo, hi, raws, shapes) -> None:  # pragma: no cover - subprocess
    """A physics worker: owns copies ``lo..hi-1``, waits for ``"step"``/``"reset"``, answers on ``conn``."""
    import traceback

    try:
        env = family.make_env(**env_kwargs)
        model, fs, is_ant = env.model, env.frame_skip, isinstance(env, AntEnv)
        datas = [mujoco.MjData(model) for _ in range(lo, hi)]
        buf = _views(raws, shapes)
        conn.send(("ok", time.process_time()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        if cmd == "close":
            return
        try:
            if cmd in ("step", "step1"):
                idx = lo + np.flatnonzero(buf["active"][int(cmd == "step1"), lo:hi])
                _step_copies(model, datas, lo, idx.tolist(), buf, fs, is_ant)
            elif cmd == "reset":
                idx = lo + np.flatnonzero(buf["reset_flag"][lo:hi])
                _reset_copies(model, datas, lo, idx.tolist(), buf, is_ant)
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", time.process_time()))  # the worker's CPU seconds so far, for benchmarks
        except Exception:
            conn.send(("error", traceback.format_exc()))


class BatchedMujocoEnv:
    """``[num_tasks, num_envs]`` copies of a locomotion family's env, stepped together.

    Same interface as :class:`~meta_rl_lessons.envs.batched.BatchedEnv` (``set_tasks``, ``seed``,
    ``reset(mask)``, ``step(actions [K, E, act_dim])``), returning float32 CPU tensors; :meth:`step_numpy`
    returns the float64 NumPy arrays (``[K*E, ...]``) it computes from.

    Args:
        family: a :class:`~meta_rl_lessons.envs.locomotion.LocomotionFamily`.
        num_tasks, num_envs: batch shape ``K x E``.
        num_workers: worker *processes* for the physics, each owning a contiguous block of copies; ``0``
            steps in this process. ``None`` (default) uses one worker per core (at most 8) when there are
            at least 2 cores and 64 copies, else 0. Workers start with ``start_method`` (default ``spawn``:
            safe with threads and CUDA in the parent; about a second to start).
        num_threads: in-process physics threads, used when ``num_workers == 0``. ``None`` chooses by the
            model's cost: 1 thread when one env step takes under 80 µs of physics (HalfCheetah, about
            30 µs: the per-copy Python work holds the GIL and threads only contend), else one per core,
            at most 8 (Ant, about 145 µs).
        seed: seed of the reset noise (``numpy.random.Generator``).
        timeout: seconds to wait for the workers on one call before raising ``TimeoutError``.
        env_kwargs: passed to the family's gymnasium env (e.g. ``reset_noise_scale``).
    """

    action_dim: int
    num_actions = None
    #: ``step`` accepts ``active=`` (copies to simulate); the sampler uses it to skip finished episodes.
    skips_inactive = True

    def __init__(self, family: LocomotionFamily, num_tasks: int, num_envs: int,
                 num_threads: int | None = None, seed: int | None = None,
                 device: torch.device | str = "cpu", num_workers: int | None = None,
                 start_method: str = "spawn", timeout: float = 600.0, **env_kwargs: Any) -> None:
        if torch.device(device).type != "cpu":
            raise ValueError("BatchedMujocoEnv runs on the CPU; move observations to the policy's device")
        self.family = family
        self.num_tasks, self.num_envs = int(num_tasks), int(num_envs)
        self.device = torch.device("cpu")
        adopt_template(self, family, env_kwargs)
        self.n = self.num_tasks * self.num_envs
        self.steps = np.zeros(self.n, dtype=np.int64)
        self.rng = as_generator(seed)
        self.tasks: list[Any] | None = None
        self.timeout = float(timeout)
        self._pool: ThreadPoolExecutor | None = None
        self._workers: list[Any] = []
        self._conns: list[Any] = []
        self._broken: str | None = None
        self._worker_cpu: dict[int, float] = {}
        self._in_flight: list[tuple[int, np.ndarray]] = []  # (slot, rows) of step_begin, oldest first
        cores = os.cpu_count() or 1
        if num_workers is None:
            num_workers = min(cores, 8) if cores > 1 and self.n >= 64 else 0
        self.num_workers = max(0, min(int(num_workers), self.n))
        shapes = _buffer_shapes(self.n, self.model, self.is_ant)
        if self.num_workers == 0:
            raws = {k: np.zeros(int(np.prod(v))) for k, v in shapes.items()}
            self.datas = [mujoco.MjData(self.model) for _ in range(self.n)]
            if num_threads is None:
                num_threads = 1 if self._physics_seconds_per_step() < 80e-6 else min(8, cores)
            self.num_threads = max(1, int(num_threads))
            self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None
        else:
            ctx = mp.get_context(start_method)
            raws = {k: ctx.RawArray("d", max(1, int(np.prod(v)))) for k, v in shapes.items()}
            self.datas = []
            self.num_threads = 1
            bounds = np.linspace(0, self.n, self.num_workers + 1).astype(int)
            self._blocks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
            for lo, hi in self._blocks:
                parent, child = ctx.Pipe()
                args = (child, family, env_kwargs, lo, hi, raws, shapes)
                proc = ctx.Process(target=_worker_main, args=args,
                                   daemon=True, name=f"mujoco-worker-{lo}-{hi}")
                proc.start()
                child.close()
                self._workers.append(proc)
                self._conns.append(parent)
            self._wait_all("start")
        self._buf = _views(raws, shapes)
        self.qpos, self.qvel, self.xy = self._buf["qpos"], self._buf["qvel"], self._buf["xy"]
        self.contact = self._buf["contact"] if self.is_ant else None
        self._ctrl = self._buf["ctrl"]
        self._xy_before = np.zeros_like(self.xy)
        #: ``step_begin``/``step_end`` overlap the physics of one group of copies with the caller's work on
        #: another (worker processes only: in-process physics would run in the caller's own time).
        self.pipelines = self.num_workers > 0

    def worker_cpu_seconds(self) -> float:
        """CPU seconds used so far by the worker processes (0 without workers), for benchmarks."""
        return float(sum(self._worker_cpu.values()))

    def _physics_seconds_per_step(self, steps: int = 40) -> float:
        """Wall time of one env step's physics (``frame_skip`` x ``mj_step``) on a scratch ``MjData``."""
        d = mujoco.MjData(self.model)
        d.qpos[:] = self.template.init_qpos
        d.ctrl[:] = 0.5
        mujoco.mj_step(self.model, d, self.frame_skip)
        t = time.perf_counter()
        mujoco.mj_step(self.model, d, self.frame_skip * steps)
        return (time.perf_counter() - t) / steps

    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.num_tasks, self.num_envs)

    def seed(self, seed: int | None = None) -> None:
        self.rng = as_generator(seed)

    def generators(self) -> dict[str, Any]:
        """The random generators the env draws from: the reset noise's (``numpy.random.Generator``)."""
        return {"reset_noise": self.rng}

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} tasks (one per row), got {len(tasks)}")
        self.tasks = [self.family.validate(t) for t in tasks]
        params = self.family.task_params(self.tasks)
        self.params = np.repeat(params, self.num_envs, axis=0)  # [K*E] or [K*E, 2]

    def close(self) -> None:
        """Stop the threads and worker processes (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for conn in self._conns:
            try:
                conn.send("close")
            except (OSError, ValueError):
                pass
        for proc in self._workers:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self._workers, self._conns = [], []

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ physics
    def _wait_all(self, what: str) -> None:
        """Wait for every worker's answer; a dead or failing worker raises instead of hanging."""
        pending = dict(enumerate(self._conns))
        errors = []
        deadline = time.monotonic() + self.timeout
        while pending:
            waitables = list(pending.values()) + [self._workers[w].sentinel for w in pending]
            ready = mp_connection.wait(waitables, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                self._fail(f"MuJoCo workers {sorted(pending)} did not answer {what!r} within "
                           f"{self.timeout} s", TimeoutError)
            for w, conn in list(pending.items()):
                if conn.poll():
                    try:
                        status, message = conn.recv()
                    except EOFError:  # the worker closed its pipe: it exited (or never started)
                        proc = self._workers[w]
                        proc.join(timeout=1.0)
                        hint = (" Workers are started with 'spawn', which re-imports the main module: "
                                "a script that builds a sampler with workers needs an "
                                "`if __name__ == \"__main__\":` guard (or pass num_workers=0)."
                                if what == "start" else "")
                        self._fail(f"MuJoCo worker {w} (pid {proc.pid}) closed its pipe during {what!r} "
                                   f"(exit code {proc.exitcode}).{hint}")
                    del pending[w]
                    if status == "ok":
                        self._worker_cpu[w] = message
                    else:
                        errors.append(f"worker {w} (copies {self._blocks[w]}) raised:\n{message}")
                elif not self._workers[w].is_alive():
                    proc = self._workers[w]
                    self._fail(f"MuJoCo worker {w} (pid {proc.pid}, copies {self._blocks[w]}) died with exit "
                               f"code {proc.exitcode} during {what!r}")
        if errors:
            self._fail("\n".join(errors))

    def _fail(self, message: str, kind: type[Exception] = RuntimeError) -> None:
        self._broken = message
        self.close()
        raise kind(message)

    def _call(self, cmd: str) -> None:
        if self._in_flight:
            raise RuntimeError(f"BatchedMujocoEnv: {cmd!r} while group steps are in flight (slots "
                               f"{[slot for slot, _ in self._in_flight]}); call step_end() for each first")
        self._send(cmd)
        self._wait_all(cmd)

    def _send(self, cmd: str) -> None:
        if self._broken is not None:
            raise RuntimeError(f"BatchedMujocoEnv is unusable after a worker failure: {self._broken}")
        for w, conn in enumerate(self._conns):
            try:
                conn.send(cmd)
            except OSError:  # broken pipe: the worker is gone
                proc = self._workers[w]
                proc.join(timeout=1)
                self._fail(f"MuJoCo worker {w} (pid {proc.pid}, copies {self._blocks[w]}) died with exit "
                           f"code {proc.exitcode} before {cmd!r}")

    def _run(self, active: np.ndarray | None) -> None:
        if self._workers or self._broken is not None:
            self._buf["active"][0] = 1.0 if active is None else active
            self._call("step")
            return
        idx = np.arange(self.n) if active is None else np.flatnonzero(active)
        if self._pool is None or len(idx) < 2 * self.num_threads:
            self._step_indices(idx.tolist())
            return
        chunks = [c.tolist() for c in np.array_split(idx, self.num_threads)]
        futures = [self._pool.submit(self._step_indices, c) for c in chunks]
        for f in futures:
            f.result()  # re-raises a thread's exception here

    def _step_indices(self, indices: list[int]) -> None:
        _step_copies(self.model, self.datas, 0, indices, self._buf, self.frame_skip, self.is_ant)

    def _reset_indices(self, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self._buf["reset_qpos"][idx] = qpos
        self._buf["reset_qvel"][idx] = qvel
        if self._workers or self._broken is not None:
            self._buf["reset_flag"][:] = 0.0
            self._buf["reset_flag"][idx] = 1.0
            self._call("reset")
        else:
            _reset_copies(self.model, self.datas, 0, np.asarray(idx).tolist(), self._buf, self.is_ant)

    # ------------------------------------------------------------------ observations
    def _obs(self) -> np.ndarray:
        return np.concatenate(observation_parts(self.template, self.qpos, self.qvel, self.contact), axis=1)

    def _to_torch(self, x: np.ndarray, tail: tuple[int, ...] = ()) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(*self.batch_shape, *tail)

    # ------------------------------------------------------------------ API
    def reset_numpy(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Reset the copies where ``mask [K*E]`` is true (all if ``None``); observations ``[K*E, obs_dim]``.

        Same distribution as gymnasium's ``reset_model``: ``qpos = init_qpos + U(-s, s)``,
        ``qvel = init_qvel + s N(0, 1)`` with ``s = reset_noise_scale``.
        """
        if self.tasks is None:
            raise RuntimeError("BatchedMujocoEnv: call set_tasks(tasks) before reset()/step()")
        env, m = self.template, self.model
        idx = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        s = env._reset_noise_scale
        qpos = env.init_qpos + self.rng.uniform(-s, s, size=(len(idx), m.nq))
        qvel = env.init_qvel + s * self.rng.standard_normal((len(idx), m.nv))
        self._reset_indices(idx, qpos, qvel)
        self.steps[idx] = 0
        return self._obs()

    def set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put copy ``i`` (flat index) in state ``(qpos, qvel)``, as gymnasium's ``reset``/``set_state``."""
        self._reset_indices(np.array([i]), np.asarray(qpos)[None], np.asarray(qvel)[None])

    def step_numpy(self, actions: np.ndarray, active: np.ndarray | None = None):
        """Step all copies with ``actions [K*E, act_dim]``; returns float64/bool arrays ``[K*E, ...]``:
        ``(obs, reward, terminated, truncated, info)``.

        With ``active [K*E]`` bool, only those copies are simulated; the others keep their state and their
        outputs are meaningless (the sampler passes the copies whose episode is still running, so finished
        episodes cost no physics).
        """
        if self.tasks is None:
            raise RuntimeError("BatchedMujocoEnv: call set_tasks(tasks) before reset()/step()")
        actions = np.asarray(actions, dtype=np.float64).reshape(self.n, self.action_dim)
        self._ctrl[:] = actions
        xy_before = self.xy.copy()
        self._run(active)
        return self._outcome(slice(None), xy_before, actions)

    def _outcome(self, rows: slice | np.ndarray, xy_before: np.ndarray, actions: np.ndarray):
        """``(obs, reward, terminated, truncated, info)`` of copies ``rows`` after their physics step, from
        their positions before it ``xy_before`` and the ``actions`` applied (everything per copy)."""
        qpos, qvel, xy = self.qpos[rows], self.qvel[rows], self.xy[rows]
        contact = None if self.contact is None else self.contact[rows]
        xy_velocity = (xy - xy_before) / self.dt
        if not self.is_ant:
            xy_velocity[:, 1] = 0.0
        pos = xy if self.is_ant else qpos[:, :2]
        reward, terms = self.reward_fn(xy_velocity, pos, actions, contact, self.params[rows])
        terminated = unhealthy(self.template, qpos, qvel, np.isfinite) if self.is_ant else None
        if terminated is None:
            terminated = np.zeros(len(qpos), dtype=bool)
        self.steps[rows] += 1
        truncated = self.steps[rows] >= self.max_episode_steps
        obs = np.concatenate(observation_parts(self.template, qpos, qvel, contact), axis=1)
        return obs, reward, terminated, truncated, {"x_velocity": xy_velocity[:, 0], **terms}

    def step_begin(self, slot: int, rows: np.ndarray, actions: np.ndarray, active: np.ndarray) -> None:
        """Start stepping the copies ``rows`` (flat indices) with ``actions [len(rows), act_dim]``, only
        those where ``active [len(rows)]`` is true; returns at once, while the workers simulate.

        Two groups can be in flight at once, in command slots 0 and 1: the workers take the commands in
        the order sent, so while they simulate one group the caller prepares the other's actions. Each
        group's outputs are those :meth:`step_numpy` would give for its rows (the physics and the reward
        are per copy); :meth:`step_end` collects them, in the order the groups were begun.
        """
        if not self.pipelines:
            raise RuntimeError("BatchedMujocoEnv.step_begin needs worker processes (num_workers >= 1)")
        if self.tasks is None:
            raise RuntimeError("BatchedMujocoEnv: call set_tasks(tasks) before reset()/step()")
        if slot not in (0, 1) or any(s == slot for s, _ in self._in_flight):
            raise ValueError(f"slot must be 0 or 1 and not already in flight, got {slot} (in flight: "
                             f"{[s for s, _ in self._in_flight]})")
        rows = np.asarray(rows)
        self._ctrl[rows] = np.asarray(actions, dtype=np.float64).reshape(len(rows), self.action_dim)
        self._xy_before[rows] = self.xy[rows]
        flags = self._buf["active"][slot]
        flags[:] = 0.0
        flags[rows[np.asarray(active, dtype=bool)]] = 1.0
        self._send("step1" if slot else "step")
        self._in_flight.append((slot, rows))

    def step_end(self, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Wait for the group begun in ``slot`` (the oldest in flight) and return its rows' float64/bool
        ``(obs [R, obs_dim], reward [R], terminated [R], truncated [R])``, as :meth:`step_numpy`."""
        if not self._in_flight or self._in_flight[0][0] != slot:
            raise RuntimeError(f"step_end({slot}): the groups in flight are, oldest first, slots "
                               f"{[s for s, _ in self._in_flight]}")
        _, rows = self._in_flight.pop(0)
        self._wait_all("step1" if slot else "step")
        obs, reward, terminated, truncated, _ = self._outcome(rows, self._xy_before[rows], self._ctrl[rows])
        return obs, reward, terminated, truncated

    def reset(self, mask: Tensor | None = None) -> Tensor:
        """Observations ``[K, E, obs_dim]`` float32 after resetting the copies in ``mask [K, E]``."""
        flat = None if mask is None else mask.reshape(-1).cpu().numpy().astype(bool)
        return self._to_torch(self.reset_numpy(flat), self.observation_shape)

    def step(self, actions: Tensor, active: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``actions [K, E, act_dim]`` -> ``(obs [K, E, obs_dim], reward [K, E], terminated, truncated)``;
        ``active [K, E]`` bool limits the physics to those copies (see :meth:`step_numpy`)."""
        if tuple(actions.shape) != (*self.batch_shape, self.action_dim):
            raise ValueError(f"actions must have shape {(*self.batch_shape, self.action_dim)}, "
                             f"got {tuple(actions.shape)}")
        flat = None if active is None else active.reshape(-1).cpu().numpy().astype(bool)
        obs, reward, term, trunc, _ = self.step_numpy(actions.detach().cpu().double().numpy(), flat)
        shape = self.batch_shape
        return (self._to_torch(obs, self.observation_shape), self._to_torch(reward),
                torch.from_numpy(term).reshape(shape), torch.from_numpy(trunc).reshape(shape))
