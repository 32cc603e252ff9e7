"""RL²: recurrent policy, trial sampler, recurrent PPO (loss, advantages, learning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEVICES

from meta_rl_lessons import budget
from meta_rl_lessons.envs import BernoulliBanditFamily, Navigation2DFamily, TabularMDPFamily, warp_available
from meta_rl_lessons.rl2 import baselines as bl
from meta_rl_lessons.rl2.policy import RL2Policy
from meta_rl_lessons.rl2.ppo import RL2Config, RL2Trainer, bandit_config, recurrent_ppo_loss, trial_advantages
from meta_rl_lessons.rl2.sampler import TrialSampler
from meta_rl_lessons.serialization import load_checkpoint

torch.set_num_threads(1)


def _mdp_sampler(device="cpu", num_tasks=6, episodes=3, seed=0):
    fam = TabularMDPFamily(num_states=4, num_actions=3, episode_length=4)
    return TrialSampler(fam, num_tasks, episodes, device=device, seed=seed)


# ----------------------------------------------------------------------------- observation layout
@pytest.mark.parametrize("device", DEVICES)
def test_observation_layout(device) -> None:
    """[obs | onehot(a_{t-1}) | r_{t-1} | d_{t-1}]: zeros after a trial starts; the done flag is set on the
    first observation of every later episode; the observation part is the (reset) state."""
    torch.manual_seed(0)
    s = _mdp_sampler(device)
    pol = RL2Policy.for_env(s.env, 8).to(device)
    tb = s.sample(pol)
    obs, act, rew = tb.batch.observations, tb.batch.actions, tb.batch.rewards
    S, A = 4, 3
    assert obs.shape == (12, 6, S + A + 2)
    assert torch.all(obs[0, :, S:] == 0) and torch.all(obs[0, :, 0] == 1)  # start state 0, nothing before
    assert torch.equal(obs[1:, :, S:S + A], torch.nn.functional.one_hot(act[:-1], A).float())
    assert torch.allclose(obs[1:, :, S + A], rew[:-1])
    done = obs[:, :, -1]
    expected = torch.zeros(12, device=device)
    expected[[4, 8]] = 1.0
    assert torch.equal(done, expected[:, None].expand_as(done))
    assert torch.all(obs[[4, 8], :, 0] == 1)  # every episode restarts in state 0
    assert tb.episode_ends[[3, 7, 11]].all() and tb.episode_ends.sum() == 3 * 6
    assert tb.batch.truncated[11].all() and not tb.batch.truncated[:11].any()
    assert torch.allclose(tb.episode_returns().sum(0), tb.trial_returns(), atol=1e-5)


# ----------------------------------------------------------------------------- hidden state
@pytest.mark.parametrize("device", DEVICES)
def test_hidden_state_carries_across_episodes_and_resets_across_trials(device) -> None:
    torch.manual_seed(1)
    s = _mdp_sampler(device)
    pol = RL2Policy.for_env(s.env, 16).to(device)
    first = s.sample(pol)
    b = first.batch
    with torch.no_grad():
        dist, _, _ = pol(b.observations)  # one uninterrupted hidden state per trial, from zero
        carried = dist.log_prob(b.actions)
        # The same trials with the hidden state reset at every episode start (what RL² must NOT do).
        h = pol.initial_state(b.observations.shape[1])
        reset_lp = []
        for t in range(b.horizon):
            d, _, h = pol.step(b.observations[t], h, reset=torch.full_like(b.mask[t], t % 4 == 0).bool())
            reset_lp.append(d.log_prob(b.actions[t]))
        reset_lp = torch.stack(reset_lp)
    # The sampler's log-probs are those of the carried state ...
    assert torch.allclose(first.batch.log_probs, carried, atol=1e-5)
    # ... which differ from the reset ones from the second episode on (and agree on the first).
    assert torch.allclose(reset_lp[:4], carried[:4], atol=1e-5)
    assert (reset_lp[4:] - carried[4:]).abs().max() > 1e-3
    # A new call is a new trial: the hidden state starts from zero again (not from the last call's end).
    second = s.sample(pol)
    with torch.no_grad():
        dist2, v2, _ = pol(second.batch.observations)
    assert torch.allclose(second.batch.log_probs, dist2.log_prob(second.batch.actions), atol=1e-5)
    assert torch.allclose(second.values, v2, atol=1e-5)


def test_step_reset_equals_fresh_state() -> None:
    torch.manual_seed(2)
    pol = RL2Policy(7, num_actions=3, hidden_size=5)
    x, h = torch.randn(4, 7), torch.randn(4, 5)
    reset = torch.tensor([True, False, True, False])
    d1, v1, h1 = pol.step(x, h, reset)
    d2, v2, h2 = pol.step(x, torch.where(reset[:, None], torch.zeros_like(h), h))
    assert torch.allclose(h1, h2) and torch.allclose(v1, v2) and torch.allclose(d1.logits, d2.logits)


def test_gaussian_head_and_errors() -> None:
    fam = Navigation2DFamily(horizon=5)
    s = TrialSampler(fam, 3, 2, seed=0)
    pol = RL2Policy.for_env(s.env, 8)
    tb = s.sample(pol)
    assert tb.batch.actions.shape == (10, 3, 2) and tb.batch.log_probs.shape == (10, 3)
    assert tb.expected_rewards is None or tb.expected_rewards.shape == (10, 3)
    with pytest.raises(ValueError, match="exactly one"):
        RL2Policy(4, num_actions=2, action_dim=2)
    with pytest.raises(ValueError, match="D=4"):
        RL2Policy(4, num_actions=2).step(torch.zeros(3, 5), torch.zeros(3, 256))
    with pytest.raises(ValueError, match="num_minibatches"):
        RL2Config(num_trials=4, num_minibatches=8)
    with pytest.raises(ValueError, match="gamma"):
        RL2Config(gamma=1.5)


# ----------------------------------------------------------------------------- advantages
def test_gae_runs_across_episode_ends_and_stops_at_trial_end() -> None:
    torch.manual_seed(3)
    s = _mdp_sampler(num_tasks=5)
    pol = RL2Policy.for_env(s.env, 8)
    tb = s.sample(pol)
    gamma, lam = 0.9, 0.8
    adv, ret = trial_advantages(tb, gamma, lam)
    r, v = tb.batch.rewards, tb.values
    T = r.shape[0]
    expect = torch.zeros_like(r)
    a = torch.zeros(r.shape[1])
    for t in range(T - 1, -1, -1):  # one recursion through the whole trial; V = 0 after its last step
        v_next = v[t + 1] if t + 1 < T else torch.zeros_like(v[0])
        a = r[t] + gamma * v_next - v[t] + gamma * lam * a
        expect[t] = a
    assert torch.allclose(adv, expect, atol=1e-5)
    assert torch.allclose(ret, expect + v, atol=1e-5)
    # Cutting at inner episode ends (a per-episode GAE) would give something else.
    assert (adv[3] - (r[3] - v[3])).abs().max() > 1e-3


# ----------------------------------------------------------------------------- recurrent PPO loss
def _stepwise_loss(pol: RL2Policy, obs, actions, old_lp, adv, ret, mask, clip, cv, ce):
    """The same loss recomputed one step at a time with a GRUCell that shares the GRU's weights."""
    cell = torch.nn.GRUCell(pol.input_dim, pol.hidden_size)
    with torch.no_grad():
        cell.weight_ih.copy_(pol.gru.weight_ih_l0)
        cell.weight_hh.copy_(pol.gru.weight_hh_l0)
        cell.bias_ih.copy_(pol.gru.bias_ih_l0)
        cell.bias_hh.copy_(pol.gru.bias_hh_l0)
    T, n = mask.shape
    h = torch.zeros(n, pol.hidden_size)
    n_real = mask.sum()
    a_mean = (adv * mask).sum() / n_real
    a_std = (((adv - a_mean) ** 2 * mask).sum() / (n_real - 1)).sqrt()
    total = torch.zeros(())
    for t in range(T):
        h = cell(obs[t], h)
        logits = pol.pi_head(h)
        logp = torch.log_softmax(logits, -1).gather(-1, actions[t][:, None]).squeeze(-1)
        ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
        v = pol.v_head(h).squeeze(-1)
        A = (adv[t] - a_mean) / (a_std + 1e-8)
        ratio = torch.exp(logp - old_lp[t])
        surr = torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip, 1 + clip) * A)
        total = total + (mask[t] * (-surr + cv * (v - ret[t]) ** 2 - ce * ent)).sum()
    return total / n_real, cell


