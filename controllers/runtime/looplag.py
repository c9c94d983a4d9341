"""Event-loop lag: how late the controller's own loop wakes, measured and kept.

A task sleeps `interval` seconds again and again; each time it wakes, the difference
between when it was due and when it ran is how long the loop could not run anything
(a placement holding the GIL, a big status document, a burst of JSON). Summed, that is
`stalled()`: the seconds this loop was late since it started.

Why it matters beyond a gauge: a busy controller cannot read an answer that arrived on
time, so a request that "timed out" while the loop lagged says nothing about the
cluster. `clusters.client.KubeClient` asks `stalled()` before and after a request and
does not hold such a timeout against the cluster, and `clusters.health.HealthTracker`
counts its windows (Unreachable after, Degraded for) in loop-available seconds
(`clock() - stalled()`): saturation makes the controller slower, never makes a healthy
cluster Unreachable nor starts a failover grace (issue 22, item 0).

`stalled()` includes a wake that is overdue right now (the loop is late at this very
moment, the monitor has not run yet), so a reader never misses a stall in progress.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


class LoopLag:
    def __init__(self, interval: float = 0.1, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
                 keep: int = 600,
                 on_sample: Callable[[float], None] | None = None) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.total = 0.0
        """Seconds the loop woke late, summed over every sample."""
        self.samples = 0
        self.last = 0.0
        self._recent: deque[float] = deque(maxlen=keep)
        """The last `keep` lags (a minute at the default interval), for `worst()`."""
        self._due: float | None = None
        self._on_sample = on_sample or (lambda _lag: None)
        self.gc = GcPauses()
        """The garbage collector's pauses while `run` runs: one cause of lag."""

    def stalled(self) -> float:
        """Seconds the loop has been late so far, a stall in progress included."""
        return self.total + self.overdue()

    def overdue(self) -> float:
        """Seconds the monitor's wake is overdue right now (0: not late, or not due)."""
        due = self._due
        return 0.0 if due is None else max(0.0, self.clock() - due)

    def available(self) -> float:
        """The clock less the stalls: seconds the loop could run (a health clock)."""
        return self.clock() - self.stalled()

    def worst(self) -> float:
        return max(self._recent, default=0.0)

    def observe(self, due: float, woke: float) -> float:
        lag = max(0.0, woke - due)
        self.total += lag
        self.samples += 1
        self.last = lag
        self._recent.append(lag)
        self._on_sample(lag)
        return lag

    async def tick(self) -> float:
        """One sample: sleep `interval`, return how late the wake was."""
        due = self.clock() + self.interval
        self._due = due
        try:
            await self.sleep(self.interval)
            woke = self.clock()
            self._due = None
            return self.observe(due, woke)
        finally:
            self._due = None

    async def run(self) -> None:
        pauses = self.gc
        gc.callbacks.append(pauses.on_gc)
        try:
            while True:
                await self.tick()
        finally:
            gc.callbacks.remove(pauses.on_gc)

    def summary(self) -> dict[str, Any]:
        return {"lagSeconds": round(self.last, 4), "maxLagSeconds": round(self.worst(), 4),
                "stalledSeconds": round(self.total, 3), "samples": self.samples,
                "gc": self.gc.summary()}


class GcPauses:
    """How long the garbage collector held the interpreter, per generation.

    A full (generation 2) collection walks every tracked object of the process while
    holding the GIL: with a few hundred MiB of informer caches that is seconds in which
    neither the loop nor any thread runs (measured in `bench.busy`: a full plan in a
    thread stalled the loop 0.45 s at most with the collector on, 0.02 s with it off)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        """The longest pause of each generation's collections."""
        self.worst = 0.0
        self._started: float | None = None

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:
            return
        took = self.clock() - self._started
        self._started = None
        gen = min(2, int(info.get("generation", 0)))
        self.collections[gen] += 1
        self.seconds[gen] += took
        self.longest[gen] = max(self.longest[gen], took)
        self.worst = max(self.worst, took)

    def summary(self) -> dict[str, Any]:
        return {"collections": list(self.collections),
                "pauseSeconds": [round(s, 3) for s in self.seconds],
                "maxPauseSeconds": round(self.worst, 4)}
