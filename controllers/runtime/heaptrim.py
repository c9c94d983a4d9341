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

So `fleet run` calls `malloc_trim(0)` every `EVERY` seconds, and sooner while its RSS
grows (`STEP`), from a thread of its own (ctypes lets the GIL go for the call: the loop
runs on meanwhile). The free chunks stay where
they are and are reused as before; only their pages go back, and a page touched again
is a page fault, not a copy. Not glibc (musl, macOS): nothing to call, nothing done.
`AIFLEET_MALLOC_TRIM=0` turns it off (to measure against). `limit_arenas`, the other
glibc setting `fleet run` makes, caps the arenas its worker threads get. `fleet sim up`,
as long-lived and holding many simulated API servers, makes both too (`start`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger()

EVERY = 10.0
"""Seconds between two trims at the most: a rollout's churn fragments the heap within
seconds, and a trim of a fragmented 440 MiB heap took 82 ms (in a thread)."""

CHECK = 1.0
"""Seconds between two looks at the process's RSS (one read of /proc/self/statm)."""

STEP = 24 << 20
"""Bytes of RSS growth since the last trim that bring the next one forward: while a
rollout churns the heap, what is freed goes back within seconds instead of piling up
for 10 s (1,000 x 50,000, replica 0: 16-50 MiB back per trim). It did not lower that
replica's peak, which was live memory (idle write connections' TLS buffers:
`clusters.adapter.AdapterOptions.write_keepalive`). Growth that is real (the informers
filling) costs one trim per step, which finds little to give back."""

LOG_FREED = 16 << 20
"""A trim that gives back at least this much is logged (`heap_trimmed`)."""


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


def rss_bytes() -> int | None:
    """This process's resident set, in bytes; None where /proc cannot tell."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Trimmer:
    """Calls `trim` every `every` seconds, and sooner whenever the RSS grew by `step`
    bytes since the last trim (looked at every `check` seconds), in a thread of its
    own: a loop busy for seconds (the end of a big rollout, when the heap grows
    fastest) would otherwise hold the trims back with it (measured: 19 s without one
    while replica 0 grew by 170 MiB). Counts the trims and the bytes they gave back."""

    def __init__(self, trim: Callable[[], int], *, every: float = EVERY,
                 check: float = CHECK, step: int = STEP,
                 rss: Callable[[], int | None] = rss_bytes,
                 wait: Callable[[float], bool] | None = None) -> None:
        self.trim = trim
        self.every = every
        self.check = min(check, every)
        self.step = step
        self.rss = rss
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        """Waits up to the seconds given; True: stop."""
        self.trims = 0
        self.early = 0
        """Trims brought forward by growth (included in `trims`)."""
        self.freed = 0
        """Bytes of RSS the trims gave back, summed (as the RSS read before and after)."""

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="heap-trim", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        log.debug("heap_trim_started", every=self.every, step=self.step)
        base = self.rss()
        waited = 0.0
        while not self.wait(self.check):
            waited += self.check
            now = self.rss()
            grew = base is not None and now is not None and now - base >= self.step
            if not grew and waited < self.every:
                continue
            self.trim()  # ctypes lets the GIL go for the call
            after = self.rss()
            self.trims += 1
            if grew and waited < self.every:
                self.early += 1
            waited = 0.0
            if now is not None and after is not None:
                gave = max(0, now - after)
                self.freed += gave
                if gave >= LOG_FREED:
                    log.info("heap_trimmed", freed_mib=gave >> 20, rss_mib=after >> 20,
                             grew=grew)
            base = after


def start() -> Trimmer | None:
    """This process's trimmer, started; None with `AIFLEET_MALLOC_TRIM=0` or where the
    C library has no `malloc_trim`. A setting of the whole process, so made by a
    command (`fleet run`, `fleet sim up`), never by a library a test runs in-process.
    Its thread is a daemon: it ends with the process if not stopped before."""
    if os.environ.get("AIFLEET_MALLOC_TRIM") == "0":
        return None
    trim = malloc_trim()
    if trim is None:
        return None
    trimmer = Trimmer(trim)
    trimmer.start()
    return trimmer
