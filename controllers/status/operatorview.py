"""Extra status fields an SRE works from: per placement sync, per cluster failover clock.

Added to the FleetStatus document by the controller (`manager_io.status`), after the
schema's fields, so `docs/spec/status.schema.json` still holds (extra fields are allowed):

- each `placements[]` item gets `sync` (Synced / Failed / OutOfSync with open drift, or
  Applying before its first reconcile) and `health` of that one cluster, so a cluster's
  synced / drifted / failed counts and a workload's drill-down need no guessing from the
  worst-of summary. On an Unreachable cluster both are Unknown (with `lastSync`, what
  its last reconcile found): "Synced" there would be an all-clear nobody can check;
- each cluster gets `workloads` ({placed, synced, drifted, failed}) and, while it is
  Unreachable, `unreachableForSeconds` (since its first unanswered request: the clock
  failover runs on) and `failoverGraceSeconds` (the `--failover-grace`, else the shortest
  `aifleet.dev/unreachable` toleration of what was placed there): what the page turns
  into a countdown to failover.

Plain inputs, no clock of its own: the caller passes what the adapters know now.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from controllers.runtime.fleetstate import ClusterView
from controllers.status.statusdoc import DriftItem, PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.spec import FleetSpec

Counts = dict[str, dict[str, int]]
"""cluster -> {placed, synced, drifted, failed}."""
Graces = dict[str, list[int]]
"""cluster -> the unreachable tolerations of the workloads placed there."""


def add_operator_fields(doc: dict[str, Any], *, spec: FleetSpec | None,
                        views: Mapping[str, ClusterView],
                        live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive],
                        drift: list[DriftItem], failover_grace: float | None) -> None:
    counts: Counts = {}
    graces: Graces = {}
    open_drift = {(d.cluster, str(d.workload)) for d in drift if not d.corrected}
    for row in doc["workloads"]:
        wid = WorkloadId(row["id"])
        w = spec.workloads.get(wid) if spec is not None else None
        placement_fields(row, w.spec.unreachable_grace_seconds if w is not None else None,
                         views=views, live=live, open_drift=open_drift, counts=counts,
                         graces=graces)
    cluster_fields(doc["clusters"], counts=counts, graces=graces, views=views,
                   failover_grace=failover_grace)


def placement_fields(row: dict[str, Any], grace: int | None, *,
                     views: Mapping[str, ClusterView],
                     live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive],
                     open_drift: Set[tuple[str, str]], counts: Counts,
                     graces: Graces) -> None:
    """One workload row's placements get `sync` and `health` (and `lastSync` on an
    Unreachable cluster); what they add to their clusters' counts goes into `counts`
    and `graces` (`grace`: the workload's unreachable toleration, None if unknown)."""
    wid = WorkloadId(row["id"])
    for p in row["placements"]:
        cluster = p["cluster"]
        pl = live.get((ClusterName(cluster), wid))
        p["sync"] = pl.sync if pl is not None else "Applying"
        p["health"] = pl.health if pl is not None else "Unknown"
        if (cluster, row["id"]) in open_drift:
            p["sync"] = "OutOfSync"
        view = views.get(cluster)
        if view is not None and view.health == "Unreachable":
            p["lastSync"], p["sync"], p["health"] = p["sync"], "Unknown", "Unknown"
        c = counts.setdefault(cluster, {"placed": 0, "synced": 0, "drifted": 0,
                                        "failed": 0})
        c["placed"] += 1
        c["synced"] += p["sync"] == "Synced"
        c["drifted"] += p["sync"] == "OutOfSync"
        c["failed"] += p["sync"] == "Failed" or p["health"] == "Failed"
        if grace is not None:
            graces.setdefault(cluster, []).append(grace)


def cluster_fields(clusters: list[dict[str, Any]], *, counts: Counts, graces: Graces,
                   views: Mapping[str, ClusterView], failover_grace: float | None) -> None:
    """Each cluster row gets its `workloads` counts and, while Unreachable, its
    failover clock."""
    for c in clusters:
        name = c["name"]
        c["workloads"] = counts.get(name, {"placed": 0, "synced": 0, "drifted": 0,
                                           "failed": 0})
        view = views.get(name)
        if view is None or view.unreachable_for is None:
            continue
        c["unreachableForSeconds"] = round(view.unreachable_for, 1)
        mine = graces.get(name)
        grace = failover_grace if failover_grace is not None else (
            min(mine) if mine else None)
        if grace is not None:
            c["failoverGraceSeconds"] = grace
