r"""Hand-designed baselines for RL²'s comparisons (Duan et al. 2016, Tables 1 and 2).

Every baseline is a small function that runs *many sampled tasks at once* (NumPy arrays with a leading
task dimension ``M``) and returns the total reward of each task's trial, shape ``[M]``; the tables report
its mean. The dynamics are exactly those of :mod:`meta_rl_lessons.envs.bandit` and
:mod:`meta_rl_lessons.envs.tabular_mdp`, so the same task objects can be handed to RL² and to a baseline.

Bernoulli bandits (``k`` arms, ``n`` pulls, arm means :math:`p_i \sim U[0,1]`)
------------------------------------------------------------------------------
All Bayesian rules use the uniform prior of the task distribution: after :math:`s_i` successes and
:math:`f_i` failures arm :math:`i` has posterior :math:`\mathrm{Beta}(a_i, b_i) = \mathrm{Beta}(1 + s_i,
1 + f_i)` with mean :math:`\hat p_i = a_i / (a_i + b_i)`.

* :func:`bandit_random`: a uniformly random arm every pull.
* greedy: the arm with the largest posterior mean (ties broken at random).
* :math:`\epsilon`-greedy: greedy, but a uniformly random arm with probability :math:`\epsilon`.
* UCB1 (Auer et al. 2002): pull every arm once, then :math:`\arg\max_i \bar x_i + c\sqrt{2\ln t / N_i}`
  with the empirical mean :math:`\bar x_i` (``c = 1`` is the published rule).
* Thompson sampling (Thompson 1933): draw :math:`\tilde p_i \sim \mathrm{Beta}(a_i, b_i)`, pull the argmax.
* Gittins index (Gittins 1979): pull the arm with the largest index :math:`\nu_\gamma(a_i, b_i)`.

The Gittins index is *computed*, by the calibration (retirement) dynamic program: a Beta(a, b) arm is
compared with a "retirement" option that pays :math:`\lambda` per step forever; the index is the
:math:`\lambda` at which one is indifferent between retiring now and pulling the arm (then acting optimally):

.. math::
   V_\lambda(a, b) = \max\Big\{\frac{\lambda}{1-\gamma},\;
      \hat p + \gamma\big[\hat p\, V_\lambda(a{+}1, b) + (1-\hat p)\, V_\lambda(a, b{+}1)\big]\Big\},
   \qquad \nu_\gamma(a, b) = \min\Big\{\lambda : V_\lambda(a, b) = \frac{\lambda}{1-\gamma}\Big\}.

The recursion is truncated at depth ``depth`` (beyond it the posterior is treated as known, so the value
is :math:`\max(\lambda, \hat p)/(1-\gamma)`); the error shrinks like :math:`\gamma^{\text{depth}}`.
Three independent computations are provided and tested against each other: bisection on
:math:`\lambda` (:func:`gittins_index_bisection`), the restart-in-state formulation of Katehakis and
Veinott (1987) (:func:`gittins_index_restart`), and a table for all states at once by calibration on a
:math:`\lambda` grid (:func:`gittins_table`, what the policy uses).

*Why the discounted index for an undiscounted n-pull problem?* The exactly Bayes-optimal policy for
``n`` pulls is a dynamic program over the joint posterior of all ``k`` arms, whose state space grows like
:math:`n^{2k}` (hopeless for ``k = 5, n = 100``). The Gittins index decomposes the problem arm by arm and is
optimal for the *discounted infinite-horizon* problem; for a finite horizon it is a strong heuristic, and
Duan et al. used it the same way. We treat :math:`\gamma` as the baseline's hyper-parameter and choose it
on separate tasks (the paper tuned every baseline's hyper-parameters).

Tabular MDPs (``S`` states, ``A`` actions, episodes of ``H`` steps from state 0, ``n`` episodes)
--------------------------------------------------------------------------------------------------
The model-based baselines keep the conjugate posterior of the task distribution: transitions
:math:`P(\cdot\mid s,a) \sim \mathrm{Dirichlet}(\mathbf 1 + N_{sa\cdot})`, mean rewards
:math:`\mu(s,a) \sim \mathcal N\big(\frac{1 + \sum r}{1 + N_{sa}}, \frac{1}{1 + N_{sa}}\big)` (prior
:math:`\mathcal N(1, 1)`, known unit noise). At the start of every episode they plan by finite-horizon
value iteration and act greedily in the planned :math:`Q_t(s, a)` for the rest of the episode:

* :func:`mdp_random`: uniformly random actions;
* greedy: plan in the posterior-mean model;
* :math:`\epsilon`-greedy: the same, with a random action with probability :math:`\epsilon`;
* PSRL (Osband et al. 2013): plan in one model *sampled* from the posterior per episode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

__all__ = [
    "BANDIT_BASELINES",
    "MDP_BASELINES",
    "bandit_epsilon_greedy",
    "bandit_gittins",
    "bandit_greedy",
    "bandit_random",
    "bandit_thompson",
    "bandit_ucb1",
    "epsilon_greedy_rule",
    "gittins_rule",
    "random_rule",
    "thompson_rule",
    "ucb1_scores",
    "ucb1_rule",
    "gittins_index_bisection",
    "gittins_index_restart",
    "gittins_table",
    "mdp_epsilon_greedy",
    "mdp_greedy",
    "mdp_oracle",
    "mdp_psrl",
    "mdp_random",
    "plan_finite_horizon",
    "run_bandit",
]

Rng = np.random.Generator | int | None


def _rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_means(means: np.ndarray) -> np.ndarray:
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] < 2:
        raise ValueError(f"arm means must have shape [num_tasks, num_arms >= 2], got {means.shape}")
    if not np.all((means >= 0) & (means <= 1)):
        raise ValueError("arm means must lie in [0, 1]")
    return means


def _argmax_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``scores [M, k]`` with ties broken uniformly at random."""
    noise = rng.random(scores.shape) * 1e-9
    best = scores.max(axis=1, keepdims=True)
    return np.argmax(np.where(scores >= best - 1e-12, 1.0 + noise, noise - 1.0), axis=1)


# =============================================================================== bandits
#: A bandit rule maps (successes [M, k], failures [M, k], pulls so far t, rng) to arms [M].
BanditRule = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def run_bandit(rule: BanditRule, means: np.ndarray, num_pulls: int, rng: Rng = None,
               return_arms: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Play ``rule`` for ``num_pulls`` pulls on every task; total reward per task, ``[M]``.

    Args:
        rule: chooses arms from the success/failure counts (see :data:`BanditRule`).
        means: ``[M, k]`` arm means, one row per task.
        num_pulls: ``n``.
        rng: seed or generator (rewards and the rule's own randomness).
        return_arms: also return the arms pulled, ``[n, M]`` (for plots of behaviour over time).
    """
    means = _check_means(means)
    if num_pulls < 1:
        raise ValueError(f"num_pulls must be >= 1, got {num_pulls}")
    gen = _rng(rng)
    M, k = means.shape
    succ = np.zeros((M, k))
    fail = np.zeros((M, k))
    total = np.zeros(M)
    arms = np.zeros((num_pulls, M), dtype=np.int64)
    rows = np.arange(M)
    for t in range(num_pulls):
        arm = rule(succ, fail, t, gen)
        arms[t] = arm
        r = (gen.random(M) < means[rows, arm]).astype(np.float64)
        succ[rows, arm] += r
        fail[rows, arm] += 1.0 - r
        total += r
    return (total, arms) if return_arms else total


def random_rule() -> BanditRule:
    """A uniformly random arm."""
    return lambda s, f, t, g: g.integers(0, s.shape[1], size=s.shape[0])


def epsilon_greedy_rule(epsilon: float) -> BanditRule:
    """The largest posterior mean :math:`(1+s)/(2+s+f)`, or a random arm with probability ``epsilon``."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")

    def rule(s, f, t, g):
        greedy = _argmax_random_ties((1.0 + s) / (2.0 + s + f), g)
        if epsilon == 0.0:
            return greedy
        explore = g.random(s.shape[0]) < epsilon
        return np.where(explore, g.integers(0, s.shape[1], size=s.shape[0]), greedy)

    return rule


def ucb1_scores(successes: np.ndarray, failures: np.ndarray, t: int, c: float = 1.0) -> np.ndarray:
    r"""UCB1's index :math:`\bar x_i + c\sqrt{2 \ln t / N_i}` of every arm, ``[M, k]`` from the counts
    ``[M, k]`` (every arm pulled at least once) at pull ``t``."""
    n = successes + failures
    return successes / n + c * np.sqrt(2.0 * math.log(t) / n)


def ucb1_rule(c: float = 1.0) -> BanditRule:
    r"""UCB1: each arm once (in order), then :math:`\arg\max_i \bar x_i + c\sqrt{2 \ln t / N_i}`."""
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"UCB1 exploration scale c must be a finite number >= 0, got {c}")

    def rule(s, f, t, g):
        if t < s.shape[1]:  # initialisation: pull every arm once (arm t)
            return np.full(s.shape[0], t)
        return _argmax_random_ties(ucb1_scores(s, f, t, c), g)

    return rule


