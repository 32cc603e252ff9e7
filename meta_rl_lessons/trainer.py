"""The one protocol every trainer follows, and the loop they share.

Every trainer in the package (PPO, TRPO, REINFORCE, MAML-TRPO, supervised MAML, RL², the adaptive
search's PPO trials) is driven the same way, from a notebook or by the ``meta-rl`` run loop
(:func:`meta_rl_lessons.runs.run`)::

    trainer = PPO(config)
    trainer.train(callback=lambda t, row: print(row["episode_return"]))   # or, one at a time:
    while trainer.iterations_done < trainer.total_iterations:
        row = trainer.iteration()
    state = trainer.state_dict()     # complete: another trainer built from the same config that loads it
    trainer.close()                  # continues with exactly the same next iterations

=========================  ========================================================================
member                     contract
=========================  ========================================================================
``config``                 the config dataclass the trainer was built from
``iteration()``            one iteration (collect, update); returns its row of metrics (``dict``)
``iterations_done``        iterations completed so far (``int``)
``total_iterations``       iterations a full run has (from the config)
``train(callback)``        the remaining iterations; ``callback(trainer, row)`` after each, returning
                           ``False`` stops early; returns the :class:`~meta_rl_lessons.rl.utils.CSVLogger`
``state_dict()``           *everything* the future depends on: networks, optimisers, normalisers, the
                           sampler's running episodes and environments, every random generator (the
                           trainer's own and the process-wide ones it draws from); a snapshot (copies, not
                           the live tensors ``nn.Module.state_dict`` returns) of weights_only-safe values
``load_state_dict(state)`` the inverse, on a trainer built from the same config; accepts the dict as
                           returned and as read back by :func:`~meta_rl_lessons.serialization.load_checkpoint`
``close()``                release environments and worker processes (idempotent)
``name``, ``return_key``   the algorithm's command-line name and the row column that is "the return"
=========================  ========================================================================

The process-wide generators (Python's ``random``, NumPy's legacy one, torch's) belong to a trainer's state
because its iterations draw from them (``torch.randperm`` for minibatches, ``Distribution.sample`` for
actions): :func:`rng_state` and :func:`load_rng_state` take and restore them, and ``load_state_dict``
restores them last, so a trainer that loaded a state is where the saved one was, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["Callback", "Row", "Trainer", "TrainerBase", "load_rng_state", "rng_state"]

Row = dict[str, Any]
"""One iteration's metrics: ``{"iteration": 3, "env_steps": 12288, "episode_return": 51.2, ...}``."""

Callback = Callable[[Any, Row], "bool | None"]
"""``callback(trainer, row)`` after each iteration of :meth:`Trainer.train`; returning ``False`` stops."""


@runtime_checkable
class Trainer(Protocol):
    """What every trainer implements (see the module docstring for the contract of each member)."""

    config: Any
    iterations_done: int
    name: ClassVar[str]
    return_key: ClassVar[str]

    @property
    def total_iterations(self) -> int: ...

    def iteration(self) -> Row: ...

    def train(self, callback: Callback | None = None) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def rng_state(generators: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The process-wide generators' states, and those of ``generators`` (name -> generator), for a
    trainer's ``state_dict``."""
    from meta_rl_lessons.serialization import generator_state, global_rng_state

    return {"global": global_rng_state(),
            "own": {name: generator_state(g) for name, g in (generators or {}).items()}}


def load_rng_state(state: Mapping[str, Any], generators: Mapping[str, Any] | None = None) -> None:
    """Inverse of :func:`rng_state`: the named ``generators`` in place, then the process-wide ones.

    Raises:
        ValueError: the state names other generators than ``generators`` (a different kind of trainer).
    """
    from meta_rl_lessons.serialization import set_generator_state, set_global_rng_state

    generators = generators or {}
    own = state["own"]
    if set(own) != set(generators):
        raise ValueError(f"the state has generators {sorted(own)} but this trainer has {sorted(generators)}")
    for name, gen in generators.items():
        set_generator_state(gen, own[name])
    set_global_rng_state(state["global"])


class TrainerBase:
    """The members every trainer shares: :meth:`train`, :meth:`close`, use as a context manager.

    A subclass sets ``name`` and ``return_key``, and defines ``config``, ``iterations_done``, ``logger``,
    :attr:`total_iterations`, :meth:`iteration`, :meth:`state_dict` and :meth:`load_state_dict`.
    """

    name: ClassVar[str] = ""
    return_key: ClassVar[str] = "episode_return"
    env_steps_per_iteration: ClassVar[bool] = False
    """Whether a row's ``env_steps`` counts that iteration's steps (the run loop sums them into
    ``env_steps_total``) rather than all steps so far."""
    config: Any
    iterations_done: int
    logger: Any

    @property
    def total_iterations(self) -> int:
        raise NotImplementedError

    def iteration(self) -> Row:
        raise NotImplementedError

    def train(self, callback: Callback | None = None, *, progress: bool | None = None) -> Any:
        """Run the remaining iterations (up to :attr:`total_iterations`); returns the metrics logger.

        Args:
            callback: ``callback(trainer, row)`` after each iteration; returning ``False`` stops.
            progress: draw a progress bar (default: the config's ``progress`` field, else no bar).
        """
        from meta_rl_lessons.rl.utils import progress as progress_bar

        show = bool(getattr(self.config, "progress", False)) if progress is None else progress
        bar = progress_bar(total=self.total_iterations, initial=self.iterations_done, desc=self.name or
                           type(self).__name__, enabled=show, unit="it") if show else None
        try:
            while self.iterations_done < self.total_iterations:
                row = self.iteration()
                if bar is not None:
                    value = row.get(self.return_key)
                    if isinstance(value, float):
                        bar.set_postfix({self.return_key: f"{value:.3g}"}, refresh=False)
                    bar.update(1)
                if callback is not None and callback(self, row) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self.logger

    def close(self) -> None:
        """Release environments and worker processes (nothing to release by default)."""

    def __enter__(self) -> TrainerBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
