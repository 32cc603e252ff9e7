r"""Trials: one learner built from one configuration, trained in segments, checkpointed, continued or cloned.

Every meta-optimizer in this package drives learners through the small :class:`Trainable` interface::

    trial = PPOTrial({"n_layers": 2, "width": 64, "learning_rate": 1e-3, "gamma": 0.99}, seed=0)
    trial.train(10_000)              # 10k more environment steps (rounded up to whole PPO rollouts)
    trial.score()                    # mean return of the last 20 finished episodes
    trial.curve                      # one row per PPO iteration: env_steps, episode_return, score
    save_checkpoint(trial.state_dict(), "t.pt")
    clone = PPOTrial.restore("t.pt") # continues exactly where ``trial`` stopped

A checkpoint holds everything the continuation depends on, so *restore-and-continue gives bit-for-bit the
run that was never interrupted* (on the same machine and thread count):

* ``learner``: policy and value weights, Adam's moment estimates and step counts, observation and return
  normalisation statistics. This is the part PBT's *exploit* copies from a better member
  (:func:`exploit_state`): the member keeps its own environments, random numbers and history.
* ``rng``: the trial's own torch generator state. PPO draws actions and minibatch permutations from torch's
  global generator, so a trial swaps its state in for the duration of :meth:`PPOTrial.train` and out again;
  trials interleaved in one process (serial PBT) therefore do not disturb each other, and a trial gives the
  same numbers in any process of any executor.
* ``env``: the sampler's running episodes (current observations, returns and lengths so far) and each
  sub-environment's simulator state, time-limit counter and random generator, so an episode cut by a
  checkpoint continues after it (classic-control and MuJoCo environments; see :func:`env_state`).

Checkpoints contain only tensors and plain Python values and are read with ``torch.load(...,
weights_only=True)``, which cannot execute code from a file.

**Budgets** are in environment steps for :class:`PPOTrial` (``train(steps)`` runs
:math:`\lceil \text{steps} / (\text{num\_envs}\cdot\text{num\_steps}) \rceil` PPO iterations) and in
gradient steps for the toy problem (:mod:`~meta_rl_lessons.adaptive.toy`).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from meta_rl_lessons.rl.ppo import PPO, PPOConfig
from meta_rl_lessons.rl.utils import config_state
from meta_rl_lessons.serialization import env_state, load_checkpoint, load_env_state, save_checkpoint
from meta_rl_lessons.trainer import Row, rng_state

__all__ = [
    "MUTABLE_PPO_KEYS",
    "PPOTrial",
    "Segment",
    "SegmentResult",
    "Trainable",
    "env_state",
    "exploit_state",
    "load_checkpoint",
    "load_env_state",
    "ppo_config_from",
    "resolve_trainable",
    "run_segment",
    "save_checkpoint",
    "trainable_path",
]


@runtime_checkable
class Trainable(Protocol):
    """What a meta-optimizer needs from a learner; built as ``cls(params, seed, **settings)``."""

    params: dict[str, Any]
    steps_done: int
    curve: list[dict[str, float]]

    def train(self, steps: int) -> list[dict[str, float]]:
        """Train for ``steps`` more steps; return the learning-curve rows added."""

    def score(self) -> float:
        """Higher is better; NaN if there is nothing to score yet."""

    def set_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Change hyperparameters in place (PBT's explore); architecture changes must raise."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue; ``state["learner"]`` is what PBT's exploit copies."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


# ---------------------------------------------------------------------------------------------- files
# Checkpoints and environment state are meta_rl_lessons.serialization's (one implementation for the package);
# the names stay importable from here.
def exploit_state(own: Mapping[str, Any], donor: Mapping[str, Any]) -> dict[str, Any]:
    """PBT's exploit: ``own`` with its ``learner`` (weights, optimizer state, normalisers) and its ``params``
    (which include the architecture the weights need) replaced by the donor's. The member keeps its
    environments, random generator, step count and learning curve."""
    return {**own, "learner": donor["learner"], "params": dict(donor["params"]),
            "exploited_from": donor.get("trial_id")}


# ---------------------------------------------------------------------------------------------- PPO trial
#: Hyperparameters a running PPO trial may change (PBT explores these); the rest fix the architecture/batch.
MUTABLE_PPO_KEYS = ("learning_rate", "gamma", "gae_lambda", "clip_coef", "entropy_coef", "value_coef",
                    "max_grad_norm", "update_epochs", "minibatch_size", "target_kl")

#: Base settings of a PPO trial on CartPole (sized for a 2-core CPU: 4 envs x 128 steps per rollout).
DEFAULT_PPO_BASE: dict[str, Any] = {
    "env_id": "CartPole-v1", "num_envs": 4, "num_steps": 128, "minibatch_size": 128, "update_epochs": 4,
    "anneal_lr": False, "learning_rate": 1e-3, "progress": False, "device": "cpu",
}

_PPO_FIELDS = {f.name for f in dataclasses.fields(PPOConfig)}


def ppo_config_from(params: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> PPOConfig:
    """A :class:`PPOConfig` from search-space values on top of ``base`` (default :data:`DEFAULT_PPO_BASE`).

    Architecture keys: ``n_layers`` with either ``width`` (all layers) or ``width_0 ... width_{n-1}``
    (per layer, conditional dimensions), and ``activation``. Every other key must be a ``PPOConfig`` field.
    """
    cfg = {**DEFAULT_PPO_BASE, **(base or {})}
    p = dict(params)
    if "n_layers" in p:
        n = int(p.pop("n_layers"))
        if "width" in p:
            widths = [int(p.pop("width"))] * n
        else:
            missing = [f"width_{i}" for i in range(n) if f"width_{i}" not in p]
            if missing:
                raise ValueError(f"n_layers={n} needs 'width' or per-layer widths; missing {missing}")
            widths = [int(p.pop(f"width_{i}")) for i in range(n)]
        for k in [k for k in p if k.startswith("width_")]:
            raise ValueError(f"{k!r} is set but n_layers={n} (layers are numbered from 0)")
        cfg["hidden_sizes"] = tuple(widths)
    elif "width" in p:
        raise ValueError("'width' needs 'n_layers' in the same config")
    unknown = sorted(set(p) - _PPO_FIELDS)
    if unknown:
        raise ValueError(f"unknown PPO hyperparameter(s) {unknown}; allowed: n_layers, width, width_<i>, "
                         f"and PPOConfig fields {sorted(_PPO_FIELDS)}")
    cfg.update(p)
    return PPOConfig(**cfg)


class PPOTrial:
    """A :class:`~meta_rl_lessons.rl.ppo.PPO` learner as a :class:`Trainable`.

    Besides :class:`Trainable` (``train(steps)`` in environment steps), a trial exposes what it can of the
    :class:`~meta_rl_lessons.trainer.Trainer` protocol: :attr:`learner` (the PPO trainer itself),
    :attr:`config`, :attr:`iterations_done`, :meth:`iteration` (one PPO iteration, in the trial's own random
    generator, recorded in :attr:`curve`), :meth:`state_dict` / :meth:`load_state_dict`, :meth:`close`,
    ``name`` and ``return_key``. It has no ``total_iterations`` and no ``train(callback)``: its budget is set
    by the search, segment by segment.

    Args:
        params: the configuration (see :func:`ppo_config_from`); stored as ``self.params``.
        seed: seed for the networks, the trial's random generator and the environments.
        base: ``PPOConfig`` fields shared by every trial of a search (environment, batch shape, ...).
        score_episodes: :meth:`score` is the mean return of this many most recent episodes.

    Raises:
        ValueError: an unknown or invalid hyperparameter (naming it), a negative seed, or ``score_episodes``
            that is not a positive integer.
    """

    name: ClassVar[str] = "ppo_trial"
    return_key: ClassVar[str] = "episode_return"

    def __init__(self, params: Mapping[str, Any], seed: int = 0, base: Mapping[str, Any] | None = None,
                 score_episodes: int = 20) -> None:
        if not isinstance(params, Mapping):
            raise ValueError(f"PPOTrial params must be a mapping of hyperparameters, got "
                             f"{type(params).__name__}")
        if isinstance(score_episodes, bool) or not isinstance(score_episodes, (int, np.integer)) \
                or score_episodes <= 0:
            raise ValueError(f"PPOTrial score_episodes must be a positive integer, got {score_episodes!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"PPOTrial seed must be a non-negative integer, got {seed!r}")
        self.params = dict(params)
        self.seed, self.base = int(seed), dict(base or {})
        self.score_episodes = int(score_episodes)
        config = ppo_config_from(self.params, {**self.base, "seed": self.seed})
        saved = torch.get_rng_state()
        #: The PPO trainer this trial drives.
        self.learner = PPO(config)  # seeds torch's global generator and initialises the networks
        self.rng_state = torch.get_rng_state()  # from here on, this trial's own generator
        torch.set_rng_state(saved)
        self.batch_steps = config.num_envs * config.num_steps
        self.steps_done = 0
        self.curve: list[dict[str, float]] = []
        self.recent_returns: deque[float] = deque(maxlen=self.score_episodes)

    @property
    def config(self) -> PPOConfig:
        """The learner's config (its mutable hyperparameters change with :meth:`set_hyperparameters`)."""
        return self.learner.config

    @property
    def iterations_done(self) -> int:
        """PPO iterations run so far."""
        return self.learner.iterations_done

    # -- training -----------------------------------------------------------------------------------
    def iteration(self) -> Row:
        """One PPO iteration (``batch_steps`` environment steps) in the trial's own random generator; its
        learning-curve row is appended to :attr:`curve`. Returns PPO's row."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        try:
            stats = self.learner.iteration()
        finally:
            self.rng_state = torch.get_rng_state()
            torch.set_rng_state(saved)
        logger = self.learner.logger
        logger.rows = logger.rows[len(logger.rows) - 1:]  # keep memory bounded in long runs
        self.steps_done = int(self.learner.sampler.total_steps)
        ret = stats["episode_return"]
        if not math.isnan(ret):  # PPO logs the mean of the episodes finished this iteration
            self.recent_returns.extend([ret] * int(stats["episodes"]))
        self.curve.append({"env_steps": self.steps_done, "episode_return": ret, "score": self.score()})
        return stats

    def train(self, steps: int) -> list[dict[str, float]]:
        """``ceil(steps / batch_steps)`` PPO iterations; returns their learning-curve rows."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"steps must be a positive integer (environment steps), got {steps!r}")
        n = math.ceil(steps / self.batch_steps)
        for _ in range(n):
            self.iteration()
        return self.curve[len(self.curve) - n:]

    def score(self) -> float:
        """Mean return of the last ``score_episodes`` finished training episodes (NaN before the first).

        PPO logs the mean return of the episodes finished in each iteration; those episodes enter the window
        with that mean (exact whenever the window holds whole iterations)."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def set_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Change the mutable hyperparameters (:data:`MUTABLE_PPO_KEYS`) of the running learner."""
        new = {**self.params, **params}
        fixed = ppo_config_from(self.params, self.base)
        changed = ppo_config_from(new, self.base)
        for f in _PPO_FIELDS - set(MUTABLE_PPO_KEYS) - {"seed"}:
            if getattr(fixed, f) != getattr(changed, f):
                raise ValueError(f"cannot change {f!r} of a running PPO trial ({getattr(fixed, f)!r} -> "
                                 f"{getattr(changed, f)!r}); mutable keys: {list(MUTABLE_PPO_KEYS)}")
        if self.batch_steps % changed.minibatch_size:
            raise ValueError(f"minibatch_size={changed.minibatch_size} must divide {self.batch_steps}")
        for k in MUTABLE_PPO_KEYS:
            setattr(self.learner.config, k, getattr(changed, k))
        for group in self.learner.optimizer.param_groups:
            group["lr"] = changed.learning_rate
        self.params = new

    def close(self) -> None:
        """Close the learner's environments (idempotent)."""
        self.learner.close()

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The trial's checkpoint, built from the learner's :meth:`~meta_rl_lessons.rl.ppo.PPO.state_dict`:
        ``learner`` (the entries ``PPO.LEARNER_KEYS``: what PBT's exploit copies), ``env`` (the sampler and
        the running discounted returns), ``rng`` (the trial's torch generator, in place of PPO's
        process-wide ones), ``progress``, and what rebuilds the trial (``params``, ``seed``, ``settings``)."""
        ppo = self.learner.state_dict()
        return {
            "kind": trainable_path(type(self)), "params": dict(self.params), "seed": self.seed,
            "settings": {"base": self.base, "score_episodes": self.score_episodes},
            "learner": {k: ppo[k] for k in PPO.LEARNER_KEYS},
            "rng": {"torch": self.rng_state.clone()},
            "env": {"sampler": ppo["sampler"], "discounted": ppo["discounted"]},
            "progress": {"iterations_done": ppo["iterations_done"], "steps_done": self.steps_done,
                         "curve": [dict(r) for r in self.curve], "recent_returns": list(self.recent_returns)},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (or from :func:`exploit_state`'s mix of two of them)."""
        self.set_hyperparameters(state["params"])
        prog = state["progress"]
        self.learner.load_state_dict({
            "config": config_state(self.learner.config), "iterations_done": prog["iterations_done"],
            **state["learner"], **state["env"],
            # the process-wide generators as they are now: a trial keeps its own generator (below) and
            # loading one must not move another's
            "rng": rng_state(),
        })
        for group in self.learner.optimizer.param_groups:  # the optimizer state carries the donor's lr
            group["lr"] = self.learner.config.learning_rate
        self.rng_state = state["rng"]["torch"].clone()
        self.steps_done = int(prog["steps_done"])
        self.curve = [dict(r) for r in prog["curve"]]
        self.recent_returns = deque(prog["recent_returns"], maxlen=self.score_episodes)

    @classmethod
    def restore(cls, path: str | os.PathLike) -> PPOTrial:
        """A trial rebuilt from a checkpoint file, ready to continue."""
        state = load_checkpoint(path)
        trial = cls(state["params"], state["seed"], **state["settings"])
        trial.load_state_dict(state)
        return trial


# ---------------------------------------------------------------------------------------------- segments
def trainable_path(cls: type | str) -> str:
    """``"package.module:ClassName"`` for a class (what a worker process imports)."""
    if isinstance(cls, str):
        return cls
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_trainable(path: str | type) -> type:
    """Import the class named by :func:`trainable_path`."""
    if not isinstance(path, str):
        return path
    module, _, name = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"cannot import trainable {path!r} ({err}); it must be importable in every "
                          "worker, e.g. defined in a module, not in a notebook") from None
    return obj


@dataclass(frozen=True)
class Segment:
    """One unit of work for an executor: build or restore a trial, train it ``steps`` more, save it."""

    trial_id: str
    """Unique name of this piece of work (also its key in the run's results file)."""
    trainable: str
    """``"module:Class"`` of a :class:`Trainable` (see :func:`trainable_path`)."""
    params: dict[str, Any]
    """The configuration to build the trial with, or (when restoring) to switch to before training."""
    seed: int
    """Seed of a new trial (ignored when restoring: the checkpoint has its generator state)."""
    steps: int
    """Steps to train in this segment."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the trainable (e.g. ``{"base": {...}}`` for :class:`PPOTrial`)."""
    restore: str | None = None
    """Checkpoint to continue from (``None``: a new trial)."""
    save: str | None = None
    """Where to write the checkpoint after training (``None``: do not save)."""