def thompson_rule() -> BanditRule:
    r"""Draw :math:`\tilde p_i \sim \mathrm{Beta}(1 + s_i, 1 + f_i)` and pull the argmax."""
    return lambda s, f, t, g: np.argmax(g.beta(1.0 + s, 1.0 + f), axis=1)


def bandit_random(means: np.ndarray, num_pulls: int, rng: Rng = None) -> np.ndarray:
    """A uniformly random arm each pull. Returns total rewards ``[M]``."""
    return run_bandit(random_rule(), means, num_pulls, rng)


def bandit_epsilon_greedy(means: np.ndarray, num_pulls: int, epsilon: float, rng: Rng = None) -> np.ndarray:
    """Posterior-mean greedy arm, or a uniformly random arm with probability ``epsilon``. ``[M]``."""
    return run_bandit(epsilon_greedy_rule(epsilon), means, num_pulls, rng)


def bandit_greedy(means: np.ndarray, num_pulls: int, rng: Rng = None) -> np.ndarray:
    """The arm with the largest posterior mean :math:`(1+s)/(2+s+f)` (ε-greedy with ε = 0). ``[M]``."""
    return run_bandit(epsilon_greedy_rule(0.0), means, num_pulls, rng)


def bandit_ucb1(means: np.ndarray, num_pulls: int, c: float = 1.0, rng: Rng = None) -> np.ndarray:
    r"""UCB1 (Auer et al. 2002): each arm once, then :math:`\arg\max_i \bar x_i + c\sqrt{2 \ln t / N_i}`.

    ``c = 1`` is the published rule; smaller ``c`` explores less. Returns total rewards ``[M]``.
    """
    return run_bandit(ucb1_rule(c), means, num_pulls, rng)


def bandit_thompson(means: np.ndarray, num_pulls: int, rng: Rng = None) -> np.ndarray:
    r"""Thompson sampling: draw :math:`\tilde p_i \sim \mathrm{Beta}(1 + s_i, 1 + f_i)`, pull the argmax.

    Returns total rewards ``[M]``.
    """
    return run_bandit(thompson_rule(), means, num_pulls, rng)


# ------------------------------------------------------------------------------ Gittins index
def _check_gittins(a: float, b: float, gamma: float, depth: int) -> None:
    if not (a > 0 and b > 0):
        raise ValueError(f"Beta parameters must be positive, got a={a}, b={b}")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"the Gittins index needs a discount 0 < gamma < 1, got {gamma}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")


def _continue_value(a: float, b: float, lam: float, gamma: float, depth: int) -> float:
    """Value of pulling a Beta(a, b) arm once and then acting optimally, retirement reward ``lam``.

    Backward induction over the tree of posteriors reachable from (a, b): at depth ``d`` the states are
    ``(a + i, b + d - i)``, ``i = 0..d``; ``V`` holds their values, ``[d + 1]``.
    """
    retire = lam / (1.0 - gamma)
    i = np.arange(depth + 1, dtype=np.float64)
    p = (a + i) / (a + b + depth)
    V = np.maximum(retire, p / (1.0 - gamma))  # truncation: posterior treated as known
    for d in range(depth - 1, -1, -1):
        p = (a + i[: d + 1]) / (a + b + d)
        cont = p + gamma * (p * V[1: d + 2] + (1.0 - p) * V[: d + 1])
        if d == 0:
            return float(cont[0])
        V = np.maximum(retire, cont)
    raise AssertionError("unreachable")


def gittins_index_bisection(a: float, b: float, gamma: float, depth: int = 300, tol: float = 1e-10) -> float:
    r"""Gittins index of a Beta(a, b) Bernoulli arm by bisection on the retirement reward :math:`\lambda`.

    :math:`\lambda` is too low while pulling is strictly better than retiring; the index is where the two
    meet. Cost ``O(depth^2)`` per bisection step.
    """
    _check_gittins(a, b, gamma, depth)
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        lam = 0.5 * (lo + hi)
        if _continue_value(a, b, lam, gamma, depth) > lam / (1.0 - gamma):
            lo = lam
        else:
            hi = lam
    return 0.5 * (lo + hi)


def gittins_index_restart(a: float, b: float, gamma: float, depth: int = 300, tol: float = 1e-12) -> float:
    r"""Gittins index by the restart-in-state formulation (Katehakis and Veinott 1987).

    In a modified problem one may, in any state, either pull the arm or *restart* from the root state
    (a, b) and pull from there. Its optimal value at the root satisfies :math:`\nu_\gamma(a, b) =
    (1-\gamma) V(a, b)`. We solve it by fixed-point iteration on :math:`v = V(a, b)`: given :math:`v`,
    backward induction with :math:`V(s) = \max\{Q(s), v\}` gives a new root value :math:`Q(a, b)`; the map
    is a :math:`\gamma`-contraction. No :math:`\lambda` appears anywhere: an independent check on
    :func:`gittins_index_bisection`.
    """
    _check_gittins(a, b, gamma, depth)
    i = np.arange(depth + 1, dtype=np.float64)
    v = (a / (a + b)) / (1.0 - gamma)
    for _ in range(100_000):
        p = (a + i) / (a + b + depth)
        V = np.maximum(v, p / (1.0 - gamma))
        for d in range(depth - 1, -1, -1):
            p = (a + i[: d + 1]) / (a + b + d)
            Q = p + gamma * (p * V[1: d + 2] + (1.0 - p) * V[: d + 1])
            V = np.maximum(v, Q) if d > 0 else Q
        new = float(V[0])
        if abs(new - v) < tol / (1.0 - gamma):
            return new * (1.0 - gamma)
        v = new
    raise RuntimeError("restart-in-state iteration did not converge")


@lru_cache(maxsize=16)
def _gittins_table_cached(gamma: float, max_count: int, depth: int, grid: int) -> np.ndarray:
    lam = np.linspace(0.0, 1.0, grid)[:, None]  # [L, 1]
    retire = lam / (1.0 - gamma)
    top = max_count + depth  # largest a + b in the truncated recursion
    table = np.full((max_count + 1, max_count + 1), np.nan)
    # Diagonal n = a + b holds a = 1..n-1 (b = n - a); V[:, a - 1].
    a = np.arange(1, top, dtype=np.float64)
    V = np.maximum(retire, (a / top)[None, :] / (1.0 - gamma))
    for n in range(top - 1, 1, -1):
        a = np.arange(1, n, dtype=np.float64)
        p = (a / n)[None, :]
        cont = p + gamma * (p * V[:, 1:n] + (1.0 - p) * V[:, 0: n - 1])  # [L, n - 1]
        if n <= max_count:
            f = cont - retire  # decreasing in lambda; the index is its root
            j = np.argmax(f <= 0.0, axis=0)  # first grid point at or past the root
            j = np.clip(j, 1, grid - 1)
            cols = np.arange(n - 1)
            f0, f1 = f[j - 1, cols], f[j, cols]
            l0, l1 = lam[j - 1, 0], lam[j, 0]
            root = l0 + f0 / np.where(f0 - f1 > 0, f0 - f1, 1.0) * (l1 - l0)
            table[a.astype(int), (n - a).astype(int)] = root
        V = np.maximum(retire, cont)
    table.flags.writeable = False
    return table


