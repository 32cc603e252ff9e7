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

For a chapter's own figures: :func:`common_grid` (the per-run curves on one grid, e.g. to read each run's
final value), :func:`step_grid` (best-so-far step curves, as of a search, on one grid), :func:`band` (a mean
line and its min-max band over runs) and :func:`moving_average` (smoothing a noisy learning curve).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AXIS_LABELS", "axis_label", "band", "common_grid", "label_axes", "learning_curve",
           "mean_and_spread", "moving_average", "new_figure", "plot_runs", "step_grid"]

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


def _finite_curves(xs: Sequence[Any], ys: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The curves as float arrays sorted by x, without their NaN points; empty curves dropped."""
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
    return clean


def _on_grid(clean: list[tuple[np.ndarray, np.ndarray]], points: int,
             collapse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = max(x[0] for x, _ in clean), min(x[-1] for x, _ in clean)
    if lo > hi:
        raise ValueError(f"the curves share no x range (largest start {lo}, smallest end {hi})")
    grid = np.linspace(lo, hi, points) if hi > lo or not collapse else np.array([lo])
    return grid, np.stack([np.interp(grid, x, y) for x, y in clean])


def common_grid(xs: Sequence[Any], ys: Sequence[Any], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Curves ``(x_i, y_i)`` interpolated onto one grid: ``(grid [points], curves [runs, points])``.

    The grid spans the x range every curve covers (largest first x to smallest last x; no extrapolation),
    NaN points are dropped first. Unlike :func:`mean_and_spread`, a single curve is interpolated too, and the
    grid always has ``points`` entries (all equal where the common range is one x), so the result always has
    one row per run and one column per grid point (e.g. to pick the run with the best final value).

    Raises:
        ValueError: as :func:`mean_and_spread`.
    """
    return _on_grid(_finite_curves(xs, ys), points, collapse=False)


def step_grid(curves: Sequence[tuple[Any, Any]], points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Step curves ``(x_i, y_i)`` (e.g. a search's compute spent and best score so far) on one grid:
    ``(grid [points], values [runs, points])``.

    Each curve holds its last value until its next point; the grid runs from the largest first x (where every
    curve has a value) to the largest last x; past a curve's last point it keeps its last value, and at grid
    points before a curve's first point (none, by construction) it would be NaN.
    """
    grid = np.linspace(max(float(x[0]) for x, _ in curves), max(float(x[-1]) for x, _ in curves), points)
    values = []
    for x, y in curves:
        y = np.asarray(y, dtype=float)
        idx = np.searchsorted(x, grid, side="right") - 1
        values.append(np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan))
    return grid, np.array(values)


def band(ax: Any, x: Any, curves: Any, fmt: str = "-", *, label: str | None = None, color: Any = None,
         band_label: str | None = None, alpha: float = 0.2, **kwargs: Any) -> Any:
    """Draw the mean over runs of ``curves`` (``[runs, len(x)]``) as a line and the min-max range as a
    shaded band of the same colour (NaN entries ignored); returns the line. ``kwargs`` go to ``ax.plot``."""
    curves = np.asarray(curves, dtype=float)
    (line,) = ax.plot(x, np.nanmean(curves, 0), fmt, color=color, label=label, **kwargs)
    # an explicit colour fills and outlines the band; without one the band takes the line's colour, unoutlined
    paint = {"color": color} if color is not None else {"facecolor": line.get_color()}
    ax.fill_between(x, np.nanmin(curves, 0), np.nanmax(curves, 0), alpha=alpha, label=band_label, **paint)
    return line


def moving_average(values: Any, window: int, *, partial: bool = False) -> np.ndarray:
    """Trailing moving average of a learning curve.

    Args:
        values: ``[n]`` values, one per iteration.
        window: the number of iterations averaged.
        partial: ``False``: only full windows, ``n - window + 1`` values, the ``i``-th the mean of
            ``values[i:i + window]`` (plot them at ``x[window - 1:]``); a NaN spreads over its windows.
            ``True``: ``n`` values, the ``i``-th the mean of the finite values among the last ``window`` up to
            ``i`` (fewer at the start), NaN where there is none.
    """
    x = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not partial:
        return np.convolve(x, np.ones(window) / window, mode="valid")
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        recent = x[max(0, i - window + 1):i + 1]
        if np.isfinite(recent).any():
            out[i] = np.nanmean(recent)
    return out


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
    clean = _finite_curves(xs, ys)
    if len(clean) == 1:
        x, y = clean[0]
        return x, y, y, y
    grid, stack = _on_grid(clean, points)
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
