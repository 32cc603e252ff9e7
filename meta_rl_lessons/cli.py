"""The ``meta-rl`` command line: long training runs with progress bars, checkpoints, resume, logs and plots.

::

    meta-rl train {ppo,trpo,maml,rl2,adaptive} --env ID --budget {smoke,book,full} --seed N \\
            --device {cpu,cuda,auto} --out runs/NAME [--set key=value ...] [--force]
    meta-rl resume RUN_DIR           # continue an interrupted run to the result an uninterrupted run gives
    meta-rl eval RUN_DIR             # returns of the trained agent (MAML: after 0..3 adaptation steps)
    meta-rl plot RUN_DIR... [--out fig.png]
    meta-rl export RUN_DIR results/NAME  # copy a finished run's logs (no checkpoint) + policy.json
    meta-rl list                     # algorithms, budgets and registered MetaRL environments
    meta-rl doctor [--json]          # what this machine has (torch, CUDA, MuJoCo, GL backend, Chromium...)

``--budget`` picks the algorithm's preset (:data:`PRESETS` via :class:`~meta_rl_lessons.budget.Budget`);
``--set key=value`` then overrides any field of the algorithm's config dataclass (``PPOConfig``,
``TRPOConfig``, ``MAMLTRPOConfig``, ``RL2Config``, :class:`AdaptiveConfig`), converted to the field's type.
The run directory's files are described in :mod:`meta_rl_lessons.runs`.

**Ctrl-C** finishes the current iteration, saves a checkpoint and exits with a message saying how to resume
(a second Ctrl-C stops at once, keeping the previous checkpoint). ``resume`` restores the trainer, every
random generator and the rows already logged, so the finished run's ``progress.csv`` equals that of a run
never interrupted (apart from the timing columns), on the same machine and thread count.

This module imports only the standard library at import time (``meta-rl --help`` is fast); torch, gymnasium
and the algorithms are imported inside the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import os
import signal
import sys
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_rl_lessons.budget import NAMES as BUDGETS
from meta_rl_lessons.budget import Budget

__all__ = ["ALGORITHMS", "AdaptiveConfig", "CLIError", "PRESETS", "main", "parse_overrides"]

#: The algorithms ``meta-rl train`` knows.
ALGORITHMS: tuple[str, ...] = ("ppo", "trpo", "maml", "rl2", "adaptive")
#: The devices ``--device`` accepts.
DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
#: Families RL² can train on (those with a batched torch environment; the MuJoCo families too with
#: ``--set physics=warp``).
RL2_FAMILIES: tuple[str, ...] = ("BernoulliBandit", "TabularMDP", "Navigation2D", "Inventory")
#: The physics backends of the MuJoCo families (``--set physics=...``; ``envs.locomotion.PHYSICS``).
PHYSICS: tuple[str, ...] = ("mujoco", "warp")
#: Progress columns measured in wall-clock time (they differ between runs; everything else is reproducible).
TIMING_COLUMNS: tuple[str, ...] = ("sample_time", "update_time", "train_time", "wall_time")
#: Exit status after Ctrl-C (128 + SIGINT, the shell convention).
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A usage error: printed as ``meta-rl: error: <message>`` with exit status 2, without a traceback."""


# ============================================================================ the adaptive search config
@dataclass
class AdaptiveConfig:
    """A hyperparameter and architecture search over PPO (chapter 4's space, ``adaptive.cartpole``)."""

    env_id: str = "CartPole-v1"
    """gymnasium environment every PPO trial trains on."""
    method: str = "random"
    """``"random"`` (random search) or ``"halving"`` (successive halving)."""
    num_trials: int = 8
    """Configurations sampled (random search: all trained fully; halving: the first rung)."""
    steps_per_trial: int = 20_000
    """Random search: environment steps per trial. Halving: steps of the first rung (``min_steps``)."""
    eta: int = 3
    """Halving: keep the best ``1/eta`` of each rung and give them ``eta`` times the steps."""
    max_layers: int = 3
    """Deepest policy/value network the space contains (1, 2 or 3 hidden layers)."""
    num_envs: int = 4
    """Environments per PPO trial."""
    num_steps: int = 128
    """Steps per environment per PPO rollout (a trial's budget is rounded up to whole rollouts)."""
    seed: int = 0
    """Seed of the configuration sampler and of the trials' seeds."""
    device: str = "cpu"
    """Device of every trial (``"cpu"``: small networks run faster there)."""

    def __post_init__(self) -> None:
        if self.method not in ("random", "halving"):
            raise ValueError(f"AdaptiveConfig.method must be 'random' or 'halving', got {self.method!r}")
        from meta_rl_lessons.rl.utils import check_positive_ints

        check_positive_ints(self, "num_trials", "steps_per_trial", "num_envs", "num_steps")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"AdaptiveConfig.eta must be an integer >= 2, got {self.eta!r}")
        if self.max_layers not in (1, 2, 3):
            raise ValueError(f"AdaptiveConfig.max_layers must be 1, 2 or 3, got {self.max_layers!r}")


# ============================================================================ budget presets
#: Config fields per algorithm and budget. smoke: seconds (tests); book: minutes on 2 CPU cores, the sizes the
#: chapters use at the book budget (MAML: 40 meta-iterations on 2D navigation; RL²: 60 iterations of 1024
#: bandit trials; adaptive: chapter 4's random search); full: the
#: paper-scale settings of the papers and reference implementations (MAML: pytorch-maml-rl's 500
#: meta-batches of 20 tasks x 20 episodes, 40 tasks for locomotion; RL²: GRU 256, 500 iterations, about
#: 250k steps per iteration).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "smoke": {"num_envs": 4, "num_steps": 64, "minibatch_size": 64, "total_steps": 4 * 64 * 6},
        "book": {"num_envs": 8, "num_steps": 128, "total_steps": 100_000},
        "full": {"num_envs": 8, "num_steps": 128, "total_steps": 1_000_000},
    },
    "trpo": {
        "smoke": {"num_envs": 4, "episodes_per_iteration": 4, "iterations": 4, "max_episode_steps": 50,
                  "value_iters": 5},
        "book": {"num_envs": 8, "episodes_per_iteration": 16, "iterations": 50},
        "full": {"num_envs": 8, "episodes_per_iteration": 32, "iterations": 500},
    },
    "maml": {
        "smoke": {"meta_batch_size": 4, "num_episodes": 4, "iterations": 6, "hidden_sizes": (16, 16)},
        "book": {"meta_batch_size": 20, "num_episodes": 20, "iterations": 40, "curvature_subsample": 0.1},
        "full": {"meta_batch_size": 20, "num_episodes": 20, "iterations": 500},
    },
    "rl2": {
        "smoke": {"num_trials": 64, "num_minibatches": 4, "total_iterations": 6, "hidden_size": 32,
                  "update_epochs": 2},
        "book": {"num_trials": 1024, "num_minibatches": 16, "total_iterations": 60, "hidden_size": 128},
        "full": {"num_trials": 25_000, "num_minibatches": 50, "total_iterations": 500, "hidden_size": 256},
    },
    "adaptive": {
        "smoke": {"num_trials": 3, "steps_per_trial": 256, "max_layers": 1, "num_envs": 2, "num_steps": 64},
        "book": {"num_trials": 8, "steps_per_trial": 24_576},
        "full": {"num_trials": 32, "steps_per_trial": 81_920},
    },
}