def gittins_table(gamma: float, max_count: int, depth: int = 300, grid: int = 2001) -> np.ndarray:
    r"""Gittins indices :math:`\nu_\gamma(a, b)` of every Beta(a, b) state with integer ``a, b >= 1`` and
    ``a + b <= max_count``, all at once: ``table[a, b]``, shape ``[max_count + 1, max_count + 1]`` (NaN
    elsewhere).

    Calibration on a grid of ``grid`` retirement rewards :math:`\lambda \in [0, 1]`: one backward induction
    over all posterior states, vectorized over :math:`\lambda` (arrays ``[grid, a + b]``), then each state's
    root of :math:`Q_\lambda - \lambda/(1-\gamma)` by linear interpolation between grid points. Cached.
    """
    _check_gittins(1, 1, gamma, depth)
    if max_count < 2:
        raise ValueError(f"max_count must be >= 2, got {max_count}")
    return _gittins_table_cached(float(gamma), int(max_count), int(depth), int(grid))


def gittins_rule(gamma: float, num_pulls: int, depth: int = 300) -> BanditRule:
    r"""Pull :math:`\arg\max_i \nu_\gamma(1+s_i, 1+f_i)` (the table covers ``num_pulls`` pulls)."""
    table = gittins_table(gamma, num_pulls + 2, depth)

    def rule(s, f, t, g):
        return _argmax_random_ties(table[(1 + s).astype(int), (1 + f).astype(int)], g)

    return rule


def bandit_gittins(means: np.ndarray, num_pulls: int, gamma: float = 0.9, depth: int = 300,
                   rng: Rng = None) -> np.ndarray:
    r"""Gittins-index policy with discount ``gamma``: pull :math:`\arg\max_i \nu_\gamma(1+s_i, 1+f_i)`.

    Returns total rewards ``[M]``. The table is computed once per ``(gamma, num_pulls, depth)``.
    """
    return run_bandit(gittins_rule(gamma, num_pulls, depth), means, num_pulls, rng)


#: name -> function(means, num_pulls, rng=..., **params), for tables.
BANDIT_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "Random": bandit_random,
    "Gittins": bandit_gittins,
    "TS": bandit_thompson,
    "UCB1": bandit_ucb1,
    "eps-Greedy": bandit_epsilon_greedy,
    "Greedy": bandit_greedy,
}


