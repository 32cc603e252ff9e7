"""What an experiment is, before anything runs: presets, config building, validation, evaluation protocols.

The ``meta-rl`` command line (:mod:`meta_rl_lessons.cli`) is a parser over this module and
:func:`meta_rl_lessons.runs.run`; :mod:`meta_rl_lessons.results` rebuilds a result's config with it. Nothing
here writes a file, so every check happens before a run directory exists::

    from meta_rl_lessons import experiments
    spec, config, meta = experiments.build_config("maml", env="MetaRL/Navigation2D-v0", budget="smoke",
                                                  seed=0, overrides=["iterations=20"])
    trainer = spec.build(config)             # a Trainer (meta_rl_lessons.trainer)
    report = spec.evaluate(trainer, tasks=8)  # the algorithm's evaluation protocol

=============================  ===============================================================
name                           what
=============================  ===============================================================
:data:`SPECS` / :func:`spec`   one :class:`Spec` per algorithm: config class, trainer, default
                               environment, environment fields, evaluation protocol
:data:`PRESETS`, :func:`preset`  the config fields of each algorithm at each budget
:func:`build_config`           ``--env/--budget/--seed/--device/--set`` -> config dataclass and the
                               ``config.json`` content, every value validated
:func:`parse_overrides`        ``["key=value", ...]`` converted to the fields' annotated types
:func:`check_device`           ``cpu``, ``cuda``, ``cuda:N`` or ``auto``, checked to exist here
:func:`field_info`             a config's fields with type, default, preset value and docstring
:func:`run_search`             the adaptive search as a resumable, interruptible run
=============================  ===============================================================

Every user error raises :class:`ExperimentError` (a ``ValueError``) with one sentence naming the value and
what is allowed. This module imports only the standard library at import time.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import sys
import textwrap
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_rl_lessons.budget import NAMES as BUDGETS
from meta_rl_lessons.budget import Budget
from meta_rl_lessons.runs import normalised

__all__ = ["ALGORITHMS", "AdaptiveConfig", "ExperimentError", "FieldInfo", "PRESETS", "SPECS", "Spec",
           "build_config", "check_device", "check_gym_env", "config_from_dict", "family_of",
           "field_info", "parse_overrides", "policy_parameters", "preset", "run_search", "spec"]

#: The algorithms ``meta-rl train`` knows.
ALGORITHMS: tuple[str, ...] = ("ppo", "trpo", "maml", "rl2", "adaptive")
#: Families RL² can train on (those with a batched torch environment; the MuJoCo families too with
#: ``--set physics=warp``).
RL2_FAMILIES: tuple[str, ...] = ("BernoulliBandit", "TabularMDP", "Navigation2D", "Inventory")
#: The physics backends of the MuJoCo families (``--set physics=...``; ``envs.locomotion.PHYSICS``).
PHYSICS: tuple[str, ...] = ("mujoco", "warp")
#: Locomotion families get pytorch-maml-rl's meta-batch of 40 tasks at the book and full budgets.
LOCOMOTION: tuple[str, ...] = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntGoal")
#: Config fields the command line sets from its own flags (``--set`` may not touch them).
RESERVED: dict[str, str] = {"seed": "--seed", "device": "--device",
                            "log_path": "the run directory (progress.csv)",
                            "progress": "the command line's own progress bar", "env_id": "--env",
                            "family": "--env"}


class ExperimentError(ValueError):
    """A user error in an experiment's definition: the message names the value and what is allowed."""


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
        for name in ("num_trials", "steps_per_trial", "num_envs", "num_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AdaptiveConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"AdaptiveConfig.eta must be an integer >= 2, got {self.eta!r}")
        if self.max_layers not in (1, 2, 3):
            raise ValueError(f"AdaptiveConfig.max_layers must be 1, 2 or 3, got {self.max_layers!r}")


# ============================================================================ budget presets
#: Config fields per algorithm and budget. smoke: seconds (tests); book: minutes on 2 CPU cores, the sizes the
#: chapters use at the book budget (MAML: 40 meta-iterations on 2D navigation; RL²: 60 iterations of 1024
#: bandit trials; adaptive: chapter 4's random search); full: the paper-scale settings of the papers and
#: reference implementations (MAML: pytorch-maml-rl's 500 meta-batches of 20 tasks x 20 episodes, 40 tasks for
#: locomotion; RL²: GRU 256, 500 iterations, about 250k steps per iteration).
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


def preset(algorithm: str, budget: str, family: str | None = None) -> dict[str, Any]:
    """The preset config fields of ``algorithm`` at ``budget`` (see :data:`PRESETS`)."""
    try:
        b = Budget(budget)
    except ValueError:
        raise ExperimentError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}") from None
    fields = dict(b.pick(**PRESETS[spec(algorithm).name]))
    if algorithm == "maml" and family in LOCOMOTION and not b.is_smoke:
        fields["meta_batch_size"] = 40
    if spec(algorithm).name == "rl2" and not b.is_smoke:
        from meta_rl_lessons.rl2.ppo import FAMILY_RECIPES

        # bandits and tabular MDPs: the recipe of the RL² chapter's study; at `full` the paper's sizes win
        recipe = FAMILY_RECIPES.get(family, {})
        fields = {**fields, **recipe} if b.name == "book" else {**recipe, **fields}
    return fields


