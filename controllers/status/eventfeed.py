"""The events feed: the last few hundred things the fleet did, for people watching it.

`GET /api/v1/events?since=SEQ` and the web page's timeline read it. It is not the
ledger: the ledger is the durable, hash-chained record of what this replica *decided*
(only the leader writes it, only with `--ledger`); the feed is a bounded in-memory ring
of what this replica *saw*, kept with or without `--ledger`, on leaders and followers:

- the same decisions the ledger gets (Placed, Moved, FailedOver, Pending, Applied,
  Pruned, DriftCorrected), from the same call sites (`Manager.record` and
  `ClusterReconciler._event`), before the leader-only gate;
- what the ledger has no event for: a cluster's health changing (`ClusterUnreachable`,
  `ClusterDegraded`, `ClusterHealthy`, `ClusterUnknown`), a source condition raised
  (`DeletionsHeld`, `SourceUnavailable`, ...: the condition's type) or cleared
  (`ConditionCleared`), a cluster refusing to prune everything (`DeletionsHeld`).

A follower's feed therefore shows the plan decisions it computed and the health it saw,
each marked `acting: false` (it wrote nothing); the leader's are `acting: true`.
Every entry has a `seq` that only grows, so a reader asks for what is newer than the
last one it has, and learns from `oldestSeq` whether the ring dropped some in between.
The clock is injected: tests pass their own.

`body(since, workload)` is what `GET /api/v1/events` serves: each document built and
encoded once per new event (`controllers.status.bodies.KeyedBodies`, keyed by what the
document depends on: the last `seq`, `since` as far as it matters, the workload), not
per request; `bodies.builds` counts them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controllers.status.bodies import Body, KeyedBodies

DEFAULT_SIZE = 500
REASON_MAX = 300

_FIELDS = ("cluster", "from_cluster", "reason", "flavour", "gpus", "commit",
           "jurisdiction", "data_class", "result")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EventFeed:
    """A ring of the last `size` events; an `EventSink` (`record`) plus `note`."""

    def __init__(self, size: int = DEFAULT_SIZE, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self.seq = 0
        self._ring: deque[dict[str, Any]] = deque(maxlen=size)
        self.bodies = KeyedBodies()
        """The documents served, encoded, since the last event."""

    def record(self, event: Any, workload: str, *, acting: bool = True,
               **fields: Any) -> None:
        """One event; `fields` are the ledger's (`fleet.ledger.Entry`) names. Unknown
        fields are left out: the feed shows what a person reads, not the whole entry."""
        self.seq += 1
        entry: dict[str, Any] = {"seq": self.seq, "time": rfc3339(self.clock()),
                                 "event": str(event), "workload": workload or None,
                                 "acting": acting}
        for key in _FIELDS:
            value = fields.get(key)
            if value is None or value == "" or (key == "gpus" and not value):
                continue
            if key == "reason":
                value = str(value)[:REASON_MAX]
            entry[_camel(key)] = value
        self._ring.append(entry)

    def note(self, event: str, *, cluster: str | None = None, workload: str = "",
             reason: str = "", acting: bool = True) -> None:
        """Something that is no ledger decision: a health change, a condition."""
        self.record(event, workload, acting=acting, cluster=cluster, reason=reason)

    @property
    def oldest(self) -> int:
        return self._ring[0]["seq"] if self._ring else self.seq + 1

    def document(self, since: int = 0, workload: str | None = None) -> dict[str, Any]:
        """Events newer than `since` (oldest first), optionally of one workload.

        `truncated` says the ring no longer holds some events after `since`."""
        events = [e for e in self._ring if e["seq"] > since
                  and (workload is None or e["workload"] == workload)]
        return {"apiVersion": "aifleet.dev/v1alpha1", "kind": "FleetEvents",
                "latestSeq": self.seq, "oldestSeq": self.oldest, "size": self.size,
                "truncated": since + 1 < self.oldest, "events": events}

    def body(self, since: int = 0, workload: str | None = None) -> Body:
        """`document(since, workload)` as served, built once until the next event.

        Every `since` below `oldest - 1` asks for the same document (the whole ring,
        truncated), and so does every `since` at or past `seq` (nothing newer): each
        is one key."""
        if since < self.oldest - 1:
            since = max(0, self.oldest - 2)
        since = min(since, self.seq)
        return self.bodies.get(self.seq, (since, workload),
                               lambda: self.document(since, workload))
