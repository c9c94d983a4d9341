"""Watch: newline-delimited JSON events over one chunked HTTP response.

Semantics pinned to kube-apiserver's watch cache:
- without `resourceVersion` (or with "0"), the stream starts with one ADDED per
  current object, then live events;
- from a version, it replays the history ring after that version, then live events;
  a version older than the ring is answered with HTTP 200 and a single ERROR event
  carrying a 410 Expired Status (the real server fails a watch with an event, not a
  status code, once the request is accepted), and the stream ends;
- with a selector, an object that starts matching arrives as ADDED and one that stops
  matching as DELETED (its previous state, at the new resourceVersion);
- `sendInitialEvents=true` (client-go's streaming list, which kubectl 1.35 uses for
  `wait` and `get -w`) sends the current objects as ADDED, then a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"`, then live events;
- `allowWatchBookmarks=true` adds BOOKMARK events that carry only the current
  resourceVersion, when the watch cache sends them (`cacheWatcher.nextBookmarkTime`
  in `apiserver/pkg/storage/cacher/cache_watcher.go`): about once a minute
  (`defaultBookmarkFrequency`, `SimCluster.bookmark_seconds`) and 2 s before the
  watch's deadline, never after it; `timeoutSeconds` ends the stream cleanly.
  (The simulator once sent one every second on every watch: at 1,000 clusters that
  was thousands of events a second no real server sends, which the controller's
  informers and the simulator both paid for.)

Events are pushed into the watch's queue by the store as writes commit: an idle watch
costs a parked coroutine, nothing more. Faults can cut every open stream abruptly.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING, Any

from aiohttp import web

from clusters.sim import kubectl
from clusters.sim.errors import SimError, bad_request
from clusters.sim.listing import parse_bool
from clusters.sim.resources import Resource, served_as
from clusters.sim.selectors import Matcher
from clusters.sim.store import Watcher

if TYPE_CHECKING:
    from clusters.sim.server import SimCluster


def _line(etype: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"


PRE_TIMEOUT_SECONDS = 2.0
"""A bookmark goes out this long before a watch's deadline (`cacheWatcher`)."""


def next_bookmark(now: float, deadline: float, every: float) -> float | None:
    """When the watch cache sends a watch its next bookmark: `every` seconds from now,
    or 2 s before the deadline if that is sooner; None once that moment has passed
    (a watch of 2 s or less gets no bookmark at all, as from a real server)."""
    at = min(now + every, deadline - PRE_TIMEOUT_SECONDS)
    return at if at > now else None


async def serve_watch(request: web.Request, cluster: SimCluster, res: Resource,
                      ns: str | None, matcher: Matcher | None) -> web.StreamResponse:
    store = cluster.store
    q = request.query
    timeout_text = q.get("timeoutSeconds")
    try:
        timeout = float(timeout_text) if timeout_text else 1800 + random.random() * 1800
    except ValueError as e:
        raise bad_request(f"timeoutSeconds: invalid value {timeout_text!r}") from e
    bookmarks = parse_bool(q.get("allowWatchBookmarks"))
    table = "as=Table" in request.headers.get("Accept", "")
    rv_text = q.get("resourceVersion") or ""
    try:
        since = int(rv_text) if rv_text not in ("", "0") else None
    except ValueError as e:
        raise bad_request(f"resourceVersion: invalid value {rv_text!r}") from e

    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    watcher = Watcher(store.resources.storage_key(res), ns, matcher,
                      lambda t, o: queue.put_nowait((t, o)))
    expired: SimError | None = None
    initial_end = parse_bool(q.get("sendInitialEvents"))
    if since is None or initial_end:
        for obj in store.list(res, ns, matcher):
            queue.put_nowait(("ADDED", obj))
        if initial_end:
            queue.put_nowait(("BOOKMARK", {
                "kind": res.kind, "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(store.rv),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}))
    else:
        try:
            for ev in store.history_since(since):
                watcher.offer(ev)
        except SimError as e:
            expired = e
    if expired is None:
        store.watchers.add(watcher)

    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    cluster.open_watches[id(request)] = request
    try:
        await resp.prepare(request)
        if expired is not None:
            await resp.write(_line("ERROR", expired.status()))
            await resp.write_eof()
            return resp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        mark_at = next_bookmark(loop.time(), deadline, cluster.bookmark_seconds) \
            if bookmarks else None
        first_table = True
        while not watcher.closed:
            now = loop.time()
            left = deadline - now
            if left <= 0:
                break
            if mark_at is not None and now >= mark_at:
                mark = {"kind": res.kind, "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(store.rv)}}
                await resp.write(_line("BOOKMARK", mark))
                mark_at = next_bookmark(now, deadline, cluster.bookmark_seconds)
                continue
            wait = left if mark_at is None else min(left, mark_at - now)
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                continue
            if item is None:
                break
            etype, obj = item
            if res.custom and etype != "BOOKMARK":
                obj = served_as(res, obj)
            if table and etype != "BOOKMARK":
                extra = cluster.crds.table_args(res) if res.custom else {}
                obj = kubectl.to_table(res.kind, [obj], column_definitions=first_table,
                                       **extra)
                first_table = False
            await resp.write(_line(etype, obj))
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away, or faults cut the stream
    finally:
        watcher.closed = True
        store.watchers.discard(watcher)
        cluster.open_watches.pop(id(request), None)
    return resp