# ============================================================================ --set key=value
def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, allows None)`` for ``X | None`` annotations."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return tp, False


def type_name(tp: Any) -> str:
    """``int``, ``float | None``, ``tuple[int, ...]``: an annotation as a user reads it."""
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "").replace("NoneType", "None")


def _convert(name: str, raw: str, tp: Any) -> Any:
    """Convert the text ``raw`` to the annotated type ``tp`` of config field ``name``."""
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
                try:
                    value = float(text)  # accept 1e5
                except ValueError:
                    raise ValueError("expected an integer such as 8 or 1e5") from None
                if not value.is_integer():
                    raise ValueError("expected an integer") from None
                return int(value)
        if inner is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError("expected a number such as 0.5 or 3e-4") from None
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
    except (ValueError, SyntaxError, TypeError) as err:
        raise ExperimentError(f"--set {name}={raw!r}: cannot convert to {type_name(tp)} ({err})") from None
    return text  # any other annotation: the raw string


def parse_overrides(config_cls: type, items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{field: converted value}`` for the dataclass ``config_cls``.

    Raises:
        ExperimentError: malformed item, unknown field (with close matches and the allowed fields), a field
            the command line sets itself (``seed``, ``device``, ...), or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExperimentError(f"--set expects key=value, got {item!r}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ExperimentError(f"--set {key}: {config_cls.__name__} has no field {key!r}{hint}; fields: "
                                  f"{', '.join(n for n in names if n not in RESERVED)}")
        if key in RESERVED:
            raise ExperimentError(f"--set {key}: set by {RESERVED[key]}, not with --set")
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
            raise ExperimentError(f"--set physics={raw!r}: allowed values are {', '.join(PHYSICS)}")
    return physics, rest


# ============================================================================ environments and devices
def _gym_ids() -> list[str]:
    import gymnasium as gym

    import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0

    return sorted(gym.registry)


def _metarl_ids() -> tuple[str, ...]:
    from meta_rl_lessons.envs import ENV_IDS

    return ENV_IDS


def _unknown_env(env: str, candidates: Sequence[str], what: str) -> ExperimentError:
    close = difflib.get_close_matches(env, candidates, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return ExperimentError(f"unknown environment {env!r} for {what}{hint} Registered MetaRL environments: "
                           f"{', '.join(_metarl_ids())}")


def family_of(env: str, allowed: Sequence[str] | None = None, algorithm: str = "maml") -> str:
    """The task family of ``MetaRL/<Name>-v0`` (or of a bare family name).

    Raises:
        ExperimentError: not a MetaRL id, or a family the algorithm does not support.
    """
    from meta_rl_lessons.envs import FAMILIES

    name = env
    if env.startswith("MetaRL/") and env.endswith("-v0"):
        name = env[len("MetaRL/"):-len("-v0")]
    if name not in FAMILIES:
        raise _unknown_env(env, [*_metarl_ids(), *FAMILIES], f"{algorithm} (a meta-RL task family is needed)")
    if allowed is not None and name not in allowed:
        warp = " (or, for a MuJoCo family, --set physics=warp: MuJoCo Warp)" if name in LOCOMOTION else ""
        raise ExperimentError(f"{algorithm} cannot train on {env!r}: it needs a family with a batched torch "
                              f"environment, one of {', '.join(f'MetaRL/{n}-v0' for n in allowed)}{warp}")
    return name


def check_gym_env(env: str, algorithm: str) -> str:
    """``env`` if it is a registered gymnasium id, else an :class:`ExperimentError` with close matches."""
    ids = _gym_ids()
    if env not in ids:
        raise _unknown_env(env, ids, algorithm)
    return env


def check_device(device: str) -> str:
    """``device`` if usable here: ``cpu``, ``auto``, ``cuda`` or ``cuda:N`` with that many CUDA devices.

    Raises:
        ExperimentError: an unknown name, CUDA without CUDA, or a device index this machine does not have.
    """
    from meta_rl_lessons.rl.utils import device_name

    name = device_name(device)
    if name is None:
        raise ExperimentError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N (N = 0, 1, ...), auto")
    index = int(name[len("cuda:"):]) if name.startswith("cuda:") else None
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExperimentError(
                f"--device {device} was requested but CUDA is not available on this machine (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu or --device "
                "auto")
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise ExperimentError(f"--device {device}: this machine has {count} CUDA device(s), "
                                  f"cuda:0 to cuda:{count - 1}")
    return name


def check_threads(threads: int | None) -> int | None:
    """``threads`` if ``None`` or a positive integer (torch CPU threads)."""
    if threads is not None and threads < 1:
        raise ExperimentError(f"--threads must be a positive integer (torch CPU threads), got {threads}")
    return threads


# ============================================================================ evaluation helpers
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


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ExperimentError(f"--{name} must be an integer >= {minimum}, got {value!r}")


# ============================================================================ per-algorithm specs
def _ppo_config() -> type:
    from meta_rl_lessons.rl.ppo import PPOConfig

    return PPOConfig


def _trpo_config() -> type:
    from meta_rl_lessons.rl.trpo import TRPOConfig

    return TRPOConfig


def _maml_config() -> type:
    from meta_rl_lessons.maml.rl import MAMLTRPOConfig

    return MAMLTRPOConfig


def _rl2_config() -> type:
    from meta_rl_lessons.rl2.ppo import RL2Config

    return RL2Config


def _ppo_trainer(config: Any) -> Any:
    import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0 for gymnasium.make
    from meta_rl_lessons.rl.ppo import PPO

    return PPO(config)


def _trpo_trainer(config: Any) -> Any:
    import meta_rl_lessons.envs  # noqa: F401 - registers MetaRL/<Name>-v0 for gymnasium.make
    from meta_rl_lessons.rl.trpo import TRPO

    return TRPO(config)


def _maml_trainer(config: Any) -> Any:
    from meta_rl_lessons.maml.rl import MAMLTRPO

    return MAMLTRPO(config)


def _rl2_trainer(config: Any) -> Any:
    from meta_rl_lessons.rl2.ppo import RL2Trainer

    return RL2Trainer(config)


def _gym_env_fields(algorithm: str) -> Callable[..., dict[str, Any]]:
    def fields(env: str, physics: str | None = None) -> dict[str, Any]:
        return {"env_id": check_gym_env(env, algorithm)}
    return fields


def _maml_env_fields(env: str, physics: str | None = None) -> dict[str, Any]:
    return {"family": family_of(env, algorithm="maml")}


def _rl2_env_fields(env: str, physics: str | None = None) -> dict[str, Any]:
    # the MuJoCo families have a batched torch environment only with MuJoCo Warp
    allowed = RL2_FAMILIES + (LOCOMOTION if physics == "warp" else ())
    family = family_of(env, allowed, "rl2")
    fields: dict[str, Any] = {"family": family}
    if family != _rl2_config().family:  # the default family_kwargs are the bandit's
        fields["family_kwargs"] = {
            "TabularMDP": {"num_states": 10, "num_actions": 5, "episode_length": 10},  # Duan et al.
            "Navigation2D": {}, "Inventory": {}}.get(family, {})
    return fields


def _eval_gym(trainer: Any, episodes: int, seed: int, act: Callable[[Any], Any]) -> dict[str, Any]:
    _check_count("episodes", episodes)
    c = trainer.config
    returns = _gym_episodes(c.env_id, act, episodes, seed, c.max_episode_steps)
    return {"protocol": f"{episodes} episodes, deterministic policy, env seeds {seed}...",
            "episode_return": _summary(returns)}


def _eval_ppo(trainer: Any, *, episodes: int = 10, seed: int = 10_000, **_: Any) -> dict[str, Any]:
    return _eval_gym(trainer, episodes, seed, lambda obs: trainer.act(obs, deterministic=True))


def _eval_trpo(trainer: Any, *, episodes: int = 10, seed: int = 10_000, **_: Any) -> dict[str, Any]:
    import torch

    @torch.no_grad()
    def act(obs: Any) -> Any:
        return trainer.policy.mode(torch.as_tensor(obs, device=trainer.device)).cpu().numpy()

    return _eval_gym(trainer, episodes, seed, act)


def _eval_maml(trainer: Any, *, tasks: int = 20, steps: int = 3, seed: int = 10_000,
               **_: Any) -> dict[str, Any]:
    _check_count("tasks", tasks)
    _check_count("steps", steps, minimum=0)
    step_sizes = (0.1,) + (0.05,) * (steps - 1) if steps else ()  # Finn et al.: .1, then .05
    test_tasks = trainer.family.sample_tasks(tasks, rng=seed, split="test")
    returns = trainer.evaluate(test_tasks, step_sizes=step_sizes, seed=seed + 1)  # [steps + 1, K]
    return {"protocol": f"{tasks} held-out test tasks (task seed {seed}), "
                        f"{trainer.config.num_episodes} episodes per task, REINFORCE steps of sizes "
                        f"{list(step_sizes)} (Finn et al. 2017)",
            # the tasks are family.sample_tasks(len(values), rng=task_seed, split="test"), in this order
            "task_seed": seed,
            "return_after_steps": {str(i): _summary(returns[i].tolist()) for i in range(returns.shape[0])}}


def _eval_rl2(trainer: Any, *, tasks: int = 20, seed: int = 10_000, **_: Any) -> dict[str, Any]:
    _check_count("tasks", tasks)
    # Tasks from the held-out test split when the run trained on "train" (the tasks MAML's evaluation draws
    # with the same --tasks and --seed), else from the whole distribution (the paper's tables).
    trials = trainer.evaluate(num_tasks=tasks, seed=seed)
    where = "held-out test tasks" if trainer.evaluation_split() == "test" else "tasks"
    return {"protocol": f"one trial of {trainer.config.episodes_per_trial} episodes on each of "
                        f"{tasks} {where} drawn with seed {seed}",
            "trial_return": _summary(trials.trial_returns().tolist()),
            # per-episode mean, std and n only: per-task values of every episode would be n times the size
            "return_per_episode": {str(i + 1): {k: v for k, v in _summary(r.tolist()).items()
                                                if k != "values"}
                                   for i, r in enumerate(trials.episode_returns())}}


@dataclass(frozen=True)
class Spec:
    """How one algorithm becomes an experiment: its config, trainer, environments and evaluation."""

    name: str
    """The command-line name (``ppo``, ``maml``, ...), the trainer's ``name``."""
    config_loader: Callable[[], type]
    """Returns the config dataclass (imported on demand: ``meta-rl --help`` imports no torch)."""
    trainer_factory: Callable[[Any], Any] | None
    """``config -> trainer``; ``None`` for the adaptive search (driven by :func:`run_search`)."""
    default_env: str
    env_fields: Callable[..., dict[str, Any]]
    """``(env, physics=None) -> config fields`` naming the environment, validated."""
    evaluator: Callable[..., dict[str, Any]] | None
    """``(trainer, *, episodes, tasks, steps, seed) -> report``: the algorithm's evaluation protocol."""
    return_key: str = "episode_return"
    """The progress column that is "the return" (progress bar, log lines, plots)."""

    @property
    def config_class(self) -> type:
        return self.config_loader()

    def build(self, config: Any) -> Any:
        """A trainer for ``config``.

        Raises:
            ExperimentError: the trainer rejects the configuration (a ``ValueError`` from its constructor).
        """
        if self.trainer_factory is None:
            raise ExperimentError(f"{self.name} has no trainer; it runs through experiments.run_search")
        try:
            return self.trainer_factory(config)
        except ValueError as err:
            raise ExperimentError(f"cannot build the {self.name} trainer: {err}") from None

    def evaluate(self, trainer: Any, **protocol: Any) -> dict[str, Any]:
        """The evaluation report of ``trainer`` (keyword arguments: ``episodes``, ``tasks``, ``steps``,
        ``seed``; each algorithm reads those its protocol has)."""
        if self.evaluator is None:
            raise ExperimentError(f"{self.name} has no trainer to evaluate")
        return self.evaluator(trainer, **protocol)


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("ppo", _ppo_config, _ppo_trainer, "CartPole-v1", _gym_env_fields("ppo"), _eval_ppo),
    Spec("trpo", _trpo_config, _trpo_trainer, "CartPole-v1", _gym_env_fields("trpo"), _eval_trpo),
    Spec("maml", _maml_config, _maml_trainer, "MetaRL/Navigation2D-v0", _maml_env_fields, _eval_maml,
         return_key="return_post"),
    Spec("rl2", _rl2_config, _rl2_trainer, "MetaRL/BernoulliBandit-v0", _rl2_env_fields, _eval_rl2,
         return_key="trial_return"),
    Spec("adaptive", lambda: AdaptiveConfig, None, "CartPole-v1", _gym_env_fields("adaptive"), None,
         return_key="best_score"),
)}


