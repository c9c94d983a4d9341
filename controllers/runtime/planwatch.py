"""A follower's watch on the leader's plan index, so a new publication is read at once.

With `--shards`, a replica that does not lead reads the leader's published plan
(`controllers.persist.sharedplan`) on a poll (`Shards._share_loop`, every second): a new
publication waited half a poll on average, and behind the status work done before each
sleep. This watches the index ConfigMap alone (`clusters.configmap.watch_configmap`: one
stream per replica, the index's few hundred bytes per publication, whatever the fleet's
size) and wakes the share loop to read the plan (`wake`) when an ADDED, MODIFIED or
DELETED event carries a resourceVersion other than the one the reader last took in
(`seen`). Only the index is watched: the leader writes it after every part it names,
so its event means the parts are there.

It is an accelerator, never the source of truth: the poll goes on as the
level-triggered fallback, and a watch that ends (the server's timeout), is cut, expires
(410) or fails is opened again from now (no resourceVersion: its first event is the
index as it is, which wakes the reader if it missed a change meanwhile), after a short
backoff when it failed. Nothing here ends the loop. The watch runs only while the
replica follows (`following`); `stop` ends an open one at once when it leads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import aclosing

import anyio
import structlog

from clusters.client import KubeClient
from clusters.configmap import watch_configmap
from clusters.errors import ClusterError, PermanentError, WatchExpired
from controllers.persist.sharedplan import NAME

log = structlog.get_logger()

WATCH_SECONDS = 300
"""The server ends each stream after this (`timeoutSeconds`); it is opened again."""
BACKOFF_MAX = 10.0
REFUSED_BACKOFF_MAX = 120.0
"""The longest wait before opening a failed watch again; when refused (Forbidden: a
Role without the watch on the index, from an older chart), longer: the poll alone
serves then."""


class PlanWatch:
    def __init__(self, namespace: str, *, seen: Callable[[], str | None],
                 wake: Callable[[], None]) -> None:
        self.namespace = namespace
        self.seen = seen
        """The index's resourceVersion the reader last took in (None: none)."""
        self.wake = wake
        self.streams = 0
        self.events = 0
        self.wakes = 0
        self.failures = 0
        """Streams opened, events of the index seen (not BOOKMARKs), wakes sent, and
        streams that failed (cut, expired, refused): counted for tests and status."""
        self._scope: anyio.CancelScope | None = None
        self._live = False
        """The stream open now has delivered an event (a BOOKMARK too): it was
        established, so its end is not another failure in a row."""

    async def run(self, client: Callable[[], KubeClient | None],
                  following: Callable[[], bool], idle: float) -> None:
        """Watch while `following()` and the home can be reached; else look again
        every `idle` seconds."""
        failures, cap = 0, BACKOFF_MAX
        while True:
            home = client()
            if home is None or not following():
                failures = 0
                await anyio.sleep(idle)
                continue
            self._live = False
            try:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    await self._stream(home)
                failures = 0
            except WatchExpired:
                self.failures += 1  # opened again from now, at once
            except PermanentError as e:
                self.failures += 1
                failures, cap = self._again(failures), REFUSED_BACKOFF_MAX
                log.info("plan_watch_refused", error=f"{type(e).__name__}: {e}")
            except (ClusterError, TimeoutError) as e:
                self.failures += 1
                failures = self._again(failures)
                log.info("plan_watch_failed", error=f"{type(e).__name__}: {e}")
            except Exception as e:  # noqa: BLE001 - an accelerator: the poll goes on
                self.failures += 1
                failures = self._again(failures)
                log.warning("plan_watch_failed", error=f"{type(e).__name__}: {e}")
            finally:
                self._scope = None
            if failures:
                await anyio.sleep(min(cap, 0.2 * 2 ** min(failures, 10))
                                  * random.uniform(0.5, 1))
                cap = BACKOFF_MAX

    def _again(self, failures: int) -> int:
        """Failures in a row, this one counted: from 1 again after a stream that was
        established (a watch cut after hours is opened again at once)."""
        return 1 if self._live else failures + 1

    def stop(self) -> None:
        """End the open stream now (this replica leads); `run` opens none while it
        does not follow."""
        if self._scope is not None:
            self._scope.cancel()

    async def _stream(self, client: KubeClient) -> None:
        self.streams += 1
        events = watch_configmap(client, NAME, namespace=self.namespace,
                                 timeout_seconds=WATCH_SECONDS)
        async with aclosing(events):  # stopped or cut: the stream closed at once
            async for event in events:
                self._live = True
                if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
                    continue  # a BOOKMARK: no change of the index
                self.events += 1
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") \
                    if isinstance(obj, dict) else None
                if version is None or version != self.seen():
                    self.wakes += 1
                    self.wake()
