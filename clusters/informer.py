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
- an unreachable cluster is retried with capped backoff; `synced` is set after the
  first complete list.

Handlers get `(event_type, object)` for ADDED / MODIFIED / DELETED, in order.
"""

from __future__ import annotations

import asyncio
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
                 transform: Callable[[JSON], JSON] | None = None) -> None:
        self.client = client
        self.transform = transform
        """Applied to every object before it is cached or handed on (client-go's
        SetTransform): keep only what the handlers read, for big caches like Pods."""
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

    def _emit(self, kind: str, obj: JSON) -> None:
        for h in self._handlers:
            h(kind, obj)

    async def list_once(self) -> None:
        """List everything (all pages) and reconcile the cache with it."""
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
        self.store = items
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
        while True:
            try:
                if self.resource_version is None:
                    if self.synced.is_set():
                        self.relists += 1
                    await self.list_once()
                await self._watch()
                failures = 0
                self.resumes += 1  # the stream ended cleanly (timeout): resume
            except WatchExpired:
                self.resource_version = None
            except TransientError:
                failures += 1
                self.resumes += 1
                await asyncio.sleep(min(10.0, 0.2 * 2 ** min(failures, 6)) * random.uniform(0.5, 1))
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
                self.store[k] = obj
            if rv:
                self.resource_version = rv
            self._emit(str(kind), obj)


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _uid(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")
