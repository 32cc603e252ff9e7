"""Build hooks; everything else about the package is in pyproject.toml.

The wheel carries ``meta_rl_lessons_gym.pth`` at the top of site-packages, so that gymnasium finds the
``MetaRL/...`` ids in a fresh interpreter (see meta_rl_lessons/_gym_hook.py for why a .pth file). setuptools
does not copy top-level files into editable installs, so the editable wheel gets the same line explicitly.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "meta_rl_lessons_gym.pth"
PTH_LINE = "import meta_rl_lessons._gym_hook\n"


class BuildPyWithPth(build_py):
    """build_py that also writes the .pth file next to the package (regular wheels, ``pip install .``)."""

    def run(self):
        super().run()
        with open(os.path.join(self.build_lib, PTH_NAME), "w") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH_NAME)]


cmdclass = {"build_py": BuildPyWithPth}

try:  # editable installs (``pip install -e .``): add the line to the wheel the chosen strategy writes
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithPth:
        """Delegates to setuptools' editable strategy, then adds the .pth line to the same wheel."""

        def __init__(self, strategy):
            self._strategy = strategy

        def __call__(self, wheel, files, mapping):
            self._strategy(wheel, files, mapping)
            wheel.writestr(PTH_NAME, PTH_LINE)

        def __enter__(self):
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc):
            return self._strategy.__exit__(*exc)

    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = EditableWheelWithPth
except ImportError:  # an old setuptools without PEP 660 support: regular installs still get the file
    pass

setup(cmdclass=cmdclass)