#: Locomotion families get pytorch-maml-rl's meta-batch of 40 tasks at the book and full budgets.
_LOCOMOTION = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntGoal")

#: Config fields the command line sets from its own flags (``--set`` may not touch them).
_RESERVED = {"seed": "--seed", "device": "--device", "log_path": "the run directory (progress.csv)",
             "progress": "the command line's own progress bar", "env_id": "--env", "family": "--env"}


def preset(algorithm: str, budget: str, family: str | None = None) -> dict[str, Any]:
    """The preset config fields of ``algorithm`` at ``budget`` (see :data:`PRESETS`)."""
    b = Budget(budget)  # validates the name
    fields = dict(b.pick(**PRESETS[algorithm]))
    if algorithm == "maml" and family in _LOCOMOTION and not b.is_smoke:
        fields["meta_batch_size"] = 40
    return fields


# ============================================================================ --set key=value
def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, allows None)`` for ``X | None`` annotations."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return tp, False


def _convert(name: str, raw: str, tp: Any) -> Any:
    """Convert the text ``raw`` to the annotated type ``tp`` of config field ``name``."""
    import ast

    inner, optional = _strip_optional(tp)
    text = raw.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    origin = typing.get_origin(inner) or inner
    try:
        if inner is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if inner is int:
            try:
                return int(text)
            except ValueError:
                value = float(text)  # accept 1e5
                if not value.is_integer():
                    raise ValueError("expected an integer") from None
                return int(value)
        if inner is float:
            return float(text)
        if inner is str:
            return text
        if origin in (tuple, list):
            value = ast.literal_eval(text) if text[:1] in "([" else ast.literal_eval(f"({text},)")
            if isinstance(value, (int, float, str)):
                value = (value,)
            elem = (typing.get_args(inner) or (Any,))[0]
            out = [_convert(name, str(v), elem) if elem in (int, float, bool) else v for v in value]
            return tuple(out) if origin is tuple else out
        if origin is dict:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = ast.literal_eval(text)
            if not isinstance(value, dict):
                raise ValueError("expected a dict such as {\"horizon\": 50}")
            return value
    except (ValueError, SyntaxError) as err:
        raise CLIError(f"--set {name}={raw!r}: cannot convert to {_type_name(tp)} ({err})") from None
    return text  # any other annotation: the raw string


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


