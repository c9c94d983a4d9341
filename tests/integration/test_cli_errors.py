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
    ["validate", "/nonexistent", "--worktree"],
])
def test_a_command_that_cannot_run_says_so_in_one_line_with_exit_2(args: list[str]) -> None:
    done = _fleet(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fleet"), done.stderr




@pytest.mark.parametrize(("args", "said"), [
    (["--repo", "/nonexistent"], "--repo /nonexistent: no such file or folder"),
    (["--repo", "/tmp", "--poll-interval", "-5"], "--poll-interval"),
    (["--repo", "/tmp", "--cluster-concurrency", "0"], "--cluster-concurrency"),
    (["--repo", "/tmp", "--listen", "nope"], "'nope' is not host:port"),
    (["--repo", "/tmp", "--log-level", "bogus"], "--log-level"),
])
def test_fleet_run_refuses_bad_settings_at_start(args: list[str], said: str) -> None:
    done = _fleet("run", *args)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr


def test_fleet_run_on_a_busy_port_is_one_line() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = _fleet("run", "--repo", "/tmp", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
