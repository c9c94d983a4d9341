"""`fleet status --live`: the FleetStatus document built straight from the clusters.

For an SRE when no controller answers (or to check what it says): read the fleet repo,
connect to every cluster of it (read-only: the adapters list and watch, nothing is
written), wait for their informers to list, and describe what *runs*:

- placements are what the clusters' owned Jobs and Deployments say (workload label,
  replicas, GPU product -> flavour), the same read-back a restarted controller trusts;
- a workload that runs nowhere shows what placement would do with it now (Pending with
  the diagnosis, or planned but not running: `OutOfSync`);
- `sync` compares the live intent hash with the repo's (`Synced` / `OutOfSync`);
- `health` and `pods` come from the live Job or Deployment and its pods; `since` is the
  creation time of the oldest live object of the workload.

The capacity and the previous plan are folded exactly as the controller folds them
(`controllers.fleetstate`), so both views agree on what is free and what is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.errors import ClusterError
from clusters.kubeconfig import ConnectionSpec
from controllers.fleetstate import (
    ClusterView,
    capacity_snapshot,
    previous_from_live,
    workload_label,
)
from controllers.reconcile import live_intent
from controllers.statusdoc import PlacementLive, SourceState, status_document
from fleet.ids import ClusterName, WorkloadId
from fleet.placement import place
from fleet.placement.types import Plan, Reason, WorkloadPlacement
from fleet.render import intent_hash
from workloads.loader import Snapshot


async def live_status(snap: Snapshot, *, kubeconfig: str | None, allow_exec: bool = False,
                      answer_within: float = 15.0) -> dict[str, Any]:
    """The status document of what runs on the clusters of `snap`'s fleet, now."""
    spec = snap.spec
    opts = AdapterOptions(allow_exec=allow_exec, self_heal=False,
                          unreachable_after=answer_within / 2, heartbeat_interval=1.0)
    adapters: dict[str, ClusterAdapter] = {}
    refused: dict[str, str] = {}
    for name, c in sorted(spec.clusters.items()):
        conn = ConnectionSpec(name, c.spec.connection.kubeconfig or kubeconfig,
                              c.spec.connection.context or name)
        try:
            adapters[name] = await ClusterAdapter.connect(conn, opts)
        except ClusterError as e:
            refused[name] = str(e)
    try:
        async with anyio.create_task_group() as tg:
            for a in adapters.values():
                tg.start_soon(a.run)
            with anyio.move_on_after(answer_within):
                for a in adapters.values():
                    await a.synced.wait()
            doc = _document(snap, adapters, refused)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for a in adapters.values():
                await a.aclose()
    return doc


def _document(snap: Snapshot, adapters: Mapping[str, ClusterAdapter],
              refused: Mapping[str, str]) -> dict[str, Any]:
    spec = snap.spec
    views = {name: ClusterView(a.health_state if a.synced.is_set() else "Unknown", None,
                               tuple(a.nodes()))
             for name, a in adapters.items()}
    synced = {name: a for name, a in adapters.items() if a.synced.is_set()}
    previous = previous_from_live(
        spec.clusters, {name: a.live_workloads() for name, a in synced.items()})
    capacity = capacity_snapshot(spec.clusters, views)
    planned = place(spec, capacity, previous, commit=snap.commit)
    live_plan = _what_runs(planned, previous)
    live: dict[tuple[ClusterName, WorkloadId], PlacementLive] = {}
    for wid, assignments in previous.items():
        w = spec.workloads.get(wid)
        label = workload_label(wid)
        for asg in assignments:
            a = synced[asg.cluster]
            current = w is not None and live_intent(a, label) == intent_hash(w)
            commits = {(o.get("metadata") or {}).get("annotations", {}).get(
                "aifleet.dev/source-commit") for o in a.workload_objects(label)}
            commit = sorted(c for c in commits if c)
            live[(asg.cluster, wid)] = PlacementLive(
                "Synced" if current else "OutOfSync", a.workload_health(label),
                commit[0] if commit else None)
    conditions = tuple(
        {"type": "ClusterUnavailable", "status": "True", "reason": "ConnectFailed",
         "message": f"{name}: {why}"} for name, why in sorted(refused.items()))
    conditions += tuple(
        {"type": "ClusterUnavailable", "status": "True", "reason": "NotListed",
         "message": f"{name}: did not answer in time; what runs there is unknown"}
        for name, a in sorted(adapters.items()) if not a.synced.is_set())
    doc = status_document(spec=spec, plan=live_plan, snapshot=capacity,
                          source=SourceState(snap.commit, None, conditions),
                          live=live, drift=())
    doc["source"]["live"] = True
    add_pods(doc, synced)
    for row in doc["workloads"]:
        if not row["placements"] and row["status"] == "Placed":
            row["sync"] = "OutOfSync"
    return doc


def _what_runs(planned: Plan, previous: Mapping[WorkloadId, Any]) -> Plan:
    """Placements as they run; for what runs nowhere, what placement would do now."""
    rows: dict[WorkloadId, WorkloadPlacement] = {}
    for wid, wp in planned.workloads.items():
        running = previous.get(wid)
        if running:
            rows[wid] = WorkloadPlacement(wid, "Placed", tuple(running), wp.reasons)
        elif wp.status == "Placed":
            where = ", ".join(a.cluster for a in wp.assignments)
            rows[wid] = WorkloadPlacement(wid, "Placed", (), (
                Reason(f"not running anywhere; placement would put it on {where}",
                       None, "Live"), *wp.reasons))
        else:
            rows[wid] = wp
    return Plan(planned.commit, rows, planned.usage, planned.capacity_digest,
                planned.policy_version)


def add_pods(doc: dict[str, Any], adapters: Mapping[str, ClusterAdapter]) -> None:
    """Per workload row: its pods (name, cluster, node, phase) and `since`, the creation
    time of its oldest live Job or Deployment, from the adapters' informer caches."""
    objects = {name: a.objects_by_workload() for name, a in adapters.items()}
    pods_of = {name: a.pods_by_workload() for name, a in adapters.items()}
    for row in doc["workloads"]:
        label = workload_label(row["id"])
        pods: list[dict[str, Any]] = []
        created: list[str] = []
        for p in row["placements"]:
            cluster = p["cluster"]
            if cluster not in objects:
                continue
            for obj in objects[cluster].get(label, ()):
                if obj.get("kind") in ("Job", "Deployment"):
                    ts = (obj.get("metadata") or {}).get("creationTimestamp")
                    if ts:
                        created.append(str(ts))
            for pod in pods_of[cluster].get(label, ()):
                meta, status = pod.get("metadata") or {}, pod.get("status") or {}
                pods.append({"name": meta.get("name"), "cluster": cluster,
                             "node": (pod.get("spec") or {}).get("nodeName"),
                             "phase": status.get("phase")})
        row["pods"] = pods
        if created:
            row["since"] = min(created)
