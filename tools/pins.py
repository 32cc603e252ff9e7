"""Print the exact pins of environment.yml's pip section as a pip constraints file.

`make setup` installs with these constraints, so the versions CI tests are the ones environment.yml names.
Usage: python tools/pins.py environment.yml > .venv/constraints.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^\s*-\s+([A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+)\s*(#.*)?$")


def pins(path: Path) -> list[str]:
    """The ``name==version`` lines of the file, in order (the editable install line is skipped)."""
    return [m.group(1) for line in path.read_text().splitlines() if (m := PIN.match(line))]


if __name__ == "__main__":
    print("\n".join(pins(Path(sys.argv[1] if len(sys.argv) > 1 else "environment.yml"))))
