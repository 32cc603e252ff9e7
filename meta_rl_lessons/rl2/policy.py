r"""The RL² recurrent policy: a GRU over the trial's history, with a policy head and a value head.

At step :math:`t` of a trial the network reads the augmented observation built by
:class:`~meta_rl_lessons.envs.rl2.RL2BatchedEnv` (eq. rl2-input)

.. math:: x_t = [\,s_t,\; \mathrm{onehot}(a_{t-1}),\; r_{t-1},\; d_{t-1}\,],

updates its hidden state :math:`h_t = \mathrm{GRU}_\theta(x_t, h_{t-1})` with :math:`h_0 = 0` at the start
of every trial, and outputs :math:`\pi_\theta(\cdot \mid h_t)` (categorical logits or a Gaussian mean with a
state-independent log-std) and :math:`V_\theta(h_t)`. The hidden state is **not** reset when an episode ends
inside a trial (the done flag :math:`d_{t-1}` tells the network instead): that is what lets it carry what it
learned about the task into the next episode. It is reset between trials, because the next trial is a new
task.

Shapes: ``D`` input size, ``H`` hidden size, ``*B`` any batch dimensions (flattened internally).

===========================  ===========================  ===========================================
call                         input                        output
===========================  ===========================  ===========================================
``initial_state(*B)``                                     ``h [*B, H]`` zeros
``step(x, h, reset)``        ``x [*B, D]``, ``h [*B, H]``  ``(dist over [*B], value [*B], h' [*B, H])``
``forward(x, h0, bptt)``     ``x [T, *B, D]``             ``(dist over [T, *B], values [T, *B], h_T)``
===========================  ===========================  ===========================================
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

__all__ = ["RL2Policy"]


class RL2Policy(nn.Module):
    """GRU actor-critic for RL². The GRU is shared by the policy and value heads (one recurrent pass serves
    both, as in Duan et al.'s implementation).

    Args:
        input_dim: ``D``, size of the augmented observation (``obs_dim + act_size + 2``).
        num_actions: number of discrete actions (categorical head), or ``None``.
        action_dim: size of a continuous action (Gaussian head), or ``None``.
        hidden_size: ``H``, GRU state size (Duan et al.: 256 for bandits and MDPs).
        init_log_std: initial log-std of the Gaussian head.
    """

    def __init__(self, input_dim: int, num_actions: int | None = None, action_dim: int | None = None,
                 hidden_size: int = 256, init_log_std: float = 0.0) -> None:
        super().__init__()
        if (num_actions is None) == (action_dim is None):
            raise ValueError(f"give exactly one of num_actions (discrete) and action_dim (continuous); got "
                             f"num_actions={num_actions}, action_dim={action_dim}")
        for name, v in (("input_dim", input_dim), ("hidden_size", hidden_size),
                        ("num_actions", num_actions or 1), ("action_dim", action_dim or 1)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.input_dim, self.hidden_size = input_dim, hidden_size
        self.num_actions, self.action_dim = num_actions, action_dim
        self.discrete = num_actions is not None
        self.gru = nn.GRU(input_dim, hidden_size)
        out = num_actions if self.discrete else action_dim
        self.pi_head = nn.Linear(hidden_size, out)
        self.v_head = nn.Linear(hidden_size, 1)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))
        # Small initial policy outputs: a near-uniform first policy (as in CleanRL / rllab).
        nn.init.orthogonal_(self.pi_head.weight, 0.01)
        nn.init.zeros_(self.pi_head.bias)
        nn.init.orthogonal_(self.v_head.weight, 1.0)
        nn.init.zeros_(self.v_head.bias)

    @classmethod
    def for_env(cls, env, hidden_size: int = 256, init_log_std: float = 0.0) -> RL2Policy:
        """A policy sized for an :class:`~meta_rl_lessons.envs.rl2.RL2BatchedEnv`."""
        return cls(env.observation_shape[0], env.num_actions, env.action_dim, hidden_size, init_log_std)

    # ------------------------------------------------------------------ pieces
    def initial_state(self, *batch_shape: int) -> Tensor:
        """:math:`h_0 = 0`, ``[*B, H]``, on the policy's device."""
        return torch.zeros(*batch_shape, self.hidden_size, device=self.pi_head.weight.device)

    def distribution(self, features: Tensor) -> Distribution:
        """:math:`\\pi(\\cdot \\mid h)` from GRU outputs ``[..., H]``."""
        out = self.pi_head(features)
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)

    def value(self, features: Tensor) -> Tensor:
        """:math:`V(h)` ``[...]`` from GRU outputs ``[..., H]``."""
        return self.v_head(features).squeeze(-1)

    def _check(self, x: Tensor, lead: int) -> None:
        if x.dim() < lead + 1 or x.shape[-1] != self.input_dim:
            raise ValueError(f"RL2Policy expects inputs [..., D={self.input_dim}] with at least {lead} batch "
                             f"dimension(s), got shape {tuple(x.shape)}")

    # ------------------------------------------------------------------ one step (sampling)
    def step(self, x: Tensor, h: Tensor, reset: Tensor | None = None) -> tuple[Distribution, Tensor, Tensor]:
        """One step for a batch of trials: ``x [*B, D]``, ``h [*B, H]``; ``reset [*B]`` bool zeroes the hidden
        state of trials that start at this step (before reading ``x``).

        Returns ``(dist, value [*B], h' [*B, H])``.
        """
        self._check(x, 1)
        batch = x.shape[:-1]
        if reset is not None:
            h = h * (~reset).unsqueeze(-1).to(h.dtype)
        out, h_new = self.gru(x.reshape(1, -1, self.input_dim), h.reshape(1, -1, self.hidden_size))
        feat = out[0].reshape(*batch, self.hidden_size)
        return self.distribution(feat), self.value(feat), h_new[0].reshape(*batch, self.hidden_size)

    # ------------------------------------------------------------------ whole trials (training)
    def features(self, x: Tensor, h0: Tensor | None = None, bptt: int | None = None) -> tuple[Tensor, Tensor]:
        """GRU outputs over whole trials: ``x [T, *B, D]`` -> ``(h_{1..T} [T, *B, H], h_T [*B, H])``.

        Every column starts from ``h0`` (zeros by default: the start of a trial) and is *not* reset inside,
        so ``x`` must hold whole trials (or trial prefixes). ``bptt`` truncates backpropagation through time:
        the sequence is processed in chunks of ``bptt`` steps and the hidden state is detached between
        chunks (the forward values are unchanged; only gradients stop). ``None``: full BPTT.
        """
        self._check(x, 2)
        T, batch = x.shape[0], x.shape[1:-1]
        xs = x.reshape(T, -1, self.input_dim)
        h = (self.initial_state(xs.shape[1]) if h0 is None else h0.reshape(-1, self.hidden_size)).unsqueeze(0)
        if bptt is None or bptt >= T:
            out, h = self.gru(xs, h)
        else:
            if bptt < 1:
                raise ValueError(f"bptt must be None or a positive number of steps, got {bptt}")
            chunks = []
            for start in range(0, T, bptt):
                o, h = self.gru(xs[start:start + bptt], h)
                chunks.append(o)
                h = h.detach()
            out = torch.cat(chunks, 0)
        return out.reshape(T, *batch, self.hidden_size), h[0].reshape(*batch, self.hidden_size)

    def forward(self, x: Tensor, h0: Tensor | None = None,
                bptt: int | None = None) -> tuple[Distribution, Tensor, Tensor]:
        """``(dist over [T, *B], values [T, *B], h_T [*B, H])`` for whole trials ``x [T, *B, D]``."""
        feat, h_last = self.features(x, h0, bptt)
        return self.distribution(feat), self.value(feat), h_last
