"""The FleetStatus document of `GET /api/v1/status` (shared/spec/status.schema.json).

Built from plain inputs (spec, plan, capacity, what each cluster reconcile recorded),
so it can be checked against the schema without a cluster. The manager calls it on
every request: the document is always the state of now, never a cached copy.

Per workload:
- `status` is the plan's (Placed / Pending / Invalid); an invalid workload keeps what
  runs (it is never pruned) and says why;
- `sync` is the worst over its placements: Failed > OutOfSync (open drift) > Applying
  (a reconcile of the new plan has not finished) > Synced; Unknown before any;
- `health` is the worst over its clusters' Jobs and Deployments; pods a cluster's
  scheduler refuses (PodScheduled=False, Unschedulable: e.g. more cpu than a node
  allocates) add a reason with rule `Unschedulable` and the scheduler's message; a
  Job or JobSet Kueue keeps queued adds one with rule `Queued` and Kueue's message;
- `commit` is the source-commit annotation of what is live.

Per cluster, beyond the schema: a Degraded or Unreachable cluster says why (`reason`,
`message`: the health tracker's cause, e.g. API errors with their status code or
unanswered requests), and an Unreachable one when its workloads fail over
(`failoverInSeconds`: the grace left, 0 once it is over).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, WorkloadId, team_of
from fleet.models import API_VERSION
from fleet.placement.types import Diagnosis, Plan, Reason, WorkloadPlacement
from fleet.spec import FleetSpec

SYNC_ORDER = ("Failed", "OutOfSync", "Applying", "Unknown", "Synced")
HEALTH_ORDER = ("Failed", "Progressing", "Unknown", "Running", "Succeeded")


@dataclass(frozen=True, slots=True)
class PlacementLive:
    """What the last reconcile of one cluster recorded for one workload."""

    sync: str
    health: str
    commit: str | None
    message: str | None = None
    """Why the last reconcile left it Failed (the API server's refusal, a re-create that
    its policy forbids), for the workload's reasons."""
    unschedulable: str | None = None
    """Its pods the cluster's scheduler cannot place (`N pod(s) Pending, unschedulable:
    0/8 nodes are available: 8 Insufficient cpu.`): placed by us, waiting there."""
    queued: str | None = None
    """Kueue holds its Job suspended in a queue (`clusters.health.kueue_queued`:
    `queued by Kueue in LocalQueue q: couldn't assign flavors ...`): placed by us,
    waiting for Kueue's admission there."""
    recreate: bool = False
    """The message is a re-create its policy forbids (`clusters.errors.RecreateNeeded`):
    the Job runs as it was; the row says `recreateNeeded`."""
    waiting: str | None = None
    """Why it is not started there yet (`fleet.sync.ClusterSync.waiting`: its copy on
    another cluster is not deleted yet, and a gang never runs on two): sync Applying,
    and a `Waiting` reason on the workload's row."""


@dataclass(frozen=True, slots=True)
class DriftItem:
    cluster: str
    workload: WorkloadId
    paths: tuple[str, ...]
    manager: str | None
    corrected: bool
    key: tuple[str, str, str, str] | None = None
    """The drifted object (apiVersion, kind, namespace, name), to re-check it later."""


@dataclass(frozen=True, slots=True)
class SourceState:
    observed: str | None
    applied: str | None
    conditions: tuple[dict[str, str], ...]


def _worst(values: Sequence[str], order: Sequence[str], empty: str) -> str:
    if not values:
        return empty
    return min(values, key=lambda v: order.index(v) if v in order else len(order))


@dataclass(frozen=True, slots=True)
class HealthNote:
    """Why a cluster is not Healthy, from its health tracker, and how long it has been
    Unreachable; `grace` is the failover grace of what runs there (None: nothing)."""

    reason: str
    message: str
    unreachable_for: float | None = None
    grace: float | None = None


def failover_grace(spec: FleetSpec | None, plan: Plan | None, cluster: str,
                   fleet_wide: float | None,
                   graces: Mapping[str, float] | None = None) -> float | None:
    """Seconds an Unreachable `cluster` is waited for before its workloads fail over:
    the fleet-wide setting, else the shortest grace of the workloads placed there (the
    first to move); None when nothing is placed there. `graces`: `failover_graces` of
    this spec and plan, when the caller keeps it (one pass over the plan per plan, not
    one per Unreachable cluster)."""
    if fleet_wide is not None:
        return fleet_wide
    if graces is None:
        graces = failover_graces(spec, plan)
    return graces.get(cluster)


def failover_graces(spec: FleetSpec | None, plan: Plan | None) -> dict[str, float]:
    """Per cluster with something placed there, the shortest unreachable grace of the
    workloads placed there: every cluster's `failover_grace` without a fleet-wide
    setting, in one pass over the plan."""
    out: dict[str, float] = {}
    if spec is None or plan is None:
        return out
    for wid, wp in plan.workloads.items():
        w = spec.workloads.get(wid)
        if w is None or not wp.assignments:
            continue
        grace = float(w.spec.unreachable_grace_seconds)
        for a in wp.assignments:
            if a.cluster not in out or grace < out[a.cluster]:
                out[a.cluster] = grace
    return out


def _note_fields(note: HealthNote) -> dict[str, Any]:
    out: dict[str, Any] = {"reason": note.reason, "message": note.message}
    if note.unreachable_for is not None and note.grace is not None:
        out["failoverInSeconds"] = max(0, round(note.grace - note.unreachable_for))
    return out


def _assigned_gpus(plan: Plan) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for wp in plan.workloads.values():
        for a in wp.assignments:
            mine = out.setdefault(a.cluster, {})
            mine[a.flavour] = mine.get(a.flavour, 0) + a.gpus
    return out


def cluster_rows(spec: FleetSpec | None, plan: Plan | None,
                 snapshot: CapacitySnapshot,
                 notes: Mapping[str, HealthNote] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    clusters = spec.clusters if spec is not None else {}
    # GPUs by cluster and flavour from the assignments, summed once (only for a cluster
    # the plan's usage says nothing of): not a pass over the whole plan per cluster.
    assigned: dict[str, dict[str, int]] | None = None
    for name in sorted(clusters):
        c = clusters[name]
        cap = snapshot.get(name)
        allocated: dict[str, int] = {}
        if plan is not None:
            for f, usage in (plan.usage.get(name) or {}).items():
                allocated[f] = usage.allocated
            if not allocated:
                if assigned is None:
                    assigned = _assigned_gpus(plan)
                allocated = dict(assigned.get(name, {}))
        gpus: dict[str, dict[str, int]] = {}
        for flavour, nodes in cap.flavours().items():
            capacity = sum(n.gpus for n in nodes)
            free_now = sum(n.free for n in nodes)
            taken = allocated.get(flavour, 0)
            gpus[flavour] = {
                "capacity": capacity,
                "allocated": taken,
                "free": max(0, free_now - taken),
                "largestFreeBlock": max(
                    (max(0, n.free - n.used_by_fleet) for n in nodes), default=0),
            }
        for fname, taken in sorted(allocated.items()):
            gpus.setdefault(fname, {"capacity": 0, "allocated": taken, "free": 0,
                                      "largestFreeBlock": 0})
        rows.append({
            "name": name, "region": c.spec.region, "jurisdiction": c.spec.jurisdiction,
            "health": cap.health, "cordoned": c.spec.cordoned,
            "unreachableSeconds": cap.unreachable_seconds, "gpus": gpus,
            "labels": dict(c.metadata.labels),
        })
        note = (notes or {}).get(name)
        if note is not None and cap.health != "Healthy":
            rows[-1].update(_note_fields(note))
    return rows


CLUSTER_REASONS = 20
"""Per-cluster reasons a workload row shows of clusters it is not placed on (a Pending
workload's plan has one per cluster that refused it), before one line of how many more."""


def plan_reasons(wp: WorkloadPlacement) -> list[dict[str, Any]]:
    """The plan's reasons of a workload, as status rows: every line without a cluster
    (the diagnosis) and every one about a cluster it is placed on, but of the clusters
    that refused it only the first `CLUSTER_REASONS`, then one line of how many more
    (rule `Truncated`): the diagnosis line already counts them by cause.

    Issue 22 (1,000 clusters x 50,000 workloads): a Pending workload's plan carries one
    Reason per cluster (`fleet.placement.diagnose`), shared objects in the plan, but a
    dict each in its status row and ~90 bytes each in the JSON. With every cluster still
    Unknown that was 50 million rows' reasons, ~190 bytes each: the controller's heap
    grew with clusters x workloads before anything was applied. `fleet explain` lists
    every cluster's reason. Of a `Diagnosis` (the plan keeps those Reasons by cause)
    only the ones shown are made; the rest are counted."""
    placed = {a.cluster for a in wp.assignments}
    reasons: Sequence[Reason] = wp.reasons
    unmade = 0
    if isinstance(reasons, Diagnosis) and not any(reasons.refusal_of(c) for c in placed):
        lead = sum(1 for r in reasons.lead if r.cluster and r.cluster not in placed)
        shown = max(0, CLUSTER_REASONS - lead)
        unmade = max(0, reasons.refused - shown)
        reasons = (*reasons.lead, *islice(reasons.refusing(), shown))
    out: list[dict[str, Any]] = []
    refused = 0
    for r in reasons:
        if r.cluster and r.cluster not in placed:
            refused += 1
            if refused > CLUSTER_REASONS:
                continue
        out.append({"message": r.message, **({"cluster": r.cluster} if r.cluster else {}),
                    **({"rule": r.rule} if r.rule else {})})
    refused += unmade
    if refused > CLUSTER_REASONS:
        more = refused - CLUSTER_REASONS
        out.append({"message": f"and {more} more cluster{'' if more == 1 else 's'}: "
                               f"`fleet explain {wp.id}` lists every cluster's reason",
                    "rule": "Truncated"})
    return out


def _workload_row(wp: WorkloadPlacement, live: Mapping[tuple[ClusterName, WorkloadId],
                                                       PlacementLive],
                  drift: Mapping[WorkloadId, Sequence[DriftItem]]) -> dict[str, Any]:
    states = [live[(a.cluster, wp.id)] for a in wp.assignments if (a.cluster, wp.id) in live]
    syncs = [s.sync for s in states]
    if wp.assignments and len(states) < len(wp.assignments):
        syncs.append("Applying")
    mine = list(drift.get(wp.id, ()))
    if any(not d.corrected for d in mine):
        syncs.append("OutOfSync")
    commits = sorted({s.commit for s in states if s.commit})
    row: dict[str, Any] = {
        "id": wp.id,
        "status": wp.status,
        "sync": _worst(syncs, SYNC_ORDER, "Unknown") if wp.status == "Placed" else "Unknown",
        "health": _worst([s.health for s in states], HEALTH_ORDER, "Unknown"),
        "commit": commits[-1] if len(commits) == 1 else (None if not commits else commits[0]),
        "placements": [
            {"cluster": a.cluster, "replicas": a.replicas, "flavour": a.flavour,
             "gpus": a.gpus}
            for a in wp.assignments],
        "reasons": plan_reasons(wp) + [
            {"message": live[(a.cluster, wp.id)].message or "", "cluster": a.cluster,
             "rule": "RecreateNeeded" if live[(a.cluster, wp.id)].recreate else "Apply"}
            for a in wp.assignments
            if (a.cluster, wp.id) in live and live[(a.cluster, wp.id)].message] + [
            {"message": live[(a.cluster, wp.id)].unschedulable or "", "cluster": a.cluster,
             "rule": "Unschedulable"}
            for a in wp.assignments
            if (a.cluster, wp.id) in live and live[(a.cluster, wp.id)].unschedulable] + [
            {"message": live[(a.cluster, wp.id)].queued or "", "cluster": a.cluster,
             "rule": "Queued"}
            for a in wp.assignments
            if (a.cluster, wp.id) in live and live[(a.cluster, wp.id)].queued] + [
            {"message": live[(a.cluster, wp.id)].waiting or "", "cluster": a.cluster,
             "rule": "Waiting"}
            for a in wp.assignments
            if (a.cluster, wp.id) in live and live[(a.cluster, wp.id)].waiting],
    }
    recreate = [{"cluster": a.cluster, "reason": live[(a.cluster, wp.id)].message or ""}
                for a in wp.assignments
                if (a.cluster, wp.id) in live and live[(a.cluster, wp.id)].recreate]
    if recreate:
        row["recreateNeeded"] = recreate
    if mine:
        row["drift"] = [{"cluster": d.cluster, "paths": list(d.paths), "manager": d.manager,
                         "corrected": d.corrected} for d in mine[-10:]]
    return row


def status_document(*, spec: FleetSpec | None, plan: Plan | None,
                    snapshot: CapacitySnapshot, source: SourceState,
                    live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive],
                    drift: Sequence[DriftItem],
                    notes: Mapping[str, HealthNote] | None = None) -> dict[str, Any]:
    workloads: list[dict[str, Any]] = []
    by_workload: dict[WorkloadId, list[DriftItem]] = {}
    for d in drift:
        by_workload.setdefault(d.workload, []).append(d)
    if plan is not None:
        for wid in sorted(plan.workloads):
            workloads.append(_workload_row(plan.workloads[wid], live, by_workload))
    elif spec is not None:
        for wid in sorted(spec.invalid):
            workloads.append(_workload_row(WorkloadPlacement(wid, "Invalid"), live,
                                           by_workload))
    if spec is not None:
        _residency_fields(spec, workloads)
    if spec is not None and plan is not None:
        # An invalid workload's reasons are its diagnostics, with file and line.
        for row in workloads:
            diags = spec.invalid.get(row["id"])
            if diags and not row["reasons"]:
                row["reasons"] = [{"message": str(d), "file": d.file, "line": d.line}
                                  for d in diags]
    return {
        "apiVersion": API_VERSION,
        "kind": "FleetStatus",
        "source": {"observedCommit": source.observed, "appliedCommit": source.applied,
                   "conditions": [dict(c) for c in source.conditions]},
        "clusters": cluster_rows(spec, plan, snapshot, notes),
        "workloads": workloads,
    }


def _residency_fields(spec: FleetSpec, rows: list[dict[str, Any]]) -> None:
    """Extras for SREs and auditors: each workload's team, dataClass and where it may run.

    `allowedJurisdictions` is `"*"` or the sorted country codes the policy in force allows,
    so a reader (the web page's residency panel) can check placements without the policy.
    """
    for row in rows:
        wid = WorkloadId(row["id"])
        row["team"] = team_of(wid)
        w = spec.workloads.get(wid)
        if w is None:
            continue
        name = spec.residency.data_class_of(w.spec.placement.data_class)
        dc = spec.residency.classes.get(name) if name is not None else None
        row["dataClass"] = name
        row["labels"] = dict(w.metadata.labels)
        row["allowedJurisdictions"] = (
            "*" if dc is not None and dc.anywhere
            else sorted(dc.countries) if dc is not None else [])
