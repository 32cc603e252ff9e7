r"""Inventory control under unknown demand: a retailer re-orders stock every day (chapter "Applications").

A task is a store whose daily demand is Poisson with a mean :math:`\mu` the agent is not told,
:math:`\mu \sim U[\mu_\min, \mu_\max]` (default :math:`[2, 20]` items per day). Every day
:math:`t = 0, \dots, T-1` of an episode (a "season" of ``horizon`` days, default 10) the agent sees its stock
on hand :math:`x_t` (the store opens the season empty, :math:`x_0 = 0`), orders :math:`q_t \ge 0` items that
arrive at once (zero lead time), and sells to the day's demand :math:`D_t`; demand it cannot serve is lost
(the dynamics of the chapter's case study):

.. math::
   y_t = \min(x_t + q_t,\, C), \qquad s_t = \min(y_t, D_t), \qquad x_{t+1} = y_t - s_t,
   \qquad D_t \sim \mathrm{Poisson}(\mu),

with :math:`C` the shelf capacity. The day's reward is the newsvendor profit

.. math::
   r_t = \big[(p - c)\, s_t - h\,(y_t - D_t)^+ - b\,(D_t - y_t)^+\big] / u,

price :math:`p`, unit cost :math:`c`, holding cost :math:`h` per unit left overnight, penalty :math:`b` per
lost sale, and :math:`u` the ``scale`` (10 by default: observations, actions and rewards count tens of items
or of money, so that a network sees numbers of order one). A unit is paid for (:math:`c`) when it is sold,
not when it is ordered. That is the cash-flow accounting (pay :math:`c q_t` on ordering) with the stock left
at the end of the season bought back at cost: the two give the same episode return from an empty start
(the cash-flow identity of the chapter; checked in the tests), and this one puts each day's consequences in
that day's reward.

**The exact oracle.** Because :math:`r_t` depends on the day only through :math:`y_t` and :math:`D_t`, the
expected return of any policy is :math:`\sum_t \mathbb E[G_\mu(y_t)]` with the expected daily profit
:math:`G_\mu(y) = \mathbb E[r_t \mid y_t = y]` (the newsvendor profit). :math:`G_\mu` is concave
and piecewise linear with kinks at the integers, maximised at the critical-fractile quantile

.. math::
   S^*_\mu = \min\{S \in \mathbb N : F_\mu(S) \ge \kappa\}, \qquad
   \kappa = \frac{p - c + b}{p - c + b + h},

and the base-stock policy "order up to :math:`S^*`", :math:`q_t = (S^* - x_t)^+`, reaches it every day
(:math:`x_t \le S^*` always holds after an empty start), so no policy, even one told :math:`\mu`, can
beat :math:`T\,G_\mu(S^*_\mu)` (:meth:`InventoryFamily.oracle_return`). A policy that cannot adapt is
at best one base-stock level for all tasks: the critical-fractile quantile of the *mixture* of the tasks'
demand distributions (:meth:`InventoryFamily.best_common_level`).

Observation: :math:`x_t / u`, float32, shape ``(1,)``. Action: the order in units of :math:`u`, shape
``(1,)``; :math:`q_t = u \max(a_t, 0)` (negative orders are read as 0, orders past the shelf are not
delivered).
The episode is truncated after ``horizon`` days, never terminated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .base import MetaEnvMixin, TaskFamily, check_range
from .batched import BatchedEnv

#: Tail mass of the Poisson distribution ignored by the exact expectations (they are exact to this).
_TAIL = 1e-15


@dataclass(frozen=True)
class InventoryTask:
    """Mean daily demand :math:`\\mu` (items per day) of one store."""

    demand_mean: float


def poisson_pmf(lam: float, d_max: int) -> np.ndarray:
    """:math:`P(D = d)` for :math:`d = 0, \\dots, d_{\\max}`, ``[d_max + 1]`` float64 (via log-gamma)."""
    d = np.arange(d_max + 1, dtype=np.float64)
    log_pmf = d * math.log(lam) - lam - np.array([math.lgamma(k + 1.0) for k in d])
    return np.exp(log_pmf)


def _support(lam: float) -> int:
    # Far enough into the tail that the missing mass is below _TAIL for every mean the family allows.
    return int(math.ceil(lam + 12.0 * math.sqrt(lam) + 40.0))


class InventoryFamily(TaskFamily):
    """Stores with Poisson daily demand, mean uniform in ``[demand_low, demand_high]``.

    Split coordinate: the normalised demand mean (test stores in the interleaved cells of the base module).

    Args:
        demand_low, demand_high: range of the mean daily demand :math:`\\mu` (items).
        horizon: days per episode :math:`T`.
        price, cost: selling price :math:`p` and unit cost :math:`c` (``price > cost``).
        holding_cost: :math:`h > 0`, per unit left on the shelf overnight.
        lost_sale_penalty: :math:`b \\ge 0`, per unit of demand not served.
        capacity: shelf capacity :math:`C` (items).
        scale: :math:`u`, items (and money) per unit of observation, action and reward.
    """

    name = "Inventory"
    task_type = InventoryTask

    def __init__(self, demand_low: float = 2.0, demand_high: float = 20.0, horizon: int = 10,
                 price: float = 2.0, cost: float = 1.0, holding_cost: float = 0.5,
                 lost_sale_penalty: float = 0.5, capacity: float = 40.0, scale: float = 10.0) -> None:
        if not (np.isfinite(demand_low) and np.isfinite(demand_high) and 0 < demand_low < demand_high):
            raise ValueError(f"Inventory: need 0 < demand_low < demand_high, got demand_low={demand_low!r}, "
                             f"demand_high={demand_high!r}")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"Inventory: horizon must be a positive int (days), got {horizon!r}")
        if not (np.isfinite(price) and np.isfinite(cost) and 0 <= cost < price):
            raise ValueError(f"Inventory: need 0 <= cost < price, got cost={cost!r}, price={price!r}")
        for name, value, allow_zero in (("holding_cost", holding_cost, False),
                                        ("lost_sale_penalty", lost_sale_penalty, True),
                                        ("capacity", capacity, False), ("scale", scale, False)):
            ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
            if not ok:
                rule = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"Inventory: {name} must be {rule}, got {value!r}")
        self.demand_low, self.demand_high = float(demand_low), float(demand_high)
        self.horizon = int(horizon)
        self.price, self.cost = float(price), float(cost)
        self.holding_cost, self.lost_sale_penalty = float(holding_cost), float(lost_sale_penalty)
        self.capacity, self.scale = float(capacity), float(scale)

    # ------------------------------------------------------------------ economics
    @property
    def margin(self) -> float:
        """:math:`p - c`, the profit on one unit sold."""
        return self.price - self.cost

    @property
    def critical_fractile(self) -> float:
        r""":math:`\kappa = (p - c + b) / (p - c + b + h)` (the critical fractile)."""
        under = self.margin + self.lost_sale_penalty
        return under / (under + self.holding_cost)

    # ------------------------------------------------------------------ task distribution
    def _sample(self, n: int, rng: np.random.Generator) -> list[InventoryTask]:
        lam = rng.uniform(self.demand_low, self.demand_high, size=n)
        return [InventoryTask(float(x)) for x in lam]

    def split_coordinates(self, tasks):
        lam = np.array([t.demand_mean for t in tasks], dtype=np.float64)
        return ((lam - self.demand_low) / (self.demand_high - self.demand_low))[:, None]

    def _check(self, task: InventoryTask) -> None:
        check_range("demand_mean", task.demand_mean, self.demand_low, self.demand_high, self.name)

    # ------------------------------------------------------------------ exact expectations
    def expected_daily_reward(self, level: float | np.ndarray, task: InventoryTask) -> np.ndarray:
        r""":math:`G_\mu(y) / u`, the expected reward of a day that starts with :math:`y` units on the
        shelf (after the order), exact up to a Poisson tail of 1e-15 (the newsvendor profit).

        Args:
            level: :math:`y`, items; a scalar or an array of any shape, each value in ``[0, capacity]``.

        Returns:
            float64 array of the shape of ``level``.
        """
        task = self.validate(task)
        y = np.asarray(level, dtype=np.float64)
        if np.any(~np.isfinite(y)) or np.any(y < 0) or np.any(y > self.capacity):
            raise ValueError(f"Inventory: stock levels must lie in [0, capacity={self.capacity}], got "
                             f"min {float(np.min(y))!r}, max {float(np.max(y))!r}")
        lam = task.demand_mean
        d_max = _support(lam)
        pmf = poisson_pmf(lam, d_max)
        d = np.arange(d_max + 1, dtype=np.float64)
        flat = y.reshape(-1, 1)
        sold = (np.minimum(flat, d) * pmf).sum(1)  # E[min(y, D)]
        left = flat[:, 0] - sold                      # E[(y - D)^+] = y - E[min(y, D)]
        lost = lam - sold                             # E[(D - y)^+] = E[D] - E[min(y, D)]
        g = self.margin * sold - self.holding_cost * left - self.lost_sale_penalty * lost
        return (g / self.scale).reshape(y.shape)

    def oracle_level(self, task: InventoryTask) -> float:
        r""":math:`S^*_\mu`: the smallest integer with :math:`F_\mu(S) \ge \kappa`, capped at the
        capacity (the critical-fractile level); it maximises :meth:`expected_daily_reward`."""
        task = self.validate(task)
        cdf = np.cumsum(poisson_pmf(task.demand_mean, _support(task.demand_mean)))
        return float(min(int(np.argmax(cdf >= self.critical_fractile - 1e-12)), self.capacity))

    def base_stock_return(self, level: float, task: InventoryTask) -> float:
        r"""Exact expected episode return of "order up to ``level``" from an empty shelf:
        :math:`T\, G_\mu(\min(S, C)) / u` (every day starts with :math:`y_t = S`)."""
        if not np.isfinite(level) or level < 0:
            raise ValueError(f"Inventory: base-stock level must be a finite number >= 0, got {level!r}")
        return float(self.horizon * self.expected_daily_reward(min(float(level), self.capacity), task))

    def oracle_return(self, task: InventoryTask) -> float:
        """The best expected episode return of any policy on ``task`` (base stock at :meth:`oracle_level`)."""
        return self.base_stock_return(self.oracle_level(task), task)

    def best_common_level(self, tasks: Sequence[InventoryTask]) -> float:
        r"""The one base-stock level with the highest mean expected return over ``tasks``:
        the :math:`\kappa`-quantile of the mixture
        :math:`\bar F = \frac1M\sum_m F_{\mu_m}`, capped at the capacity. A policy
        that cannot tell the tasks apart does no better than this on average."""
        tasks = [self.validate(t) for t in tasks]
        if not tasks:
            raise ValueError("Inventory.best_common_level needs at least one task, got none")
        d_max = max(_support(t.demand_mean) for t in tasks)
        cdf = np.mean([np.cumsum(poisson_pmf(t.demand_mean, d_max)) for t in tasks], axis=0)
        return float(min(int(np.argmax(cdf >= self.critical_fractile - 1e-12)), self.capacity))

    # ------------------------------------------------------------------ environments
    def make_env(self, **kwargs: Any) -> InventoryEnv:
        return InventoryEnv(family=self, **kwargs)

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any) -> BatchedInventory:
        return BatchedInventory(self, num_tasks, num_envs, **kwargs)


class InventoryEnv(MetaEnvMixin, gym.Env):
    """Gymnasium inventory control (module docstring); keyword arguments as :class:`InventoryFamily`.

    ``info`` after a step: ``demand`` :math:`D_t`, ``sales`` :math:`s_t`, ``order`` (delivered, :math:`y_t -
    x_t`), ``lost_sales`` :math:`(D_t - y_t)^+`, ``stock`` :math:`x_{t+1}`, all in items.
    """

    metadata = {"render_modes": []}

    def __init__(self, task: InventoryTask | None = None, family: InventoryFamily | None = None,
                 **family_kwargs: Any) -> None:
        if family is not None and family_kwargs:
            raise TypeError(f"give either family or its keyword arguments, not both: {sorted(family_kwargs)}")
        self.family = family if family is not None else InventoryFamily(**family_kwargs)
        f = self.family
        top = np.float32(f.capacity / f.scale)
        self.observation_space = spaces.Box(0.0, top, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, top, shape=(1,), dtype=np.float32)
        self._stock = np.float32(0.0)
        self._t = 0
        if task is not None:
            self.set_task(task)

    def _on_task_set(self, task: InventoryTask) -> None:
        self._lam = float(task.demand_mean)

    def _obs(self) -> np.ndarray:
        return np.array([self._stock / np.float32(self.family.scale)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ensure_task(options)
        self._stock = np.float32(0.0)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        f = self.family
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape != (1,):
            raise ValueError(f"Inventory: the action is one order quantity, got shape {np.shape(action)}")
        # float32 arithmetic in the order the batched env uses, so that the two agree step by step
        order = np.float32(max(float(a[0]), 0.0)) * np.float32(f.scale)
        level = np.minimum(self._stock + order, np.float32(f.capacity))  # y_t, the stock available today
        demand = np.float32(self.np_random.poisson(self._lam))
        sales = np.minimum(level, demand)
        leftover = level - sales
        lost = demand - sales
        reward = (np.float32(f.margin) * sales - np.float32(f.holding_cost) * leftover
                  - np.float32(f.lost_sale_penalty) * lost) / np.float32(f.scale)  # r_t, the day's reward
        info = {"demand": float(demand), "sales": float(sales), "order": float(level - self._stock),
                "lost_sales": float(lost), "stock": float(leftover)}
        self._stock = np.float32(leftover)
        self._t += 1
        return self._obs(), float(reward), False, self._t >= f.horizon, info


class BatchedInventory(BatchedEnv):
    """``[num_tasks, num_envs]`` stores in torch, one ``torch.poisson`` per step.

    Shapes: demand means ``[K, 1]``, stock ``[K, E]``; ``step(actions [K, E, 1])``; after a step ``demand``,
    ``sales`` and ``order`` (delivered) hold that day's values ``[K, E]`` in items.
    """

    def __init__(self, family: InventoryFamily, num_tasks: int, num_envs: int,
                 device: torch.device | str = "cpu", seed: int | None = None) -> None:
        self.observation_shape = (1,)
        self.action_dim = 1
        super().__init__(family, num_tasks, num_envs, family.horizon, device, seed)
        self.stock = torch.zeros(self.batch_shape, device=self.device)
        self.demand = torch.zeros(self.batch_shape, device=self.device)
        self.sales = torch.zeros(self.batch_shape, device=self.device)
        self.order = torch.zeros(self.batch_shape, device=self.device)

    def _load_tasks(self, tasks: list[InventoryTask]) -> None:
        self.demand_means = torch.tensor([[t.demand_mean] for t in tasks], dtype=torch.float32,
                                         device=self.device)

    def _obs(self) -> Tensor:
        return (self.stock / self.family.scale).unsqueeze(-1)

    def reset(self, mask: Tensor | None = None) -> Tensor:
        self._require_tasks()
        m = self._full_mask(mask)
        self.stock[m] = 0.0
        self.steps[m] = 0
        return self._obs()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f = self.family
        a = self._check_actions(actions).float()[..., 0]
        order = a.clamp_min(0.0) * f.scale
        level = torch.minimum(self.stock + order, torch.tensor(f.capacity, device=self.device))
        rates = self.demand_means.expand(self.batch_shape).contiguous()
        demand = torch.poisson(rates, generator=self.generator)
        sales = torch.minimum(level, demand)
        leftover = level - sales
        lost = demand - sales
        reward = (f.margin * sales - f.holding_cost * leftover - f.lost_sale_penalty * lost) / f.scale
        self.demand, self.sales, self.order = demand, sales, level - self.stock
        self.stock = leftover
        truncated = self._advance_time()
        return self._obs(), reward, torch.zeros_like(truncated), truncated