def parse_overrides(config_cls: type, items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{field: converted value}`` for the dataclass ``config_cls``.

    Raises:
        CLIError: malformed item, unknown field (with close matches and the allowed fields), a field the
            command line sets itself (``seed``, ``device``, ...), or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--set expects key=value, got {item!r}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CLIError(f"--set {key}: {config_cls.__name__} has no field {key!r}{hint}; fields: "
                           f"{', '.join(n for n in names if n not in _RESERVED)}")
        if key in _RESERVED:
            raise CLIError(f"--set {key}: set by {_RESERVED[key]}, not with --set")
        out[key] = _convert(key, raw, hints[key])
    return out


def _physics_override(config_cls: type, items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``--set physics=mujoco|warp`` for configs whose family holds the physics backend (``family_kwargs``):
    ``(physics or None, the other items)``. Configs with their own ``physics`` field (PPO, TRPO: MuJoCo Warp
    through their vector env) keep the item."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    if "physics" in names or "family_kwargs" not in names:
        return None, list(items)
    physics, rest = None, []
    for item in items:
        key, sep, raw = item.partition("=")
        if key.strip() != "physics" or not sep:
            rest.append(item)
            continue
        physics = raw.strip()
        if physics not in PHYSICS:
            raise CLIError(f"--set physics={raw!r}: allowed values are {', '.join(PHYSICS)}")
    return physics, rest


# ============================================================================ environments
def _gym_ids() -> list[str]:
    import gymnasium as gym

    import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0

    return sorted(gym.registry)


def _metarl_ids() -> tuple[str, ...]:
    from meta_rl_lessons.envs import ENV_IDS

    return ENV_IDS


def _unknown_env(env: str, candidates: Sequence[str], what: str) -> CLIError:
    close = difflib.get_close_matches(env, candidates, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return CLIError(f"unknown environment {env!r} for {what}{hint} Registered MetaRL environments: "
                    f"{', '.join(_metarl_ids())}")


def family_of(env: str, allowed: Sequence[str] | None = None, algorithm: str = "maml") -> str:
    """The task family of ``MetaRL/<Name>-v0`` (or of a bare family name).

    Raises:
        CLIError: not a MetaRL id, or a family the algorithm does not support.
    """
    from meta_rl_lessons.envs import FAMILIES

    name = env
    if env.startswith("MetaRL/") and env.endswith("-v0"):
        name = env[len("MetaRL/"):-len("-v0")]
    if name not in FAMILIES:
        raise _unknown_env(env, [*_metarl_ids(), *FAMILIES], f"{algorithm} (a meta-RL task family is needed)")
    if allowed is not None and name not in allowed:
        warp = " (or, for a MuJoCo family, --set physics=warp: MuJoCo Warp)" if name in _LOCOMOTION else ""
        raise CLIError(f"{algorithm} cannot train on {env!r}: it needs a family with a batched torch "
                       f"environment, one of {', '.join(f'MetaRL/{n}-v0' for n in allowed)}{warp}")
    return name


def check_gym_env(env: str, algorithm: str) -> str:
    """``env`` if it is a registered gymnasium id, else a :class:`CLIError` with close matches."""
    ids = _gym_ids()
    if env not in ids:
        raise _unknown_env(env, ids, algorithm)
    return env


def check_device(device: str) -> str:
    """``device`` if usable here. Raises :class:`CLIError` for ``cuda`` without CUDA, or an unknown name."""
    if device not in DEVICES:
        raise CLIError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError(f"--device cuda was requested but CUDA is not available on this machine (torch "
                           f"{torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu "
                           "or --device auto")
    return device


# ============================================================================ algorithm adapters
class Algorithm:
    """How the command line drives one trainer: build it, step it, checkpoint it exactly, evaluate it.

    A checkpoint is ``trainer.state_dict()`` plus :meth:`extra_state` (what the trainer's own state dict does
    not hold, reached from outside) plus the states of the generators at :attr:`generators` (dotted attribute
    paths; those missing on a trainer are skipped).
    """

    name: str = ""
    return_key: str = "episode_return"
    """The progress column shown as the current return."""
    steps_per_iteration: bool = False
    """The trainer's ``env_steps`` column counts one iteration's steps (summed into ``env_steps_total``),
    not the total so far."""
    generators: tuple[str, ...] = ()
    """Dotted paths (from the trainer) of random generators its ``state_dict`` does not hold."""

    def config_class(self) -> type:
        raise NotImplementedError

    def env_fields(self, env: str) -> dict[str, Any]:
        """Config fields that name the environment (validated)."""
        raise NotImplementedError

    def default_env(self) -> str:
        raise NotImplementedError

    def make_config(self, env: str, budget: str, seed: int, device: str, overrides: Sequence[str]) -> Any:
        cls = self.config_class()
        physics, overrides = _physics_override(cls, overrides)
        # the families an algorithm can train on may depend on the physics backend (RL²: MuJoCo with Warp)
        env_fields = self.env_fields(env) if physics is None else self.env_fields(env, physics=physics)
        fields = {**preset(self.name, budget, env_fields.get("family")), **env_fields,
                  **parse_overrides(cls, overrides), "seed": seed, "device": device}
        if physics is not None:  # the family's physics backend: one key of family_kwargs
            fields["family_kwargs"] = {**fields.get("family_kwargs", {}), "physics": physics}
        names = {f.name for f in dataclasses.fields(cls)}
        if "log_path" in names:
            fields["log_path"] = None  # the command line writes progress.csv itself
        if "progress" in names:
            fields["progress"] = False  # ... and draws its own progress bar
        try:
            return cls(**fields)
        except (ValueError, TypeError) as err:
            raise CLIError(f"invalid {cls.__name__}: {err}") from None

    def config_from_dict(self, d: Mapping[str, Any]) -> Any:
        cls = self.config_class()
        hints = typing.get_type_hints(cls)
        fields = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                inner, _ = _strip_optional(hints[f.name])
                if (typing.get_origin(inner) or inner) is tuple and isinstance(v, list):
                    v = tuple(v)
                fields[f.name] = v
        return cls(**fields)

    def build(self, config: Any) -> Any:
        raise NotImplementedError

    def total_iterations(self, trainer: Any) -> int:
        raise NotImplementedError

    def iterations_done(self, trainer: Any) -> int:
        return int(trainer.iterations_done)

    def iteration(self, trainer: Any) -> dict[str, Any]:
        row = trainer.iteration()
        logger = getattr(trainer, "logger", None)
        if logger is not None:
            logger.rows.clear()  # rows live in progress.csv; keep memory bounded in long runs
        return row

    def load_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        """Load what ``trainer.state_dict()`` returned (as read back from a checkpoint)."""
        trainer.load_state_dict(dict(state))

    def extra_state(self, trainer: Any) -> dict[str, Any]:
        """State the future depends on that ``trainer.state_dict()`` misses (see each adapter)."""
        return {}

    def load_extra_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        pass

    def evaluate(self, trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
        raise NotImplementedError

    def close(self, trainer: Any) -> None:
        """Release the trainer's environments and worker processes."""
        close = getattr(trainer, "close", None)
        if close is not None:
            close()
        elif getattr(trainer, "envs", None) is not None:  # PPO, TRPO: a gymnasium vector env
            trainer.envs.close()


def _vector_sampler_state(trainer: Any) -> dict[str, Any]:
    """A :class:`~meta_rl_lessons.rl.sampling.VectorSampler`'s running episodes and its environments' state
    (simulator, time limits, generators), so episodes cut by a checkpoint continue after it.

    Environments whose simulator state :func:`~meta_rl_lessons.adaptive.trial.env_state` cannot read (neither
    classic control nor MuJoCo) are recorded as ``None`` with the reason; resuming such a run restarts the
    running episodes (with a warning), so it continues but not bit for bit.
    """
    import numpy as np

    from meta_rl_lessons.adaptive.trial import env_state

    s = trainer.sampler
    try:
        envs, inexact = env_state(trainer.envs), None
    except NotImplementedError as err:
        envs, inexact = None, str(err)
    return {"envs": envs, "inexact": inexact, "obs": None if s._obs is None else np.array(s._obs),
            "ep_return": s._ep_return.copy(), "ep_length": s._ep_length.copy(),
            "returns": list(s._returns), "lengths": list(s._lengths), "total_steps": int(s.total_steps)}


def _load_vector_sampler_state(trainer: Any, state: Mapping[str, Any]) -> None:
    import numpy as np

    from meta_rl_lessons.adaptive.trial import load_env_state
    from meta_rl_lessons.runs import from_safe

    s = trainer.sampler
    s.total_steps = int(state["total_steps"])
    s._returns = [float(x) for x in state["returns"]]
    s._lengths = [int(x) for x in state["lengths"]]
    if state["envs"] is None:
        print(f"meta-rl: warning: this resume is not exact: {state['inexact']}; the episodes that were "
              "running at the checkpoint start again from a reset", file=sys.stderr)
        s._obs = None  # the next rollout resets the environments
        return
    load_env_state(trainer.envs, state["envs"])
    s._obs = None if state["obs"] is None else from_safe(state["obs"])
    s._ep_return = np.asarray(from_safe(state["ep_return"]), dtype=np.float64)
    s._ep_length = np.asarray(from_safe(state["ep_length"]), dtype=np.int64)


def _gym_episodes(env_id: str, act: Callable[[Any], Any], episodes: int, seed: int,
                  max_episode_steps: int | None = None) -> list[float]:
    """Returns of ``episodes`` episodes of ``act(obs [1, obs_dim]) -> actions [1, ...]`` on fresh envs."""
    import numpy as np

    from meta_rl_lessons.rl.sampling import make_env

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = make_env(env_id, **kwargs)
    out = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                action = act(np.asarray(obs, dtype=np.float32)[None])[0]
                if hasattr(env.action_space, "low"):
                    action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            out.append(total)
    finally:
        env.close()
    return out


def _summary(values: Sequence[float]) -> dict[str, Any]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size),
            "values": v.tolist()}


class PPOAlgorithm(Algorithm):
    name = "ppo"

    def config_class(self) -> type:
        from meta_rl_lessons.rl.ppo import PPOConfig

        return PPOConfig

    def default_env(self) -> str:
        return "CartPole-v1"

    def env_fields(self, env: str) -> dict[str, Any]:
        return {"env_id": check_gym_env(env, self.name)}

    def build(self, config: Any) -> Any:
        import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0 for gymnasium.make
        from meta_rl_lessons.rl.ppo import PPO

        return PPO(config)

    def total_iterations(self, trainer: Any) -> int:
        return int(trainer.num_iterations)

    def extra_state(self, trainer: Any) -> dict[str, Any]:
        import numpy as np

        rms = trainer.sampler.obs_normalizer
        return {"sampler": _vector_sampler_state(trainer), "discounted": np.array(trainer._discounted),
                "obs_rms_training": None if rms is None else bool(rms.training)}

    def load_extra_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        import numpy as np

        from meta_rl_lessons.runs import from_safe

        _load_vector_sampler_state(trainer, state["sampler"])
        trainer._discounted = np.asarray(from_safe(state["discounted"]), dtype=np.float64)
        if state["obs_rms_training"] is not None:
            trainer.sampler.obs_normalizer.training = bool(state["obs_rms_training"])

    def load_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        from meta_rl_lessons.runs import from_safe

        s = dict(state)
        s["obs_rms"] = None if s["obs_rms"] is None else from_safe(s["obs_rms"])
        s["return_rms"] = None if s["return_rms"] is None else from_safe(s["return_rms"])
        trainer.load_state_dict(s)

    def evaluate(self, trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
        c = trainer.config
        returns = _gym_episodes(c.env_id, lambda obs: trainer.act(obs, deterministic=True), args.episodes,
                                args.seed, c.max_episode_steps)
        return {"protocol": f"{args.episodes} episodes, deterministic policy, env seeds {args.seed}...",
                "episode_return": _summary(returns)}


class TRPOAlgorithm(Algorithm):
    name = "trpo"

    def config_class(self) -> type:
        from meta_rl_lessons.rl.trpo import TRPOConfig

        return TRPOConfig

    def default_env(self) -> str:
        return "CartPole-v1"

    def env_fields(self, env: str) -> dict[str, Any]:
        return {"env_id": check_gym_env(env, self.name)}

    def build(self, config: Any) -> Any:
        import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0 for gymnasium.make
        from meta_rl_lessons.rl.trpo import TRPO

        return TRPO(config)

    def total_iterations(self, trainer: Any) -> int:
        return int(trainer.config.iterations)

    def extra_state(self, trainer: Any) -> dict[str, Any]:
        # TRPO.state_dict has no value-network optimiser: its Adam moments shape the next value fits
        opt = getattr(trainer, "value_optimizer", None) if trainer.value is not None else None
        return {"sampler": _vector_sampler_state(trainer),
                "value_optimizer": None if opt is None else opt.state_dict()}

    def load_extra_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        _load_vector_sampler_state(trainer, state["sampler"])
        if state["value_optimizer"] is not None:
            trainer.value_optimizer.load_state_dict(state["value_optimizer"])

    def evaluate(self, trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
        import torch

        c = trainer.config

        @torch.no_grad()
        def act(obs):
            return trainer.policy.mode(torch.as_tensor(obs, device=trainer.device)).cpu().numpy()

        returns = _gym_episodes(c.env_id, act, args.episodes, args.seed, c.max_episode_steps)
        return {"protocol": f"{args.episodes} episodes, deterministic policy, env seeds {args.seed}...",
                "episode_return": _summary(returns)}


class MAMLAlgorithm(Algorithm):
    name = "maml"
    return_key = "return_post"
    steps_per_iteration = True
    # the task sampler, the curvature subsample generator, the batched env's generator (torch or NumPy)
    generators = ("task_rng", "_gen", "sampler.env.generator", "sampler.env.rng")

    def config_class(self) -> type:
        from meta_rl_lessons.maml.rl import MAMLTRPOConfig

        return MAMLTRPOConfig

    def default_env(self) -> str:
        return "MetaRL/Navigation2D-v0"

    def env_fields(self, env: str, physics: str | None = None) -> dict[str, Any]:
        return {"family": family_of(env, algorithm=self.name)}

    def build(self, config: Any) -> Any:
        from meta_rl_lessons.maml.rl import MAMLTRPO

        return MAMLTRPO(config)

    def total_iterations(self, trainer: Any) -> int:
        return int(trainer.config.iterations)

    def evaluate(self, trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
        if args.steps < 0:
            raise CLIError(f"--steps must be >= 0, got {args.steps}")
        step_sizes = (0.1,) + (0.05,) * (args.steps - 1) if args.steps else ()  # Finn et al.: .1, then .05
        tasks = trainer.family.sample_tasks(args.tasks, rng=args.seed, split="test")
        returns = trainer.evaluate(tasks, step_sizes=step_sizes, seed=args.seed + 1)  # [steps + 1, K]
        return {"protocol": f"{args.tasks} held-out test tasks (task seed {args.seed}), "
                            f"{trainer.config.num_episodes} episodes per task, REINFORCE steps of sizes "
                            f"{list(step_sizes)} (Finn et al. 2017)",
                # the tasks are family.sample_tasks(len(values), rng=task_seed, split="test"), in this order
                "task_seed": args.seed,
                "return_after_steps": {str(i): _summary(returns[i].tolist())
                                       for i in range(returns.shape[0])}}


class RL2Algorithm(Algorithm):
    name = "rl2"
    return_key = "trial_return"
    generators = ("sampler.rng", "sampler.base.generator", "sampler.base.rng")

    def config_class(self) -> type:
        from meta_rl_lessons.rl2.ppo import RL2Config

        return RL2Config

    def default_env(self) -> str:
        return "MetaRL/BernoulliBandit-v0"

    def env_fields(self, env: str, physics: str | None = None) -> dict[str, Any]:
        # the MuJoCo families have a batched torch environment only with MuJoCo Warp
        allowed = RL2_FAMILIES + (_LOCOMOTION if physics == "warp" else ())
        family = family_of(env, allowed, self.name)
        from meta_rl_lessons.rl2.ppo import RL2Config

        fields: dict[str, Any] = {"family": family}
        if family != RL2Config.family:  # the default family_kwargs are the bandit's
            fields["family_kwargs"] = {
                "TabularMDP": {"num_states": 10, "num_actions": 5, "episode_length": 10},  # Duan et al.
                "Navigation2D": {}, "Inventory": {}}.get(family, {})
        return fields

    def build(self, config: Any) -> Any:
        from meta_rl_lessons.rl2.ppo import RL2Trainer

        return RL2Trainer(config)

    def total_iterations(self, trainer: Any) -> int:
        return int(trainer.config.total_iterations)

    def extra_state(self, trainer: Any) -> dict[str, Any]:
        return {"total_steps": int(trainer.sampler.total_steps), "train_time": float(trainer.train_time)}

    def load_extra_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        trainer.sampler.total_steps = int(state["total_steps"])
        trainer.train_time = float(state["train_time"])

    def load_state(self, trainer: Any, state: Mapping[str, Any]) -> None:
        s = dict(state)
        s["config"] = dataclasses.asdict(trainer.config)  # tuples became lists in the checkpoint
        trainer.load_state_dict(s)

    def evaluate(self, trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
        # Tasks from the held-out test split when the run trained on "train" (the tasks MAML's evaluation
        # draws with the same --tasks and --seed), else from the whole distribution (the paper's tables).
        trials = trainer.evaluate(num_tasks=args.tasks, seed=args.seed)
        where = "held-out test tasks" if trainer.evaluation_split() == "test" else "tasks"
        return {"protocol": f"one trial of {trainer.config.episodes_per_trial} episodes on each of "
                            f"{args.tasks} {where} drawn with seed {args.seed}",
                "trial_return": _summary(trials.trial_returns().tolist()),
                # per-episode mean, std and n only: per-task values of every episode would be n times the size
                "return_per_episode": {str(i + 1): {k: v for k, v in _summary(r.tolist()).items()
                                                    if k != "values"}
                                       for i, r in enumerate(trials.episode_returns())}}


# The adaptive search is driven differently: it is a sequence of segments whose results a ResultStore keeps in
# <run>/search/results.jsonl; an executor wrapper turns each finished segment into a progress row and stops
# the search between segments on Ctrl-C.
class _SearchStopped(Exception):
    """Raised between two segments to stop a search (what finished is in the result store)."""


class AdaptiveAlgorithm(Algorithm):
    name = "adaptive"
    return_key = "best_score"

    def config_class(self) -> type:
        return AdaptiveConfig

    def default_env(self) -> str:
        return "CartPole-v1"

    def env_fields(self, env: str) -> dict[str, Any]:
        return {"env_id": check_gym_env(env, self.name)}


ADAPTERS: dict[str, Algorithm] = {a.name: a for a in (PPOAlgorithm(), TRPOAlgorithm(), MAMLAlgorithm(),
                                                      RL2Algorithm(), AdaptiveAlgorithm())}


def adapter(name: str) -> Algorithm:
    if name not in ADAPTERS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CLIError(f"unknown algorithm {name!r}{hint}; allowed: {', '.join(ALGORITHMS)}")
    return ADAPTERS[name]


# ============================================================================ checkpoint state
def trainer_state(algo: Algorithm, trainer: Any) -> dict[str, Any]:
    """Everything the rest of the run depends on (see :mod:`meta_rl_lessons.runs`)."""
    from meta_rl_lessons.runs import generator_state, get_path, global_rng_state

    gens = {}
    for path in algo.generators:
        try:
            gens[path] = generator_state(get_path(trainer, path))
        except AttributeError:
            continue
    return {"trainer": trainer.state_dict(), "extra": algo.extra_state(trainer), "generators": gens,
            "global_rng": global_rng_state()}


def load_trainer_state(algo: Algorithm, trainer: Any, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`trainer_state` on a freshly built trainer (global generators restored last)."""
    from meta_rl_lessons.runs import get_path, set_generator_state, set_global_rng_state

    algo.load_state(trainer, state["trainer"])
    algo.load_extra_state(trainer, state["extra"])
    for path, gstate in state["generators"].items():
        set_generator_state(get_path(trainer, path), gstate)
    set_global_rng_state(state["global_rng"])


# ============================================================================ Ctrl-C
class StopRequest:
    """While active, the first SIGINT sets :attr:`requested` (the loop checkpoints at the next iteration
    boundary); a second SIGINT raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nmeta-rl: interrupt received; finishing this iteration and saving a checkpoint "
              "(Ctrl-C again to stop at once and keep the previous checkpoint)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while a trainer is built. Worker processes it starts (the MuJoCo samplers spawn physics
    workers) inherit the ignored disposition, so a Ctrl-C in the terminal, which reaches the whole process
    group, stops only the main process at an iteration boundary instead of killing the workers mid-step."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ============================================================================ train / resume
def _setup_torch(threads: int | None) -> int:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _tensorboard(run_dir: Path, enabled: bool) -> Any:
    """A ``SummaryWriter`` in ``run_dir/tensorboard`` if asked for and importable, else ``None``."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("meta-rl: --tensorboard ignored: torch.utils.tensorboard is not importable (pip install "
              "tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _log_row(writer: Any, row: Mapping[str, Any]) -> None:
    if writer is None:
        return
    step = int(row.get("iteration", 0))
    for k, v in row.items():
        if isinstance(v, (int, float)) and k != "iteration" and math.isfinite(v):
            writer.add_scalar(k, v, step)


def _resume_message(run_dir: Path) -> str:
    return f"checkpoint saved; continue with:  meta-rl resume {run_dir}"


def train_config(args: argparse.Namespace, threads: int | None) -> tuple[Algorithm, Any, dict[str, Any]]:
    """The algorithm adapter, config dataclass and ``config.json`` content that ``meta-rl train`` builds from
    its parsed arguments, without creating anything (``results`` uses it to check that a recorded command
    rebuilds its recorded config).

    Raises:
        CLIError: unknown algorithm, environment or budget, a negative seed, or a bad ``--set``.
    """
    algo = adapter(args.algorithm)
    env = args.env or algo.default_env()
    if args.budget not in BUDGETS:
        raise CLIError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
    if args.seed < 0:
        raise CLIError(f"--seed must be a non-negative integer, got {args.seed}")
    config = algo.make_config(env, args.budget, args.seed, args.device, args.set or [])
    meta = {"algorithm": algo.name, "env": env, "budget": args.budget, "seed": args.seed,
            "device": args.device, "threads": threads, "overrides": list(args.set or []),
            "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
            "config": dataclasses.asdict(config)}
    return algo, config, meta


def cmd_train(args: argparse.Namespace) -> int:
    from meta_rl_lessons.runs import RunDir, provenance

    adapter(args.algorithm)
    if args.budget not in BUDGETS:
        raise CLIError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
    if args.seed < 0:
        raise CLIError(f"--seed must be a non-negative integer, got {args.seed}")
    check_device(args.device)
    threads = _setup_torch(args.threads)
    algo, config, meta = train_config(args, threads)
    env = meta["env"]
    out = args.out or os.path.join("runs", f"{algo.name}-{env.replace('/', '-')}-{args.budget}-s{args.seed}")
    target = Path(out)
    if args.force and target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
        raise CLIError(f"--force deletes run directories only, and {out!r} has no config.json: it does not "
                       "look like one; remove it yourself or choose another --out")
    try:
        if args.force and (target / ".lock").exists():
            with RunDir(target).lock():  # refuse to delete a run another process is training
                pass
        rd = RunDir.create(out, force=args.force)
    except (FileExistsError, BlockingIOError) as err:
        raise CLIError(str(err)) from None
    rd.write_config(meta)
    prov = provenance(args.argv)
    rd.write_json("provenance.json", prov)
    return _run(rd, algo, config, resume=False, args=args)


def cmd_resume(args: argparse.Namespace) -> int:
    from meta_rl_lessons.runs import RunDir

    try:
        rd = RunDir.open(args.run_dir)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    meta = rd.read_config()
    prov = rd.read_json("provenance.json") if rd.provenance_path.is_file() else {}
    if prov.get("status") == "finished":
        raise CLIError(f"run {str(rd.path)!r} already finished ({prov.get('end_time')}); nothing to resume. "
                       f"Evaluate it with `meta-rl eval {rd.path}` or start a new run")
    algo = adapter(meta["algorithm"])
    if meta["device"] == "cuda":
        check_device("cuda")
    _setup_torch(meta.get("threads"))
    config = algo.config_from_dict(meta["config"])
    return _run(rd, algo, config, resume=True, args=args)


def _session(args: argparse.Namespace) -> dict[str, Any]:
    from meta_rl_lessons.runs import utc_now

    return {"command": list(args.argv), "start_time": utc_now()}


def _finish_session(rd: Any, session: dict[str, Any], status: str) -> None:
    from meta_rl_lessons.runs import utc_now

    prov = rd.read_json("provenance.json") if rd.provenance_path.is_file() else {}
    session = {**session, "end_time": utc_now(), "status": status}
    rd.update_provenance(status=status, end_time=session["end_time"],
                         sessions=[*prov.get("sessions", []), session])


def _run(rd: Any, algo: Algorithm, config: Any, resume: bool, args: argparse.Namespace) -> int:
    """Train (or continue) the run in ``rd`` while holding its lock; returns the exit status."""
    try:
        lock = rd.lock()
        lock.__enter__()
    except BlockingIOError as err:
        raise CLIError(str(err)) from None
    try:
        if algo.name == "adaptive":
            return _run_search(rd, config, resume, args)
        return _run_trainer(rd, algo, config, resume, args)
    finally:
        lock.__exit__(None, None, None)


def _run_trainer(rd: Any, algo: Algorithm, config: Any, resume: bool, args: argparse.Namespace) -> int:
    from meta_rl_lessons.rl.utils import progress
    from meta_rl_lessons.runs import load_checkpoint, save_checkpoint

    if resume and not rd.checkpoint_path.is_file():
        raise CLIError(f"run {str(rd.path)!r} has no checkpoint.pt: it was stopped before its first "
                       "checkpoint; start it again with `meta-rl train ... --force`")
    session = _session(args)
    try:
        with _sigint_ignored():  # worker processes started now (MuJoCo physics) inherit "ignore Ctrl-C"
            trainer = algo.build(config)
    except BaseException:
        _finish_session(rd, session, "failed")
        raise
    rows: list[dict[str, Any]] = []
    wall_before = 0.0
    if resume:
        ckpt = load_checkpoint(rd.checkpoint_path)
        load_trainer_state(algo, trainer, ckpt["state"])
        rows = [dict(r) for r in ckpt["rows"]]
        wall_before = float(ckpt["wall_time"])
    rd.write_progress(rows)  # on resume this drops rows logged after the checkpoint: they are recomputed
    total = algo.total_iterations(trainer)
    start = time.perf_counter()
    writer = _tensorboard(rd.path, bool(getattr(args, "tensorboard", False)))
    steps_total = float(rows[-1]["env_steps_total"]) if rows else 0.0
    interval = float(args.checkpoint_every)
    stop_after = getattr(args, "stop_after_iterations", None)
    session_iterations = 0
    saved_at = algo.iterations_done(trainer) if resume else -1  # iterations in the checkpoint on disk
    last_save = start

    def save() -> None:
        nonlocal saved_at, last_save
        state = trainer_state(algo, trainer)
        save_checkpoint({"format": 1, "algorithm": algo.name, "state": state, "rows": rows,
                         "wall_time": wall_before + time.perf_counter() - start}, rd.checkpoint_path)
        saved_at, last_save = algo.iterations_done(trainer), time.perf_counter()

    bar = progress(total=total, initial=algo.iterations_done(trainer), desc=f"{algo.name} {rd.path.name}",
                   enabled=not args.no_progress, unit="it")
    try:
        with StopRequest() as stop:
            while algo.iterations_done(trainer) < total and not stop.requested:
                row = algo.iteration(trainer)
                session_iterations += 1
                step_col = float(row.get("env_steps", 0.0))
                steps_total = steps_total + step_col if algo.steps_per_iteration else step_col
                row = {**row, "env_steps_total": steps_total,
                       "wall_time": wall_before + time.perf_counter() - start}
                rows.append(row)
                rd.append_progress(row)
                _log_row(writer, row)
                ret = row.get(algo.return_key, math.nan)
                bar.set_postfix(env_steps=f"{int(steps_total):,}", ret=f"{ret:.2f}", refresh=False)
                bar.update(1)
                if stop_after is not None and session_iterations >= stop_after:
                    stop.requested = True  # the debug flag takes the Ctrl-C path
                if time.perf_counter() - last_save >= interval:
                    save()
            finished = algo.iterations_done(trainer) >= total
            if saved_at != algo.iterations_done(trainer):  # at the end, and at the boundary after Ctrl-C
                save()
    except KeyboardInterrupt:
        bar.close()
        _finish_session(rd, session, "interrupted")
        print(f"\nmeta-rl: stopped at once; the previous checkpoint is kept. Continue with:  meta-rl resume "
              f"{rd.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException:
        bar.close()
        _finish_session(rd, session, "failed")
        raise
    finally:
        if writer is not None:
            writer.close()
        algo.close(trainer)
    bar.close()
    if finished:
        _finish_session(rd, session, "finished")
        last = rows[-1] if rows else {}
        print(f"meta-rl: finished {algo.iterations_done(trainer)} iterations; {algo.return_key} = "
              f"{last.get(algo.return_key, math.nan):.4g}; run directory {rd.path}")
        return 0
    _finish_session(rd, session, "interrupted")
    print(f"meta-rl: stopped after iteration {algo.iterations_done(trainer)} of {total}; "
          f"{_resume_message(rd.path)}", file=sys.stderr)
    return EXIT_INTERRUPTED if stop_after is None or session_iterations < stop_after else 0


class _StoppableExecutor:
    """Runs segments serially; reports each result; stops the search between segments on request."""

    def __init__(self, on_result: Callable[[Any], None], stop: StopRequest, stop_after: int | None) -> None:
        from meta_rl_lessons.adaptive import SerialExecutor

        self.inner = SerialExecutor()
        self.on_result, self.stop, self.stop_after = on_result, stop, stop_after
        self.count = 0

    def run(self, segments: Sequence[Any]):
        for item in self.inner.run(segments):
            yield item  # the result store records it before asking for the next one
            self.on_result(item[1])
            self.count += 1
            if self.stop.requested or (self.stop_after is not None and self.count >= self.stop_after):
                raise _SearchStopped

    def close(self) -> None:
        self.inner.close()


def _search(config: AdaptiveConfig, run_dir: Path, executor: Any) -> Any:
    import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0 for the trials' gymnasium.make
    from meta_rl_lessons.adaptive import (
        PPOTrial,
        RandomSearchConfig,
        SuccessiveHalvingConfig,
        random_search,
        successive_halving,
    )
    from meta_rl_lessons.adaptive.cartpole import CARTPOLE_BASE, cartpole_space

    base = {**CARTPOLE_BASE, "env_id": config.env_id, "num_envs": config.num_envs,
            "num_steps": config.num_steps,
            "minibatch_size": min(CARTPOLE_BASE["minibatch_size"], config.num_envs * config.num_steps),
            "device": config.device}
    space = cartpole_space(config.max_layers)
    settings = {"base": base}
    if config.method == "random":
        cfg = RandomSearchConfig(config.num_trials, config.steps_per_trial, config.seed)
        return random_search(space, PPOTrial, cfg, settings=settings, executor=executor, run_dir=run_dir)
    cfg = SuccessiveHalvingConfig(num_trials=config.num_trials, min_steps=config.steps_per_trial,
                                  eta=config.eta, seed=config.seed)
    return successive_halving(space, PPOTrial, cfg, settings=settings, executor=executor, run_dir=run_dir)


def _run_search(rd: Any, config: AdaptiveConfig, resume: bool, args: argparse.Namespace) -> int:
    """The adaptive search: finished segments are in ``search/results.jsonl`` (resumable by design); one
    progress row per segment; ``checkpoint.pt`` holds the rows."""
    from meta_rl_lessons.runs import load_checkpoint, save_checkpoint

    session = _session(args)
    rows: list[dict[str, Any]] = []
    if resume and rd.checkpoint_path.is_file():
        rows = [dict(r) for r in load_checkpoint(rd.checkpoint_path)["rows"]]
    search_dir = rd.path / "search"
    # segments recorded in the store after the last checkpoint (a crash in between) become rows again
    known = {r["trial_id"] for r in rows}
    results_file = search_dir / "results.jsonl"
    pending = []
    if results_file.is_file():
        for line in results_file.read_text().splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if result["trial_id"] not in known:
                pending.append(result)
    start = time.perf_counter()
    wall_before = float(rows[-1]["wall_time"]) if rows else 0.0

    def add_row(result: Mapping[str, Any]) -> None:
        score = float(result["score"])
        previous = float(rows[-1]["best_score"]) if rows else math.nan  # NaN scores never become the best
        best = score if math.isnan(previous) else previous if math.isnan(score) else max(previous, score)
        total = (rows[-1]["env_steps_total"] if rows else 0) + int(result["steps_run"])
        rows.append({"iteration": len(rows) + 1, "trial_id": result["trial_id"], "score": score,
                     "best_score": best, "steps_run": int(result["steps_run"]),
                     "steps_done": int(result["steps_done"]), "env_steps_total": total,
                     "params": json.dumps(result["params"], sort_keys=True),
                     "wall_time": wall_before + time.perf_counter() - start})

    for result in pending:
        add_row(result)
    rd.write_progress(rows)

    def on_result(result: Any) -> None:
        add_row(dataclasses.asdict(result))
        rd.append_progress(rows[-1])
        save_checkpoint({"format": 1, "algorithm": "adaptive", "rows": rows}, rd.checkpoint_path)
        print(f"meta-rl: segment {result.trial_id}: score {result.score:.4g} "
              f"(best {rows[-1]['best_score']:.4g}), {int(rows[-1]['env_steps_total']):,} env steps",
              file=sys.stderr, flush=True)

    stop_after = getattr(args, "stop_after_iterations", None)
    try:
        with StopRequest() as stop:
            executor = _StoppableExecutor(on_result, stop, stop_after)
            try:
                result = _search(config, search_dir, executor)
            finally:
                executor.close()
    except _SearchStopped:
        _finish_session(rd, session, "interrupted")
        print(f"meta-rl: search stopped after {len(rows)} segments; {_resume_message(rd.path)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED if stop_after is None else 0
    except KeyboardInterrupt:
        _finish_session(rd, session, "interrupted")
        print(f"\nmeta-rl: stopped at once; finished segments are kept. Continue with:  meta-rl resume "
              f"{rd.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    save_checkpoint({"format": 1, "algorithm": "adaptive", "rows": rows}, rd.checkpoint_path)
    _finish_session(rd, session, "finished")
    print(f"meta-rl: search finished: best score {result.best_score:.4g} with {result.best_params}; "
          f"run directory {rd.path}")
    return 0


# ============================================================================ eval
def cmd_eval(args: argparse.Namespace) -> int:
    from meta_rl_lessons.runs import RunDir, load_checkpoint

    try:
        rd = RunDir.open(args.run_dir)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    meta = rd.read_config()
    algo = adapter(meta["algorithm"])
    if algo.name == "adaptive":
        if not (rd.path / "search" / "search.json").is_file():
            raise CLIError(f"the search in {str(rd.path)!r} has not finished; resume it first")
        search = rd.read_json("search/search.json")
        report = {"best_score": search["best_score"], "best_params": search["best_params"],
                  "total_steps": search["total_steps"]}
        print(json.dumps(report, indent=2))
        rd.write_json("eval.json", report)
        return 0
    if not rd.checkpoint_path.is_file():
        raise CLIError(f"run {str(rd.path)!r} has no checkpoint.pt to evaluate")
    if meta["device"] == "cuda":
        check_device("cuda")
    _setup_torch(meta.get("threads"))
    config = algo.config_from_dict(meta["config"])
    trainer = algo.build(config)
    try:
        algo.load_state(trainer, load_checkpoint(rd.checkpoint_path)["state"]["trainer"])
        report = {"algorithm": algo.name, "env": meta["env"],
                  "iterations_done": algo.iterations_done(trainer), **algo.evaluate(trainer, args)}
    finally:
        algo.close(trainer)
    rd.write_json("eval.json", report)
    _print_eval(report)
    return 0


def _print_eval(report: Mapping[str, Any]) -> None:
    print(f"{report['algorithm']} on {report['env']} after {report['iterations_done']} iterations")
    print(f"protocol: {report['protocol']}")
    if "return_after_steps" in report:
        print("adaptation steps   mean return   std over tasks")
        for k, s in report["return_after_steps"].items():
            print(f"{k:>16}   {s['mean']:11.3f}   {s['std']:14.3f}")
    for key in ("episode_return", "trial_return"):
        if key in report:
            s = report[key]
            print(f"{key}: {s['mean']:.3f} +- {s['std']:.3f} (n = {s['n']})")
    if "return_per_episode" in report:  # RL²: how the return changes along the trial
        print("episode of the trial   mean return   std over tasks")
        for k, s in report["return_per_episode"].items():
            print(f"{k:>20}   {s['mean']:11.3f}   {s['std']:14.3f}")


# ============================================================================ plot
def cmd_plot(args: argparse.Namespace) -> int:
    from meta_rl_lessons import plotting
    from meta_rl_lessons.runs import RunDir

    runs = []
    for path in args.run_dirs:
        try:
            rd = RunDir.open(path)
        except FileNotFoundError as err:
            raise CLIError(str(err)) from None
        meta = rd.read_config()
        rows = rd.read_progress()
        if not rows:
            raise CLIError(f"run {str(rd.path)!r} has no progress rows yet")
        runs.append((rd.path, meta, rows))
    y = args.y or ADAPTERS[runs[0][1]["algorithm"]].return_key
    x = args.x
    for path, _, rows in runs:
        for key in (x, y):
            if key not in rows[0]:
                raise CLIError(f"run {str(path)!r} has no column {key!r}; columns: {', '.join(rows[0])}")
    out = Path(args.out or (Path(runs[0][0]) / "learning_curve.png"))
    fig = plotting.plot_runs(runs, x=x, y=y)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"meta-rl: wrote {out}")
    return 0


# ============================================================================ export
#: Files ``export`` copies verbatim (``eval.json`` only if present); the checkpoint is never copied.
EXPORT_FILES: tuple[str, ...] = ("config.json", "provenance.json", "progress.csv", "eval.json")


def policy_parameters(algorithm: str, checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trained policy's parameters in a run's checkpoint, ``{name: tensor}``, or ``None`` for the adaptive
    search (it keeps no trained network, only each trial's score and configuration).

    Names: ``policy.<parameter>`` for the policy's ``state_dict`` (MAML: the meta-parameters θ; RL²: the GRU
    policy; PPO/TRPO: the policy network), and for PPO with observation normalisation
    ``obs_rms.mean``/``var``/``count``/``clip``/``epsilon`` (float64; the policy expects normalised inputs).

    Raises:
        CLIError: the checkpoint does not hold what the algorithm's trainer saves.
    """
    import torch

    if algorithm == "adaptive":
        return None
    try:
        trainer = checkpoint["state"]["trainer"]
        policy = trainer["policy"]
    except (KeyError, TypeError):
        raise CLIError(f"the {algorithm} checkpoint has no trainer policy state (keys: "
                       f"{sorted(checkpoint)})") from None
    out = {f"policy.{k}": v for k, v in policy.items()}
    rms = trainer.get("obs_rms") if algorithm == "ppo" else None
    if rms is not None:
        for k, v in rms.items():
            out[f"obs_rms.{k}"] = torch.as_tensor(v, dtype=torch.float64)
    return out


def cmd_export(args: argparse.Namespace) -> int:
    """Copy a finished run's logs to ``DEST`` (a results/ directory) and write ``policy.json``."""
    import shutil
    import tempfile

    from meta_rl_lessons.results import POLICY, params_to_json
    from meta_rl_lessons.runs import CHECKPOINT, RunDir, load_checkpoint

    try:
        rd = RunDir.open(args.run_dir)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    for name in ("provenance.json", "progress.csv"):
        if not (rd.path / name).is_file():
            raise CLIError(f"run {str(rd.path)!r} has no {name}; it was not written by `meta-rl train`")
    meta = rd.read_config()
    prov = rd.read_json("provenance.json")
    status = prov.get("status")
    if status != "finished" and not args.allow_unfinished:
        raise CLIError(f"run {str(rd.path)!r} has status {status!r}, not 'finished'; finish it with "
                       f"`meta-rl resume {rd.path}` or pass --allow-unfinished to export it as it is")
    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise CLIError(f"{str(dest)!r} exists and is a file, not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not args.force:
            raise CLIError(f"{str(dest)!r} already exists and is not empty; pass --force to replace it")
        if not (dest / "config.json").is_file():
            raise CLIError(f"--force replaces result directories only, and {str(dest)!r} has no config.json; "
                           "remove it yourself or choose another DEST")
    if dest.resolve() == rd.path.resolve():
        raise CLIError("DEST is the run directory itself; choose a directory under results/")
    params = None
    if meta["algorithm"] != "adaptive":
        if not rd.checkpoint_path.is_file():
            raise CLIError(f"run {str(rd.path)!r} has no checkpoint.pt to read the policy from")
        params = policy_parameters(meta["algorithm"], load_checkpoint(rd.checkpoint_path))  # weights_only
    # Build the result next to DEST and move it into place, so a failure leaves no half-written result.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a result is an ordinary directory
    try:
        copied = []
        for name in EXPORT_FILES:
            if (rd.path / name).is_file():
                shutil.copyfile(rd.path / name, tmp / name)  # bytes only: verbatim
                copied.append(name)
        if params is not None:
            payload = {"format": 1, "algorithm": meta["algorithm"], "env": meta["env"],
                       "source": f"{CHECKPOINT} of the run (read with weights_only=True)",
                       "parameters": params_to_json(params)}
            (tmp / POLICY).write_text(json.dumps(payload) + "\n")
            copied.append(POLICY)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    note = "" if params is not None else " (no policy.json: the adaptive search keeps no trained network)"
    print(f"meta-rl: exported {', '.join(copied)} to {dest}{note}; update the index with "
          "`python -m meta_rl_lessons.results --write-readme`")
    return 0



# ============================================================================ list
def cmd_list(args: argparse.Namespace) -> int:
    print("algorithms: " + ", ".join(ALGORITHMS))
    print("budgets:    " + ", ".join(BUDGETS))
    print("MetaRL environments (maml, rl2):")
    for env in _metarl_ids():
        print(f"  {env}")
    print("ppo, trpo and adaptive train on any registered gymnasium id, e.g. CartPole-v1")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print :mod:`meta_rl_lessons.doctor`'s report; 0 when every required piece is present, else 1."""
    from meta_rl_lessons import doctor

    rows = doctor.checks()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(doctor.format_text(rows))
    return 0 if doctor.all_required_ok(rows) else 1


# ============================================================================ argument parsing
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meta-rl", description="Train, resume, evaluate and plot meta-RL runs.")
    sub = p.add_subparsers(dest="command", metavar="{train,resume,eval,plot,export,list,doctor}")
    sub.required = True

    t = sub.add_parser("train", help="start a run in a new run directory")
    t.add_argument("algorithm", metavar="ALGORITHM", help=f"one of {', '.join(ALGORITHMS)}")
    t.add_argument("--env", default=None,
                   help="environment id (default: CartPole-v1 for ppo/trpo/adaptive, MetaRL/Navigation2D-v0 "
                        "for maml, MetaRL/BernoulliBandit-v0 for rl2)")
    t.add_argument("--budget", default=None,
                   help=f"experiment size: {', '.join(BUDGETS)} (default: $META_RL_BUDGET, else book)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--device", default="cpu", help=f"{', '.join(DEVICES)} (default cpu)")
    t.add_argument("--out", default=None,
                   help="run directory (default runs/<algorithm>-<env>-<budget>-s<seed>)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field of the algorithm's config dataclass (repeatable)")
    t.add_argument("--force", action="store_true", help="delete an existing run directory first")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (recorded; resume uses the same number)")
    _common_run_flags(t)

    r = sub.add_parser("resume", help="continue an interrupted run")
    r.add_argument("run_dir", metavar="RUN_DIR")
    _common_run_flags(r)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--episodes", type=int, default=10, help="ppo/trpo: evaluation episodes (default 10)")
    e.add_argument("--tasks", type=int, default=20, help="maml/rl2: held-out tasks (default 20)")
    e.add_argument("--steps", type=int, default=3, help="maml: adaptation steps (default 3)")
    e.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation tasks/episodes")

    pl = sub.add_parser("plot", help="learning curves of one or more runs (mean and spread over runs)")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help="image file (default RUN_DIR/learning_curve.png)")
    pl.add_argument("--x", default="env_steps_total", help="x column (default env_steps_total)")
    pl.add_argument("--y", default=None, help="y column (default: the algorithm's return column)")
    pl.add_argument("--dpi", type=int, default=120)

    x = sub.add_parser("export", help="copy a finished run's logs (and policy.json) to a results/ directory")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("dest", metavar="DEST", help="result directory, e.g. results/maml-Navigation2D-book-s0")
    x.add_argument("--force", action="store_true", help="replace an existing result directory")
    x.add_argument("--allow-unfinished", action="store_true",
                   help="export a run whose status is not 'finished' (interrupted, running, failed)")

    sub.add_parser("list", help="algorithms, budgets and environments")
    d = sub.add_parser("doctor", help="check this machine: Python, torch, CUDA, gymnasium, MuJoCo and its GL "
                                      "backend, Chromium, threads, budget (exit 1 if something required "
                                      "is missing)")
    d.add_argument("--json", action="store_true", help="the report as JSON rows (name, status, value, fix)")
    return p


def _common_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="save a checkpoint at the first iteration boundary after this many seconds "
                        "(default 60; one is always saved at the end and on Ctrl-C)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN_DIR/tensorboard (if torch.utils.tensorboard is importable)")
    p.add_argument("--stop-after-iterations", type=int, default=None, metavar="N",
                   help="(testing) checkpoint and stop after N iterations of this session, as Ctrl-C does")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "plot": cmd_plot, "export": cmd_export,
    "list": cmd_list, "doctor": cmd_doctor}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``meta-rl``; returns the exit status (0 ok, 2 usage error, 130 interrupted)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(raw)
    args.argv = ["meta-rl", *raw]
    try:
        if args.command == "train":
            adapter(args.algorithm)
            if args.budget is None:
                from meta_rl_lessons import budget

                try:
                    args.budget = budget.current().name
                except ValueError as err:
                    raise CLIError(str(err)) from None
            if args.budget not in BUDGETS:
                raise CLIError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
            if args.device not in DEVICES:
                raise CLIError(f"unknown device {args.device!r}; allowed: {', '.join(DEVICES)}")
        if getattr(args, "checkpoint_every", 0.0) < 0:
            raise CLIError(f"--checkpoint-every must be >= 0 seconds, got {args.checkpoint_every}")
        if getattr(args, "stop_after_iterations", None) is not None and args.stop_after_iterations < 1:
            raise CLIError(f"--stop-after-iterations must be >= 1, got {args.stop_after_iterations}")
        return COMMANDS[args.command](args)
    except CLIError as err:
        print(f"meta-rl: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`meta-rl list | head`): stop quietly, as Unix tools do. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
