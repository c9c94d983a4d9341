"""A process's descendants, read from /proc (Linux; psutil is not locked).

A process is known by (pid, start time in clock ticks since boot, `/proc/PID/stat`
field 22), so a pid the kernel hands to a new process after ours ended is not taken
for ours. A zombie (state Z: exited, not yet reaped by whoever adopted it) counts as
gone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    started: int
    """Clock ticks after boot (`/proc/PID/stat` field 22)."""
    state: str
    cmdline: str


def read(pid: int) -> Proc | None:
    """The process `pid` now, or None when there is none."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    rest = stat[stat.rindex(")") + 2:].split()
    return Proc(pid, int(rest[1]), int(rest[19]), rest[0],
                raw.replace(b"\0", b" ").decode(errors="replace").strip())


def everyone() -> list[Proc]:
    found = []
    for entry in os.listdir(PROC):
        if entry.isdigit() and (p := read(int(entry))) is not None:
            found.append(p)
    return found


def descendants(pid: int) -> list[Proc]:
    """Every process below `pid` now (children, their children...)."""
    by_parent: dict[int, list[Proc]] = {}
    for p in everyone():
        by_parent.setdefault(p.ppid, []).append(p)
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def alive(p: Proc) -> bool:
    """`p` still runs: the same process (same start), not a zombie."""
    now = read(p.pid)
    return now is not None and now.started == p.started and now.state != "Z"


def still_running(procs: list[Proc]) -> list[Proc]:
    return [p for p in procs if alive(p)]


def port_free(port: int) -> bool:
    """Nothing holds `port` on 127.0.0.1, bound or listening (no SO_REUSEADDR: a socket
    only bound, as the one handed to the front is until it serves, is found too)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
