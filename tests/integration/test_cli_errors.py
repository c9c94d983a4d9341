"""The CLI's error contract, from the outside: whatever goes wrong, one line on stderr
and exit 2, never a traceback (`fleet` in a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLEET = [sys.executable, "-c", "import sys; from controllers.cli import main; sys.exit(main())"]
ROOT = Path(__file__).resolve().parents[2]


def _fleet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEET, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("args", [
    ["run", "--log-level", "bogus", "--repo", "/nonexistent"],
    ["plan", "--verify", "/etc/hostname"],
])
def test_a_command_that_cannot_run_says_so_in_one_line_with_exit_2(args: list[str]) -> None:
    done = _fleet(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fleet"), done.stderr


def test_fleet_debug_shows_the_traceback_of_an_unexpected_error() -> None:
    done = _fleet("run", "--log-level", "bogus", "--repo", "/nonexistent",
                  env={"FLEET_DEBUG": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr
