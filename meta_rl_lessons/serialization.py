"""One serialisation module: weights_only-safe values, atomic checkpoints, random generators, environments.

Every checkpoint in the package goes through :func:`save_checkpoint` / :func:`load_checkpoint`: the command
line's run directories (:mod:`meta_rl_lessons.runs`), a trainer's ``state_dict`` saved from a notebook,
and the adaptive trials' segment checkpoints (:mod:`meta_rl_lessons.adaptive.trial`).

=====================================  ============================================================
function                               what
=====================================  ============================================================
:func:`to_safe` / :func:`from_safe`    NumPy arrays <-> tensors, so ``torch.load(weights_only=True)`` reads
                                       everything back
:func:`save_checkpoint`                atomic (temporary file, ``fsync``, ``os.replace``); no stray file
                                       after an interruption or a full disk
:func:`load_checkpoint`                ``weights_only=True``; a truncated or foreign file raises
                                       :class:`CheckpointError` naming it
:func:`remove_stale_temporaries`       what a killed save left behind (``.<name>.tmp<pid>``)
:func:`global_rng_state`               Python's, NumPy's legacy and torch's global generators
:func:`generator_state`                one ``numpy``/``torch``/``random`` generator
:func:`env_state`                      a gymnasium ``SyncVectorEnv``'s simulators, wrappers and generators
=====================================  ============================================================

This module imports torch and NumPy lazily, so the command line's ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointError",
    "config_diff",
    "env_state",
    "from_safe",
    "generator_state",
    "global_rng_state",
    "load_checkpoint",
    "load_env_state",
    "remove_stale_temporaries",
    "save_checkpoint",
    "set_generator_state",
    "set_global_rng_state",
    "to_safe",
]


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read (truncated, corrupted, or not a checkpoint)."""


# ============================================================================ safe (weights_only) values
def to_safe(obj: Any) -> Any:
    """NumPy arrays -> tensors, NumPy scalars -> Python numbers, tuples -> lists, recursively.

    The result can be saved with ``torch.save`` and read back with ``torch.load(..., weights_only=True)``.
    """
    import numpy as np
    import torch

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_safe(v) for v in obj]
    return obj


def from_safe(obj: Any) -> Any:
    """Tensors -> NumPy arrays, recursively (for state that the trainer keeps in NumPy)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, Mapping):
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    return obj


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``to_safe(state)`` atomically: to a temporary file in the same directory, ``fsync``, then
    ``os.replace``.

    An interruption while writing leaves the previous checkpoint intact (never half a file), and an error
    (a full disk, a read-only directory) removes the temporary file before it propagates. Only a ``kill -9``
    during the write can leave one; :func:`remove_stale_temporaries` clears it at the next start.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        torch.save(to_safe(dict(state)), tmp)
        with open(tmp, "rb") as fh:  # make the bytes durable before the rename makes them visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp<pid>`` files in ``directory`` whose writing process is gone (a save killed
    mid-write); returns what was removed. Call it while holding the directory's lock."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` onto the CPU.

    Raises:
        FileNotFoundError: naming the missing file.
        CheckpointError: the file is truncated, corrupted or not a checkpoint (naming it and what to do).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        if err.errno not in (errno.EINVAL, None):  # a real I/O problem (permissions, a failing disk)
            raise
        # torch reports some truncated zip archives as "[Errno 22] Invalid argument"
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({err.strerror or err}): it is truncated, corrupted or "
            "not a meta-rl checkpoint; restore it from a copy, or start the run again") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(". ")[0]  # torch's first sentence says what failed; the rest is advice for bugs
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({first[:200]}): it is truncated, corrupted or not a "
            "meta-rl checkpoint; restore it from a copy, or start the run again") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a dict of state")
    return state


# ============================================================================ random-number generators
def global_rng_state() -> dict[str, Any]:
    """The state of Python's ``random``, NumPy's legacy global generator and torch's global generators."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the legacy global generator
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [s.clone() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`global_rng_state`. CUDA states are restored only if as many devices exist."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["internal"]), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy() if isinstance(n["keys"], torch.Tensor) else n["keys"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((n["name"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached"])))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def generator_state(gen: Any) -> dict[str, Any]:
    """The state of one generator: ``numpy.random.Generator``, ``numpy.random.RandomState``,
    ``torch.Generator`` or ``random.Random``, as a ``weights_only``-safe dict with a ``kind`` key.

    Raises:
        TypeError: for any other object (naming its type).
    """
    import numpy as np
    import torch

    if isinstance(gen, np.random.Generator):
        return {"kind": "numpy.Generator", "state": json.dumps(gen.bit_generator.state)}
    if isinstance(gen, np.random.RandomState):
        name, keys, pos, has_gauss, cached = gen.get_state()
        return {"kind": "numpy.RandomState", "state": json.dumps(
            [name, keys.tolist(), int(pos), int(has_gauss), float(cached)])}
    if isinstance(gen, torch.Generator):
        return {"kind": "torch.Generator", "state": gen.get_state().clone()}
    if isinstance(gen, random.Random):
        version, internal, gauss = gen.getstate()
        return {"kind": "random.Random", "state": json.dumps([version, list(internal), gauss])}
    raise TypeError(f"cannot capture the state of a {type(gen).__module__}.{type(gen).__qualname__}; "
                    "supported: numpy.random.Generator/RandomState, torch.Generator, random.Random")


