"""Explanatory diagrams of the book, drawn with matplotlib and written as SVG files.

Each public function draws one diagram and returns a :class:`matplotlib.figure.Figure`; :func:`write_all`
writes them all as ``<name>.svg`` (``tools/make_diagrams.py`` writes them into ``book/_static/diagrams/``,
where the pages reference them). The output is deterministic: the same package and matplotlib version give
byte-identical files, which ``tests/test_diagrams.py`` checks against the committed copies.

::

    from meta_rl_lessons import diagrams
    fig = diagrams.maml_two_paths()          # a Figure, e.g. to look at in a notebook
    diagrams.write_all("book/_static/diagrams")

Conventions: every figure is at most 7.2 in wide (the book's text column), text is 10 pt or larger at that
size, colours are from the Okabe-Ito palette (safe for the common colour-vision deficiencies) and symbols
follow ``book/notation.md``. Text is written as paths, so the files render the same in every browser.
The module imports only numpy and matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon

__all__ = ["DIAGRAMS", "maml_trpo_iteration", "maml_two_paths", "meta_optimization_levels",
           "pbt_exploit_explore", "render_png", "rl2_trial", "successive_halving", "write_all"]

# Okabe-Ito colours (Okabe and Ito, "Color universal design", 2008).
BLACK = "#000000"
ORANGE = "#E69F00"
SKY = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#666666"

#: Matplotlib settings every diagram is drawn and saved under.
STYLE: dict[str, object] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "mathtext.fontset": "dejavusans",
    "svg.fonttype": "path",
    "svg.hashsalt": "meta-rl-lessons",
    "svg.image_inline": True,
    "axes.linewidth": 0.8,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "path.simplify": False,
}

_METADATA = {"Date": None, "Creator": "meta_rl_lessons.diagrams (matplotlib)"}


def _tint(color: str, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white: ``amount`` 0 is white, 1 is the colour itself."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    return tuple(float(c) for c in 1.0 - amount * (1.0 - rgb))


def _canvas(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure with one axes spanning it, in inches: (0, 0) at the bottom left, (width, height) top right."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def _box(ax: Axes, x: float, y: float, w: float, h: float, *, fc: object = "white", ec: object = BLACK,
         lw: float = 1.0, ls: str = "-", radius: float = 0.06, zorder: float = 1) -> FancyBboxPatch:
    """A rounded box with bottom-left corner (x, y), width w and height h (inches)."""
    patch = FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}", fc=fc, ec=ec,
                           lw=lw, ls=ls, zorder=zorder)
    ax.add_patch(patch)
    return patch


def _text(ax: Axes, x: float, y: float, s: str, *, size: float = 10, color: object = BLACK,
          ha: str = "center", va: str = "center", weight: str = "normal", zorder: float = 5, **kw):
    return ax.text(x, y, s, fontsize=size, color=color, ha=ha, va=va, fontweight=weight, zorder=zorder, **kw)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *, color: object = BLACK,
           lw: float = 1.3, ls: str = "-", rad: float = 0.0, head: float = 9, shrink: float = 0.0,
           zorder: float = 3, style: str = "-|>") -> FancyArrowPatch:
    """An arrow from ``start`` to ``end``; ``rad`` bends it (arc3 connection)."""
    arrow = FancyArrowPatch(start, end, arrowstyle=f"{style},head_length={head / 20},head_width={head / 40}"
                            if style != "-" else "-", connectionstyle=f"arc3,rad={rad}", color=color, lw=lw,
                            ls=ls, shrinkA=shrink, shrinkB=shrink, zorder=zorder, mutation_scale=20,
                            capstyle="butt", joinstyle="miter")
    ax.add_patch(arrow)
    return arrow


def _poly_arrow(ax: Axes, points: Sequence[tuple[float, float]], *, color: object = BLACK, lw: float = 1.3,
                ls: str = "-", head: float = 9, zorder: float = 3) -> None:
    """A polyline through ``points`` with an arrow head at the last point."""
    xs, ys = zip(*points[:-1], strict=True)
    ax.plot(xs, ys, color=color, lw=lw, ls=ls, zorder=zorder, solid_capstyle="butt", dash_capstyle="butt")
    _arrow(ax, points[-2], points[-1], color=color, lw=lw, ls="-", head=head, zorder=zorder)


def _pieces(ax: Axes, x: float, y: float, pieces: Sequence[tuple[str, object]], *, size: float = 10,
            ha: str = "left", va: str = "baseline") -> float:
    """Write text ``pieces`` ``[(text, colour), ...]`` one after another on one line; returns the end x.

    ``ha="center"`` centres the whole line on ``x``. Widths are measured with the Agg renderer.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_inch = fig.dpi_scale_trans.inverted()
    texts = [ax.text(0, y, s, fontsize=size, color=c, ha="left", va=va, zorder=5) for s, c in pieces]
    widths = []
    for t in texts:
        bb = t.get_window_extent(renderer).transformed(to_inch)
        widths.append(bb.width)
    total = float(sum(widths))
    cursor = x - total / 2 if ha == "center" else x
    for t, w in zip(texts, widths, strict=True):
        t.set_x(cursor)
        cursor += w
    return cursor


