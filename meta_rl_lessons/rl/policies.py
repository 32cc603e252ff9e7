"""Policies and value functions: small MLPs that return ``torch.distributions`` objects.

Every network here follows one calling convention, shared by REINFORCE, TRPO, PPO and MAML::

    dist = policy(obs)                    # the module's own parameters
    dist = policy(obs, params=theta)      # any parameter dict, e.g. MAML's adapted theta'
    dist = policy.per_task(obs, stacked)  # one call for many tasks, each with its own parameters

``params`` is a dict ``name -> tensor`` with the names of ``dict(policy.named_parameters())``; the network is
evaluated with :func:`torch.func.functional_call`, so adapted parameters are ordinary tensors in the autograd
graph (MAML differentiates through them) and no module is ever copied. A partial dict is allowed: missing
names fall back to the module's own parameters. Distributions are built with ``validate_args=False``: argument
validation costs more than the network itself at these sizes, and inputs are checked once, here.

``per_task`` evaluates ``num_tasks`` parameter sets on ``num_tasks`` observation batches in a single
:func:`torch.func.vmap` over ``functional_call``. It vmaps the network's *raw outputs* (mean and log-std,
or logits) and builds one distribution with batch shape ``[num_tasks, N]`` afterwards, because distribution
objects themselves cannot cross a ``vmap`` boundary.

Shapes (``*N`` any batch dimensions, ``K`` tasks):

==========================================  =========================================================
call                                        returns
==========================================  =========================================================
``GaussianMLPPolicy(obs [*N, obs_dim])``    ``Independent(Normal)``: ``sample() [*N, act_dim]``,
                                            ``log_prob(a) [*N]``, ``entropy() [*N]``
``CategoricalMLPPolicy(obs [*N, obs_dim])``  ``Categorical``: ``sample() [*N]`` (int64), ``log_prob [*N]``
``ValueNetwork(obs [*N, obs_dim])``         values ``[*N]``
``per_task(obs [K, *N, obs_dim], params)``  same as above with batch shape ``[K, *N]``; every tensor in
                                            ``params`` has shape ``[K, *param_shape]``
==========================================  =========================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal
from torch.func import functional_call, vmap

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "ACTIVATIONS",
    "CategoricalMLPPolicy",
    "GaussianMLPPolicy",
    "ValueNetwork",
    "expand_params",
    "make_policy",
    "mlp",
    "stack_params",
]

#: Hidden-layer activations a network may use, by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}

Params = Mapping[str, Tensor]


# ---------------------------------------------------------------------------------------------- helpers
def mlp(
    in_dim: int,
    out_dim: int,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    output_gain: float = 1.0,
) -> nn.Sequential:
    """A fully connected network ``in_dim -> hidden_sizes... -> out_dim`` (no output activation).

    Weights are orthogonally initialised (gain ``sqrt(2)`` on hidden layers, ``output_gain`` on the last
    layer) with zero biases, the initialisation PPO implementations rely on; a small ``output_gain`` for a
    policy head makes the initial policy close to uniform / zero-mean.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not supported; allowed: {sorted(ACTIVATIONS)}")
    checks = [("in_dim", in_dim), ("out_dim", out_dim), *(("hidden size", h) for h in hidden_sizes)]
    for name, value in checks:
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        linear = nn.Linear(a, b)
        nn.init.orthogonal_(linear.weight, gain=math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers += [linear, ACTIVATIONS[activation]()]
    last = nn.Linear(sizes[-1], out_dim)
    nn.init.orthogonal_(last.weight, gain=output_gain)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def stack_params(params_list: Sequence[Params]) -> dict[str, Tensor]:
    """Stack per-task parameter dicts into one dict of ``[num_tasks, *shape]`` tensors (for ``per_task``).

    The stack is differentiable: gradients flow back into every task's tensors (MAML's adapted parameters).
    """
    if len(params_list) == 0:
        raise ValueError("stack_params() needs at least one parameter dict, got an empty sequence")
    names = list(params_list[0].keys())
    for i, p in enumerate(params_list):
        if list(p.keys()) != names:
            raise ValueError(
                f"parameter dict {i} has names {sorted(p.keys())}, but dict 0 has {sorted(names)}; "
                "all tasks must share one set of parameter names"
            )
    return {name: torch.stack([p[name] for p in params_list]) for name in names}


def expand_params(params: Params, num_tasks: int) -> dict[str, Tensor]:
    """The same parameters repeated for ``num_tasks`` tasks (a view, no copy): ``[num_tasks, *shape]``."""
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    return {name: t.unsqueeze(0).expand(num_tasks, *t.shape) for name, t in params.items()}


class _FunctionalNet(nn.Module):
    """Base class: a module whose raw outputs come from ``self.net`` and can be evaluated functionally.

    Subclasses set ``self.net`` (a module returning raw tensors) and implement ``_wrap(raw)`` turning those
    raw outputs into what ``forward`` returns (a distribution, or values).
    """

    net: nn.Module
    obs_dim: int
    _prefix = "net."

    # -- input checking -------------------------------------------------------------------------------
    def _check_obs(self, obs: Tensor, min_dim: int = 1) -> Tensor:
        if not isinstance(obs, Tensor):
            raise TypeError(f"{type(self).__name__} expects obs as a torch.Tensor, got {type(obs).__name__}")
        if obs.dim() < min_dim or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"{type(self).__name__} expects observations of shape [..., obs_dim={self.obs_dim}]"
                + (f" with at least {min_dim} dimensions" if min_dim > 1 else "")
                + f", got shape {tuple(obs.shape)}"
            )
        dtype = self._param_dtype()
        return obs if obs.dtype == dtype else obs.to(dtype)

    def _param_dtype(self) -> torch.dtype:
        # the first parameter of the network (cheaper than iterating self.parameters() on every call)
        first = self.__dict__.get("_first_param")
        if first is None:
            first = self.__dict__["_first_param"] = next(self.parameters())
        return first.dtype

    def _net_params(self, params: Params) -> dict[str, Tensor]:
        """Names of ``dict(self.named_parameters())`` mapped to the names inside ``self.net``."""
        p = self._prefix
        sub = {k[len(p):]: v for k, v in params.items() if k.startswith(p)}
        unknown = [k for k in params if not k.startswith(p)]
        if unknown:
            raise KeyError(
                f"unknown parameter names {unknown} for {type(self).__name__}; expected names from "
                f"dict(policy.named_parameters()): {[n for n, _ in self.named_parameters()]}"
            )
        return sub

    # -- evaluation ------------------------------------------------------------------------------------
    def raw(self, obs: Tensor, params: Params | None = None):
        """The network's raw outputs (before building a distribution) with own or given parameters."""
        obs = self._check_obs(obs)
        if params is None:
            return self.net(obs)
        return functional_call(self.net, self._net_params(params), (obs,))

    def forward(self, obs: Tensor, params: Params | None = None):
        return self._wrap(self.raw(obs, params))

    def per_task(self, obs: Tensor, stacked_params: Params):
        """Evaluate task ``k``'s parameters on ``obs[k]`` for every ``k`` in one vmapped call.

        Args:
            obs: ``[num_tasks, *N, obs_dim]``.
            stacked_params: dict of ``[num_tasks, *param_shape]`` tensors (see :func:`stack_params`,
                :func:`expand_params`); names as in ``dict(self.named_parameters())``, partial allowed
                (missing names use the module's own parameters, shared by all tasks).

        Returns:
            The same kind of object as ``forward`` with batch shape ``[num_tasks, *N]``.
        """
        obs = self._check_obs(obs, min_dim=2)
        sub = self._net_params(stacked_params)
        num_tasks = obs.shape[0]
        for name, t in sub.items():
            if t.shape[0] != num_tasks:
                raise ValueError(
                    f"stacked parameter {self._prefix + name!r} has leading dimension {t.shape[0]}, but obs "
                    f"has num_tasks={num_tasks} (shape {tuple(obs.shape)}); both must be [num_tasks, ...]"
                )
        raw = vmap(lambda p, o: functional_call(self.net, p, (o,)))(sub, obs)
        return self._wrap(raw)

    def _wrap(self, raw):  # pragma: no cover - abstract
        raise NotImplementedError

    def stack_params(self, params_list: Sequence[Params]) -> dict[str, Tensor]:
        """See :func:`stack_params`."""
        return stack_params(params_list)

    def expand_params(self, num_tasks: int, params: Params | None = None) -> dict[str, Tensor]:
        """Own parameters (or ``params``) repeated for ``num_tasks`` tasks (see :func:`expand_params`)."""
        return expand_params(dict(self.named_parameters()) if params is None else params, num_tasks)


