"""One protocol test for every trainer (meta_rl_lessons.trainer): state round-trips give identical futures.

For each trainer, at tiny sizes:

* it *is* a :class:`~meta_rl_lessons.trainer.Trainer` (the runtime-checkable protocol), with a ``name``, a
  ``return_key`` that its rows carry, an integer ``total_iterations``;
* **exact resume**: trainer A runs ``k`` iterations, its ``state_dict()`` goes through ``save_checkpoint`` /
  ``load_checkpoint`` (``weights_only=True``), A runs two more; trainer B, built afresh from the same config
  after the process-wide generators were disturbed, loads the state and runs two: the rows are equal
  (timing columns aside), and so are the parameters. A trainer C that never had its state taken runs ``k + 2``
  iterations and ends with the same rows, so taking a state has no side effect;
* the in-memory state dict (not saved to disk) loads the same way;
* ``train(callback)`` stops when the callback returns ``False``; ``close()`` may be called twice.

The cases use episodes that cross iteration boundaries (PPO's fixed-length rollouts on CartPole and
HalfCheetah), so a sampler that forgot its running episodes fails here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from meta_rl_lessons.serialization import load_checkpoint, save_checkpoint
from meta_rl_lessons.trainer import Trainer

TIMING = {"sample_time", "update_time", "train_time", "wall_time", "time"}


def _ppo(env_id: str = "CartPole-v1", **kw: Any) -> Callable[[], Any]:
    def make():
        from meta_rl_lessons.rl.ppo import PPO, PPOConfig

        return PPO(PPOConfig(env_id=env_id, num_envs=2, num_steps=24, total_steps=2 * 24 * 6,
                             minibatch_size=16, update_epochs=2, hidden_sizes=(8,), seed=3, device="cpu",
                             progress=False, **kw))
    return make


def _trpo() -> Any:
    from meta_rl_lessons.rl.trpo import TRPO, TRPOConfig

    return TRPO(TRPOConfig(env_id="CartPole-v1", num_envs=2, episodes_per_iteration=3,
                           max_episode_steps=40, iterations=6, value_iters=3, hidden_sizes=(8,), seed=4,
                           device="cpu", progress=False))


def _reinforce() -> Any:
    from meta_rl_lessons.rl.reinforce import REINFORCE, REINFORCEConfig

    return REINFORCE(REINFORCEConfig(env_id="CartPole-v1", num_envs=2, episodes_per_iteration=3,
                                     max_episode_steps=40, iterations=6, baseline="value", value_iters=3,
                                     hidden_sizes=(8,), seed=5, device="cpu", progress=False))


def _maml(**kw: Any) -> Callable[[], Any]:
    def make():
        from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig

        return MAMLTRPO(MAMLTRPOConfig(meta_batch_size=3, num_episodes=3, iterations=6, hidden_sizes=(8,),
                                       cg_iters=3, seed=6, **kw))
    return make


def _rl2(**kw: Any) -> Callable[[], Any]:
    def make():
        from meta_rl_lessons.rl2.ppo import RL2Config, RL2Trainer

        return RL2Trainer(RL2Config(num_trials=8, episodes_per_trial=4, total_iterations=6, hidden_size=8,
                                    update_epochs=2, num_minibatches=2, seed=7, **kw))
    return make


def _sinusoid() -> Any:
    from meta_rl_lessons.maml import supervised

    trainer_cls = getattr(supervised, "SinusoidTrainer", None)
    if trainer_cls is None:
        pytest.fail("meta_rl_lessons.maml.supervised has no SinusoidTrainer (the protocol's supervised MAML)")
    return trainer_cls(supervised.SinusoidConfig(iterations=6, meta_batch_size=4, hidden_sizes=(8,), seed=8))


CASES: dict[str, Callable[[], Any]] = {
    "ppo-cartpole": _ppo(),
    "ppo-cartpole-normalized": _ppo(normalize_observations=True, normalize_rewards=True),
    "ppo-halfcheetah": _ppo("HalfCheetah-v5", normalize_observations=True),
    "trpo": _trpo,
    "reinforce": _reinforce,
    "maml-navigation": _maml(),
    "maml-dice-two-steps": _maml(estimator="dice", inner_steps=2, fvp_method="direct"),
    "maml-curvature-subsample": _maml(curvature_subsample=0.5),
    "maml-halfcheetah-vel": _maml(family="HalfCheetahVel", family_kwargs={"horizon": 20}),
    "rl2-bandit": _rl2(),
    "rl2-tabular-mdp": _rl2(family="TabularMDP", family_kwargs={"num_states": 3, "num_actions": 2,
                                                                "episode_length": 5}),
    "sinusoid-maml": _sinusoid,
}


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """The row without timing columns, NaN made comparable."""
    out = {}
    for k, v in row.items():
        if k in TIMING:
            continue
        out[k] = "nan" if isinstance(v, float) and math.isnan(v) else v
    return out


def _params(trainer: Any) -> list[torch.Tensor]:
    nets = [getattr(trainer, n) for n in ("policy", "value", "model")
            if getattr(trainer, n, None) is not None]
    assert nets, f"{type(trainer).__name__} has none of .policy/.value/.model"
    return [p.detach().clone() for net in nets for p in net.parameters()]


def _disturb_global_generators() -> None:
    torch.manual_seed(12345)
    np.random.seed(54321)  # noqa: NPY002 - the legacy global generator is part of what a trainer restores
    random.seed(999)


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def make(request: pytest.FixtureRequest) -> Callable[[], Any]:
    return CASES[request.param]


def test_trainer_follows_the_protocol(make: Callable[[], Any]) -> None:
    trainer = make()
    try:
        assert isinstance(trainer, Trainer), f"{type(trainer).__name__} misses Trainer protocol members"
        assert isinstance(trainer.name, str) and trainer.name
        assert isinstance(trainer.total_iterations, int) and trainer.total_iterations >= 2
        assert trainer.iterations_done == 0
        row = trainer.iteration()
        assert trainer.iterations_done == 1
        assert trainer.return_key in row, f"rows have no {trainer.return_key!r} column: {sorted(row)}"
        seen: list[int] = []

        def stop_after_one_more(t: Any, r: dict[str, Any]) -> bool:
            seen.append(t.iterations_done)
            return False

        trainer.train(callback=stop_after_one_more)
        assert seen == [2] and trainer.iterations_done == 2
    finally:
        trainer.close()
    trainer.close()  # idempotent


@pytest.mark.parametrize("through_disk", [True, False], ids=["checkpoint-file", "in-memory"])
def test_state_round_trip_gives_identical_next_iterations(make: Callable[[], Any], through_disk: bool,
                                                          tmp_path) -> None:
    k, more = 2, 2
    a = make()
    try:
        for _ in range(k):
            a.iteration()
        state = a.state_dict()
        if through_disk:
            save_checkpoint(state, tmp_path / "state.pt")
            state = load_checkpoint(tmp_path / "state.pt")
        rows_a = [_clean(a.iteration()) for _ in range(more)]
        params_a = _params(a)
    finally:
        a.close()

    _disturb_global_generators()
    b = make()
    try:
        b.load_state_dict(state)
        assert b.iterations_done == k
        rows_b = [_clean(b.iteration()) for _ in range(more)]
        params_b = _params(b)
    finally:
        b.close()
    assert rows_b == rows_a
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b, strict=True))

    if through_disk:  # taking the state changed nothing: an undisturbed run ends the same way
        c = make()
        try:
            rows_c = [_clean(c.iteration()) for _ in range(k + more)][k:]
        finally:
            c.close()
        assert rows_c == rows_a