# ----------------------------------------------------------------------------------------------------------
# 1. The three levels of meta-optimization (intro)
# ----------------------------------------------------------------------------------------------------------

def meta_optimization_levels() -> Figure:
    r"""The three levels of meta-optimization, as nested loops around an RL learner (the book's introduction).

    Innermost, the RL learner updates the policy parameters :math:`\theta` from the rewards of its own
    episodes :math:`\tau \sim \pi_\theta`. Around it, a meta-learner learns what the learner starts from or
    how it learns (MAML's initial :math:`\theta`, RL²'s recurrent weights) across a distribution of tasks
    :math:`p(\mathcal{T})`, judged by the return after adaptation. Outermost, the adaptive-DRL
    meta-optimizer (random search, successive halving, Hyperband, PBT, meta-gradients; chapter "Adaptive
    deep RL") chooses the network and the hyperparameters, judged by the score of the trained agent. Each
    level sends a setting down (solid arrow) and receives a score back (dashed arrow).
    """
    W, H = 7.2, 5.4
    fig, ax = _canvas(W, H)
    levels = [
        # x, y, w, h, colour, title, lines
        (0.05, 0.05, 7.1, 5.3, ORANGE, "Adaptive DRL: the meta-optimizer",
         ["optimizes: the architecture and the hyperparameters",
          r"(width, depth, step size $\alpha$, discount $\gamma$, GAE $\lambda$, clip $\epsilon$, ...)",
          "by: random search, successive halving, Hyperband, PBT, meta-gradients"]),
        (0.3, 0.3, 6.6, 3.7, SKY, "Meta-learning: the meta-learner",
         ["optimizes: what the learner starts from, or how it learns,",
          r"across tasks $\mathcal{T}_i \sim p(\mathcal{T})$",
          r"MAML: the initialization $\theta$;  RL²: the recurrent policy's weights $\theta$"]),
        (0.55, 0.55, 6.1, 2.05, GREEN, "RL: the learner, on one task",
         [r"optimizes: the policy parameters, $\theta \to \theta'$",
          r"(in RL², the hidden state $h$ adapts, with $\theta$ fixed)"]),
    ]
    for x, y, w, h, col, title, lines in levels:
        _box(ax, x, y, w, h, fc=_tint(col, 0.16), ec=col, lw=1.8, radius=0.1)
        top = y + h
        _text(ax, x + 0.15, top - 0.22, title, ha="left", weight="bold", size=11)
        for k, line in enumerate(lines):
            _text(ax, x + 0.15, top - 0.48 - 0.24 * k, line, ha="left")

    # innermost: the agent-environment loop
    _box(ax, 0.85, 0.8, 1.75, 0.75, fc="white", ec=GREEN, lw=1.4)
    _text(ax, 1.725, 1.3, r"policy $\pi_\theta(a \mid s)$")
    _text(ax, 1.725, 1.02, "a neural network", color=GREY)
    _box(ax, 3.7, 0.8, 1.6, 0.75, fc="white", ec=GREEN, lw=1.4)
    _text(ax, 4.5, 1.3, r"task $\mathcal{T}_i$: an MDP")
    _text(ax, 4.5, 1.02, "environment", color=GREY)
    _arrow(ax, (2.6, 1.33), (3.7, 1.33))
    _text(ax, 3.15, 1.42, r"$a_t$", va="bottom")
    _arrow(ax, (3.7, 1.0), (2.6, 1.0))
    _text(ax, 3.15, 0.92, r"$s_{t+1},\ r_t$", va="top")
    _text(ax, 5.5, 1.17, "signal: the rewards\nof its episodes\n" + r"$\tau \sim \pi_\theta$", ha="left",
          linespacing=1.3)

    # between levels: a setting goes down (solid), a score comes back up (dashed)
    def down_up(border: float, col: str, down: Sequence[str], up: Sequence[str]) -> None:
        xd, xu, y_top, y_bottom = 4.95, 5.2, border + 0.22, border - 0.8
        _arrow(ax, (xd, y_top), (xd, y_bottom), color=col, lw=2.0)
        _poly_arrow(ax, [(xu, y_bottom), (xu, y_top - 0.14), (xu, y_top)], color=col, lw=2.0,
                    ls=(0, (3, 1.5)))
        for k, line in enumerate([r"$\downarrow$ " + down[0], "    " + down[1], r"$\uparrow$ " + up[0],
                                  "    " + up[1]]):
            _text(ax, xu + 0.12, border - 0.18 - 0.2 * k - 0.05 * (k >= 2), line, ha="left")

    down_up(4.0, ORANGE, ["sets: architecture,", "hyperparameters"],
            ["signal: score of", "the trained agent"])
    down_up(2.6, BLUE, [r"sets: the $\theta$", "to start from"], ["signal: return", "after adaptation"])
    return fig


# ----------------------------------------------------------------------------------------------------------
# 2. MAML for RL: the two gradient paths back to theta (chapter "MAML for RL", eq. maml-rl-score-term)
# ----------------------------------------------------------------------------------------------------------