@dataclass
class SegmentResult:
    """What an executor returns for a :class:`Segment` (JSON-serialisable)."""

    trial_id: str
    params: dict[str, Any]
    score: float
    steps_done: int
    """Total steps of the trial after this segment (including earlier segments)."""
    steps_run: int
    """Steps actually run in this segment."""
    curve: list[dict[str, float]]
    """Learning-curve rows added in this segment."""
    wall_time: float
    checkpoint: str | None


def run_segment(segment: Segment) -> SegmentResult:
    """Build (or restore) the trial of ``segment``, train it, save it: the function every executor runs."""
    t0 = time.perf_counter()
    cls = resolve_trainable(segment.trainable)
    if segment.restore is not None:
        state = load_checkpoint(segment.restore)
        trial = cls(state["params"], state["seed"], **segment.settings)
        trial.load_state_dict(state)
        if dict(segment.params) != trial.params:
            trial.set_hyperparameters(segment.params)  # PBT's explore
    else:
        trial = cls(dict(segment.params), segment.seed, **segment.settings)
    try:
        before = trial.steps_done
        rows = trial.train(segment.steps)
        if segment.save is not None:
            state = trial.state_dict()
            state["trial_id"] = segment.trial_id
            save_checkpoint(state, segment.save)
    finally:
        close = getattr(trial, "close", None)  # (not part of Trainable: the toy trainable has none)
        if close is not None:
            close()
    return SegmentResult(trial_id=segment.trial_id, params=dict(trial.params), score=float(trial.score()),
                         steps_done=int(trial.steps_done), steps_run=int(trial.steps_done - before),
                         curve=rows, wall_time=time.perf_counter() - t0, checkpoint=segment.save)
