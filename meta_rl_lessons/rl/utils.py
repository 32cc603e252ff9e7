"""Trainer utilities: seeding, device selection, progress bars, CSV logs, running normalisation, checks."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CSVLogger",
    "anneal_learning_rate",
    "make_adam",
    "mujoco_warnings_to_python",
    "RunningMeanStd",
    "check_finite",
    "check_positive",
    "check_state",
    "config_state",
    "progress",
    "resolve_device",
    "set_seed",
]


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Environments are seeded separately, through ``env.reset(seed=...)`` (the samplers do that).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - legacy global generator, seeded for third-party code
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ``"cpu"``; ``"cuda"``/``"cuda:N"`` (checked to exist).

    Raises:
        RuntimeError: CUDA was asked for but torch sees no CUDA device (a CPU-only torch build, or no GPU).
        ValueError: an unknown device string.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); use device='cpu' or 'auto'"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={device!r} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")


def make_adam(params: Iterable[Tensor], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for these tensors (about 20% faster per step for small
    networks on a CPU), else the default implementation. Same mathematics either way."""
    check_positive("learning rate", lr)
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, eps=eps)


def anneal_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, fraction_done: float) -> float:
    """Linear learning-rate decay: set every parameter group's ``lr`` to ``max(1 - fraction_done, 0) *
    base_lr`` and return it (PPO's and RL²'s ``anneal_lr``; ``fraction_done`` = iterations done / total)."""
    lr = max(1.0 - fraction_done, 0.0) * base_lr
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number > 0 (>= 0 with allow_zero)."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_positive_ints(config: object, *names: str) -> None:
    """Raise ``ValueError`` naming ``Class.field`` unless each named field of ``config`` is an ``int`` > 0.

    The one check behind every config dataclass's counts (environments, steps, iterations, trials, ...).
    """
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


#: Config fields that say where output goes, not what is computed: a state loads whatever their values.
PRESENTATION_FIELDS: tuple[str, ...] = ("progress", "log_path")


def config_state(config: Any) -> dict[str, Any]:
    """A config dataclass as a state-dict entry: its fields, with tuples as lists (as a checkpoint reads
    them back), so a state compares equal before and after a checkpoint file."""
    from meta_rl_lessons.serialization import to_safe

    return to_safe(dataclasses.asdict(config))


def check_state(owner: str, config: Any, state: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Refuse a state that a trainer built from ``config`` cannot continue from.

    Args:
        owner: the trainer's class name, for the messages.
        config: the trainer's config dataclass.
        state: what ``owner.state_dict()`` returned (possibly read back from a checkpoint).
        keys: the entries ``state`` must have besides ``"config"``.

    Raises:
        ValueError: ``state`` is not a mapping, lacks entries, or was saved from a config that differs in
            any field but :data:`PRESENTATION_FIELDS` (naming each field with both values).
    """
    from meta_rl_lessons.serialization import to_safe

    if not isinstance(state, Mapping):
        raise ValueError(f"{owner}.load_state_dict needs the dict {owner}.state_dict() returned, got a "
                         f"{type(state).__name__}")
    missing = [k for k in ("config", *keys) if k not in state]
    if missing:
        raise ValueError(f"{owner}.load_state_dict: the state has no {missing} (its keys: {sorted(state)}); "
                         f"it is not what {owner}.state_dict() returns")
    mine, theirs = config_state(config), to_safe(dict(state["config"]))
    absent = "<absent>"
    differ = [f for f in sorted(set(mine) | set(theirs))
              if f not in PRESENTATION_FIELDS and mine.get(f, absent) != theirs.get(f, absent)]
    if differ:
        fields = "; ".join(f"{f}: {theirs.get(f, absent)!r} in the state, {mine.get(f, absent)!r} here"
                           for f in differ)
        raise ValueError(f"{owner}.load_state_dict: the state was saved with a different "
                         f"{type(config).__name__} ({fields}); build the {owner} from the state's config")


def check_finite(name: str, value: Tensor) -> Tensor:
    """Raise ``FloatingPointError`` if ``value`` holds NaN or inf (e.g. a diverged loss), else return it."""
    if not bool(torch.isfinite(value).all()):
        bad = value.detach().flatten()
        raise FloatingPointError(
            f"{name} is not finite ({bad[~torch.isfinite(bad)][:3].tolist()} among {bad.numel()} values); "
            "the optimisation diverged: lower the learning rate, check rewards/observations for NaN/inf"
        )
    return value


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kwargs: Any):
    """A ``tqdm`` progress bar (``tqdm.auto``: a widget in Jupyter, text in a terminal), or a silent one.

    ``enabled=False`` (or the environment variable ``META_RL_PROGRESS=0``) disables it, e.g. in tests.
    """
    disable = (not enabled) or os.environ.get("META_RL_PROGRESS", "1") == "0"
    if disable:  # plain tqdm: tqdm.auto would warn about missing ipywidgets even for a disabled bar
        from tqdm import tqdm
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "IProgress not found": falls back to a text bar, which is fine
            from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)


_log = logging.getLogger(__name__)


@contextlib.contextmanager
def mujoco_warnings_to_python() -> Iterator[None]:
    """While active, MuJoCo's C-level warnings go to Python instead of stderr and ``MUJOCO_LOG.TXT``.

    gymnasium's MuJoCo assets (e.g. ``half_cheetah.xml``) use attributes MuJoCo 4 reports as deprecated, on
    stderr and by appending to ``MUJOCO_LOG.TXT`` in the current directory, every time a model is compiled.
    Deprecation notices (nothing a user can act on) go to this module's logger at INFO level; any other
    MuJoCo warning becomes a ``RuntimeWarning``. A no-op when MuJoCo is not installed.
    """
    try:
        import mujoco
    except ImportError:  # pragma: no cover - mujoco is a dependency, but keep the helper harmless
        yield
        return

    def handler(msg: str) -> None:
        if "deprecated" in msg:
            _log.info("MuJoCo: %s", msg)
        else:
            warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


class CSVLogger:
    """Append one row of metrics per iteration to a CSV file (header from the first row's keys).

    ``CSVLogger(None)`` keeps the rows in memory only. ``rows`` always holds everything logged, so a
    notebook can plot without reading the file back. New keys after the first row are an error (a CSV has
    one header); log ``float('nan')`` for a metric that is sometimes missing.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.rows: list[dict[str, float]] = []
        self._fields: list[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self.path.unlink()

    def log(self, row: Mapping[str, Any]) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else
                     float(v.item()) if isinstance(v, Tensor) else v) for k, v in row.items()}
        if self._fields is None:
            self._fields = list(clean)
        elif set(clean) - set(self._fields):
            raise KeyError(
                f"CSVLogger: new metric(s) {sorted(set(clean) - set(self._fields))} after the header "
                f"{self._fields} was written"
            )
        self.rows.append(clean)
        if self.path is not None:
            new = not self.path.exists()
            with self.path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self._fields, restval="nan")
                if new:
                    writer.writeheader()
                writer.writerow(clean)

    def column(self, key: str) -> np.ndarray:
        """All logged values of one metric, as a float array."""
        return np.array([r.get(key, np.nan) for r in self.rows], dtype=float)


