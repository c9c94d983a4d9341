"""glibc's free heap given back to the system every few seconds (issue 22: each replica
<= 1 GiB at 1,000 clusters x 50,000 workloads).

Measured at 1,000 x 50,000 with 4 replicas, at the end of a cold start (`mallinfo2`
and `sys._debugmallocstats()` read in each `fleet run`): glibc's heap (what CPython
asks `malloc` for directly: objects over 512 bytes, dict tables, a status row's JSON,
socket reads) was 282-438 MiB, of which **100-225 MiB free** -- chunks freed inside the
heap, below chunks still in use, which glibc gives back to the system only when asked
(it trims the top of the heap alone). The replica serving `/api/v1/status`, which builds
a 50,000-row document every few seconds while a rollout changes every row, had the
most: 225 of 438 MiB. One `malloc_trim(0)` returned 215 MiB of its RSS (1,111 -> 901
MiB) in 82 ms, and 94-111 MiB in the others in 14-34 ms; the Python objects themselves
(pymalloc's arenas: 600-633 MiB) were not touched.

So `fleet run` calls `malloc_trim(0)` every `EVERY` seconds, in a worker thread (ctypes
lets the GIL go for the call: the loop runs on meanwhile). The free chunks stay where
they are and are reused as before; only their pages go back, and a page touched again
is a page fault, not a copy. Not glibc (musl, macOS): nothing to call, nothing done.
`AIFLEET_MALLOC_TRIM=0` turns it off (to measure against). `limit_arenas`, the other
glibc setting `fleet run` makes, caps the arenas its worker threads get.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import structlog

log = structlog.get_logger()

EVERY = 10.0
"""Seconds between two trims: a rollout's churn fragments the heap within seconds,
and a trim of a fragmented 440 MiB heap took 82 ms (in a thread)."""


def _libc_function(name: str) -> Any:
    """A function of the C library, or None where there is none (not glibc)."""
    lib = ctypes.util.find_library("c")
    if not lib:
        return None
    try:
        return getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before any worker thread starts.

    Placement and Git run in worker threads; glibc gives each thread its own arena and
    keeps the memory they free, so a big fleet's re-plans leave RSS higher for good by
    an arena's worth per thread. Same as MALLOC_ARENA_MAX=2, which an operator may
    still set to something else.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(-8, arenas)  # M_ARENA_MAX


def malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none."""
    fn = _libc_function("malloc_trim")
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int

    def trim() -> int:
        return int(fn(0))
    return trim


class Trimmer:
    """Calls `trim` every `every` seconds, off the event loop; counts the calls."""

    def __init__(self, trim: Callable[[], int], *, every: float = EVERY,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep) -> None:
        self.trim = trim
        self.every = every
        self.sleep = sleep
        self.trims = 0

    async def run(self) -> None:
        log.debug("heap_trim_started", every=self.every)
        while True:
            await self.sleep(self.every)
            await anyio.to_thread.run_sync(self.trim)
            self.trims += 1
