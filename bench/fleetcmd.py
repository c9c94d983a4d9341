"""Timing one `fleet` command the way the benchmarks report it.

Every benchmark that times the CLI runs it in a fresh process (imports included, as a
user or CI job pays them) and reports wall and CPU time: on a shared 2-core machine
other work stretches wall time without changing what the command costs, and commands
that use the second core show CPU above wall. `calibrate()` is the speed of the machine
at that moment (it varies 2-3x through a day), printed next to a figure.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = "for i in range(20_000_000): pass"


@dataclass(frozen=True, slots=True)
class Timed:
    wall: float
    cpu: float
    """User + system seconds of the command and the children it waited for."""
    returncode: int
    stdout: str
    """Empty when stdout went to a file."""
    stderr: str


def run_fleet(*args: str, stdout: IO[str] | None = None) -> Timed:
    """`fleet ARGS` in a fresh interpreter, from this source tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "controllers.cli", *args],
                       stdout=stdout if stdout is not None else subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu, r.returncode, r.stdout or "", r.stderr or "")


def clone(src: Path, dst: Path) -> Path:
    """A bare clone through git's pack protocol, as a CI runner's checkout fetches the
    repo: its objects are in a pack, where the built repo has 10,000 loose ones (each
    read is a file open and an inflate: about 3x slower to read)."""
    subprocess.run(["git", "clone", "--quiet", "--bare", "--no-local", str(src), str(dst)],
                   check=True)
    return dst


def calibrate() -> float:
    """Seconds this machine takes for a 20M-iteration empty Python loop, now."""
    t = time.perf_counter()
    exec(CALIBRATION)  # as module-level code, like the calibration the README quotes
    return time.perf_counter() - t