def _float64_array(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor (on any device) or array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float64, copy=True)


class RunningMeanStd:
    r"""Running mean and variance of a stream of vectors (Chan et al.'s parallel update), in float64.

    Used for observation normalisation :math:`\tilde s = \mathrm{clip}((s - \mu) / \sqrt{\sigma^2 +
    \epsilon}, -c, c)`. ``state_dict``/``load_state_dict`` save and restore the statistics with a policy
    checkpoint (a policy trained on normalised observations is useless without them). ``training=False``
    freezes the statistics (evaluation).

    Args:
        shape: shape of one vector.
        clip: the clipping bound :math:`c` applied after normalising.
        epsilon: added to the variance.
    """

    def __init__(self, shape: tuple[int, ...] = (), clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 1e-4  # as in OpenAI baselines / SB3: avoids dividing by zero before the first update
        self.clip, self.epsilon, self.training = clip, epsilon, True

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``x [N, *shape]`` into the statistics."""
        x = np.asarray(x, dtype=np.float64)
        b_count = x.shape[0]
        b_mean = x.sum(axis=0) / b_count
        b_var = ((x - b_mean) ** 2).sum(axis=0) / b_count  # (np.var is slower for the tiny batches here)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def update_sequence(self, xs: np.ndarray) -> np.ndarray:
        r"""Fold ``xs [T, N, *shape]`` in one batch ``xs[t]`` at a time and return the variance after each
        update, ``[T, *shape]``: the same numbers as ``T`` calls of :meth:`update`, without the Python loop.

        Uses the pooled sums :math:`\sum x` and :math:`\sum x^2` (with the prior statistics as a pseudo-batch
        of weight ``count``), in float64.
        """
        xs = np.asarray(xs, dtype=np.float64)
        T, n = xs.shape[0], xs.shape[1]
        counts = self.count + n * np.arange(1, T + 1).reshape(T, *([1] * (xs.ndim - 2)))
        s1 = self.count * self.mean + np.cumsum(xs.sum(axis=1), axis=0)
        s2 = self.count * (self.var + self.mean**2) + np.cumsum((xs**2).sum(axis=1), axis=0)
        means = s1 / counts
        variances = np.maximum(s2 / counts - means**2, 0.0)
        self.mean, self.var, self.count = means[-1], variances[-1], float(counts[-1].reshape(-1)[0])
        return variances

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` as float32."""
        out = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Statistics as float64 tensors and plain numbers, so checkpoints load with ``weights_only=True``."""
        return {"mean": torch.tensor(np.asarray(self.mean), dtype=torch.float64),
                "var": torch.tensor(np.asarray(self.var), dtype=torch.float64),
                "count": float(self.count), "clip": float(self.clip), "epsilon": float(self.epsilon)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Accepts tensors (from :meth:`state_dict` or a checkpoint) or NumPy arrays."""
        self.mean = _float64_array(state["mean"])
        self.var = _float64_array(state["var"])
        self.count = float(state["count"])
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])