def maml_two_paths() -> Figure:
    r"""MAML for RL: the forward computation and the two gradient paths from the outer objective back to θ.

    Forward (black): the meta-parameters :math:`\theta` sample pre-update episodes
    :math:`\mathcal{D} \sim \pi_\theta`, the inner step gives
    :math:`\theta' = \theta + \alpha\,\hat g(\theta, \mathcal{D})`, post-update episodes
    :math:`\mathcal{D}' \sim \pi_{\theta'}` estimate the outer objective :math:`F(\theta')`. Backward, the
    two terms of the meta-gradient (chapter "MAML for RL", the equation labelled ``maml-rl-score-term``):
    path (a), blue, through the inner update with the Jacobian
    :math:`\partial\theta'/\partial\theta = I + \alpha\nabla_\theta\hat g`; path (b), vermillion and dashed,
    through the sampling distribution of :math:`\mathcal{D}`: the score
    :math:`\nabla_\theta\log\pi_\theta(\mathcal{D})` times :math:`F(\theta')`, the term that first-order
    and naive implementations drop. The meta-gradient, with both terms in their colours, is written below.
    """
    W, H = 7.2, 4.15
    fig, ax = _canvas(W, H)
    y0, bh = 2.05, 0.95
    top = y0 + bh
    nodes = [  # centre x, width, lines
        (0.55, 1.0, ["meta-", "parameters", r"$\theta$"]),
        (1.9, 1.3, ["pre-update", "episodes", r"$\mathcal{D} \sim \pi_\theta$"]),
        (3.625, 1.75, ["inner step", r"$\theta' = \theta + \alpha\,\hat g(\theta, \mathcal{D})$"]),
        (5.325, 1.25, ["post-update", "episodes", r"$\mathcal{D}' \sim \pi_{\theta'}$"]),
        (6.65, 1.0, ["outer", "objective", r"$F(\theta')$"]),
    ]
    for cx, w, lines in nodes:
        _box(ax, cx - w / 2, y0, w, bh, fc="white", ec=BLACK, lw=1.3)
        for k, line in enumerate(lines):
            _text(ax, cx, y0 + bh / 2 + 0.25 * ((len(lines) - 1) / 2 - k), line)
    for (ca, wa, _), (cb, wb, _) in zip(nodes[:-1], nodes[1:], strict=True):
        _arrow(ax, (ca + wa / 2, y0 + bh / 2), (cb - wb / 2, y0 + bh / 2), lw=1.5)

    # path (a): through the inner update, above the boxes
    ya = top + 0.42
    _poly_arrow(ax, [(6.65, top), (6.65, ya), (3.95, ya), (3.95, top)], color=BLUE, lw=2.2, head=11)
    _poly_arrow(ax, [(3.3, top), (3.3, ya), (0.55, ya), (0.55, top)], color=BLUE, lw=2.2, head=11)
    _text(ax, 5.3, ya + 0.08, r"$\nabla F(\theta')$", color=BLUE, va="bottom")
    _text(ax, 1.92, ya + 0.08, r"$(\partial\theta'/\partial\theta)^{\top}$, with "
          r"$\partial\theta'/\partial\theta = I + \alpha\,\nabla_\theta\hat g$", color=BLUE, va="bottom")
    _text(ax, 0.1, H - 0.2, "(a) through the inner update", color=BLUE, ha="left", weight="bold")

    # path (b): through the sampling distribution of the pre-update episodes, below the boxes
    yb = y0 - 0.42
    dashes = (0, (4, 1.6))
    _poly_arrow(ax, [(6.65, y0), (6.65, yb), (2.2, yb), (2.2, y0)], color=VERMILLION, lw=2.2, ls=dashes,
                head=11)
    _poly_arrow(ax, [(1.6, y0), (1.6, yb), (0.55, yb), (0.55, y0)], color=VERMILLION, lw=2.2, ls=dashes,
                head=11)
    _text(ax, 4.4, yb - 0.08, r"$F(\theta')$: the post-update return weights the score", color=VERMILLION,
          va="top")
    _text(ax, 1.08, yb - 0.08, r"$\nabla_\theta \log \pi_\theta(\mathcal{D})$", color=VERMILLION, va="top")
    _text(ax, 0.1, 1.02, "(b) through the sampling of the pre-update episodes: the term that first-order",
          color=VERMILLION, ha="left", weight="bold")
    _text(ax, 0.1, 0.78, r"MAML and implementations that differentiate only through $\theta'$ drop",
          color=VERMILLION, ha="left", weight="bold")

    # the meta-gradient, both terms in their colours
    _pieces(ax, W / 2, 0.2, [
        (r"$\nabla_\theta J \;=\; \mathbb{E}[$", BLACK),
        (r"$(\partial\theta'/\partial\theta)^{\top}\,\nabla F(\theta')$", BLUE),
        (r"$] \;+\; \mathbb{E}[$", BLACK),
        (r"$\nabla_\theta \log \pi_\theta(\mathcal{D})\; F(\theta')$", VERMILLION),
        (r"$]$", BLACK)], size=12, ha="center")
    return fig


