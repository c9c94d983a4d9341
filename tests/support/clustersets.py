"""A ClusterSet with nothing connected and inert callbacks, for unit tests of its
bookkeeping (what it lists, what it counts as running)."""

from __future__ import annotations

from pathlib import Path

from clusters.adapter import AdapterOptions
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.retirement import Retirement
from controllers.runtime.workqueue import WorkQueue
from controllers.status.eventfeed import EventFeed


async def _noop(_name: str) -> float | None:
    return None


def bare_cluster_set(tmp_path: Path) -> ClusterSet:
    return ClusterSet(
        adapters={}, options=AdapterOptions(), allow_exec=False,
        retirement=Retirement(tmp_path), queue=WorkQueue("clusters", _noop),
        feed=EventFeed(), live={}, may_act=lambda: True,
        connection_of=lambda c: None,  # type: ignore[arg-type,return-value]
        on_drift=lambda _n: lambda _r: None, prepare=lambda _n, _a: None,
        task_group=lambda: None, namespace="aifleet-system")
