"""A work queue with per-key coalescing, per-key backoff and bounded concurrency.

The shape of client-go's workqueue and kopf's per-object queues:
- `add(key)` while the key waits: nothing more (events coalesce into one reconcile);
- `add(key)` while the key is being processed: it runs once more afterwards, so the
  last event is never lost and one key is never processed twice at the same time;
- a handler that raises is retried after an exponential, per-key backoff (reset on
  success); one that returns a number of seconds is looked at again after that;
- at most `concurrency` keys are processed at once.

Reconcilers are level-triggered: a key means "look at this again", not "this happened".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import structlog

log = structlog.get_logger()

K = TypeVar("K", bound=Hashable)
Handler = Callable[[K], Awaitable[float | None]]


@dataclass(slots=True)
class QueueStats:
    processed: int = 0
    failures: int = 0
    durations: list[float] = field(default_factory=list)
    backoffs: list[float] = field(default_factory=list)
    """The retry delays scheduled after failures, newest last (the last 1000)."""

    def observe(self, seconds: float) -> None:
        self.durations.append(seconds)
        del self.durations[:-1000]


class WorkQueue(Generic[K]):
    def __init__(self, name: str, handler: Handler[K], *, concurrency: int = 4,
                 base_backoff: float = 0.5, max_backoff: float = 60.0) -> None:
        self.name = name
        self.handler = handler
        self.concurrency = concurrency
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.stats = QueueStats()
        self._ready: deque[K] = deque()
        """Keys waiting, oldest first (a deque: taking the oldest of 1,000 queued
        clusters is O(1), where a list's pop(0) moved every other key)."""
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._wake = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self._ready) + len(self._timers)

    def add(self, key: K, after: float = 0.0) -> None:
        if after > 0:
            if key in self._timers or key in self._queued:
                return
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(after, self._fire, key)
            return
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._ready.append(key)
        self._wake.set()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self.concurrency):
                tg.start_soon(self._worker)

    async def _next(self) -> K:
        while not self._ready:
            self._wake.clear()
            await self._wake.wait()
        key = self._ready.popleft()
        self._queued.discard(key)
        self._active.add(key)
        return key

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            started = time.perf_counter()
            again: float | None = None
            try:
                again = await self.handler(key)
                self._failures.pop(key, None)
            except Exception as e:  # noqa: BLE001 - the loop driver: retry, never die
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                self.stats.failures += 1
                again = min(self.max_backoff, self.base_backoff * 2 ** (n - 1))
                self.stats.backoffs.append(again)
                del self.stats.backoffs[:-1000]
                log.warning("reconcile_failed", queue=self.name, key=str(key), attempt=n,
                            retry_in=round(again, 2), error=f"{type(e).__name__}: {e}")
            finally:
                self.stats.processed += 1
                self.stats.observe(time.perf_counter() - started)
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add(key, after=again)