# =============================================================================== tabular MDPs
def _check_mdp(transitions: np.ndarray, reward_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = np.asarray(transitions, dtype=np.float64)
    mu = np.asarray(reward_means, dtype=np.float64)
    if P.ndim != 4 or P.shape[1] != P.shape[3] or mu.shape != P.shape[:3]:
        raise ValueError(f"need transitions [M, S, A, S] and reward_means [M, S, A]; got {P.shape} and "
                         f"{mu.shape}")
    return P, mu


def plan_finite_horizon(transitions: np.ndarray, reward_means: np.ndarray, horizon: int) -> np.ndarray:
    r"""Finite-horizon value iteration for a batch of MDPs: :math:`Q_t(s,a) = \mu(s,a) + \sum_{s'}
    P(s'\mid s,a) \max_{a'} Q_{t+1}(s', a')`, :math:`Q_H \equiv 0`.

    Args:
        transitions: ``[M, S, A, S]``; reward_means: ``[M, S, A]``.

    Returns:
        ``Q [H, M, S, A]`` (``Q[t]`` is for the step with ``H - t`` steps left).
    """
    P, mu = _check_mdp(transitions, reward_means)
    Q = np.empty((horizon, *mu.shape))
    V = np.zeros(mu.shape[:2])
    for t in range(horizon - 1, -1, -1):
        Q[t] = mu + np.einsum("msaz,mz->msa", P, V)
        V = Q[t].max(axis=-1)
    return Q


def _run_mdp(model: str, transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int,
             horizon: int, epsilon: float, rng: Rng) -> np.ndarray:
    P, mu = _check_mdp(transitions, reward_means)
    if num_episodes < 1 or horizon < 1:
        raise ValueError(f"num_episodes and horizon must be >= 1, got {num_episodes}, {horizon}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    gen = _rng(rng)
    M, S, A, _ = P.shape
    rows = np.arange(M)
    counts = np.zeros((M, S, A, S))  # transition counts N(s, a, s')
    r_sum = np.zeros((M, S, A))
    cdf = np.cumsum(P, axis=-1)
    total = np.zeros(M)
    for _ in range(num_episodes):
        n_sa = counts.sum(-1)
        if model == "oracle":
            Q = plan_finite_horizon(P, mu, horizon)
        elif model == "random":
            Q = None
        else:
            post_mean = (1.0 + r_sum) / (1.0 + n_sa)  # Normal posterior, prior N(1, 1), unit noise
            alpha = 1.0 + counts  # Dirichlet posterior, prior Dirichlet(1)
            if model == "mean":
                P_hat, mu_hat = alpha / alpha.sum(-1, keepdims=True), post_mean
            else:  # "sample": PSRL
                g = gen.standard_gamma(alpha)
                P_hat = g / g.sum(-1, keepdims=True)
                mu_hat = post_mean + gen.standard_normal(post_mean.shape) / np.sqrt(1.0 + n_sa)
            Q = plan_finite_horizon(P_hat, mu_hat, horizon)
        s = np.zeros(M, dtype=np.int64)  # every episode starts in state 0
        for t in range(horizon):
            if Q is None:
                a = gen.integers(0, A, size=M)
            else:
                a = _argmax_random_ties(Q[t][rows, s], gen)
                if epsilon > 0:
                    a = np.where(gen.random(M) < epsilon, gen.integers(0, A, size=M), a)
            r = mu[rows, s, a] + gen.standard_normal(M)
            nxt = np.minimum((gen.random(M)[:, None] >= cdf[rows, s, a]).sum(-1), S - 1)
            counts[rows, s, a, nxt] += 1.0
            r_sum[rows, s, a] += r
            total += r
            s = nxt
    return total


def mdp_random(transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int, horizon: int = 10,
               rng: Rng = None) -> np.ndarray:
    """Uniformly random actions. Total reward over ``num_episodes`` episodes per task, ``[M]``."""
    return _run_mdp("random", transitions, reward_means, num_episodes, horizon, 0.0, rng)


def mdp_epsilon_greedy(transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int, epsilon: float,
                       horizon: int = 10, rng: Rng = None) -> np.ndarray:
    """Plan in the posterior-mean model each episode; random action with probability ``epsilon``. ``[M]``."""
    return _run_mdp("mean", transitions, reward_means, num_episodes, horizon, epsilon, rng)


def mdp_greedy(transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int, horizon: int = 10,
               rng: Rng = None) -> np.ndarray:
    """Plan in the posterior-mean model each episode and follow it (ε-greedy with ε = 0). ``[M]``."""
    return _run_mdp("mean", transitions, reward_means, num_episodes, horizon, 0.0, rng)


def mdp_psrl(transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int, horizon: int = 10,
             rng: Rng = None) -> np.ndarray:
    """Posterior sampling for RL (Osband et al. 2013): one model sampled from the posterior per episode,
    planned by value iteration and followed. ``[M]``."""
    return _run_mdp("sample", transitions, reward_means, num_episodes, horizon, 0.0, rng)


def mdp_oracle(transitions: np.ndarray, reward_means: np.ndarray, num_episodes: int, horizon: int = 10,
               rng: Rng = None) -> np.ndarray:
    """The optimal policy of the *true* MDP (an upper bound no learner reaches). ``[M]``."""
    return _run_mdp("oracle", transitions, reward_means, num_episodes, horizon, 0.0, rng)


#: name -> function(transitions, reward_means, num_episodes, rng=..., **params), for tables.
MDP_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "Random": mdp_random,
    "PSRL": mdp_psrl,
    "eps-Greedy": mdp_epsilon_greedy,
    "Greedy": mdp_greedy,
}
