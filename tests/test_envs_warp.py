"""MuJoCo Warp backend of the locomotion families: parity with C MuJoCo on the CPU, the sampler, trainers.

Parity protocol: the same ``K x E = 2 x 2`` copies, the same initial states (the C env's reset, copied into
the Warp worlds with ``set_state``), the same action sequence (uniform in [-1, 1], seeded); observations and
rewards compared step by step. Warp computes in float32 and C MuJoCo in float64, so the two agree to about
1e-6 per step without contacts. With ground contacts they separate: MuJoCo Warp orients a contact's tangent
directions differently from C MuJoCo, which rotates the pyramidal friction cone of both models about the
normal (see the contact test below), and a contact at its margin may be active in one precision and not the
other; after that the trajectories separate like any chaotic system's. The horizons below are those over
which the measured differences stay well inside the tolerances (this suite's seeds; deterministic on the CPU):

* HalfCheetah (Vel, Dir): 10 steps, tolerance 2e-3 (observations) and 1e-4 (rewards). Measured: largest
  differences 6.2e-4 (step 8) and 1.3e-5 (step 10); the feet's ground contacts then separate the runs
  (1.1e-3 at step 12, 3.6e-3 at step 14, 0.1 by step 20).
* Ant (Vel, Dir, Goal): 2 steps, tolerance 1e-4, the flight phase after the reset (the torso starts 0.75 m
  up; the legs touch the ground during step 3). Measured: 3e-6 and 2.4e-7; at step 3, 3.3e-2 (observations),
  0.21 at step 4, and O(1) from step 5 (a clipped contact-force component switching between 0 and 1).
  This is not only float32: from the same state in contact, both find the same contacts, normals and normal
  forces, but MuJoCo Warp orients the tangent directions of a contact differently, so the Ant's pyramidal
  friction cone is rotated about the normal and the friction forces differ
  (:func:`test_contacts_equal_c_mujoco_in_the_same_state_up_to_the_friction_pyramid`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_rl_lessons import envs
from meta_rl_lessons.envs.warp_batched import WARP_MISSING, warp_available, warp_devices

pytestmark = pytest.mark.skipif(not warp_available(), reason=f"MuJoCo Warp is not installed: {WARP_MISSING}")

FAMILIES = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntGoal")
#: (horizon, observation atol, reward atol) per model; see the module docstring for the measurements.
PARITY = {"HalfCheetah": (10, 2e-3, 1e-4), "Ant": (2, 1e-4, 1e-4)}
GPUS = [d for d in warp_devices() if d.startswith("cuda")]
GPU_PARAMS = GPUS or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device that both torch and Warp see on this machine"))]


@pytest.fixture(scope="session")
def compiled():
    """Compile (or load from ~/.cache/warp) the kernels of both models once: one step each."""
    for name in ("HalfCheetahVel", "AntVel"):
        fam = envs.make_family(name, physics="warp")
        env = fam.make_batched(1, 1, seed=0)
        env.set_tasks(fam.sample_tasks(1, rng=0))
        env.reset()
        env.step(torch.zeros(1, 1, env.action_dim))
    return True


def _pair(name: str, device: str = "cpu", K: int = 2, E: int = 2, **kw):
    """A C-MuJoCo env and a Warp env on the same tasks, the Warp worlds in the C env's reset states."""
    c_fam, w_fam = envs.make_family(name), envs.make_family(name, physics="warp")
    c = c_fam.make_batched(K, E, num_workers=0, seed=0)
    w = w_fam.make_batched(K, E, device=device, seed=0, **kw)
    tasks = c_fam.sample_tasks(K, rng=1)
    c.set_tasks(tasks)
    w.set_tasks(tasks)
    obs_c = c.reset()
    w.set_state(c.qpos, c.qvel)
    return c, w, obs_c


