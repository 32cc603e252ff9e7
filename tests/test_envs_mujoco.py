"""MuJoCo locomotion rewards against an independent computation; batched MuJoCo stepping against gymnasium."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch

import meta_rl_lessons.envs as envs


def _set_velocity(env, vx: float) -> None:
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qvel[0] = vx
    env.set_state(qpos, qvel)


@pytest.mark.parametrize("vx", [2.0, -1.0])
def test_half_cheetah_rewards(vx):
    action = np.array([0.5, -0.3, 0.2, 0.9, -1.0, 0.1])
    for fam, task in [(envs.HalfCheetahVelFamily(), envs.VelocityTask(1.2)),
                      (envs.HalfCheetahDirFamily(), envs.DirectionTask(-1))]:
        env = fam.make_env(task=task)
        env.reset(seed=0)
        _set_velocity(env, vx)
        x0 = env.data.qpos[0]
        _, reward, terminated, _, _ = env.step(action)
        v = (env.data.qpos[0] - x0) / 0.05  # dt = frame_skip 5 x timestep 0.01
        assert np.sign(v) == np.sign(vx)  # the pushed velocity carries through one control step
        ctrl = 0.05 * np.sum(action**2)
        expected = (-abs(v - 1.2) if isinstance(task, envs.VelocityTask) else -v) - ctrl
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12) and not terminated


def test_ant_rewards_and_termination():
    action = np.linspace(-0.8, 0.8, 8)
    cases = [
        (envs.AntVelFamily(), envs.VelocityTask(2.0)),
        (envs.AntDirFamily(), envs.DirectionTask(1)),
        (envs.AntGoalFamily(), envs.GoalTask((1.0, -2.0))),
    ]
    for fam, task in cases:
        env = fam.make_env(task=task)
        env.reset(seed=1)
        _set_velocity(env, 1.5)
        xy0 = env.data.body("torso").xpos[:2].copy()
        _, reward, terminated, _, _ = env.step(action)
        xy1 = env.data.body("torso").xpos[:2].copy()
        v = (xy1[0] - xy0[0]) / 0.05
        contact = 5e-4 * np.sum(np.clip(env.data.cfrc_ext, -1, 1) ** 2)
        if isinstance(task, envs.VelocityTask):
            expected = -abs(v - 2.0) + 1.0 + 0.05 - 0.005 * np.sum(action**2) - contact
        elif isinstance(task, envs.DirectionTask):
            expected = v + 0.05 - 0.005 * np.sum(action**2) - contact
        else:
            expected = -np.abs(xy1 - [1.0, -2.0]).sum() - 0.1 * np.sum(action**2) - contact
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert v > 0.5 and not terminated
    # AntGoal observes the torso position; the velocity/direction tasks do not (gymnasium's default)
    assert envs.AntGoalFamily().make_env().observation_space.shape == (107,)
    assert envs.AntDirFamily().make_env().observation_space.shape == (105,)
    # torso above the healthy range [0.2, 1] m: the direction task terminates, the goal task does not
    for fam, ends in [(envs.AntDirFamily(), True), (envs.AntGoalFamily(), False)]:
        env = fam.make_env()
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qpos[2] = 1.5
        env.set_state(qpos, env.data.qvel.copy())
        assert env.step(np.zeros(8))[2] is ends


def test_horizon_truncates():
    env = envs.HalfCheetahDirFamily(horizon=7).make_env()
    env.reset(seed=0)
    flags = [env.step(np.zeros(6))[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]


@pytest.mark.parametrize("name, threads, workers", [
    ("HalfCheetahVel", 1, 0), ("AntVel", 2, 0), ("AntGoal", 1, 0), ("AntDir", 1, 2),
])
def test_batched_mujoco_equals_gymnasium(name, threads, workers):
    fam = envs.make_family(name, horizon=25)
    tasks = fam.sample_tasks(2, 0)
    benv = fam.make_batched(2, 2, num_threads=threads, num_workers=workers, seed=0)
    benv.set_tasks(tasks)
    benv.reset()
    gyms = []
    for i in range(4):
        env = fam.make_env()
        env.reset(seed=10 + i, options={"task": tasks[i // 2]})
        benv.set_state(i, env.data.qpos.copy(), env.data.qvel.copy())
        gyms.append(env)
    rng = np.random.default_rng(0)
    for _ in range(25):
        a = rng.uniform(-1.2, 1.2, size=(4, benv.action_dim))
        obs, rew, term, trunc, _ = benv.step_numpy(a)
        for i, env in enumerate(gyms):
            go, gr, gte, gtr, _ = env.step(a[i])
            np.testing.assert_allclose(obs[i], go, rtol=1e-9, atol=1e-9)
            assert rew[i] == pytest.approx(gr, rel=1e-9, abs=1e-9)
            assert (term[i], trunc[i]) == (gte, gtr)
    assert trunc.all()
    benv.close()


def test_batched_mujoco_reset_distribution_and_errors():
    fam = envs.HalfCheetahVelFamily()
    benv = fam.make_batched(2, 50, seed=0, num_workers=0)
    with pytest.raises(RuntimeError, match="set_tasks"):
        benv.reset()
    benv.set_tasks(fam.sample_tasks(2, 0))
    obs = benv.reset()
    assert obs.shape == (2, 50, 17) and obs.dtype == torch.float32
    env = fam.make_env()
    init = np.concatenate([env.init_qpos[1:], env.init_qvel])
    dev = obs.reshape(100, 17).double().numpy() - init
    assert np.abs(dev[:, :8]).max() <= 0.1 and 0.04 < dev[:, 8:].std() < 0.16  # U(-.1,.1) and 0.1 N(0,1)
    with pytest.raises(ValueError, match="actions must have shape"):
        benv.step(torch.zeros(2, 50, 5))


def test_worker_process_death_and_errors_surface_without_hanging():
    fam = envs.HalfCheetahVelFamily(horizon=5)
    benv = fam.make_batched(1, 4, num_workers=1, seed=0, timeout=60)
    benv.set_tasks(fam.sample_tasks(1, 0))
    benv.reset()
    benv.step(torch.zeros(1, 4, 6))
    with pytest.raises(RuntimeError, match="unknown command 'bogus'"):  # an exception inside a worker
        benv._call("bogus")
    with pytest.raises(RuntimeError, match="unusable after a worker failure"):
        benv.step(torch.zeros(1, 4, 6))

    benv = fam.make_batched(1, 4, num_workers=2, seed=0, timeout=60)
    benv.set_tasks(fam.sample_tasks(1, 0))
    benv.reset()
    procs = list(benv._workers)
    os.kill(procs[1].pid, signal.SIGKILL)  # a crashed worker process
    procs[1].join(5)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker 1 .* died with exit code -9"):
        benv.step(torch.zeros(1, 4, 6))
    assert time.monotonic() - start < 10
    assert not any(p.is_alive() for p in procs)  # the surviving worker was shut down too


def test_batched_mujoco_thread_error_surfaces():
    fam = envs.AntDirFamily(horizon=5)
    benv = fam.make_batched(1, 4, num_threads=2, num_workers=0, seed=0)
    benv.set_tasks(fam.sample_tasks(1, 0))
    benv.reset()

    def boom(indices):
        raise RuntimeError(f"worker crashed on copies {indices}")

    benv._step_indices = boom
    with pytest.raises(RuntimeError, match="worker crashed"):
        benv.step(torch.zeros(1, 4, 8))
    benv.close()


def test_inactive_copies_are_not_simulated():
    fam = envs.HalfCheetahDirFamily(horizon=5)
    benv = fam.make_batched(1, 6, num_threads=2, num_workers=0, seed=0)
    benv.set_tasks(fam.sample_tasks(1, 0))
    benv.reset()
    before = benv.qpos.copy()
    active = torch.tensor([[True, False, True, True, False, True]])
    benv.step(torch.ones(1, 6, 6), active=active)
    moved = np.abs(benv.qpos - before).max(axis=1) > 0
    assert moved.tolist() == active[0].tolist()
    benv.close()


def test_no_mujoco_log_file_in_working_directory(tmp_path, monkeypatch, caplog):
    # gymnasium's half_cheetah.xml triggers a MuJoCo deprecation warning, which MuJoCo appends to
    # ./MUJOCO_LOG.TXT unless a handler is installed; our envs route it to Python's logging instead.
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="meta_rl_lessons"):
        envs.HalfCheetahVelFamily().make_env()
    assert "settotalmass" in caplog.text
    envs.AntDirFamily().make_env()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
