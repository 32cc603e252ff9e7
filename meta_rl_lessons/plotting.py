"""Figure helpers shared by the chapters and ``meta-rl plot``: learning curves, mean and spread over seeds.

::

    from meta_rl_lessons import plotting
    fig, ax = plotting.new_figure()
    plotting.learning_curve(ax, [steps_seed0, steps_seed1], [returns_seed0, returns_seed1], label="PPO")
    plotting.label_axes(ax, "env_steps_total", "episode_return")

Curves of several seeds are put on a common x grid (linear interpolation inside each curve's range, no
extrapolation), and drawn as the mean with a shaded band: one standard deviation over seeds by default, or the
minimum-maximum range. The band is omitted for a single run. matplotlib is imported lazily and the ``Agg``
backend is what matplotlib picks on a headless machine, so the helpers work there too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AXIS_LABELS", "axis_label", "label_axes", "learning_curve", "mean_and_spread", "new_figure",
           "plot_runs"]

#: Axis labels, with units, for the columns of the trainers' progress logs.
AXIS_LABELS: dict[str, str] = {
    "iteration": "iteration (count)",
    "env_steps": "environment steps (count)",
    "env_steps_total": "environment steps (count)",
    "wall_time": "wall-clock time (s)",
    "train_time": "training time (s)",
    "episode_return": "mean episode return (sum of rewards)",
    "episode_length": "mean episode length (steps)",
    "return_pre": "mean return before adaptation (sum of rewards per episode)",
    "return_post": "mean return after adaptation (sum of rewards per episode)",
    "trial_return": "mean trial return (sum of rewards per trial)",
    "score": "trial score (mean episode return)",
    "best_score": "best score so far (mean episode return)",
    "kl": "mean KL divergence (nats)",
    "approx_kl": "approximate KL divergence (nats)",
    "entropy": "policy entropy (nats)",
    "learning_rate": "learning rate",
}


def axis_label(column: str) -> str:
    """A readable label with units for a progress column (the column name itself if unknown)."""
    return AXIS_LABELS.get(column, column.replace("_", " "))


def _pyplot():
    import matplotlib.pyplot as plt  # matplotlib falls back to the Agg backend on a headless machine

    return plt


def new_figure(width: float = 6.0, height: float = 4.0):
    """``(fig, ax)`` of the given size in inches."""
    plt = _pyplot()
    return plt.subplots(figsize=(width, height))


def mean_and_spread(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], spread: str = "std",
                    points: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Curves ``(x_i, y_i)`` on a common grid: ``(grid, mean, low, high)``.

    The grid spans the x range every curve covers (from the largest first x to the smallest last x), so
    no curve is extrapolated; NaN values of y are ignored. ``spread``: ``"std"`` (mean +- one standard
    deviation over curves) or ``"minmax"``.

    Raises:
        ValueError: no curves, mismatched lengths, an unknown ``spread``, or curves without a common x range.
    """
    if spread not in ("std", "minmax"):
        raise ValueError(f"spread must be 'std' or 'minmax', got {spread!r}")
    if len(xs) == 0 or len(xs) != len(ys):
        raise ValueError(f"need as many x as y curves (at least one), got {len(xs)} and {len(ys)}")
    clean = []
    for x, y in zip(xs, ys, strict=True):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"x and y of a curve differ in length: {x.shape} and {y.shape}")
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[keep], kind="stable")
        clean.append((x[keep][order], y[keep][order]))
    clean = [(x, y) for x, y in clean if x.size]
    if not clean:
        raise ValueError("every curve is empty (or all NaN)")
    if len(clean) == 1:
        x, y = clean[0]
        return x, y, y, y
    lo, hi = max(x[0] for x, _ in clean), min(x[-1] for x, _ in clean)
    if lo > hi:
        raise ValueError(f"the curves share no x range (largest start {lo}, smallest end {hi})")
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    stack = np.stack([np.interp(grid, x, y) for x, y in clean])
    mean = stack.mean(axis=0)
    if spread == "std":
        sd = stack.std(axis=0, ddof=1)
        return grid, mean, mean - sd, mean + sd
    return grid, mean, stack.min(axis=0), stack.max(axis=0)


def learning_curve(ax: Any, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], label: str | None = None,
                   spread: str = "std", color: Any = None) -> Any:
    """Draw the mean of the curves with a shaded spread (see :func:`mean_and_spread`); returns the line."""
    grid, mean, low, high = mean_and_spread(xs, ys, spread)
    n = len(xs)
    text = None if label is None else (f"{label} (n = {n})" if n > 1 else label)
    (line,) = ax.plot(grid, mean, label=text, color=color)
    if n > 1:
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    return line


def label_axes(ax: Any, x: str, y: str, title: str | None = None) -> None:
    """Axis labels with units from :data:`AXIS_LABELS` (and a light grid)."""
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)


def _group_key(meta: Mapping[str, Any]) -> tuple[str, str, str, str]:
    config = {k: v for k, v in meta.get("config", {}).items() if k not in ("seed", "log_path", "progress")}
    import json

    return (meta.get("algorithm", "?"), meta.get("env", "?"), meta.get("budget", "?"),
            json.dumps(config, sort_keys=True, default=str))


def plot_runs(runs: Sequence[tuple[Any, Mapping[str, Any], Sequence[Mapping[str, Any]]]],
              x: str = "env_steps_total", y: str = "episode_return", spread: str = "std"):
    """A figure of runs ``(path, config.json content, progress rows)``: runs that differ only in their seed
    are one curve (mean and spread over seeds); others are separate curves. Returns the figure."""
    groups: dict[tuple[str, str, str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for _, meta, rows in runs:
        xv = np.array([float(r[x]) for r in rows], dtype=float)
        yv = np.array([float(r[y]) for r in rows], dtype=float)
        groups.setdefault(_group_key(meta), []).append((xv, yv))
    fig, ax = new_figure()
    keys = list(groups)
    distinct_configs = len({k[3] for k in keys}) > 1
    for i, key in enumerate(keys):
        algorithm, env, budget, _ = key
        label = f"{algorithm} on {env} ({budget})" + (f" #{i + 1}" if distinct_configs else "")
        curves = groups[key]
        learning_curve(ax, [c[0] for c in curves], [c[1] for c in curves], label=label, spread=spread)
    label_axes(ax, x, y)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
