"""The controller's side of the decision ledger: record now, write in batches, never block.

Reconcile loops call `ledger.record(...)` for every decision; it stamps the time, checks
the fields (an unknown event or field is a bug, raised at once) and buffers the entry.
`run()` lives in the manager's task group and flushes the buffer in a worker thread
(pygit2 blocks) every `interval` seconds, or as soon as `max_batch` entries wait. A
failed write (remote down, push refused too often) keeps the entries, in order, at the
front of the buffer and retries with backoff: a decision is never dropped because Git
was slow. On cancellation, one last flush is attempted (bounded by `shutdown_timeout`).

    ledger = Ledger(LedgerWriter(mirror_path, remote="origin"))
    tg.start_soon(ledger.run)
    ledger.record("Placed", "nlp-team/train", commit=sha, cluster="eu-fra-1",
                  jurisdiction="DE", data_class="eu-personal", policy_version=v,
                  flavour="h100-80gb", gpus=32, reason="best fit")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from fleet.ledger import Entry, Event, Record
from workloads.errors import WorkloadsError
from workloads.ledger_store import LedgerWriter

log = structlog.get_logger()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ledger:
    def __init__(self, writer: LedgerWriter, *, interval: float = 1.0, max_batch: int = 1000,
                 max_backoff: float = 30.0, shutdown_timeout: float = 10.0,
                 clock: Callable[[], str] = utc_now) -> None:
        self.writer = writer
        self.interval = interval
        self.max_batch = max_batch
        self.max_backoff = max_backoff
        self.shutdown_timeout = shutdown_timeout
        self.clock = clock
        self._buffer: list[Entry] = []
        self._wake: anyio.Event | None = None  # made in run(): an Event needs the loop
        self.written = 0
        self.failures = 0
        self.last: Record | None = None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def record(self, event: Event, workload: str, **fields: Any) -> None:
        """Buffer one decision (non-blocking). Fields are `fleet.ledger.Entry`'s."""
        self._buffer.append(Entry(time=self.clock(), event=event, workload=workload, **fields))
        if len(self._buffer) >= self.max_batch and self._wake is not None:
            self._wake.set()

    async def flush(self) -> int:
        """Write everything buffered now; the number of records written."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        try:
            records = await anyio.to_thread.run_sync(self.writer.append, batch)
        except BaseException:
            self._buffer[:0] = batch  # keep order: these go first next time
            raise
        self.written += len(records)
        self.last = records[-1]
        log.info("ledger_flushed", records=len(records), head_seq=records[-1].seq,
                 attempts=self.writer.attempts)
        return len(records)

    async def run(self) -> None:
        """Flush every `interval` (or at `max_batch`) until cancelled, then flush once more."""
        backoff = 0.0
        streak = 0
        try:
            while True:
                self._wake = wake = anyio.Event()
                if len(self._buffer) >= self.max_batch and not backoff:
                    wake.set()
                with anyio.move_on_after(backoff or self.interval):
                    await wake.wait()
                try:
                    await self.flush()
                    backoff, streak = 0.0, 0
                except (WorkloadsError, OSError) as e:
                    self.failures += 1
                    streak += 1
                    backoff = min(self.max_backoff, max(self.interval, 0.5) *
                                  math.pow(2, min(streak, 10)))
                    log.warning("ledger_write_failed", error=str(e)[:300],
                                pending=self.pending, retry_in=backoff)
        finally:
            with anyio.move_on_after(self.shutdown_timeout, shield=True):
                try:
                    await self.flush()
                except (WorkloadsError, OSError) as e:
                    log.error("ledger_final_flush_failed", error=str(e)[:300],
                              pending=self.pending)