def _parity(name: str, device: str, amplitude: float = 1.0, horizon: int | None = None, **kw) -> float:
    """Step both envs ``horizon`` steps (default: :data:`PARITY`'s); the largest observation difference."""
    c, w, obs_c = _pair(name, device, **kw)
    default, obs_tol, rew_tol = PARITY["Ant" if name.startswith("Ant") else "HalfCheetah"]
    horizon = default if horizon is None else horizon
    worst = 0.0
    obs_w = w._obs().reshape(obs_c.shape)
    torch.testing.assert_close(obs_w.cpu(), obs_c, rtol=0, atol=1e-6)
    rng = np.random.default_rng(3)
    for t in range(horizon):
        a = torch.from_numpy(rng.uniform(-amplitude, amplitude, (*c.batch_shape, c.action_dim))).float()
        oc, rc, tc, uc = c.step(a)
        ow, rw, tw, uw = w.step(a.to(device))
        assert ow.device == rw.device == torch.device(w.device)
        msg = f"{name} step {t + 1}"
        torch.testing.assert_close(ow.cpu(), oc, rtol=0, atol=obs_tol, msg=lambda m, msg=msg: f"{msg}: {m}")
        torch.testing.assert_close(rw.cpu(), rc, rtol=0, atol=rew_tol, msg=lambda m, msg=msg: f"{msg}: {m}")
        assert torch.equal(tw.cpu(), tc) and torch.equal(uw.cpu(), uc), msg
        worst = max(worst, float((ow.cpu() - oc).abs().max()))
    return worst


@pytest.mark.parametrize("name", FAMILIES)
def test_parity_with_c_mujoco_on_cpu(compiled, name):
    _parity(name, "cpu")


def test_actions_beyond_the_control_range_are_clamped_by_the_physics_not_in_the_cost(compiled):
    # MuJoCo clamps ctrl to ctrlrange [-1, 1]; the control cost uses the action as given (gymnasium v5).
    # Saturated actions are more violent: the contacts separate the runs sooner (measured: 2e-4 at step 6,
    # 4e-3 at step 9), so 6 steps.
    _parity("HalfCheetahVel", "cpu", amplitude=3.0, horizon=6)


def test_contacts_equal_c_mujoco_in_the_same_state_up_to_the_friction_pyramid(compiled):
    """Why the Ant separates at its first contact: from the same state, both find the same contacts with the
    same normals and normal forces, but MuJoCo Warp picks other tangent directions in the contact plane than
    C MuJoCo, so the 4-edge friction pyramid (the Ant's ``cone="pyramidal"``, ``condim=3``) is rotated about
    the normal, and the friction forces and accelerations differ (measured here: up to 5 m/s^2)."""
    import mujoco
    import mujoco_warp as mjw
    import warp as wp

    c = envs.make_family("AntVel").make_env()
    c.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(60):  # walk randomly until two feet touch the ground
        c.step(rng.uniform(-1, 1, c.action_space.shape))
        if c.data.ncon >= 2:
            break
    d = c.data
    assert d.ncon >= 2
    w = envs.make_family("AntVel", physics="warp").make_batched(1, 1, seed=0)
    w.set_state(d.qpos[None], d.qvel[None])
    w.ctrl[:] = torch.as_tensor(d.ctrl, dtype=torch.float32)
    d.qacc_warmstart[:] = 0.0  # both solvers start from zero (set_state resets the Warp world's warm start)
    mujoco.mj_forward(c.model, d)
    w._on_warp(lambda: mjw.forward(w._m, w._d))
    con = w._d.contact
    n = int(wp.to_torch(w._d.nacon)[0])
    assert n == d.ncon
    np.testing.assert_array_equal(wp.to_torch(con.geom)[:n].numpy(), d.contact.geom)
    np.testing.assert_allclose(wp.to_torch(con.dist)[:n].numpy(), d.contact.dist, atol=1e-6)
    frame = wp.to_torch(con.frame)[:n].double().numpy()  # [n, 3, 3], row 0 the normal
    np.testing.assert_allclose(frame[:, 0], d.contact.frame[:, :3], atol=1e-6)
    # normal force of a pyramidal contact: the sum of its edge forces (C: mj_contactForce's first component)
    force = wp.to_torch(w._d.efc.force)[0].double().numpy()
    for i in range(n):
        adr = d.contact.efc_address[i]
        f_c = np.zeros(6)
        mujoco.mj_contactForce(c.model, d, i, f_c)
        np.testing.assert_allclose(force[adr:adr + 4].sum(), f_c[0], rtol=1e-3)
    assert not np.allclose(frame[:, 1], d.contact.frame[:, 3:6], atol=1e-3)  # the tangents differ


def test_reset_noise_is_seeded_and_within_gymnasium_bounds(compiled):
    fam = envs.make_family("AntVel", physics="warp")
    tasks = fam.sample_tasks(2, rng=0)
    obs = []
    for seed in (5, 5, 6):
        env = fam.make_batched(2, 3, seed=seed)
        env.set_tasks(tasks)
        obs.append(env.reset())
        s = env.template._reset_noise_scale
        dq = env.qpos - env.init_qpos
        assert float(dq.abs().max()) <= s + 1e-6 and float(dq.abs().max()) > s / 2
    assert torch.equal(obs[0], obs[1]) and not torch.equal(obs[0], obs[2])