# ----------------------------------------------------------------------------------------------------------
# Registry and writer
# ----------------------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------------------
# 3. One MAML-TRPO meta-iteration (chapter "MAML for RL", eqs. maml-rl-outer and meta-kl-hessian)
# ----------------------------------------------------------------------------------------------------------

def _diamond(ax: Axes, cx: float, cy: float, w: float, h: float, *, fc: object = "white",
             ec: object = BLACK, lw: float = 1.3) -> None:
    ax.add_patch(Polygon([(cx - w / 2, cy), (cx, cy + h / 2), (cx + w / 2, cy), (cx, cy - h / 2)],
                         closed=True, fc=fc, ec=ec, lw=lw, zorder=1))


def maml_trpo_iteration() -> Figure:
    r"""One meta-iteration of MAML-TRPO as a flow chart (chapter "MAML for RL", section "MAML-TRPO").

    Sample a meta-batch of :math:`K` tasks; for every task (all stepped together) sample pre-update episodes
    :math:`\mathcal{D}_k` with :math:`\pi_\theta`, adapt to :math:`\theta'_k`, sample post-update episodes
    :math:`\mathcal{D}'_k` with :math:`\pi_{\theta'_k}`; form the meta-gradient :math:`g` of the post-update
    surrogate (eq. ``maml-rl-outer``); solve :math:`Hs = g` by conjugate gradient with the meta-KL's Hessian
    :math:`H = \frac1K\sum_k J_k^\top F_k J_k` (eq. ``meta-kl-hessian``); scale to the full step
    :math:`\Delta`; backtrack along it, re-adapting for every candidate, until the surrogate improves and the
    mean KL is within :math:`\delta`; update :math:`\theta`.
    """
    W, H = 7.2, 7.05
    fig, ax = _canvas(W, H)
    cx = 3.45
    sample_fc, solve_fc, search_fc = _tint(SKY, 0.22), _tint(ORANGE, 0.22), _tint(GREEN, 0.2)

    def step(y: float, w: float, lines: Sequence[str], fc: object, x: float = cx,
             h: float | None = None) -> tuple[float, float]:
        h = h if h is not None else 0.2 + 0.24 * len(lines)
        _box(ax, x - w / 2, y - h / 2, w, h, fc=fc, ec=BLACK, lw=1.2)
        for k, line in enumerate(lines):
            _text(ax, x, y + 0.24 * ((len(lines) - 1) / 2 - k), line)
        return y - h / 2, y + h / 2

    def group(x: float, y: float, w: float, h: float, title: str, ty: float, tx: float | None = None) -> None:
        _box(ax, x, y, w, h, fc="none", ec=GREY, lw=1.1, ls=(0, (4, 2)), radius=0.08)
        _text(ax, x + 0.1 if tx is None else tx, ty, title, ha="left", color=GREY)

    # 1. tasks
    b1, _ = step(6.65, 4.4, [r"sample a meta-batch of $K$ tasks $\mathcal{T}_k \sim p(\mathcal{T})$"],
                 sample_fc)
    # 2. per task, all tasks stepped together
    gy = 5.58
    group(0.45, gy - 0.5, 6.0, 1.07, "for every task $k$ (all $K$ tasks stepped together)", gy + 0.45, 1.6)
    per_task = [(1.45, 1.6, [r"sample $\mathcal{D}_k$", r"with $\pi_\theta$"]),
                (3.45, 2.0, ["adapt:", r"$\theta'_k = \theta + \alpha\,\hat g(\theta, \mathcal{D}_k)$"]),
                (5.45, 1.6, [r"sample $\mathcal{D}'_k$", r"with $\pi_{\theta'_k}$"])]
    for x, w, lines in per_task:
        step(gy, w, lines, sample_fc, x=x, h=0.68)
    _arrow(ax, (2.25, gy), (2.45, gy))
    _arrow(ax, (4.45, gy), (4.65, gy))
    _arrow(ax, (1.45, b1), (1.45, gy + 0.34))
    # 3-5. the trust-region step
    b3, t3 = step(4.45, 5.4, [r"meta-gradient $g = \nabla_\theta L(\theta)$ of the post-update surrogate",
                              "(the estimator decides whether the pre-update sampling term is in it)"],
                  solve_fc)
    _arrow(ax, (cx, gy - 0.34), (cx, t3))
    b4, t4 = step(3.47, 5.4, [r"conjugate gradient: solve $H s = g$ with "
                              r"$H = \mathrm{mean}_k\; J_k^{\top} F_k J_k$",
                              r"$J_k = I - \alpha\nabla^2_\theta L^{\mathrm{in}}_k(\theta)$,  "
                              r"$F_k$: the Fisher matrix at $\theta'_k$"], solve_fc)
    _arrow(ax, (cx, b3), (cx, t4))
    b5, t5 = step(2.63, 3.6, [r"full step $\Delta = \sqrt{2\delta / (s^{\top} H s)}\; s$"], solve_fc)
    _arrow(ax, (cx, b4), (cx, t5))
    # 6. backtracking line search
    ly = 1.3
    group(0.05, ly - 0.72, 6.6, 1.57, "backtracking line search", ly - 0.58)
    candidate = ["candidate", r"$\tilde\theta = \theta + 0.8^{j}\,\Delta$"]
    _, cand_top = step(ly, 1.7, candidate, search_fc, x=0.95, h=0.68)
    readapt = [r"re-adapt: $\theta'_k(\tilde\theta)$", r"from the same $\mathcal{D}_k$"]
    step(ly, 1.85, readapt, search_fc, x=2.85, h=0.68)
    dx, dw, dh = 5.25, 2.5, 0.9
    _diamond(ax, dx, ly, dw, dh, fc=search_fc)
    _text(ax, dx, ly + 0.12, r"$L(\tilde\theta) > L(\theta)$ and")
    _text(ax, dx, ly - 0.13, r"mean KL $\bar D \leq \delta$ ?")
    _arrow(ax, (1.8, ly), (1.925, ly))
    _arrow(ax, (3.775, ly), (dx - dw / 2, ly))
    _poly_arrow(ax, [(cx, b5), (cx, 2.28), (0.7, 2.28), (0.7, cand_top)])
    # "no": shrink and try again
    _poly_arrow(ax, [(dx, ly + dh / 2), (dx, ly + 0.55), (1.3, ly + 0.55), (1.3, cand_top)], color=VERMILLION,
                lw=1.5)
    _text(ax, 3.3, ly + 0.6,
          r"no: $j \leftarrow j + 1$ (shrink the step by 0.8; after 15 tries, keep $\theta$)",
          color=VERMILLION, va="bottom")
    # "yes": update
    step(0.25, 1.7, [r"$\theta \leftarrow \tilde\theta$"], _tint(GREEN, 0.45), x=dx, h=0.38)
    _arrow(ax, (dx, ly - dh / 2), (dx, 0.44), color=GREEN, lw=1.6)
    _text(ax, dx + 0.1, 0.6, "yes", color=GREEN, ha="left", va="center", weight="bold")
    # next meta-iteration
    _poly_arrow(ax, [(dx + 0.85, 0.25), (6.95, 0.25), (6.95, 6.65), (cx + 2.2, 6.65)], color=GREY, lw=1.4)
    _text(ax, 6.87, 3.5, "next meta-iteration", rotation=90, color=GREY, ha="right")
    return fig


