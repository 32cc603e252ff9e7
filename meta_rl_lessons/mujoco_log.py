"""MuJoCo's C-level warnings routed to Python, for everything that compiles gymnasium's MuJoCo models.

:func:`mujoco_warnings_to_python` is used by the locomotion families (``envs/``) and by the RL code's vector
environments (``rl/sampling.py``); it lives at the top of the package so that neither imports the other.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["mujoco_warnings_to_python"]

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
