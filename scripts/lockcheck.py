"""Check that this Python environment holds exactly what a lock file says.

    python scripts/lockcheck.py requirements/dev.lock

Every locked package whose environment marker applies here must be installed at its
locked version, and nothing else may be (but the project itself, installed editable
from the working tree). Exit 1 with the differences, so `make setup` cannot leave an
environment that drifted from the lock unnoticed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

PROJECT = "aifleet"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(path: Path) -> dict[str, str]:
    """name -> version for every pin in the lock that applies to this interpreter."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m is None:
            continue
        name, version, marker = m.groups()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonicalize_name(name)] = version
    return pins


def installed() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonicalize_name(name)] = dist.version
    out.pop(PROJECT, None)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: lockcheck.py LOCKFILE", file=sys.stderr)
        return 2
    want, have = locked(Path(argv[1])), installed()
    problems = [f"{n}: locked {v}, installed {have.get(n, 'nothing')}"
                for n, v in sorted(want.items()) if have.get(n) != v]
    problems += [f"{n}: installed {v}, not in the lock" for n, v in sorted(have.items())
                 if n not in want]
    if problems:
        print(f"{argv[1]}: this environment differs from the lock:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"{argv[1]}: {len(want)} packages installed, exactly as locked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
