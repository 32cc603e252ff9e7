"""Trainer utilities: seeding, device selection, progress bars, CSV logs, running normalisation, checks."""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import random
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CSVLogger",
    "anneal_learning_rate",
    "make_adam",
    "RunningMeanStd",
    "check_config_choice",
    "check_config_common",
    "check_config_numbers",
    "check_config_range",
    "check_finite",
    "check_positive",
    "check_positive_ints",
    "check_state",
    "config_state",
    "device_name",
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


def device_name(device: Any) -> str | None:
    """The normalised name of a device the package accepts (``"auto"``, ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``, from a string or a ``torch.device``), or ``None`` for anything else. Only the spelling is
    checked; whether the device exists is :func:`resolve_device`'s business."""
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        return None
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ``"cpu"``; ``"cuda"``/``"cuda:N"`` (checked to exist).

    Raises:
        RuntimeError: CUDA was asked for but torch sees no CUDA device (a CPU-only torch build, or no GPU).
        ValueError: an unknown device string.
    """
    name = device_name(device)
    if name is None:
        raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():  # "cuda" or "cuda:N"
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
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:  # (True is an int)
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def check_config_numbers(config: object, *names: str, allow_zero: bool = False,
                         allow_inf: bool = False) -> None:
    """Raise ``ValueError`` naming ``Class.field`` and its value unless each named field is a number > 0
    (>= 0 with ``allow_zero``; ``inf`` allowed with ``allow_inf``); NaN and bools are refused."""
    for name in names:
        value = getattr(config, name)
        ok = _is_number(value) and (allow_inf or math.isfinite(value))
        ok = ok and (value >= 0 if allow_zero else value > 0)
        if not ok:
            what = ("a number" if allow_inf else "a finite number") + (" >= 0" if allow_zero else " > 0")
            raise ValueError(f"{type(config).__name__}.{name} must be {what}"
                             f"{' (inf: none)' if allow_inf else ''}, got {value!r}")


def check_config_range(config: object, name: str, low: float, high: float, *, low_open: bool = False,
                       high_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``Class.field``, its value and the interval unless the field lies in it
    (``low_open``/``high_open``: the bound is excluded)."""
    value = getattr(config, name)
    ok = _is_number(value) and (low < value if low_open else low <= value) and \
        (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{type(config).__name__}.{name} must lie in {interval}, got {value!r}")


def check_config_choice(config: object, name: str, allowed: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming ``Class.field``, its value and the allowed values unless it is one."""
    allowed = tuple(allowed)
    value = getattr(config, name)
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise ValueError(f"{type(config).__name__}.{name} must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")


def check_config_common(config: Any) -> None:
    """The checks every single-task RL config shares (fields it does not have are skipped): ``env_id`` a
    non-empty string, ``max_episode_steps`` ``None`` or a positive integer, ``hidden_sizes`` positive
    integers, ``activation`` a known name, ``init_log_std`` finite, ``seed`` a non-negative integer,
    ``device`` ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"``, bool flags bools, ``log_path`` ``None`` or a
    path. Also turns ``hidden_sizes`` into a tuple."""
    from meta_rl_lessons.rl.policies import ACTIVATIONS

    cls = type(config).__name__
    fields = {f.name: f for f in dataclasses.fields(config)}
    if "env_id" in fields and not (isinstance(config.env_id, str) and config.env_id):
        raise ValueError(f"{cls}.env_id must be a gymnasium id such as 'CartPole-v1', got {config.env_id!r}")
    if "max_episode_steps" in fields and config.max_episode_steps is not None:
        check_positive_ints(config, "max_episode_steps")
    if "hidden_sizes" in fields:
        sizes = config.hidden_sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable) or any(
                isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in sizes):
            raise ValueError(f"{cls}.hidden_sizes must be a sequence of positive integers (layer widths), "
                             f"got {sizes!r}")
        config.hidden_sizes = tuple(sizes)
    if "activation" in fields:
        check_config_choice(config, "activation", sorted(ACTIVATIONS))
    log_std = getattr(config, "init_log_std", 0.0)
    if not (_is_number(log_std) and math.isfinite(log_std)):
        raise ValueError(f"{cls}.init_log_std must be a finite number, got {config.init_log_std!r}")
    seed = getattr(config, "seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{cls}.seed must be a non-negative integer, got {config.seed!r}")
    if "device" in fields:
        d = config.device
        if device_name(d) is None:
            raise ValueError(f"{cls}.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {d!r}")
    for name, f in fields.items():
        if f.type in ("bool", bool) and not isinstance(getattr(config, name), bool):
            raise ValueError(f"{cls}.{name} must be True or False, got {getattr(config, name)!r}")
    log_path = getattr(config, "log_path", None)
    if not (log_path is None or isinstance(log_path, (str, os.PathLike))):
        raise ValueError(f"{cls}.log_path must be None or a file path, got {config.log_path!r}")


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
    from meta_rl_lessons.serialization import config_diff, to_safe

    if not isinstance(state, Mapping):
        raise ValueError(f"{owner}.load_state_dict needs the dict {owner}.state_dict() returned, got a "
                         f"{type(state).__name__}")
    missing = [k for k in ("config", *keys) if k not in state]
    if missing:
        raise ValueError(f"{owner}.load_state_dict: the state has no {missing} (its keys: {sorted(state)}); "
                         f"it is not what {owner}.state_dict() returns")
    mine, theirs = config_state(config), to_safe(dict(state["config"]))
    differ = [f for f in config_diff(theirs, mine) if f not in PRESENTATION_FIELDS]
    if differ:
        absent = "<absent>"
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