def spec(name: str) -> Spec:
    """The :class:`Spec` of algorithm ``name``. Raises :class:`ExperimentError` with close matches."""
    if name not in SPECS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ExperimentError(f"unknown algorithm {name!r}{hint}; allowed: {', '.join(ALGORITHMS)}")
    return SPECS[name]


# ============================================================================ building configs
def _instantiate(cls: type, fields: Mapping[str, Any]) -> Any:
    try:
        return cls(**fields)
    except (ValueError, TypeError) as err:
        raise ExperimentError(f"invalid {cls.__name__}: {err}") from None


def make_config(algorithm: str, env: str, budget: str, seed: int, device: str,
                overrides: Sequence[str] = ()) -> Any:
    """The config dataclass of ``algorithm``: preset at ``budget``, environment fields, ``overrides``,
    seed and device; the command line's own fields (``log_path``, ``progress``) off."""
    s = spec(algorithm)
    cls = s.config_class
    physics, overrides = _physics_override(cls, overrides)
    # the families an algorithm can train on may depend on the physics backend (RL²: MuJoCo with Warp)
    env_fields = s.env_fields(env) if physics is None else s.env_fields(env, physics=physics)
    fields = {**preset(s.name, budget, env_fields.get("family")), **env_fields,
              **parse_overrides(cls, overrides), "seed": seed, "device": device}
    if physics is not None:  # the family's physics backend: one key of family_kwargs
        fields["family_kwargs"] = {**fields.get("family_kwargs", {}), "physics": physics}
    names = {f.name for f in dataclasses.fields(cls)}
    if "log_path" in names:
        fields["log_path"] = None  # the run loop writes progress.csv itself
    if "progress" in names:
        fields["progress"] = False  # ... and draws its own progress bar
    return _instantiate(cls, fields)


