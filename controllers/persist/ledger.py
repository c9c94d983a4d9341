"""The controller's side of the decision ledger: record now, write in batches, never block.

Reconcile loops call `ledger.record(...)` for every decision; it stamps the time, checks
the fields (an unknown event or field is a bug, raised at once) and buffers the entry.
`run()` lives in the manager's task group and flushes the buffer in a worker thread
(pygit2 blocks) every `interval` seconds, or as soon as `max_batch` entries wait. A
failed write (remote down, push refused too often) keeps the entries, in order, at the
front of the buffer and retries with backoff: a decision is never dropped because Git
was slow. On cancellation, one last flush is attempted (bounded by `shutdown_timeout`).

Nothing acted on goes unrecorded. With a `Journal` (a file in the state directory),
every entry is written there the moment it is recorded -- before the action it
describes, since decisions are recorded before they are carried out (Placed before the
apply, DriftCorrected before the correction) -- and an apply's intent (cluster, commit,
workloads) is journaled before the apply starts. A `kill -9` at any point leaves the
entry or the intent in the journal; the next process writes the entries the ledger does
not have yet (`replay`) and turns every open intent into records, by what the cluster
shows (`controllers.runtime.records.Records.reconcile`).

Failures are loud: `problem()` says why the ledger cannot be trusted to take records
now -- the remote's tip was rewritten under us (`LedgerForged`, never chained onto), or
writes kept failing with `max_backlog` records or more waiting. The manager turns that
into a status condition, a failing `/readyz`, metrics and (fail closed) no further
cluster actions until the ledger is writable again.

    ledger = Ledger(LedgerWriter(mirror_path, remote="origin"))
    tg.start_soon(ledger.run)
    ledger.record("Placed", "nlp-team/train", commit=sha, cluster="eu-fra-1",
                  jurisdiction="DE", data_class="eu-personal", policy_version=v,
                  flavour="h100-80gb", gpus=32, reason="best fit")
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from fleet.ledger import Entry, Event, Record
from workloads.errors import WorkloadsError
from workloads.ledger_store import LedgerForged, LedgerWriter

log = structlog.get_logger()


COMPACT_AFTER = 1000
"""Journal lines appended with nothing recorded, from which an idle flush compacts it."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, slots=True)
class Intent:
    """An action about to change a cluster: apply these workloads at this commit."""

    id: str
    cluster: str
    commit: str | None
    workloads: tuple[str, ...]