def test_recurrent_ppo_loss_equals_stepwise_recomputation() -> None:
    torch.manual_seed(4)
    s = TrialSampler(BernoulliBanditFamily(3, episode_length=1), 6, 7, seed=0)
    pol = RL2Policy.for_env(s.env, 12)
    tb = s.sample(pol)
    adv, ret = trial_advantages(tb, 0.95, 0.9)
    b = tb.batch
    mask = b.mask.clone()
    mask[5:, :2] = 0.0  # padded ends, as for trials that finish early
    # Move the policy so that ratios differ from 1 and clipping is active somewhere.
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.3 * torch.randn_like(p))
    args = (b.observations, b.actions, b.log_probs, adv, ret, mask)
    loss, stats = recurrent_ppo_loss(pol, *args, clip_coef=0.2, value_coef=0.5, entropy_coef=0.01)
    ref, cell = _stepwise_loss(pol, *args, 0.2, 0.5, 0.01)
    assert stats["clip_fraction"] > 0
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    # Full BPTT: the gradient w.r.t. the recurrent weights equals the step-by-step one.
    g = torch.autograd.grad(loss, pol.gru.weight_hh_l0)[0]
    g_ref = torch.autograd.grad(ref, cell.weight_hh)[0]
    assert torch.allclose(g, g_ref, atol=1e-6)
    # Truncated BPTT: same loss value, a different (truncated) gradient.
    loss_tr, _ = recurrent_ppo_loss(pol, *args, clip_coef=0.2, value_coef=0.5, entropy_coef=0.01, bptt=2)
    assert loss_tr.item() == pytest.approx(loss.item(), rel=1e-6)
    g_tr = torch.autograd.grad(loss_tr, pol.gru.weight_hh_l0)[0]
    assert (g_tr - g).abs().max() > 1e-6


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize("device", DEVICES)
def test_rl2_learns_two_armed_bandits(device) -> None:
    """At smoke budget a seeded RL² run on 2-armed bandits (n = 10 pulls) beats random and Thompson
    sampling on the same held-out tasks, and comes close to the Bayes-greedy/Gittins level.

    (The posterior-mean greedy rule is within 0.01 of the Gittins index policy on 2 arms, 6.00 vs 6.01, so
    it is a near-optimal bar here, not a weak one; we require RL² to be within 0.25 of it.)"""
    with budget.use("smoke"):
        iters = budget.pick(smoke=25, book=60, full=300)
    cfg = bandit_config(10, 2, num_trials=512, hidden_size=48, total_iterations=iters, seed=0, device=device,
                        num_threads=1)
    trainer = RL2Trainer(cfg)
    trainer.train()
    tasks = BernoulliBanditFamily(2, 1).sample_tasks(4000, 99)
    means = np.array([t.means for t in tasks])
    rl2 = trainer.evaluate(tasks, seed=5).trial_returns().cpu().numpy()
    se = rl2.std() / np.sqrt(len(rl2))
    rand = bl.bandit_random(means, 10, rng=6).mean()
    ts = bl.bandit_thompson(means, 10, rng=6).mean()
    greedy = bl.bandit_greedy(means, 10, rng=6).mean()
    assert rl2.mean() > rand + 0.5, (rl2.mean(), rand)
    assert rl2.mean() > ts + 3 * se, (rl2.mean(), ts)
    assert rl2.mean() > greedy - 0.25, (rl2.mean(), greedy)


