"""`GET /api/v1/status` served from a pre-serialised document, rebuilt only on change.

Issue 22 measured `GET /api/v1/status` at up to 30 s on 5,000 workloads x 100 clusters
under load: every request built the whole document in the event loop (and every
other task, heartbeats included, waited). Here:

- **dirty flag**: `fingerprint(m)` is a cheap summary (work in the number of clusters)
  of everything the document is made of: the spec and plan (by identity), the
  recorded placements (`Versioned`: a counter of writes), drift, source conditions,
  each cluster's health and informers' resource versions, suspensions, ledger head,
  leadership, the shared state's write error, with --shards what this replica holds
  (the other shards' results come into `live`). A request whose fingerprint matches
  the last build's, younger than `max_age`, gets the same bytes. `max_age` (2 s)
  bounds what the fingerprint cannot see: the seconds an Unreachable cluster has been
  away, the loop-lag summary, an apply's answer before its watch event;
- **never waiting on a build**: a document is published before the server listens
  (`prime()`: the controller's state before anything is loaded, an honest "no plan
  yet", tiny); from then on a request is answered with the last published one
  (`now()`, on the HTTP server's thread, with its age) and wakes the refresher
  (`run`), which builds the next (so a document is at most one build and
  `refresh_every` (2 s) old). A request that asks for the state of now (`fresh`:
  `fleet status`) hurries the refresher and waits for a document built after it at
  most `fresh_wait` (0.15 s), else it too gets the last one, its age in `Age`. An
  operator action builds the document before its answer (`rebuild()`), so the next
  read shows it without waiting. One build at a time;
- **in slices**: the build (`controllers.status.fleetdoc.steps`) yields to the loop
  every `slice_rows` rows, so the loop keeps answering (webhook, heartbeats) while
  a big document is built;
- **per row**: a row whose inputs did not change (`fleetdoc.WorkloadRow.key`) keeps
  its serialised JSON; only changed rows are built and serialised again. The
  document is the rows' JSON joined (`json.dumps` of the rest, keys sorted as before);
- **encoded once per build**: the document's bytes, gzipped and digested
  (`controllers.status.bodies.Body`) in a worker thread, so a request encodes,
  compresses and hashes nothing (`encodes` counts the documents encoded);
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel

from controllers.status import fleetdoc
from controllers.status.bodies import Body, dumps
from controllers.status.fleetdoc import WorkloadRow
from fleet.ids import WorkloadId

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

K = TypeVar("K")
V = TypeVar("V")


class Versioned(dict[K, V]):
    """A dict that counts its writes (`version`): the status cache's dirty flag for
    what each reconcile records (`Manager.live`), without comparing its contents."""

    version = 0

    def __setitem__(self, key: K, value: V) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key: K, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: K, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)

    def popitem(self) -> tuple[K, V]:
        self.version += 1
        return super().popitem()


class Is:
    """Compares by identity (a spec or plan compared with == would be compared whole).
    Holding the object keeps its id from being reused."""

    __slots__ = ("o",)

    def __init__(self, o: object) -> None:
        self.o = o

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Is) and other.o is self.o

    def __hash__(self) -> int:
        return id(self.o)


def fingerprint(m: Manager) -> tuple[Hashable, ...]:
    """Changes when anything the document shows changes (but the clocks of `max_age`)."""
    live = m.live
    events = m.events
    last = getattr(events, "last", None)
    anchor = getattr(m, "anchor", None)
    clusters = tuple(
        (name, Is(a), a.health_state, a.synced.is_set(), a.health.why(),
         a.capacity_version, tuple(i.resource_version for i in a.informers()))
        for name, a in sorted(m.adapters.items()))
    return (
        Is(m.desired.spec), Is(m.desired.plan), m.source.observed, m.applied_commit,
        m.conditions, m.ready(), m.ledger_problem(), m.home.error,
        tuple(sorted(m.connect_errors.items())),
        tuple(sorted(m.reconciler.prune_refused.items())), tuple(sorted(m.retiring)),
        Is(live), getattr(live, "version", None), len(live),
        len(m.drift), Is(m.drift[-1]) if m.drift else None,
        clusters,
        tuple(sorted(m.suspensions.workloads.items())),
        tuple(sorted(m.suspensions.clusters.items())),
        getattr(last, "seq", None), getattr(events, "pending", None),
        Is(getattr(anchor, "last", None)), getattr(anchor, "failures", None),
        m.may_act(), m.elector.generation if m.elector else None, m.shared.error,
        _shards(m),
    )


def _shards(m: Manager) -> Hashable:
    """With --shards, what `Shards.annotate` shows (the other shards' results are in
    `live`, whose writes are counted; their health and nodes change `version`)."""
    s = m.shards
    if s is None:
        return None
    return (s.count, s.identity, tuple(s.held()), tuple(sorted(s.owners.items())),
            s.following_leader(), tuple(s.foreign), s.version)


STALE_AFTER = 30.0
"""A document older than this (nobody asked for a while, so none was built) is waited
for as a request for the state of now is: at most `fresh_wait`."""

FRESH_WAIT = 0.15
"""Seconds a request for the state of now (`Cache-Control: no-cache`) waits at most for a
document built after it; then it is answered with the last one and its age (issue 22:
`/api/v1/status` answered in < 200 ms throughout)."""


READ_OUTCOMES = ("fresh", "late", "cached")
"""How a read of the status was answered: `fresh`, it waited for a document built after
it and got one; `late`, it waited `fresh_wait` in vain and got the last one (its age
in `Age`); `cached`, it got the last one published without waiting."""


class StatusCache:
    def __init__(self, m: Manager, *, max_age: float = 2.0, slice_rows: int = 100,
                 refresh_every: float = 2.0, fresh_wait: float = FRESH_WAIT,
                 stale_after: float = STALE_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.m = m
        self.refresh_every = refresh_every
        """Seconds the refresher waits after a build before the next one (unless a
        request for the state of now hurries it)."""
        self.fresh_wait = fresh_wait
        self.stale_after = stale_after
        self.max_age = max_age
        self.slice_rows = slice_rows
        self.clock = clock
        self.builds = 0
        """Documents built (each one a pass over the rows, reusing the unchanged)."""
        self.rows_built = 0
        """Rows built (not reused) over all builds."""
        self.served = 0
        self.served_cached = 0
        """Requests answered with the bytes of an earlier build, nothing changed since."""
        self.served_stale = 0
        """Requests answered with the last build's bytes while the next one was asked
        of the refresher."""
        self.encodes = 0
        """Documents encoded (joined, gzipped, digested): one per build."""
        self.fresh_served = 0
        """Requests that waited for a document built after them (the state of now
        asked for, or the last document older than `stale_after`) and got one."""
        self.fresh_late = 0
        """Such requests answered with the last document (and its age) because none
        came within `fresh_wait`."""
        self.reads: dict[str, int] = dict.fromkeys(READ_OUTCOMES, 0)
        """Reads of the document by outcome (`READ_OUTCOMES`), on the loop and on the
        HTTP server's thread: `aifleet_status_fresh_reads_total{outcome}`."""
        self._reads_lock = threading.Lock()
        self._refreshing = False
        self._wanted = anyio.Event()
        self._hurry = anyio.Event()
        self._waiters: list[concurrent.futures.Future[Body]] = []
        """Requests for the state of now (futures set from the loop, awaited on the HTTP
        server's thread), answered by the next build that starts after them."""
        self._waiters_lock = threading.Lock()
        self._body: Body | None = None
        self._fp: tuple[Hashable, ...] | None = None
        self._at = 0.0
        self._rows: dict[WorkloadId, WorkloadRow] = {}
        self._building: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the cache runs on (`now()` tells it of requests from another
        thread)."""
        self._primed: Body | None = None
        """The document `prime` published (until another replaces it)."""
        self._stamp: tuple[float, Body | None] = (0.0, None)
        """(when, the document published then): its age as served."""
        self.on_publish: Callable[[Body], None] | None = None
        """Called on the cache's loop with each document published (the front process
        is sent it: `controllers.frontproc`)."""

    def published(self) -> Body | None:
        """The last document published (None before `prime`)."""
        return self._body

    def ask(self, *, fresh: bool) -> concurrent.futures.Future[Body] | None:
        """A request answered elsewhere (the front process), told on the cache's loop:
        as `now()` tells it. With `fresh` (the state of now), the refresher is hurried
        and the future is set with the next document built after this call (or the
        last one, when nothing changed); else None."""
        if not fresh:
            self._asked()
            return None
        waiter: concurrent.futures.Future[Body] = concurrent.futures.Future()
        with self._waiters_lock:
            self._waiters.append(waiter)
        self._hurried()
        return waiter

    def fresh(self) -> bool:
        return (self._body is not None and self.clock() - self._at < self.max_age
                and self._fp == fingerprint(self.m))

    async def body(self, *, fresh: bool = False) -> Body:
        """The document as served (JSON bytes, gzipped, ETag), asked on the cache's
        loop (the HTTP server asks `now()` on its own thread; this is its fallback
        when the cache has no loop yet, and what tests ask directly).

        While the refresher runs (`run`, in the manager's task group), a request that
        finds the document out of date is answered with the last build's bytes at once
        and the refresher builds the next one. Until the first build, and when a
        request asks for one (`fresh`), it waits for a build here."""
        self.served += 1
        if self._refreshing and self._body is not None and not fresh:
            if not self.fresh():
                self.served_stale += 1
                self._wanted.set()
            else:
                self.served_cached += 1
            self._read("cached")
            return self._body
        while True:
            if self.fresh():
                self.served_cached += 1
                self._read("cached")
                assert self._body is not None
                return self._body
            building = self._building
            if building is None:
                break
            await building.wait()  # one build at a time; then look again
        await self._build_once()
        self._read("fresh")
        assert self._body is not None
        return self._body

    def _read(self, outcome: str) -> None:
        with self._reads_lock:
            self.reads[outcome] += 1

    async def now(self, *, fresh: bool = False) -> tuple[Body, float] | None:
        """The document for a request answered off the loop (on the HTTP server's
        thread, `controllers.serverthread`), and its age in seconds: the last one
        published, never waiting for the cache's loop. With `fresh` (the state of
        now), or when the last one is older than `stale_after` and none is being built
        (nobody asked for a while), the refresher is hurried and the request waits for
        a document built after it, at most `fresh_wait` seconds. The cache is told on
        its own loop that it was asked for (`_asked`). None: no document nor loop yet
        (ask `body()`)."""
        body, loop = self._body, self._loop
        if body is None or loop is None:
            return None
        at, published = self._stamp
        stale = published is body and self._building is None \
            and (body is self._primed or self.clock() - at > self.stale_after)
        # (a build under way started before this request; the primed document is the
        # head of an empty fleet, published before anything was loaded: a first read
        # waits for the state of now as it always did, at most `fresh_wait`)
        if fresh or stale:
            waiter: concurrent.futures.Future[Body] = concurrent.futures.Future()
            with self._waiters_lock:
                self._waiters.append(waiter)
            loop.call_soon_threadsafe(self._hurried)
            try:
                body = await asyncio.wait_for(asyncio.wrap_future(waiter), self.fresh_wait)
                self.fresh_served += 1
                self._read("fresh")
            except TimeoutError:
                self.fresh_late += 1
                self._read("late")
                body = self._body or body
        else:
            loop.call_soon_threadsafe(self._asked)
            self._read("cached")
            if published is not None:
                # the one published when this request came, with its age: not one the
                # refresher, woken by `_asked` on the loop, may publish meanwhile (a
                # small fleet's build can end before this thread reads `_body` again:
                # then the answer said age 0 of a document the request did not wait for)
                return published, max(0.0, self.clock() - at)
            body = self._body or body
        at, published = self._stamp
        return body, max(0.0, self.clock() - at) if published is body else 0.0

    def _asked(self) -> None:
        self.served += 1
        if self.fresh():
            self.served_cached += 1
        else:
            self.served_stale += 1
            self._wanted.set()

    def _hurried(self) -> None:
        """A request for the state of now: the refresher builds (or, nothing changed,
        answers with the last document) without its pause."""
        self.served += 1
        self._wanted.set()
        self._hurry.set()

    async def rebuild(self) -> Body:
        """A document built now, published before this returns (after an operator
        action: the next read shows its effect without waiting for a build)."""
        while self._building is not None:
            await self._building.wait()
        await self._build_once()
        assert self._body is not None
        return self._body

    def steps_at_once(self) -> tuple[Any, list[WorkloadRow], int]:
        """`_steps()` run to its end without yielding: (document, rows, rows built)."""
        gen = self._steps()
        while True:
            try:
                next(gen)
            except StopIteration as done:
                out: tuple[Any, list[WorkloadRow], int] = done.value
                return out

    def prime(self) -> None:
        """Publish a first document now, before the server listens (a request never
        finds none): built at once, without yielding (before the controller has loaded
        anything it is the head of an empty fleet: "no plan yet"). Called on the
        cache's loop, which `now()` tells of requests from then on."""
        self._loop = asyncio.get_running_loop()
        fp = fingerprint(self.m)
        waiters = self._take_waiters()
        doc, rows, built = self.steps_at_once()
        self._primed = Body.made(self._raw(doc, rows))
        self._publish(rows, built, fp, self._primed, waiters)

    async def run(self) -> None:
        """The refresher: builds the next document whenever a request found the last
        one out of date, one build at a time, then pauses `refresh_every` seconds
        unless a request for the state of now hurries it."""
        self._loop = asyncio.get_running_loop()
        self._refreshing = True
        try:
            while True:
                await self._wanted.wait()
                self._wanted = anyio.Event()
                if self._building is not None:
                    await self._building.wait()
                if self.fresh():  # nothing changed: what was built is the state of now
                    self._answer(self._take_waiters())
                    continue
                await self._build_once()
                # A fleet in a rollout changes every moment: without a pause the
                # document would be rebuilt as often as it is asked for (profiled
                # at 20 x 1,000, asked every second: a quarter of the loop's CPU).
                with anyio.move_on_after(self.refresh_every):
                    await self._hurry.wait()
                self._hurry = anyio.Event()
        finally:
            self._refreshing = False

    async def _build_once(self) -> None:
        self._building = anyio.Event()
        try:
            await self._build()
        finally:
            self._building.set()
            self._building = None

    def _steps(self) -> Generator[None, None, tuple[Any, list[WorkloadRow], int]]:
        """A build in steps, yielding after each row: the document without its rows,
        the rows (their text encoded), how many were built. Each row is encoded as it
        is built (`fleetdoc.steps`' `encode`): never all rows' dicts at once."""
        return (yield from fleetdoc.steps(self.m, self._rows, encode=_encoded))

    async def _build(self) -> None:
        waiters = self._take_waiters()  # answered by this build: it starts after them
        fp = fingerprint(self.m)
        gen = self._steps()
        n = 0
        while True:
            try:
                next(gen)
            except StopIteration as done:
                doc, rows, built = done.value
                break
            n += 1
            if n % self.slice_rows == 0:
                await anyio.lowlevel.checkpoint()  # let the loop run: heartbeats, the webhook
        body = await Body.made_off_loop_of(_assemble_parts(doc, rows))
        self._publish(rows, built, fp, body, waiters)

    @staticmethod
    def _raw(doc: dict[str, Any], rows: list[WorkloadRow]) -> bytes:
        """The document's bytes: one join of the head's parts and the rows' bytes. The
        rows' text was joined, then joined into the document, then a newline added,
        then encoded: four copies of a document of ~0.6 KB per workload, two at once."""
        return b"".join(_assemble_parts(doc, rows))

    def _publish(self, rows: list[WorkloadRow], built: int, fp: tuple[Hashable, ...],
                 body: Body, waiters: list[concurrent.futures.Future[Body]]) -> None:
        self._rows = {r.wid: r for r in rows}
        self.builds += 1
        self.rows_built += built
        self.encodes += 1
        self._fp, self._at = fp, self.clock()
        self._stamp = (self._at, body)
        self._body = body
        if self.on_publish is not None:
            self.on_publish(body)
        self._answer(waiters)

    def _take_waiters(self) -> list[concurrent.futures.Future[Body]]:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        return waiters

    def _answer(self, waiters: list[concurrent.futures.Future[Body]]) -> None:
        body = self._body
        if body is None:
            return
        for w in waiters:
            # one that stopped waiting (`fresh_wait` passed) was answered with the last
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                w.set_result(body)


def _encoded(row: Any) -> bytes:
    """A row as the body's bytes (`dumps` is ASCII: `json.dumps`' `ensure_ascii`)."""
    return dumps(row).encode()


def _assemble_parts(doc: dict[str, Any], rows: list[WorkloadRow]) -> list[bytes]:
    """The bytes of `doc` with `"workloads"` the rows (their `text`, already JSON), and
    a newline, in pieces to join once: the same text as `dumps` of the whole document
    (keys sorted as `json.dumps` sorts them), the rows' texts not copied until then."""
    out = [b"{"]
    for i, (k, v) in enumerate(sorted({**doc, "workloads": None}.items())):
        out.append(f"{',' if i else ''}{json.dumps(k)}:".encode())
        if k != "workloads":
            out.append(dumps(v).encode())
            continue
        out.append(b"[")
        for j, r in enumerate(rows):
            if j:
                out.append(b",")
            out.append(r.text or b"")
        out.append(b"]")
    out.append(b"}\n")
    return out
