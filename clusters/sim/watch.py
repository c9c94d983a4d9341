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
- `allowWatchBookmarks=true` adds periodic BOOKMARK events that carry only the
  current resourceVersion; `timeoutSeconds` ends the stream cleanly.

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
        first_table = True
        while not watcher.closed:
            left = deadline - loop.time()
            if left <= 0:
                break
            wait = min(left, cluster.bookmark_seconds) if bookmarks else left
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if bookmarks and loop.time() < deadline:
                    mark = {"kind": res.kind, "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(store.rv)}}
                    await resp.write(_line("BOOKMARK", mark))
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
