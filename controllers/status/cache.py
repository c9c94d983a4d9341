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
- **never waiting on a build once there is a document**: with the refresher running
  (`run`), a request that finds the document out of date gets the last one at once
  and wakes the refresher, which builds the next (so a document is at most one build
  and `refresh_every` (2 s) old); only the first request, and the first after
  `invalidate()` (an operator action, whose effect the next request asks for), waits
  for a build. One build at a time;
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
import json
import time
from collections.abc import Callable, Hashable
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


class StatusCache:
    def __init__(self, m: Manager, *, max_age: float = 2.0, slice_rows: int = 100,
                 refresh_every: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.m = m
        self.refresh_every = refresh_every
        """Seconds the refresher waits after a build before the next one."""
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
        self._refreshing = False
        self._wanted = anyio.Event()
        self._must_wait = False
        self._body: Body | None = None
        self._fp: tuple[Hashable, ...] | None = None
        self._at = 0.0
        self._rows: dict[WorkloadId, WorkloadRow] = {}
        self._building: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the refresher runs on (`published` tells it from another thread)."""

    def fresh(self) -> bool:
        return (self._body is not None and self.clock() - self._at < self.max_age
                and self._fp == fingerprint(self.m))

    async def body(self, *, fresh: bool = False) -> Body:
        """The document as served (JSON bytes, gzipped, ETag): the last build's if
        nothing changed since.

        While the refresher runs (`run`, in the manager's task group), a request that
        finds the document out of date is answered with the last build's bytes at once
        and the refresher builds the next one (a document at most one build old: under
        a rollout something changes every moment, and a request that waited for a
        build of a big fleet waited seconds). Until the first build, and after
        `invalidate()` (an operator action: its effect is asked for next), a request
        waits for a fresh build; so does a request that asks for one (`fresh`: HTTP
        `Cache-Control: no-cache`, as `fleet status` sends)."""
        self.served += 1
        if self._refreshing and self._body is not None and not self._must_wait \
                and not fresh:
            if not self.fresh():
                self.served_stale += 1
                self._wanted.set()
            else:
                self.served_cached += 1
            return self._body
        while True:
            if self.fresh():
                self.served_cached += 1
                assert self._body is not None
                return self._body
            building = self._building
            if building is None:
                break
            await building.wait()  # one build at a time; then look again
        await self._build_once()
        assert self._body is not None
        return self._body

    def published(self) -> Body | None:
        """The last document, for a request answered off the loop (called from the
        HTTP server's thread, `controllers.serverthread`): what `body()` would answer
        at once, i.e. with the refresher running, a document built and no operator
        action since. The cache is told on its own loop that it was asked for
        (`_asked`: counted, the refresher woken if it is out of date). None: ask
        `body()` on the loop (it waits for a build)."""
        body, loop = self._body, self._loop
        if body is None or loop is None or not self._refreshing or self._must_wait:
            return None
        loop.call_soon_threadsafe(self._asked)
        return body

    def _asked(self) -> None:
        self.served += 1
        if self.fresh():
            self.served_cached += 1
        else:
            self.served_stale += 1
            self._wanted.set()

    def invalidate(self) -> None:
        """The next request waits for a document built after now."""
        self._must_wait = True

    async def run(self) -> None:
        """The refresher: builds the next document whenever a request found the last
        one out of date, one build at a time."""
        self._loop = asyncio.get_running_loop()
        self._refreshing = True
        try:
            while True:
                await self._wanted.wait()
                self._wanted = anyio.Event()
                if self._building is not None:
                    await self._building.wait()
                if not self.fresh():
                    await self._build_once()
                    # A fleet in a rollout changes every moment: without a pause the
                    # document would be rebuilt as often as it is asked for (profiled
                    # at 20 x 1,000, asked every second: a quarter of the loop's CPU).
                    await anyio.sleep(self.refresh_every)
        finally:
            self._refreshing = False
            self._loop = None

    async def _build_once(self) -> None:
        self._building = anyio.Event()
        self._must_wait = False  # what is built now is after the invalidation
        try:
            await self._build()
        finally:
            self._building.set()
            self._building = None

    async def _build(self) -> None:
        fp = fingerprint(self.m)
        gen = fleetdoc.steps(self.m, self._rows)
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
        fresh = [r for r in rows if r.text is None]
        for i, r in enumerate(fresh, 1):
            r.text = dumps(r.row)
            r.row = {}  # the text is what is served; the dict was only for it
            if i % self.slice_rows == 0:
                await anyio.lowlevel.checkpoint()
        self._rows = {r.wid: r for r in rows}
        self.builds += 1
        self.rows_built += built
        raw = (_assemble(doc, fleetdoc.rows_json(rows)) + "\n").encode()
        self._body = await Body.made_off_loop(raw)
        self.encodes += 1
        self._fp, self._at = fp, self.clock()


def _assemble(doc: dict[str, Any], rows: str) -> str:
    """`doc` with `"workloads": rows` (already JSON), keys sorted as `json.dumps` sorts
    them: the same text as serialising the whole document at once."""
    parts = [f"{json.dumps(k)}:{rows if k == 'workloads' else dumps(v)}"
             for k, v in sorted({**doc, "workloads": None}.items())]
    return "{" + ",".join(parts) + "}"
