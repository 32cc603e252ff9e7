"""Register the package's gymnasium ids as soon as ``gymnasium`` is imported, without importing the package.

Gymnasium 1.x has no plugin mechanism (0.26-0.29's ``gymnasium.envs`` entry-point group was removed in 1.0),
so a package's ids exist only after something imports it. The installed wheel therefore carries a one-line
``meta_rl_lessons_gym.pth`` (see ``setup.py``) that imports this module when Python starts. It costs one
tiny import and one entry in ``sys.meta_path``; the first time ``gymnasium.envs`` is imported, the entry
runs :func:`meta_rl_lessons.registration.register_envs` after it and removes itself. It never raises: a
failure here must not break ``import gymnasium``, it only leaves the ids unregistered (importing
:mod:`meta_rl_lessons.envs` registers them too).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

_TARGET = "gymnasium.envs"


def _register() -> None:
    try:
        from meta_rl_lessons.registration import register_envs

        register_envs()
    except Exception as exc:  # see the module docstring
        warnings.warn(f"meta_rl_lessons could not register its gymnasium ids: {exc!r}", stacklevel=2)


class _LoaderThenRegister(importlib.abc.Loader):
    """Runs the real loader of ``gymnasium.envs``, then registers the ids."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register()


class _AfterGymnasiumEnvs(importlib.abc.MetaPathFinder):
    """A one-shot finder: answers only for ``gymnasium.envs``, by wrapping the spec the other finders give."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        _uninstall()  # before find_spec below, which would otherwise ask this finder again
        try:
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            spec.loader = _LoaderThenRegister(spec.loader)
            return spec
        except Exception:  # let the normal import machinery try (and report) instead
            return None


_FINDER = _AfterGymnasiumEnvs()


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Arrange for the ids to be registered when ``gymnasium.envs`` is imported (now, if it already is)."""
    if _TARGET in sys.modules:
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


install()