def test_trainer_checkpoint_roundtrip(tmp_path) -> None:
    cfg = bandit_config(4, 2, num_trials=16, num_minibatches=2, hidden_size=8, total_iterations=2)
    tr = RL2Trainer(cfg)
    tr.train()
    path = tmp_path / "ck.pt"
    tr.save(str(path))
    tr2 = RL2Trainer(cfg)
    tr2.load_state_dict(load_checkpoint(path))  # weights_only: the state holds safe values only
    assert tr2.iterations_done == 2 and tr2.train_time == tr.train_time
    assert tr2.sampler.total_steps == tr.sampler.total_steps
    for p, q in zip(tr.policy.parameters(), tr2.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(tr.logger.rows) == 2 and np.isfinite(tr.logger.column("trial_return")).all()


def test_train_callback_stops_on_false_only() -> None:
    """The protocol's callback: ``False`` stops; ``None`` and ``True`` go on (RL²'s old callback stopped on
    any truthy value)."""
    cfg = bandit_config(4, 2, num_trials=8, num_minibatches=2, hidden_size=8, total_iterations=4,
                        update_epochs=1)
    tr = RL2Trainer(cfg)
    seen = []

    def callback(t, row):
        seen.append(row["iteration"])
        return t.iterations_done != 2  # True goes on

    tr.train(callback=callback)
    assert seen == [1, 2] and tr.iterations_done == 2
    tr.train(callback=lambda t, row: None)
    assert tr.iterations_done == 4 == tr.total_iterations


def test_load_state_dict_refuses_another_config() -> None:
    cfg = bandit_config(4, 2, num_trials=8, num_minibatches=2, hidden_size=8, total_iterations=2)
    state = RL2Trainer(cfg).state_dict()
    other = RL2Trainer(bandit_config(4, 2, num_trials=8, num_minibatches=2, hidden_size=8, total_iterations=2,
                                     learning_rate=5e-3, log_path=None))
    with pytest.raises(ValueError, match=r"different RL2Config \(learning_rate: 0.002 in the state, "
                                         r"0.005 here\)"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match=r"has no \['sampler'\]"):
        RL2Trainer(cfg).load_state_dict({k: v for k, v in state.items() if k != "sampler"})


def test_evaluation_tasks_are_mamls_held_out_tasks_when_trained_on_the_train_split() -> None:
    """A run trained on the "train" split is evaluated on the "test" split, on exactly the tasks MAML's
    evaluation draws with the same (number, seed); a run trained on the whole distribution (the paper's
    tables) is evaluated on the whole distribution."""
    cfg = RL2Config(family="Navigation2D", family_kwargs={}, episodes_per_trial=2, num_trials=8,
                    num_minibatches=2, hidden_size=8, total_iterations=1, split="train")
    tr = RL2Trainer(cfg)
    assert tr.evaluation_split() == "test"
    trials = tr.evaluate(num_tasks=12, seed=10_000)
    maml_tasks = Navigation2DFamily().sample_tasks(12, rng=10_000, split="test")
    assert trials.tasks == maml_tasks
    assert trials.tasks != Navigation2DFamily().sample_tasks(12, rng=10_000)
    per_episode = trials.episode_returns()
    assert per_episode.shape == (2, 12)
    assert torch.allclose(per_episode.sum(0), trials.trial_returns())

    whole = RL2Trainer(bandit_config(4, 2, num_trials=8, num_minibatches=2, hidden_size=8,
                                     total_iterations=1))
    assert whole.evaluation_split() is None
    assert whole.evaluate(num_tasks=5, seed=3).tasks == BernoulliBanditFamily(2, 1).sample_tasks(5, 3)


def test_cli_eval_of_rl2_on_navigation_reports_each_episode(tmp_path, capsys) -> None:
    """`meta-rl eval` of an RL² run on 2D navigation trained on the train split: the protocol names the
    held-out test tasks and the report holds the return of each episode of the trial (what the chapter
    compares with MAML's return after 0, 1, 2, 3 gradient steps)."""
    import json

    from meta_rl_lessons import cli

    run = tmp_path / "rl2-nav"
    assert cli.main(["train", "rl2", "--env", "MetaRL/Navigation2D-v0", "--budget", "smoke", "--threads", "1",
                     "--no-progress", "--out", str(run), "--set", "split=train",
                     "--set", "episodes_per_trial=2", "--set", "total_iterations=1"]) == 0
    assert cli.main(["eval", str(run), "--tasks", "6", "--seed", "10000"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert "held-out test tasks" in report["protocol"]
    per_episode = report["return_per_episode"]
    assert list(per_episode) == ["1", "2"] and all(s["n"] == 6 for s in per_episode.values())
    total = sum(s["mean"] for s in per_episode.values())
    assert total == pytest.approx(report["trial_return"]["mean"], abs=1e-4)
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("episode of the trial"))
    rows = printed[header + 1:]
    assert [row.split()[0] for row in rows[:2]] == ["1", "2"]


def test_rl2_beats_random_on_small_tabular_mdps() -> None:
    """At smoke budget a seeded RL² run on small random MDPs (2 states, 3 actions, 4 steps per episode,
    n = 5 episodes) beats the random policy on held-out MDPs, and its last episode beats its first: the
    GRU learns, inside a trial, which actions pay in which state. (Discount and GAE lambda 0.9: with the
    defaults 0.99 and 0.95 this run reached 23.9 instead of 25.1, random being 19.9.)"""
    S, A, H, n = 2, 3, 4, 5
    cfg = RL2Config(family="TabularMDP",
                    family_kwargs={"num_states": S, "num_actions": A, "episode_length": H},
                    episodes_per_trial=n, num_trials=256, num_minibatches=4, update_epochs=4, hidden_size=32,
                    learning_rate=3e-3, gamma=0.9, gae_lambda=0.9, total_iterations=40, seed=0,
                    num_threads=1)
    trainer = RL2Trainer(cfg)
    trainer.train()
    tasks = TabularMDPFamily(S, A, H).sample_tasks(2000, 99)
    trials = trainer.evaluate(tasks, seed=5)
    rl2 = trials.trial_returns().cpu().numpy()
    P = np.stack([t.transitions for t in tasks])
    mu = np.stack([t.reward_means for t in tasks])
    rand = bl.mdp_random(P, mu, n, horizon=H, rng=6)
    se = np.hypot(rl2.std() / np.sqrt(len(rl2)), rand.std() / np.sqrt(len(rand)))
    assert rl2.mean() > rand.mean() + 8 * se, (rl2.mean(), rand.mean(), se)
    per_episode = trials.episode_returns().mean(1)
    assert per_episode[-1] > per_episode[0] + 0.5, per_episode.tolist()


@pytest.mark.parametrize("physics", ["mujoco", pytest.param("warp", marks=pytest.mark.skipif(
    not warp_available(), reason="MuJoCo Warp is not installed"))])
def test_state_dict_resumes_exactly_on_halfcheetah(physics, tmp_path) -> None:
    """RL² on a MuJoCo family resumes bit for bit: the reset noise's generator (NumPy for C MuJoCo, a torch
    generator on the device for Warp) travels in the sampler's state."""
    cfg = RL2Config(family="HalfCheetahVel", family_kwargs={"horizon": 8, "physics": physics}, num_trials=4,
                    episodes_per_trial=2, total_iterations=4, hidden_size=8, update_epochs=1,
                    num_minibatches=2, seed=2)
    timing = {"sample_time", "update_time", "train_time"}
    a = RL2Trainer(cfg)
    a.iteration()
    a.save(tmp_path / "s.pt")
    rows_a = [{k: v for k, v in a.iteration().items() if k not in timing} for _ in range(2)]
    torch.manual_seed(1)
    b = RL2Trainer(cfg)
    b.load_state_dict(load_checkpoint(tmp_path / "s.pt"))
    assert [{k: v for k, v in b.iteration().items() if k not in timing} for _ in range(2)] == rows_a