def set_generator_state(gen: Any, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`generator_state`, in place.

    Raises:
        TypeError: when ``gen`` is not of the kind the state was taken from.
    """
    import numpy as np
    import torch

    kind = state["kind"]
    if kind == "numpy.Generator" and isinstance(gen, np.random.Generator):
        gen.bit_generator.state = json.loads(state["state"])
    elif kind == "numpy.RandomState" and isinstance(gen, np.random.RandomState):
        name, keys, pos, has_gauss, cached = json.loads(state["state"])
        gen.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    elif kind == "torch.Generator" and isinstance(gen, torch.Generator):
        gen.set_state(state["state"])
    elif kind == "random.Random" and isinstance(gen, random.Random):
        version, internal, gauss = json.loads(state["state"])
        gen.setstate((version, tuple(internal), gauss))
    else:
        raise TypeError(f"checkpoint holds a {kind} state but the object is a {type(gen).__qualname__}")


# ============================================================================ configs
def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (value in a, value in b)}`` for the fields where two configs, as dicts of the same
    normalised values (tuples as lists, as a checkpoint reads them back), differ; a field only one has
    counts, with ``None`` for the other's value."""
    missing = object()
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)}


# ============================================================================ environments
def _as_numpy(x: Any) -> Any:
    """A NumPy copy of a tensor (as read from a checkpoint) or of an array."""
    import numpy as np
    import torch

    return x.detach().cpu().numpy().copy() if isinstance(x, torch.Tensor) else np.array(x, copy=True)


def _unwrapped_chain(env: Any) -> list[Any]:
    chain = [env]
    while hasattr(chain[-1], "env"):
        chain.append(chain[-1].env)
    return chain


# Wrapper bookkeeping that changes while stepping: TimeLimit's counter, OrderEnforcing's reset flag, the
# passive checker's "first call checked" flags.
_WRAPPER_FIELDS = ("_elapsed_steps", "_has_reset", "checked_reset", "checked_step", "checked_data_reuse")


def env_state(envs: Any) -> list[dict[str, Any]]:
    """The state of every sub-environment of a ``SyncVectorEnv``: simulator state, time-limit counter,
    termination bookkeeping and random generator.

    Supported: classic-control environments (their state is ``unwrapped.state``) and MuJoCo environments
    (MuJoCo's full integration state, solver warm start included, and the task of a meta-RL family).

    Raises:
        NotImplementedError: for a vector environment without ``envs`` (async) or an unsupported simulator.
    """
    import numpy as np

    if not hasattr(envs, "envs"):
        raise NotImplementedError(f"env_state needs a SyncVectorEnv (with .envs), got {type(envs).__name__}")
    out = []
    for sub in envs.envs:
        chain = _unwrapped_chain(sub)
        base = chain[-1]
        state: dict[str, Any] = {
            "wrappers": [{k: getattr(w, k) for k in _WRAPPER_FIELDS if hasattr(w, k)} for w in chain[:-1]],
            "np_random": base.np_random.bit_generator.state,
        }
        if hasattr(base, "data") and hasattr(base.data, "qpos"):  # MuJoCo
            import mujoco

            # the full integration state: qpos, qvel, act, time, controls, applied forces, and the solver's
            # warm start (without it, contact-rich models continue differently after a restore)
            sig = mujoco.mjtState.mjSTATE_INTEGRATION
            buf = np.empty(mujoco.mj_stateSize(base.model, sig), dtype=np.float64)
            mujoco.mj_getState(base.model, base.data, buf, sig)
            state["mujoco"] = {"integration_state": buf}
            if hasattr(base, "get_task"):
                task = base.get_task()
                state["task"] = dataclasses.asdict(task) if dataclasses.is_dataclass(task) else task
        elif hasattr(base, "state"):  # classic control
            s = base.state
            state["state"] = None if s is None else np.array(s, dtype=np.float64)
            state["steps_beyond_terminated"] = getattr(base, "steps_beyond_terminated", None)
        else:
            raise NotImplementedError(
                f"cannot checkpoint the state of {type(base).__name__}: env_state supports classic-control "
                "(unwrapped.state) and MuJoCo (unwrapped.data) environments")
        out.append(state)
    return out


def load_env_state(envs: Any, states: list[Mapping[str, Any]]) -> None:
    """Inverse of :func:`env_state` for a freshly built vector environment of the same kind."""
    import numpy as np

    if len(states) != len(envs.envs):
        raise ValueError(
            f"checkpoint has {len(states)} sub-environments, the vector env has {len(envs.envs)}")
    for sub, state in zip(envs.envs, states, strict=True):
        chain = _unwrapped_chain(sub)
        base = chain[-1]
        if len(state["wrappers"]) != len(chain) - 1:
            raise ValueError(f"checkpoint has {len(state['wrappers'])} wrappers per sub-environment, the "
                             f"environment has {len(chain) - 1}")
        for w, fields in zip(chain[:-1], state["wrappers"], strict=True):
            for k, v in fields.items():
                setattr(w, k, v)
            if fields.get("checked_step"):  # the checker's data-reuse test needs data we do not save; it
                w.checked_data_reuse = True  # ran (or will have run) in the original process anyway
        base.np_random.bit_generator.state = state["np_random"]
        if "mujoco" in state:
            m = state["mujoco"]
            if "task" in state and hasattr(base, "set_task"):
                task_type = type(base.get_task())
                task = state["task"]
                base.set_task(task_type(**task) if dataclasses.is_dataclass(task_type) else task)
            import mujoco

            buf = _as_numpy(m["integration_state"]).astype(np.float64)
            mujoco.mj_setState(base.model, base.data, buf, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(base.model, base.data)
        else:
            base.state = None if state["state"] is None else _as_numpy(state["state"]).astype(np.float64)
            base.steps_beyond_terminated = state["steps_beyond_terminated"]
