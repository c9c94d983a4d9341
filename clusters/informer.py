"""A list-then-watch cache of one resource type in one cluster (client-go's informer).

The contract with the API server (shared/spec/kubernetes-api-behaviours.md):
- list (paginated with `limit`/`continue`), remember the list's resourceVersion, then
  watch from it: no event between the two is lost;
- a cut stream (connection reset, server restart, `timeoutSeconds` reached) resumes
  the watch from the last resourceVersion seen, events or bookmarks: no re-list;
- 410 Gone (HTTP or an ERROR event) means that version is too old: re-list, and emit
  the difference between the old cache and the new list as events (an object deleted
  and created again under its name, a new uid, as DELETED then ADDED), so a consumer
  misses nothing that happened while it was away;
- an unreachable cluster is retried with capped backoff, cut short by `wake()` (the
  adapter's heartbeat calls it when the cluster answers again, so a returning cluster
  is listed at once, not up to ten seconds later); `synced` is set after the first
  complete list.

An informer with `idle_relist` set holds no watch while it has nothing to watch (issue
22, item 1): every watch holds an HTTP/1.1 connection of its own (~60 KiB here over
`clusters.leanhttp`; ~300 KiB when it went through aiohttp) and a watcher in the API
server. When its list comes back empty it lists again every
`idle_relist` seconds instead, and watches as soon as a list shows an object or
`activate()` is called (the adapter calls it before it writes an object of this kind).
The watch then starts from the resourceVersion of the last (empty) list, so nothing
written after that list is missed, whatever the order of the write and the watch's
start (a version too old for the server is a 410: re-list, as above). An informer whose
watch ended with nothing in its cache and no `activate()` since it began goes idle
again.

Handlers get `(event_type, object)` for ADDED / MODIFIED / DELETED, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from clusters.client import JSON, KubeClient, ResourceType
from clusters.errors import PermanentError, TransientError, WatchExpired

Key = tuple[str, str]  # (namespace or "", name)
Handler = Callable[[str, JSON], None]


def key_of(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


class Informer:
    def __init__(self, client: KubeClient, rtype: ResourceType, *,
                 label_selector: str | None = None, page_size: int = 500,
                 watch_timeout: int = 300, handler: Handler | None = None,
                 transform: Callable[[JSON], JSON] | None = None,
                 idle_relist: float | None = None,
                 list_gate: asyncio.Semaphore | None = None,
                 keep: Callable[[JSON], JSON] | None = None) -> None:
        self.client = client
        self.list_gate = list_gate
        """Shared by a cluster's informers: lists go one (or a few) at a time, so the
        first sync does not open a connection per kind at once (freed TLS buffers stay
        in the process's heap: the peak is what RSS keeps)."""
        self.idle_relist = idle_relist
        """Seconds between lists while there is nothing to watch (no watch is held
        then); None: always watch."""
        self.idle = False
        """Holding no watch now: nothing to watch (a footprint bench and tests read it)."""
        self._activations = 0
        self._activated = asyncio.Event()
        self.transform = transform
        """Applied to every object before it is cached or handed on (client-go's
        SetTransform): keep only what the handlers read, for big caches like Pods."""
        self.keep = keep
        """What the cache keeps of each (transformed) object; the handlers still get the
        whole of it. For kinds whose handler keeps its own copy (the applier's
        inventory of owned objects): `clusters.slim.metadata_only`, so an object is not
        held twice (issue 22, item 1). None: the object itself."""
        self.rtype = rtype
        self.label_selector = label_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.store: dict[Key, JSON] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.relists = 0
        self.resumes = 0
        self._handlers: list[Handler] = [handler] if handler else []
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Cut a reconnect backoff short: the cluster answers again."""
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds` between attempts, or until `wake()`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def activate(self) -> None:
        """An object of this kind is about to be written: watch (again), if idle."""
        self._activations += 1
        self._activated.set()

    def _nothing_to_watch(self, watched_at: int) -> bool:
        """Idle allowed: empty cache, and no `activate()` since the last watch began
        (`watched_at`: the activation count then)."""
        return (self.idle_relist is not None and not self.store
                and self._activations == watched_at)

    async def _idle(self) -> None:
        """List every `idle_relist` seconds, holding no connection in between, until a
        list shows an object or `activate()` is called."""
        assert self.idle_relist is not None
        self._activated.clear()
        self.idle = True
        try:
            while True:
                # Jittered: a fleet's clusters synced together must not all list at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._activated.wait(),
                                           self.idle_relist * random.uniform(0.75, 1.0))
                if self._activated.is_set():
                    return
                await self.list_once()
                if self.store:
                    return
        finally:
            self.idle = False

    def _emit(self, kind: str, obj: JSON) -> None:
        for h in self._handlers:
            h(kind, obj)

    async def list_once(self) -> None:
        """List everything (all pages) and reconcile the cache with it."""
        if self.list_gate is None:
            await self._list()
            return
        async with self.list_gate:
            await self._list()

    async def _list(self) -> None:
        items: dict[Key, JSON] = {}
        cont: str | None = None
        rv = ""
        while True:
            query = {"limit": str(self.page_size)}
            if self.label_selector:
                query["labelSelector"] = self.label_selector
            if cont:
                query["continue"] = cont
            page = await self.client.request("GET", self.rtype.collection(), verb="list",
                                             query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.rtype.api_version)
                item.setdefault("kind", self.rtype.kind)
                if self.transform is not None:
                    item = self.transform(item)
                items[key_of(item)] = item
            meta = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            cont = meta.get("continue") or None
            if not cont:
                break
        old = self.store
        self.store = items if self.keep is None else {k: self.keep(o) for k, o in items.items()}
        self.resource_version = rv or None
        for k, obj in items.items():
            prev = old.get(k)
            if prev is not None and _uid(prev) != _uid(obj):
                # Deleted and created again under the same name while we were away.
                self._emit("DELETED", prev)
                prev = None
            if prev is None:
                self._emit("ADDED", obj)
            elif _rv(prev) != _rv(obj):
                self._emit("MODIFIED", obj)
        for k, obj in old.items():
            if k not in items:
                self._emit("DELETED", obj)
        self.synced.set()

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        watched_at = 0
        while True:
            try:
                if self.resource_version is None:
                    if self.synced.is_set():
                        self.relists += 1
                    await self.list_once()
                if self._nothing_to_watch(watched_at):
                    await self._idle()
                watched_at = self._activations
                await self._watch()
                failures = 0
                self.resumes += 1  # the stream ended cleanly (timeout): resume
            except WatchExpired:
                self.resource_version = None
            except TransientError:
                failures += 1
                self.resumes += 1
                await self._pause(min(10.0, 0.2 * 2 ** min(failures, 6)) * random.uniform(0.5, 1))
            except PermanentError:
                failures += 1
                await asyncio.sleep(min(30.0, 1.0 * 2 ** min(failures, 5)))

    async def _watch(self) -> None:
        query = {"labelSelector": self.label_selector} if self.label_selector else None
        async for event in self.client.watch(self.rtype.collection(),
                                             resource_version=self.resource_version,
                                             query=query,
                                             timeout_seconds=self.watch_timeout):
            kind = event.get("type")
            obj: Any = event.get("object") or {}
            rv = _rv(obj)
            if kind == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            obj.setdefault("apiVersion", self.rtype.api_version)
            obj.setdefault("kind", self.rtype.kind)
            if self.transform is not None:
                obj = self.transform(obj)
            k = key_of(obj)
            if kind == "DELETED":
                self.store.pop(k, None)
            else:
                self.store[k] = obj if self.keep is None else self.keep(obj)
            if rv:
                self.resource_version = rv
            self._emit(str(kind), obj)


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _uid(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")