def test_masked_reset_leaves_the_other_worlds_alone(compiled):
    fam = envs.make_family("HalfCheetahDir", physics="warp")
    env = fam.make_batched(2, 2, seed=0)
    env.set_tasks(fam.sample_tasks(2, rng=0))
    env.reset()
    for _ in range(3):
        obs, *_ = env.step(torch.ones(2, 2, env.action_dim) * 0.5)
    mask = torch.tensor([[True, False], [False, False]])
    qpos = env.qpos.clone()
    fresh = env.reset(mask)
    assert torch.equal(fresh[~mask], obs[~mask])
    assert torch.equal(env.qpos[1:], qpos[1:]) and not torch.equal(env.qpos[0], qpos[0])
    assert env.steps.tolist() == [0, 3, 3, 3]


def test_meta_batch_sampler_on_warp(compiled):
    from meta_rl_lessons.rl.policies import GaussianMLPPolicy

    fam = envs.make_family("AntDir", physics="warp", horizon=4)
    sampler = envs.MetaBatchSampler(fam, 2, 3, seed=0)
    assert isinstance(sampler.env, envs.WarpBatchedEnv)
    policy = GaussianMLPPolicy(sampler.env.observation_shape[0], sampler.env.action_dim, (8,))
    batch = sampler.sample(fam.sample_tasks(2, rng=0), policy)
    assert batch.rewards.shape[1:] == (2, 3) and batch.observations.shape[-1] == 105
    assert batch.rewards.shape[0] <= 4 and bool(batch.mask[0].all())
    assert torch.isfinite(batch.rewards).all()


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="physics='bullet'.*mujoco.*warp"):
        envs.make_family("HalfCheetahVel", physics="bullet")
    fam = envs.make_family("HalfCheetahVel", physics="warp")
    with pytest.raises(ValueError, match="device='mps'"):
        fam.make_batched(1, 1, device="mps")
    with pytest.raises(ValueError, match="num_tasks and num_envs"):
        fam.make_batched(0, 1)


def test_maml_trpo_smoke_on_warp(compiled):
    from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig

    config = MAMLTRPOConfig(family="HalfCheetahDir", family_kwargs={"physics": "warp", "horizon": 5},
                            meta_batch_size=2, num_episodes=2, iterations=2, hidden_sizes=(8,), seed=0)
    trainer = MAMLTRPO(config)
    assert isinstance(trainer.sampler.env, envs.WarpBatchedEnv)
    rows = [trainer.iteration() for _ in range(2)]
    assert all(np.isfinite(r["return_post"]) for r in rows)
    trainer.close()


def test_rl2_smoke_on_warp(compiled):
    from meta_rl_lessons.rl2.ppo import RL2Config, RL2Trainer

    config = RL2Config(family="HalfCheetahVel", family_kwargs={"physics": "warp", "horizon": 4},
                       episodes_per_trial=2, num_trials=4, num_minibatches=2, total_iterations=2,
                       hidden_size=8, update_epochs=1, seed=0)
    trainer = RL2Trainer(config)
    assert isinstance(trainer.sampler.base, envs.WarpBatchedEnv)
    rows = [trainer.iteration() for _ in range(2)]
    assert all(np.isfinite(r["trial_return"]) for r in rows)
    assert trainer.sampler.env.max_episode_steps == 8


@pytest.mark.parametrize("device", GPU_PARAMS)
def test_parity_on_gpu(compiled, device):
    for name in ("HalfCheetahVel", "AntGoal"):
        _parity(name, device)