# ---------------------------------------------------------------------------------------------- Gaussian
class _GaussianHead(nn.Module):
    """``obs -> (mean [*N, act_dim], log_std [*N, act_dim])`` with a state-independent log-std."""

    def __init__(self, body: nn.Module, act_dim: int, init_log_std: float) -> None:
        super().__init__()
        self.mean = body
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        return mean, self.log_std.expand_as(mean)


class GaussianMLPPolicy(_FunctionalNet):
    r"""Diagonal Gaussian policy :math:`\pi_\theta(a\mid s) = \mathcal N(\mu_\theta(s), \mathrm{diag}
    (\sigma^2))` with an MLP mean and a learned, state-independent log-std.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden_sizes: widths of the hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        init_log_std: initial value of every entry of ``log_std``.

    Parameter names: ``net.mean.<i>.weight``, ``net.mean.<i>.bias``, ``net.log_std``.
    ``policy(obs [*N, obs_dim])`` returns ``Independent(Normal(mean, std), 1)`` whose ``log_prob`` sums over
    action dimensions: ``[*N]``. Actions are not squashed or clipped here (the sampler clips to the action
    space when stepping the environment, and the log-probability is that of the unclipped action).
    """

    is_discrete = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        if not math.isfinite(init_log_std):
            raise ValueError(f"init_log_std must be finite, got {init_log_std}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = _GaussianHead(mlp(obs_dim, act_dim, hidden_sizes, activation, output_gain=0.01),
                                 act_dim, init_log_std)

    def _wrap(self, raw: tuple[Tensor, Tensor]) -> Distribution:
        mean, log_std = raw
        return Independent(Normal(mean, log_std.exp(), validate_args=False), 1, validate_args=False)

    def mode(self, obs: Tensor, params: Params | None = None) -> Tensor:
        """The deterministic action (the mean), ``[*N, act_dim]``."""
        return self.raw(obs, params)[0]