def build_config(algorithm: str, *, env: str | None = None, budget: str = "book", seed: int = 0,
                 device: str = "cpu", overrides: Sequence[str] = (), threads: int | None = None,
                 check_hardware: bool = True) -> tuple[Spec, Any, dict[str, Any]]:
    """``(spec, config dataclass, config.json content)`` of a ``meta-rl train`` run, every value validated.

    ``check_hardware=False`` skips the check that the device exists here (rebuilding a recorded config).

    Raises:
        ExperimentError: unknown algorithm, environment, budget or device, a negative seed, bad threads, or
            a bad ``--set``.
    """
    s = spec(algorithm)
    env = env or s.default_env
    if budget not in BUDGETS:
        raise ExperimentError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
    if not isinstance(seed, int) or seed < 0:
        raise ExperimentError(f"--seed must be a non-negative integer, got {seed}")
    check_threads(threads)
    if check_hardware:
        device = check_device(device)
    config = make_config(s.name, env, budget, seed, device, overrides)
    meta = {"algorithm": s.name, "env": env, "budget": budget, "seed": seed, "device": device,
            "threads": threads, "overrides": list(overrides),
            "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
            "config": dataclasses.asdict(config)}
    return s, config, meta


def config_from_dict(algorithm: str, d: Mapping[str, Any], overrides: Sequence[str] = ()) -> Any:
    """The config dataclass from a ``config.json``'s ``config`` dict (lists back to tuples), with
    ``overrides`` (``key=value``) applied.

    Raises:
        ExperimentError: the dict does not make a valid config (unknown or missing fields, bad values).
    """
    cls = spec(algorithm).config_class
    if not isinstance(d, Mapping):
        raise ExperimentError(f"the recorded config is a {type(d).__name__}, not a dict of {cls.__name__} "
                              "fields")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ExperimentError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    fields = {}
    for name, v in d.items():
        inner, _ = _strip_optional(hints[name])
        if (typing.get_origin(inner) or inner) is tuple and isinstance(v, list):
            v = tuple(v)
        fields[name] = v
    fields.update(parse_overrides(cls, overrides))
    return _instantiate(cls, fields)