@pytest.mark.parametrize("device", GPU_PARAMS)
def test_cuda_graph_step_equals_plain_launches(compiled, device):
    outs = []
    for graph in (True, False):
        fam = envs.make_family("AntVel", physics="warp")
        env = fam.make_batched(4, 8, device=device, seed=0, graph=graph)
        env.set_tasks(fam.sample_tasks(4, rng=0))
        env.reset()
        gen = torch.Generator(device=device).manual_seed(0)
        for _ in range(5):
            obs, rew, _, _ = env.step(2 * torch.rand(4, 8, env.action_dim, generator=gen, device=device) - 1)
        outs.append((obs, rew))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_cli_set_physics_goes_to_the_family():
    from meta_rl_lessons import experiments

    maml = experiments.make_config("maml", "MetaRL/HalfCheetahDir-v0", "smoke", 0, "cpu",
                                    ["physics=warp", 'family_kwargs={"horizon": 50}'])
    assert maml.family_kwargs == {"horizon": 50, "physics": "warp"}
    rl2 = experiments.make_config("rl2", "MetaRL/AntGoal-v0", "smoke", 0, "cpu", ["physics=warp"])
    assert rl2.family == "AntGoal" and rl2.family_kwargs == {"physics": "warp"}
    with pytest.raises(experiments.ExperimentError, match="physics='bullet'.*mujoco, warp"):
        experiments.make_config("maml", "MetaRL/AntVel-v0", "smoke", 0, "cpu", ["physics=bullet"])
    with pytest.raises(experiments.ExperimentError, match="rl2 cannot train on "
                                                          "'MetaRL/AntVel-v0'.*physics=warp"):
        experiments.make_config("rl2", "MetaRL/AntVel-v0", "smoke", 0, "cpu", [])


# ---------------------------------------------------------------------------------------------- PPO and TRPO
# The gymnasium vector env over Warp (envs/warp_vector.py) against gymnasium's SyncVectorEnv of C-MuJoCo envs,
# both from make_vector_env with the same seeds: same tasks and reset states (drawn from the same per-sub-env
# generators), so they differ only by the physics. Episodes of 5 steps (max_episode_steps), 3 of them, so the
# comparison crosses two autoresets and stays inside the horizon where HalfCheetah's contacts agree. Measured
# (seed 0): observations 9.6e-5, rewards 3.4e-6, final observations 8.9e-5; reset observations 7e-9 (the same
# float64 states, cast to float32).
def _vector_pair(env_id="MetaRL/HalfCheetahVel-v0", num_envs=3, **kw):
    from meta_rl_lessons.rl.sampling import make_vector_env

    return (make_vector_env(env_id, num_envs, **kw), make_vector_env(env_id, num_envs, physics="warp", **kw))


def test_warp_vector_env_matches_the_c_mujoco_vector_env(compiled):
    from gymnasium.vector import AutoresetMode

    c, w = _vector_pair(max_episode_steps=5)
    assert w.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert w.single_observation_space == c.single_observation_space
    assert w.single_action_space == c.single_action_space
    assert w.observation_space == c.observation_space and w.action_space == c.action_space
    oc, _ = c.reset(seed=0)
    ow, _ = w.reset(seed=0)
    assert w.get_tasks() == [e.unwrapped.get_task() for e in c.envs]
    assert ow.dtype == oc.dtype == np.float64
    np.testing.assert_allclose(ow, oc, rtol=0, atol=1e-6)
    _, obs_tol, rew_tol = PARITY["HalfCheetah"]
    rng = np.random.default_rng(3)
    for t in range(15):
        a = rng.uniform(-1, 1, (3, *c.single_action_space.shape)).astype(np.float32)
        oc, rc, tc, uc, ic = c.step(a)
        ow, rw, tw, uw, iw = w.step(a)
        msg = f"step {t + 1}"
        np.testing.assert_array_equal(tw, tc, err_msg=msg)
        np.testing.assert_array_equal(uw, uc, err_msg=msg)
        assert rw.dtype == rc.dtype == np.float64
        np.testing.assert_allclose(rw, rc, rtol=0, atol=rew_tol, err_msg=msg)
        ends = (t + 1) % 5 == 0
        assert uw.all() == ends and not tw.any()
        # at an end: the next episode's reset observation (same seeded state) and the true final one in infos
        np.testing.assert_allclose(ow, oc, rtol=0, atol=1e-6 if ends else obs_tol, err_msg=msg)
        assert ("final_obs" in iw) == ends == ("final_obs" in ic)
        if ends:
            np.testing.assert_array_equal(iw["_final_obs"], ic["_final_obs"])
            np.testing.assert_allclose(np.stack(list(iw["final_obs"])), np.stack(list(ic["final_obs"])),
                                       rtol=0, atol=obs_tol, err_msg=msg)
    c.close()
    w.close()