# ---------------------------------------------------------------------------------------------- categorical
class CategoricalMLPPolicy(_FunctionalNet):
    r"""Categorical policy :math:`\pi_\theta(a\mid s) = \mathrm{softmax}(f_\theta(s))_a` over
    ``num_actions`` discrete actions.

    Parameter names: ``net.<i>.weight``, ``net.<i>.bias``. ``policy(obs [*N, obs_dim])`` returns
    ``Categorical(logits)`` with ``sample() [*N]`` (int64) and ``log_prob(a) [*N]``.
    """

    is_discrete = True

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.obs_dim, self.num_actions = obs_dim, num_actions
        self.net = mlp(obs_dim, num_actions, hidden_sizes, activation, output_gain=0.01)

    def _wrap(self, raw: Tensor) -> Distribution:
        return Categorical(logits=raw, validate_args=False)

    def mode(self, obs: Tensor, params: Params | None = None) -> Tensor:
        """The most likely action, ``[*N]`` int64."""
        return self.raw(obs, params).argmax(dim=-1)


# ---------------------------------------------------------------------------------------------- value
class ValueNetwork(_FunctionalNet):
    r"""State-value function :math:`V_\phi(s)`: ``value(obs [*N, obs_dim]) -> [*N]``.

    Same conventions as the policies (``params=``, ``per_task``); parameter names ``net.<i>.weight`` and
    ``net.<i>.bias``.
    """

    def __init__(
        self, obs_dim: int, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.net = mlp(obs_dim, 1, hidden_sizes, activation, output_gain=1.0)

    def _wrap(self, raw: Tensor) -> Tensor:
        return raw.squeeze(-1)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    init_log_std: float = 0.0,
) -> GaussianMLPPolicy | CategoricalMLPPolicy:
    """The policy for a gymnasium environment's spaces: categorical for ``Discrete(n)`` actions, Gaussian
    (state-independent log-std) for flat ``Box`` actions.

    Args:
        observation_space: a flat ``Box`` of shape ``[obs_dim]`` (e.g. ``envs.single_observation_space``).
        action_space: ``Discrete(n)`` or a ``Box`` of shape ``[act_dim]``.
        hidden_sizes: hidden layer widths.
        activation: ``"tanh"`` or ``"relu"`` (see :data:`ACTIVATIONS`).
        init_log_std: initial log standard deviation of a Gaussian policy (ignored for discrete actions).

    Raises:
        TypeError: any other observation or action space (naming it).
    """
    import gymnasium as gym

    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise TypeError(f"need a flat Box observation space, got {observation_space}")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden_sizes, activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianMLPPolicy(obs_dim, int(action_space.shape[0]), hidden_sizes, activation, init_log_std)
    raise TypeError(f"need a Discrete or flat Box action space, got {action_space}")