# ----------------------------------------------------------------------------------------------------------
# 4. The RL² trial (chapter "RL²", eq. rl2-input), in the style of Duan et al. (2016), figure 1
# ----------------------------------------------------------------------------------------------------------

def rl2_trial() -> Figure:
    r"""Two RL² trials of two episodes each, in the style of Duan et al. (2016), figure 1 (chapter "RL²").

    A row of recurrent (GRU) cells, one per time step. Each cell reads :math:`x_t = (s_t, a_{t-1}, r_{t-1},
    d_{t-1})` (eq. ``rl2-input``) and its previous hidden state :math:`h_{t-1}`, and outputs the action
    :math:`a_t`. Within a trial (one task :math:`\mathcal{M}`) the hidden state is carried across the
    episode boundary, where :math:`d_{t-1} = 1` tells the policy that an episode ended; between trials the
    task changes and the hidden state is reset to zero, with the previous action, reward and done flag
    zeroed. Episodes are drawn with :math:`T = 2` steps.
    """
    W, H = 7.2, 4.4
    fig, ax = _canvas(W, H)
    cells = [1.15, 1.8, 2.65, 3.3, 4.6, 5.25, 6.1, 6.75]
    cw, ch, cy = 0.46, 0.46, 2.55  # cell width, height, bottom
    trial_col = [_tint(SKY, 0.35), _tint(ORANGE, 0.35)]
    ep_boundaries = [(cells[1] + cells[2]) / 2, (cells[5] + cells[6]) / 2]
    trial_boundary = (cells[3] + cells[4]) / 2

    # boundaries
    for xb in ep_boundaries:
        ax.plot([xb, xb], [1.05, 3.95], color=GREY, lw=1.2, ls=(0, (1.5, 2)), zorder=0)
    ax.plot([trial_boundary] * 2, [1.05, 4.35], color=BLACK, lw=2.0, zorder=0)
    # trial and episode labels
    for k, (lo, hi) in enumerate([(cells[0], cells[3]), (cells[4], cells[7])]):
        x0, x1 = lo - cw / 2 - 0.12, hi + cw / 2 + 0.12
        _box(ax, x0, 3.98, x1 - x0, 0.34, fc=trial_col[k], ec="none", radius=0.05)
        _text(ax, (x0 + x1) / 2, 4.15, f"trial {k + 1}: task " + rf"$\mathcal{{M}}_{k + 1}$", weight="bold")
        for e in range(2):
            _text(ax, (cells[4 * k + 2 * e] + cells[4 * k + 2 * e + 1]) / 2, 3.75, f"episode {e + 1}")

    # inputs: a small table under the cells, row headers on the left
    rows = [r"$s_t$", r"$a_{t-1}$", r"$r_{t-1}$", r"$d_{t-1}$"]
    row_y = [1.95, 1.7, 1.45, 1.2]
    for label, y in zip(rows, row_y, strict=True):
        _text(ax, 0.1, y, label, ha="left")
    _text(ax, 0.1, 2.25, "input", ha="left", color=GREY)
    _text(ax, 0.1, 3.35, "action", ha="left", color=GREY)
    for i, x in enumerate(cells):
        t = i % 4
        trial = i // 4
        col = [f"$s_{t}$", f"$a_{t - 1}$" if t else "0", f"$r_{t - 1}$" if t else "0", "1" if t == 2 else "0"]
        for k, (val, y) in enumerate(zip(col, row_y, strict=True)):
            special = (k == 3 and t == 2)
            zero_at_trial_start = (t == 0 and k > 0)
            _text(ax, x, y, val, color=BLUE if special else (VERMILLION if zero_at_trial_start else BLACK),
                  weight="bold" if special or zero_at_trial_start else "normal")
        _arrow(ax, (x, 2.1), (x, cy), lw=1.1, head=7)
        _box(ax, x - cw / 2, cy, cw, ch, fc=trial_col[trial], ec=BLACK, lw=1.2, radius=0.05)
        _text(ax, x, cy + ch / 2, "GRU", size=10)
        _arrow(ax, (x, cy + ch), (x, 3.22), lw=1.1, head=7)
        _text(ax, x, 3.35, f"$a_{t}$")
    # hidden-state arrows
    for i in range(len(cells) - 1):
        if i == 3:
            continue
        crossing = i in (1, 5)
        _arrow(ax, (cells[i] + cw / 2, cy + ch / 2), (cells[i + 1] - cw / 2, cy + ch / 2),
               color=BLUE if crossing else BLACK, lw=2.4 if crossing else 1.3)
        if crossing:
            _text(ax, cells[i] + cw / 2 + 0.1, cy + ch / 2 + 0.08, r"$h$", color=BLUE, va="bottom")
    for x in (cells[0], cells[4]):
        _text(ax, x - cw / 2 - 0.22, cy + ch / 2, r"$0$", ha="right", color=VERMILLION, weight="bold")
        _arrow(ax, (x - cw / 2 - 0.2, cy + ch / 2), (x - cw / 2, cy + ch / 2), color=VERMILLION, lw=1.6)
    # legend
    ax.plot([0.15, 0.55], [0.72, 0.72], color=GREY, lw=1.2, ls=(0, (1.5, 2)))
    _text(ax, 0.65, 0.72, r"episode boundary: $h$ is carried over (blue), and $d_{t-1} = 1$ says an episode "
          "ended", ha="left")
    ax.plot([0.35, 0.35], [0.3, 0.56], color=BLACK, lw=2.0)
    _text(ax, 0.65, 0.42, "trial boundary: a new task; " + r"$h$, $a_{t-1}$, $r_{t-1}$, $d_{t-1}$"
          + " restart at 0 (vermillion)", ha="left")
    _text(ax, 0.65, 0.12, r"episodes drawn with $T = 2$ steps; $t$ counts the steps of the trial", ha="left",
          color=GREY)
    return fig


