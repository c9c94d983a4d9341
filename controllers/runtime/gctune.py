"""The garbage collector, tuned so its full collections do not stall the event loop.

Measured (issue 22; `controllers.runtime.looplag.GcPauses`, `bench.busy --heap`): with
the interpreter's defaults, the largest remaining cause of event-loop lag in a big
controller is CPython's full (generation 2) collection. It walks every container object
the process tracks while holding the GIL: with the informer caches, the plan and the
rendered objects of 5,000 workloads over 50 clusters that was 18 pauses, 14.2 s in all,
the longest 1.88 s, in one `bench.e2e` run; the loop, heartbeats included, waits.

What the collector does (CPython 3.11, `Modules/gcmodule.c`, `collect_generations`, and
the note in `Include/internal/pycore_gc.h`): a young collection runs after `threshold0`
net allocations of container objects; every `threshold1` of those, generation 1; a full
one after `threshold2` generation-1 collections *and* only once the objects promoted to
the old generation since the last full collection exceed 25% of those that survived it
(`long_lived_pending > long_lived_total / 4`). Its cost is the number of objects it
walks. `gc.freeze()` moves every tracked object to a permanent generation that no
collection walks (they are still freed by reference counting when dropped).

So, two settings, each for one reason:

1. `freeze()` once the controller's state is loaded (the first plan made: the repo's
   spec, the informers' first lists, the plan) and again after a big plan (at most once
   per `SETTLE_EVERY` seconds): what lives long is set aside, and a full collection
   walks only what came since. A young collection of generations 0 and 1 first frees
   the young cycles, so they are not frozen. The price: a reference cycle that was
   already old (in generation 2) when it was frozen is never collected (its memory is
   kept). The controller's long-lived state (dicts of JSON, frozen dataclasses) holds
   no cycles of its own; `bench.busy --heap` prints the frozen count after each settle.
2. `THRESHOLDS`: `threshold0` 700 -> 10,000. A controller allocates in bursts (an
   informer list, a plan's result, a status document); a short young generation promotes
   the still-referenced middle of such a burst to the old generation, where only a full
   collection can free it, and every promotion brings the next full collection nearer.
   With 10,000 a burst's temporaries are mostly gone by refcount before a young
   collection looks, and each young collection is still milliseconds (it walks at most
   ~10,000 young objects). `threshold1`, `threshold2` stay at 10: the 25% rule above
   already spaces full collections by the heap's size.

`tune()` is called once when the manager starts; `Settler.settle()` after each plan.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger()

THRESHOLDS = (10_000, 10, 10)
"""`gc.set_threshold` values; see the module docstring for why each."""

SETTLE_EVERY = 60.0
"""Seconds between two freezes after plans: each one freezes the cycles already old
then (never collected), so a controller that re-plans every second does not freeze
every second."""


def tune() -> tuple[int, ...]:
    """Set `THRESHOLDS`; return the thresholds they replace."""
    before: tuple[int, ...] = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    return before


class Settler:
    """Freezes the heap after the state is loaded and after big plans (rate-limited)."""

    def __init__(self, *, every: float = SETTLE_EVERY,
                 clock: Callable[[], float] = time.monotonic,
                 freeze: Callable[[], None] = gc.freeze,
                 collect: Callable[[int], Any] = gc.collect) -> None:
        self.every = every
        self.clock = clock
        self._freeze = freeze
        self._collect = collect
        self.settled = 0
        """How many times the heap was frozen."""
        self._last: float | None = None

    def settle(self, *, force: bool = False) -> bool:
        """Freeze what lives now, unless that was done less than `every` seconds ago
        (`force`: regardless). Returns whether it froze."""
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every:
            return False
        self._last = now
        started = time.perf_counter()
        self._collect(1)  # the young cycles go now rather than be frozen for ever
        self._freeze()
        self.settled += 1
        log.info("heap_settled", frozen=gc.get_freeze_count(),
                 seconds=round(time.perf_counter() - started, 3))
        return True