# ============================================================================ meta-rl config ALGORITHM
@dataclass(frozen=True)
class FieldInfo:
    """One config field, as ``meta-rl config`` lists it."""

    name: str
    type: str
    default: Any
    value: Any
    """The value at the chosen budget and environment (the preset's, else the default)."""
    doc: str
    settable: bool
    """``--set`` may change it (the command line sets the others from its own flags)."""


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source (``ast``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_info(algorithm: str, budget: str | None = None, env: str | None = None) -> list[FieldInfo]:
    """Every field of ``algorithm``'s config: type, default, value at ``budget`` on ``env``, docstring."""
    s = spec(algorithm)
    cls = s.config_class
    values: dict[str, Any] = {}
    if budget is not None:
        env_fields = s.env_fields(env or s.default_env)
        values = {**preset(s.name, budget, env_fields.get("family")), **env_fields}
    elif env is not None:
        values = s.env_fields(env)
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append(FieldInfo(f.name, type_name(hints[f.name]), default, values.get(f.name, default),
                             docs.get(f.name, ""), f.name not in RESERVED))
    return out


# ============================================================================ trained policies
def policy_parameters(algorithm: str, trainer_state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trained policy's parameters in a trainer's ``state_dict`` (a checkpoint's ``"trainer"``),
    ``{name: tensor}``, or ``None`` for the adaptive search (it keeps no trained network).

    Names: ``policy.<parameter>`` for the policy's ``state_dict`` (MAML: the meta-parameters θ; RL²: the GRU
    policy; PPO/TRPO: the policy network), and for PPO with observation normalisation
    ``obs_rms.mean``/``var``/``count``/``clip``/``epsilon`` (float64; the policy expects normalised inputs).

    Raises:
        ExperimentError: the state does not hold a policy.
    """
    import torch

    if algorithm == "adaptive":
        return None
    policy = trainer_state.get("policy") if isinstance(trainer_state, Mapping) else None
    if not isinstance(policy, Mapping):
        keys = sorted(trainer_state) if isinstance(trainer_state, Mapping) else type(trainer_state).__name__
        raise ExperimentError(f"the {algorithm} checkpoint has no trainer policy state (keys: {keys})")
    out = {f"policy.{k}": v for k, v in policy.items()}
    rms = trainer_state.get("obs_rms") if algorithm == "ppo" else None
    if rms is not None:
        for k, v in rms.items():
            out[f"obs_rms.{k}"] = torch.as_tensor(v, dtype=torch.float64)
    return out


def load_policy_parameters(trainer: Any, params: Mapping[str, Any]) -> None:
    """Inverse of :func:`policy_parameters` on a trainer built from the same config: the policy's weights
    (and PPO's observation statistics), nothing else of the training state."""
    policy = {k.removeprefix("policy."): v for k, v in params.items() if k.startswith("policy.")}
    trainer.policy.load_state_dict(policy)
    rms = {k.removeprefix("obs_rms."): v for k, v in params.items() if k.startswith("obs_rms.")}
    if rms:  # PPO with observation normalisation: the policy expects normalised inputs
        trainer.sampler.obs_normalizer.load_state_dict(rms)


# ============================================================================ the adaptive search
class _SearchStopped(Exception):
    """Raised between two segments to stop a search (what finished is in the result store)."""


class _StoppableExecutor:
    """Runs segments serially; reports each result; stops the search between segments on request."""

    def __init__(self, on_result: Callable[[Any], None], should_stop: Callable[[int], bool]) -> None:
        from meta_rl_lessons.adaptive import SerialExecutor

        self.inner = SerialExecutor()
        self.on_result, self.should_stop = on_result, should_stop
        self.count = 0

    def run(self, segments: Sequence[Any]) -> Any:
        for item in self.inner.run(segments):
            yield item  # the result store records it before asking for the next one
            self.on_result(item[1])
            self.count += 1
            if self.should_stop(self.count):
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


def run_search(config: AdaptiveConfig, run_dir: Any, *, stop_after: int | None = None,
               command: Sequence[str] | None = None, stop: Any = None) -> Any:
    """The adaptive search as a run: finished segments are in ``search/results.jsonl`` (resumable by design);
    one progress row per segment; ``checkpoint.pt`` holds the rows. SIGINT and SIGTERM stop it between
    segments, as :func:`meta_rl_lessons.runs.run` stops a trainer; returns a :class:`~meta_rl_lessons.runs.
    RunResult`.
    """
    from meta_rl_lessons import runs

    rd = run_dir if isinstance(run_dir, runs.RunDir) else runs.RunDir(run_dir)
    try:
        return _search_session(config, rd, stop_after, command, stop)
    except runs.Interrupted as err:  # a second signal: the finished segments are kept
        print("\nmeta-rl: stopped at once; finished segments are kept. Continue with:  meta-rl resume "
              f"{rd.path}", file=sys.stderr)
        return runs.RunResult("interrupted", rd.read_progress(), rd.path, signum=err.signum)


def _search_session(config: AdaptiveConfig, rd: Any, stop_after: int | None, command: Sequence[str] | None,
                    stop: Any) -> Any:
    from meta_rl_lessons import runs

    with runs.RunSession(rd, "adaptive", normalised(config), command=command, stop=stop) as session:
        rows = session.rows
        search_dir = rd.path / "search"
        known = {r["trial_id"] for r in rows}  # segments stored after the last checkpoint become rows again
        pending = []
        results_file = search_dir / "results.jsonl"
        if results_file.is_file():
            for line in results_file.read_text().splitlines():
                try:
                    result = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: the store reruns that segment
                if result["trial_id"] not in known:
                    pending.append(result)
        start = time.perf_counter()
        wall_before = session.wall_before

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
            session.save(rows[-1]["wall_time"])
            print(f"meta-rl: segment {result.trial_id}: score {result.score:.4g} "
                  f"(best {rows[-1]['best_score']:.4g}), {int(rows[-1]['env_steps_total']):,} env steps",
                  file=sys.stderr, flush=True)

        def should_stop(count: int) -> bool:
            return session.stop.requested or (stop_after is not None and count >= stop_after)

        executor = _StoppableExecutor(on_result, should_stop)
        try:
            result = _search(config, search_dir, executor)
        except _SearchStopped:
            print(f"meta-rl: search stopped after {len(rows)} segments; continue with:  meta-rl resume "
                  f"{rd.path}",
                  file=sys.stderr)
            return session.end("stopped" if not session.stop.requested else "interrupted")
        finally:
            executor.close()
        session.save(rows[-1]["wall_time"] if rows else 0.0)
        print(f"meta-rl: search finished: best score {result.best_score:.4g} with {result.best_params}",
              file=sys.stderr)
        return session.end("finished")