# ----------------------------------------------------------------------------------------------------------
# 5. Successive halving and Hyperband (chapter "Adaptive deep RL", eq. eq-adaptive-sh)
# ----------------------------------------------------------------------------------------------------------

def _hyperband_brackets(max_budget: int, eta: int) -> list[list[tuple[int, int]]]:
    """Hyperband's brackets ``[[(num_configs, budget), ...], ...]``, budgets in units of the smallest one."""
    s_max = int(round(np.log(max_budget) / np.log(eta)))
    brackets = []
    for s in range(s_max, -1, -1):
        n = int(np.ceil((s_max + 1) / (s + 1) * eta ** s))
        r = max_budget // eta ** s
        rungs = []
        while True:
            rungs.append((n, r))
            if r >= max_budget:
                break
            n, r = max(1, n // eta), r * eta
        brackets.append(rungs)
    return brackets


def successive_halving() -> Figure:
    r"""Successive halving with :math:`\eta = 3` and Hyperband's brackets (chapter "Adaptive deep RL").

    Left: 27 configurations (rows, sorted by how far they got) against the budget each one has received
    (rung boundaries :math:`B_k = r\eta^k`, eq. ``eq-adaptive-sh``, log scale). After each rung the best
    :math:`1/\eta` continue from their checkpoints with :math:`\eta` times the budget; every rung costs about
    the same. Right: Hyperband's brackets for a largest budget of :math:`27r`: from many configurations
    started with little budget (aggressive) to a few started with the whole budget (no early stopping), a
    hedge on how well early scores predict late ones.
    """
    eta, n0 = 3, 27
    fig = Figure(figsize=(7.2, 3.9))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.075, 0.15, 0.5, 0.62))
    sizes = [n0 // eta ** k for k in range(4)]  # 27, 9, 3, 1
    shade = [0.35, 0.55, 0.78, 1.0]
    for row in range(n0):
        y = n0 - 1 - row
        reached = max(k for k in range(4) if row < sizes[k])
        for k in range(reached + 1):
            ax.barh(y, 1.0, left=k, height=0.72, color=_tint(BLUE, shade[k]), ec="white", lw=0.4)
        if reached < 3:
            ax.plot(reached + 1 + 0.12, y, marker="x", ms=4.5, mew=1.3, color=VERMILLION, clip_on=False)
        else:
            ax.plot(reached + 1 + 0.14, y, marker="*", ms=10, color=ORANGE, mec=BLACK, mew=0.6, clip_on=False)
    for k in range(4):
        cost = sizes[k] * (eta ** k - (eta ** (k - 1) if k else 0))
        ax.text(k + 0.5, n0 + 3.9, f"{sizes[k]} × " + (f"{eta ** k}r" if k else "r"), ha="center",
                va="center", fontsize=10, weight="bold")
        ax.text(k + 0.5, n0 + 1.6, f"cost {cost}r", ha="center", va="center", fontsize=10, color=GREY)
    ax.set_xlim(0, 4.3)
    ax.set_ylim(-0.8, n0 - 0.2)
    ax.set_xticks(range(5), ["0", "r", "3r", "9r", "27r"])
    ax.set_yticks([])
    ax.set_xlabel(r"budget per configuration (log scale), $B_k = r\eta^k$")
    ax.set_ylabel("27 configurations, by rung reached")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.text(0.02, 0.955,
             r"Successive halving, $\eta = 3$: the best $1/\eta$ go on with $\eta\times$ the budget",
             fontsize=11, weight="bold", ha="left", va="center")
    ax.text(1.35, 8.5, "×  stopped after this rung", fontsize=10, va="center", color=VERMILLION)
    ax.text(1.35, 6.0, "★  the winner, trained with 27r", fontsize=10, va="center")
    ax.text(1.35, 3.5, "each rung costs about the same", fontsize=10, va="center", color=GREY)

    # Hyperband brackets
    hb = fig.add_axes((0.66, 0.15, 0.32, 0.62))
    brackets = _hyperband_brackets(27, eta)
    for b, rungs in enumerate(brackets):
        y = len(brackets) - 1 - b
        xs = [np.log(r) / np.log(eta) for _, r in rungs]
        hb.plot(xs, [y] * len(xs), color=GREY, lw=1.2, zorder=1)
        for (n, _), x in zip(rungs, xs, strict=True):
            hb.scatter([x], [y], s=330, color=_tint(BLUE, 0.25 + 0.75 * min(1.0, x / 3)), ec=BLACK, lw=0.8,
                       zorder=2)
            hb.text(x, y, str(n), ha="center", va="center", fontsize=10, zorder=3,
                    color="white" if x >= 2 else BLACK)
    hb.set_xlim(-0.5, 3.5)
    hb.set_ylim(-0.6, len(brackets) - 0.4)
    hb.set_xticks(range(4), ["r", "3r", "9r", "27r"])
    hb.set_yticks(range(len(brackets)), [f"s = {len(brackets) - 1 - y}" for y in range(len(brackets))][::-1])
    hb.set_xlabel("budget per configuration")
    for side in ("top", "right"):
        hb.spines[side].set_visible(False)
    fig.text(0.63, 0.855, "Hyperband: brackets trade the\nnumber of configurations\nagainst the start budget",
             fontsize=10, ha="left", va="center", linespacing=1.2)
    return fig


# ----------------------------------------------------------------------------------------------------------
# 6. Population-based training (chapter "Adaptive deep RL", eq. eq-adaptive-pbt)
# ----------------------------------------------------------------------------------------------------------

def _pbt_population(num_workers: int = 4, generations: int = 6, steps: int = 20, seed: int = 3):
    """A small, deterministic PBT run on a made-up learning problem, for the diagram only.

    Returns ``(t, score, h, events)``: ``t`` ``[G * steps + 1]``, ``score`` and ``log10 h`` ``[num_workers,
    G * steps + 1]``, and ``events`` ``[(time index, member, source)]`` of exploit steps.
    """
    rng = np.random.default_rng(seed)
    total = generations * steps
    t = np.linspace(0.0, generations, total + 1)
    log_h = np.empty((num_workers, total + 1))
    score = np.empty((num_workers, total + 1))
    log_h[:, 0] = np.array([-1.9, -2.55, -3.3, -2.95])[:num_workers]
    score[:, 0] = 0.02 * rng.random(num_workers)
    events = []
    for i in range(1, total + 1):
        best = -2.0 - 0.22 * t[i]  # the best step size shrinks as training goes on
        rate = 0.9 * np.exp(-((log_h[:, i - 1] - best) ** 2) / 0.35)
        gain = rate * (1.0 - score[:, i - 1]) / steps * (1.0 + 0.25 * rng.standard_normal(num_workers))
        score[:, i] = score[:, i - 1] + np.clip(gain, 0.0, None)
        log_h[:, i] = log_h[:, i - 1]
        if i % steps == 0 and i < total:
            order = np.argsort(score[:, i])
            low, high = int(order[0]), int(order[-1])
            events.append((i, low, high))
            score[low, i] = score[high, i]
            log_h[low, i] = log_h[high, i] + np.log10(1.2 if rng.random() < 0.5 else 0.8)
    return t, score, log_h, events


def pbt_exploit_explore() -> Figure:
    r"""Population-based training over time: exploit (copy) and explore (perturb) at every ready point.

    Four workers train in parallel (top: score against training steps; bottom: each worker's step size
    :math:`h` on a log scale). At every ready point (dotted) the population is ranked; the worst member
    *exploits* the best one, copying its weights :math:`\theta` and hyperparameters :math:`h` (the jump,
    arrow), then *explores* by multiplying :math:`h` by 0.8 or 1.2 (diamond), eq. ``eq-adaptive-pbt``. The
    step sizes form a schedule that no single fixed value gives. The learning problem is made up for the
    picture (the best step size shrinks during training); chapter "Adaptive deep RL" runs the real thing.
    """
    t, score, log_h, events = _pbt_population()
    colours = [ORANGE, SKY, GREEN, PURPLE]
    fig = Figure(figsize=(7.2, 4.6))
    FigureCanvasAgg(fig)
    top = fig.add_axes((0.11, 0.43, 0.86, 0.44))
    bottom = fig.add_axes((0.11, 0.1, 0.86, 0.26), sharex=top)
    for w, col in enumerate(colours):
        # one segment per stretch of training between this worker's own exploit steps
        cuts = [i for i, low, _ in events if low == w]
        for start, stop in zip([0, *cuts], [*cuts, len(t) - 1], strict=True):
            y = score[w, start:stop + 1].copy()
            if stop in cuts:
                y[-1] = score[w, stop - 1]  # the score just before the copy
            top.plot(t[start:stop + 1], y, color=col, lw=2.0)
        bottom.step(t, 10 ** log_h[w], where="post", color=col, lw=2.0)
    for i, low, high in events:
        _arrow(top, (t[i], score[low, i - 1]), (t[i], score[high, i]), color=colours[low], lw=1.6, head=8)
        top.plot(t[i], score[high, i], marker="D", ms=7, mfc="white", mec=colours[low], mew=1.6, zorder=4)
        bottom.plot(t[i], 10 ** log_h[low, i], marker="D", ms=7, mfc="white", mec=colours[low], mew=1.6,
                    zorder=4)
        for a in (top, bottom):
            a.axvline(t[i], color=GREY, lw=1.0, ls=(0, (1.5, 2)), zorder=0)
    top.set_ylabel("score")
    bottom.set_ylabel("step size $c$")
    bottom.set_yscale("log")
    bottom.set_xlabel("training steps")
    top.set_ylim(0, 1.05)
    top.set_xlim(0, t[-1])
    top.set_xticks(range(7))
    top.tick_params(labelbottom=False)
    bottom.set_xticks(range(7), [f"{k}s" if k else "0" for k in range(7)])
    for a in (top, bottom):
        for side in ("top", "right"):
            a.spines[side].set_visible(False)
    handles = [Line2D([], [], color=BLACK, lw=1.6, marker=r"$\uparrow$", ms=10, ls="none"),
               Line2D([], [], marker="D", ms=7, mfc="white", mec=BLACK, mew=1.6, ls="none"),
               Line2D([], [], color=GREY, lw=1.0, ls=(0, (1.5, 2))),
               Line2D([], [], color=BLACK, lw=2.0)]
    labels = [r"exploit: copy $\theta$ and $c$ of the best",
              r"explore: $c \leftarrow 0.8\,c$ or $1.2\,c$",
              "ready point, every $s$ steps",
              "one colour per worker"]
    top.legend(handles, labels, loc="lower right", frameon=False, fontsize=10, handlelength=1.6)
    fig.text(0.02, 0.96, "PBT: the worst member exploits (copies) the best, then explores (perturbs)",
             fontsize=11, weight="bold", ha="left", va="center")
    return fig


#: File name (without ``.svg``) -> the function that draws it. The names are referenced by the book's pages.
DIAGRAMS: dict[str, Callable[[], Figure]] = {
    "meta-optimization-levels": meta_optimization_levels,
    "maml-two-paths": maml_two_paths,
    "maml-trpo-iteration": maml_trpo_iteration,
    "rl2-trial": rl2_trial,
    "successive-halving": successive_halving,
    "pbt-exploit-explore": pbt_exploit_explore,
}


def _draw(name: str) -> Figure:
    with matplotlib.rc_context(STYLE):
        return DIAGRAMS[name]()


def render_png(name: str, path: str | os.PathLike, dpi: float = 100) -> Path:
    """Draw diagram ``name`` and save it as a PNG (for looking at it; the book uses the SVG)."""
    path = Path(path)
    with matplotlib.rc_context(STYLE):
        fig = DIAGRAMS[name]()
        fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path


def write_all(directory: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Write every diagram (or those in ``names``) as ``<directory>/<name>.svg``; returns the paths.

    The files are byte-identical from run to run: no date in the metadata, and element ids salted with a
    fixed string (``svg.hashsalt``) instead of random ones.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or list(DIAGRAMS):
        path = directory / f"{name}.svg"
        with matplotlib.rc_context(STYLE):
            fig = DIAGRAMS[name]()
            fig.savefig(path, format="svg", metadata=_METADATA)
        paths.append(path)
    return paths