def test_warp_vector_env_time_limit_tasks_and_seeds(compiled):
    from meta_rl_lessons.rl.policies import GaussianMLPPolicy
    from meta_rl_lessons.rl.sampling import VectorSampler, make_vector_env

    # the env's own horizon and gymnasium's TimeLimit (max_episode_steps): whichever is shorter
    for steps, limit in ((5, 3), (2, 2)):
        env = make_vector_env("MetaRL/HalfCheetahDir-v0", 2, physics="warp", horizon=3,
                              max_episode_steps=steps)
        assert env.max_episode_steps == limit
        env.reset(seed=1)
        truncs = [env.step(np.zeros((2, 6), np.float32))[3].tolist() for _ in range(2 * limit)]
        assert truncs == ([[False, False]] * (limit - 1) + [[True, True]]) * 2
    # VectorSampler accepts it (SAME_STEP); whole episodes of the time limit; same seed, same numbers
    outs = []
    for seed in (7, 7, 8):
        env = make_vector_env("MetaRL/HalfCheetahVel-v0", 2, physics="warp", max_episode_steps=3)
        torch.manual_seed(0)
        policy = GaussianMLPPolicy(17, 6, (8,))
        batch = VectorSampler(env, policy, seed=seed).collect_episodes(3)
        assert batch.rewards.shape == (3, 3) and bool(batch.mask.all()) and bool(batch.truncated[-1].all())
        outs.append((batch.observations, batch.rewards, env.get_tasks()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2] and outs[0][2] != outs[2][2]
    # a task for every sub-env, fixed (task=) or set at reset (options), as the gymnasium env's
    fixed = envs.VelocityTask(1.5)
    env = make_vector_env("MetaRL/HalfCheetahVel-v0", 2, physics="warp", task=fixed)
    env.reset(seed=0)
    assert env.get_tasks() == [fixed, fixed]
    env.reset(options={"task": {"velocity": 0.5}})
    assert env.get_tasks() == [envs.VelocityTask(0.5)] * 2


def test_ppo_and_trpo_smoke_on_warp(compiled):
    from meta_rl_lessons.envs.warp_vector import WarpVectorEnv
    from meta_rl_lessons.rl.ppo import PPO, PPOConfig
    from meta_rl_lessons.rl.trpo import TRPO, TRPOConfig

    ppo = PPO(PPOConfig(env_id="MetaRL/HalfCheetahVel-v0", physics="warp", num_envs=2, num_steps=8,
                        minibatch_size=8, total_steps=32, update_epochs=1, max_episode_steps=5,
                        hidden_sizes=(8,), progress=False, device="cpu"))
    assert isinstance(ppo.envs, WarpVectorEnv)
    rows = [ppo.iteration() for _ in range(ppo.total_iterations)]
    assert len(rows) == 2 and all(np.isfinite(r["episode_return"]) for r in rows)
    trpo = TRPO(TRPOConfig(env_id="MetaRL/AntDir-v0", physics="warp", num_envs=2, episodes_per_iteration=2,
                           iterations=2, max_episode_steps=4, value_iters=2, hidden_sizes=(8,),
                           progress=False, device="cpu"))
    assert isinstance(trpo.envs, WarpVectorEnv)
    rows = [trpo.iteration() for _ in range(2)]
    assert all(np.isfinite(r["episode_return"]) and r["env_steps"] > 0 for r in rows)


def test_physics_for_ppo_and_trpo_from_the_cli_and_its_errors():
    from meta_rl_lessons import experiments
    from meta_rl_lessons.rl.sampling import make_vector_env

    for algo in ("ppo", "trpo"):
        config = experiments.make_config(algo, "MetaRL/AntGoal-v0", "smoke", 0, "cpu", ["physics=warp"])
        assert config.physics == "warp" and config.env_id == "MetaRL/AntGoal-v0"
        with pytest.raises(experiments.ExperimentError, match=r"physics='bullet' is not allowed.*'mujoco', "
                                                               "'warp'"):
            experiments.make_config(algo, "MetaRL/AntGoal-v0", "smoke", 0, "cpu", ["physics=bullet"])
        with pytest.raises(experiments.ExperimentError, match=r"physics='warp' needs a MetaRL locomotion "
                                                               "env id, got "
                                               r"'CartPole-v1'.*MetaRL/HalfCheetahVel-v0"):
            experiments.make_config(algo, "CartPole-v1", "smoke", 0, "cpu", ["physics=warp"])
    with pytest.raises(ValueError, match="got 'MetaRL/Navigation2D-v0'"):
        make_vector_env("MetaRL/Navigation2D-v0", 2, physics="warp")
    with pytest.raises(ValueError, match=r"physics='Warp' is not allowed"):
        make_vector_env("MetaRL/AntVel-v0", 2, physics="Warp")
