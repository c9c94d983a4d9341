"""What blocks the event loop: a poor man's py-spy, in the controller itself.

`LoopLag` says *how late* the loop woke; this says *what it was doing*. A watchdog
thread looks every `every` seconds whether the loop is overdue right now (its
`LoopLag` sleep was due more than `threshold` seconds ago and has not woken) and, if
so, takes the loop thread's stack (`sys._current_frames()`). Samples are summed by
stack: each one stands for `every` seconds of a blocked loop, so `top()` ranks the
code that held the loop longest (a placement's result unpickled, a status build, an
informer's list). The thread needs the GIL to look: code that holds it throughout (a
garbage collection, a C call that does not release it) is seen when it lets go, at
its last Python frame, and `GcPauses` counts collections separately.

Off unless asked for: `fleet run` starts it with `AIFLEET_TRACE_BLOCKERS=1` and logs
the top stacks (`loop_blockers`, warning) every `REPORT_EVERY` seconds (`report`), so
a benchmark reads them from the controller's log.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

from controllers.runtime.looplag import LoopLag

REPORT_EVERY = 30.0

ROOT = str(Path(__file__).resolve().parents[2]) + "/"
OURS = ("controllers/", "clusters/", "fleet/", "workloads/")
"""Frames of these packages (of this checkout) are named in a stack; the innermost
frame always is."""


def _ours(path: str) -> str | None:
    if not path.startswith(ROOT):
        return None
    rel = path[len(ROOT):]
    return rel if rel.startswith(OURS) else None


def stack_key(frame: FrameType | None, depth: int = 8) -> tuple[str, ...]:
    """The innermost frame, then up to `depth` frames of our own code, innermost first:
    `file:function` with the path from the package on (no line numbers: a loop in one
    function is one entry, not one per line it was caught on)."""
    out: list[str] = []
    first = True
    while frame is not None and len(out) < depth:
        path = frame.f_code.co_filename
        mine = _ours(path)
        if first or mine is not None:
            where = mine or path.rsplit("/", 1)[-1]
            out.append(f"{where}:{frame.f_code.co_name}")
        first = False
        frame = frame.f_back
    return tuple(out)


def _idle(frame: FrameType) -> bool:
    """The loop waits in its selector: late in waking, not blocked by code."""
    return frame.f_code.co_name in ("select", "poll") and "selectors" in \
        frame.f_code.co_filename


class Blockers:
    def __init__(self, lag: LoopLag, *, threshold: float = 0.05,
                 every: float = 0.01) -> None:
        self.lag = lag
        self.threshold = threshold
        self.every = every
        self.samples: Counter[tuple[str, ...]] = Counter()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    def blocked(self) -> bool:
        """The loop is late by more than `threshold` at this moment."""
        return self.lag.overdue() > self.threshold

    def sample(self) -> None:
        """One look: the loop thread's stack, counted, if the loop is blocked now."""
        if not self.blocked():
            return
        frame = sys._current_frames().get(self._loop_thread)
        if frame is not None and not _idle(frame):
            self.samples[stack_key(frame)] += 1

    def start(self) -> None:
        """Watch the calling thread's loop from a daemon thread."""
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="loop-blockers",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def top(self, n: int = 8) -> list[tuple[float, tuple[str, ...]]]:
        """The `n` stacks that held the loop longest: (seconds, stack)."""
        # a copy first: the watchdog thread adds stacks meanwhile, and iterating the
        # Counter itself raised "dictionary changed size during iteration" in the loop
        # (it ended a traced `fleet run`); `dict(...)` copies in C, under the GIL
        taken = Counter(dict(self.samples))
        return [(round(count * self.every, 2), key) for key, count in taken.most_common(n)]


async def report(blockers: Blockers, every: float = REPORT_EVERY) -> None:
    """Log the top blockers every `every` seconds (the totals since the start)."""
    import anyio
    import structlog

    log = structlog.get_logger()
    blockers.start()
    try:
        while True:
            await anyio.sleep(every)
            log.warning("loop_blockers", top=[{"seconds": s, "stack": list(k)}
                                              for s, k in blockers.top()])
    finally:
        blockers.stop()