class Journal:
    """Entries recorded but not known to be in the ledger, and intents of actions under
    way: one JSON line each, appended to a file in the state directory.

    A plain `write` per line, no fsync: what a killed process wrote is in the page
    cache and read by the next one (a machine crash is beyond this, as for every
    other file of the state directory). Rewritten whole (atomically) after a flush.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []
        """Entries found at start (not known written: `Ledger.replay` decides)."""
        self.intents: dict[str, Intent] = {}
        """Intents found at start that never finished (`Ledger.take_intents`)."""
        self._fd: int | None = None
        self.appended = 0
        """Lines appended since the file was last rewritten (compacted)."""
        self._ids = itertools.count(1)
        self._open: dict[str, Intent] = {}
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut by the kill: the rest still counts
            if not isinstance(doc, dict):
                continue
            if "entry" in doc:
                self.entries.append(Entry(**doc["entry"]))
            elif "intent" in doc:
                i = doc["intent"]
                self.intents[i["id"]] = Intent(i["id"], i["cluster"], i.get("commit"),
                                               tuple(i["workloads"]))
            elif "done" in doc:
                self.intents.pop(doc["done"], None)

    def _write(self, doc: dict[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                os.write(self._fd, b"\n")  # a line cut by a kill stays one bad line
        os.write(self._fd, (json.dumps(doc, sort_keys=True) + "\n").encode())
        self.appended += 1

    def entry(self, e: Entry) -> None:
        self._write({"entry": dataclasses.asdict(e)})

    def begin(self, cluster: str, commit: str | None, workloads: tuple[str, ...]) -> str:
        intent = Intent(f"{os.getpid()}-{next(self._ids)}", cluster, commit, workloads)
        self._open[intent.id] = intent
        self._write({"intent": dataclasses.asdict(intent)})
        return intent.id

    def done(self, intent_id: str) -> None:
        if self._open.pop(intent_id, None) is not None:
            self._write({"done": intent_id})

    def rewrite(self, pending: list[Entry]) -> None:
        """Keep only these entries and the intents still open (after a flush)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        lines = [json.dumps({"entry": dataclasses.asdict(e)}, sort_keys=True)
                 for e in pending]
        lines += [json.dumps({"intent": dataclasses.asdict(i)}, sort_keys=True)
                  for i in list(self._open.values()) + list(self.intents.values())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("".join(f"{ln}\n" for ln in lines))
        os.replace(tmp, self.path)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.appended = 0


class Ledger:
    def __init__(self, writer: LedgerWriter, *, interval: float = 1.0, max_batch: int = 1000,
                 max_backoff: float = 30.0, shutdown_timeout: float = 10.0,
                 clock: Callable[[], str] = utc_now, journal: Journal | None = None,
                 max_backlog: int = 1000, check_every: float = 30.0) -> None:
        self.writer = writer
        self.check_every = check_every
        self._checked_at = time.monotonic()
        self.journal = journal
        self.max_backlog = max_backlog
        """Records waiting, while writes fail, from which `problem()` speaks up."""
        self.error: str | None = None
        """The last write's error while writes fail; None once a write succeeded."""
        self.forged: str | None = None
        """Why the remote ledger was refused as rewritten under us (until it is not)."""
        self.interval = interval
        self.max_batch = max_batch
        self.max_backoff = max_backoff
        self.shutdown_timeout = shutdown_timeout
        self.clock = clock
        self._buffer: list[Entry] = []
        self._replayed = journal is None or not journal.entries
        if journal is not None:
            self._buffer.extend(journal.entries)  # kept first; `replay` drops written ones
        self._wake: anyio.Event | None = None  # made in run(): an Event needs the loop
        self.written = 0
        self.failures = 0
        self.last: Record | None = None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def buffered(self) -> list[Entry]:
        """Entries recorded and not yet written, in order."""
        return list(self._buffer)

    def problem(self) -> tuple[str, str] | None:
        """(condition type, why) when the ledger cannot take records now, else None."""
        if self.forged is not None:
            return "LedgerForged", self.forged
        if self.error is not None and self.pending >= self.max_backlog:
            return "LedgerUnwritable", (f"{self.pending} records wait to be written "
                                        f"(limit {self.max_backlog}); last error: "
                                        f"{self.error}")
        return None

    def record(self, event: Event, workload: str, **fields: Any) -> None:
        """Buffer one decision (non-blocking). Fields are `fleet.ledger.Entry`'s."""
        entry = Entry(time=self.clock(), event=event, workload=workload, **fields)
        if self.journal is not None:
            self.journal.entry(entry)  # before the action it records is carried out
        self._buffer.append(entry)
        if len(self._buffer) >= self.max_batch and self._wake is not None:
            self._wake.set()

    async def flush(self) -> int:
        """Write everything buffered now; the number of records written. With nothing to
        write, look at the remote's tip every `check_every` seconds (and while it is
        refused), so a rewritten branch is said before the next record needs it."""
        if not self._buffer:
            now = time.monotonic()
            if self.journal is not None and self.journal.appended >= COMPACT_AFTER:
                self.journal.rewrite([])  # intents begun and done while nothing was recorded
            if self.forged is not None or now - self._checked_at >= self.check_every:
                self._checked_at = now
                await anyio.to_thread.run_sync(self.writer.refresh)
            return 0
        if not self._replayed:
            await self.replay()
            if not self._buffer:
                return 0
        batch, self._buffer = self._buffer, []
        try:
            records = await anyio.to_thread.run_sync(self.writer.append, batch)
        except BaseException:
            self._buffer[:0] = batch  # keep order: these go first next time
            raise
        if self.journal is not None:
            self.journal.rewrite(list(self._buffer))
        self.written += len(records)
        self.last = records[-1]
        log.info("ledger_flushed", records=len(records), head_seq=records[-1].seq,
                 attempts=self.writer.attempts)
        return len(records)

    async def replay(self) -> None:
        """Drop, from the entries a previous process journaled, those already written.

        A batch is one commit and the journal is rewritten after it, so what a killed
        process wrote but did not clear is a prefix of the journal that ends the ledger.
        """
        journaled = self.journal.entries if self.journal is not None else []
        n = len(journaled)
        tail = await anyio.to_thread.run_sync(self._tail_after_fetch, n)
        written = 0
        for k in range(min(n, len(tail)), 0, -1):
            if tail[-k:] == journaled[:k]:
                del self._buffer[:k]
                written = k
                break
        log.info("ledger_journal_replayed", journaled=n, written_before=written,
                 pending=self.pending)
        self._replayed = True

    def _tail_after_fetch(self, n: int) -> list[Entry]:
        self.writer.refresh()  # a killed process may have pushed after its last fetch
        return self.writer.tail_entries(n)

    def take_intents(self) -> list[Intent]:
        """The intents a previous process journaled and never finished (once)."""
        if self.journal is None:
            return []
        out = sorted(self.journal.intents.values(), key=lambda i: i.id)
        self.journal.intents.clear()
        return out

    def begin(self, cluster: str, commit: str | None, workloads: tuple[str, ...]) -> str | None:
        """Journal an apply about to start (None without a journal)."""
        return None if self.journal is None else self.journal.begin(cluster, commit, workloads)

    def done(self, intent_id: str | None) -> None:
        if self.journal is not None and intent_id is not None:
            self.journal.done(intent_id)

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
                    if self.error is not None or self.forged is not None:
                        log.info("ledger_writable_again", pending=self.pending)
                    self.error = self.forged = None
                except (WorkloadsError, OSError) as e:
                    self.failures += 1
                    streak += 1
                    backoff = min(self.max_backoff, max(self.interval, 0.5) *
                                  math.pow(2, min(streak, 10)))
                    self.error = str(e)[:300]
                    if isinstance(e, LedgerForged):
                        if self.forged is None:
                            log.error("ledger_forged", error=self.error,
                                      pending=self.pending)
                        self.forged = self.error
                    else:
                        log.warning("ledger_write_failed", error=self.error,
                                    pending=self.pending, retry_in=backoff)
        finally:
            with anyio.move_on_after(self.shutdown_timeout, shield=True):
                try:
                    await self.flush()
                except (WorkloadsError, OSError) as e:
                    log.error("ledger_final_flush_failed", error=str(e)[:300],
                              pending=self.pending)
