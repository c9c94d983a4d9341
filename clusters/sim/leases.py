"""Node heartbeats: one `coordination.k8s.io/v1` Lease per node in `kube-node-lease`.

A real kubelet keeps a Lease named after its node in `kube-node-lease` (holder the
node's name, `leaseDurationSeconds: 40`, owned by the Node) and renews its
`renewTime` every quarter of the duration, 10 s (`pkg/kubelet/nodelease`,
`component-helpers/apimachinery/lease/controller.go`); the node lifecycle controller
reads them to tell a live node from a dead one. The simulated kubelets do the same,
writing as field manager `kubelet`, and stop renewing while their node is NotReady
(`SimCluster.set_node_ready`), as a kubelet that stopped heartbeating would, and while
their cluster is down (`SimCluster.down`: no kubelet reaches an API server that is
down). A deleted Lease is created again at the next renewal.

One timer per cluster renews all its nodes' leases at once, so an idle simulated
cluster costs one timer, not one per node. A thousand clusters of eight nodes start
eight thousand leases, so their `kubelet` managedFields entry is computed once and
reused with each node's uid (`_managed_fields`); renewals change only `renewTime`,
which the kubelet already owns, so they leave the entry as it is.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from clusters.sim import nodes, objects, ssa
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store

NAMESPACE = "kube-node-lease"
DURATION_SECONDS = 40
RENEW_SECONDS = DURATION_SECONDS / 4
MANAGER = "kubelet"
LEASES, NODES = BY_KIND["Lease"], BY_KIND["Node"]


def micro_time(at: datetime | None = None) -> str:
    """`metav1.MicroTime` as the API server serialises it (RFC 3339, microseconds)."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_for(node: dict[str, Any], now: str) -> dict[str, Any]:
    meta = node["metadata"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": meta["name"], "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                              "name": meta["name"], "uid": meta["uid"]}]},
            "spec": {"holderIdentity": meta["name"],
                     "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now}}


def renewed(live: dict[str, Any], now: str) -> dict[str, Any]:
    """`live` with `spec.renewTime` set to `now`: new dicts along the path that changes
    (the object, its metadata, which the store stamps with a resourceVersion, and its
    spec), the rest shared with `live`. A deep copy cost a quarter of a simulator's CPU
    at 1,000 clusters; sharing is safe because nothing changes a stored object's parts
    in place (`Store.replace` writes only the new object's own top level and metadata
    for a Lease: `decode_quantities`, `apply_defaults` and the admitters find nothing
    to change in one)."""
    return {**live, "metadata": dict(live["metadata"]),
            "spec": {**live["spec"], "renewTime": now}}


class NodeLeases:
    """The kubelets' lease renewals of one simulated cluster."""

    def __init__(self, store: Store, renew_seconds: float = RENEW_SECONDS) -> None:
        self.store = store
        self.renew_seconds = renew_seconds
        self._timer: asyncio.TimerHandle | None = None
        self._template: tuple[str, str] | None = None  # (uid, managedFields as JSON)

    def _managed_fields(self, lease: dict[str, Any], uid: str) -> list[dict[str, Any]]:
        """The `kubelet` Update entry of a new lease: what `ssa.record_update` records,
        computed for the first lease and re-keyed by uid for the others."""
        if self._template is None:
            entry = ssa.record_update(None, lease, MANAGER, now="")
            self._template = (uid, json.dumps(entry["metadata"]["managedFields"]))
        first_uid, text = self._template
        fields: list[dict[str, Any]] = json.loads(text.replace(first_uid, uid))
        for e in fields:
            e["time"] = objects.now()
        return fields

    def renew(self) -> int:
        """Renew (or create) the lease of every Ready node now; how many were written."""
        now = micro_time()
        written = 0
        for node in self.store.list(NODES):
            if not nodes.is_ready(node):
                continue
            name = node["metadata"]["name"]
            live = self.store.find(LEASES, NAMESPACE, name)
            if live is None:
                lease = lease_for(node, now)
                lease["metadata"]["managedFields"] = self._managed_fields(
                    lease, node["metadata"]["uid"])
                self.store.create(LEASES, lease, fresh=True)
            else:
                self.store.replace(LEASES, renewed(live, now), live, check_rv=False)
            written += 1
        return written

    def start(self) -> None:
        """Renew every `renew_seconds` from now on, until `close`."""
        self.close()
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.renew_seconds, self._tick)

    def _tick(self) -> None:
        self.renew()
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
