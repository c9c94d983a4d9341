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
(`controllers.runtime.fleetstate`), so both views agree on what is free and what is ours.

A cluster that cannot be read (connection refused, or it did not list in time) cannot
say what runs on it, so a workload seen running nowhere is never called Pending while
one is unreadable: its row says `liveState: "Unknown"` (sync and health Unknown), names
the `unreadable` clusters, and gives the last known state from the decision ledger of
the repo (`lastKnown`: where it was last placed and not pruned since; then `status` is
Placed, the last thing known). `source.unreadableClusters` lists them, and `fleet status
--live` exits 1 when it is not empty: the answer is incomplete.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.errors import ClusterError
from clusters.health import kueue_queued, unschedulable_pods
from clusters.kubeconfig import ConnectionSpec
from controllers.runtime.fleetstate import (
    ClusterView,
    capacity_snapshot,
    previous_from_live,
)
from controllers.runtime.reconcile import live_intent
from controllers.status.statusdoc import (
    HealthNote,
    PlacementLive,
    SourceState,
    status_document,
)
from fleet.audit import Period, build_periods
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan, PreviousPlan, Reason, WorkloadPlacement, prepend
from fleet.planning import capacity_for, plan_from
from fleet.render import SOURCE_COMMIT, intent_hash, workload_label
from fleet.spec import FleetSpec
from workloads.errors import WorkloadsError
from workloads.ledger_store import LedgerReader
from workloads.loader import Snapshot


@contextlib.asynccontextmanager
async def connected(snap: Snapshot, *, kubeconfig: str | None, allow_exec: bool = False,
                    answer_within: float = 15.0
                    ) -> AsyncIterator[tuple[dict[str, ClusterAdapter], dict[str, str]]]:
    """Read-only adapters of every cluster of `snap`'s fleet, running, after each has
    listed or `answer_within` seconds passed; and the clusters that refused to connect
    (name -> why). `a.synced` says whether a cluster listed."""
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
            yield adapters, refused
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for a in adapters.values():
                await a.aclose()


async def live_status(snap: Snapshot, *, kubeconfig: str | None, allow_exec: bool = False,
                      answer_within: float = 15.0, ledger_repo: str | None = None
                      ) -> dict[str, Any]:
    """The status document of what runs on the clusters of `snap`'s fleet, now.

    `ledger_repo`: the repo whose decision ledger gives the last known state of what
    runs on a cluster that cannot be read (None: not looked up)."""
    async with connected(snap, kubeconfig=kubeconfig, allow_exec=allow_exec,
                         answer_within=answer_within) as (adapters, refused):
        doc = _document(snap, adapters, refused)
        unreadable = doc["source"]["unreadableClusters"]
        if unreadable:
            last = await anyio.to_thread.run_sync(last_known, ledger_repo,
                                                  frozenset(unreadable))
            mark_unknown(doc, unreadable, last)
    return doc


async def live_placement(snap: Snapshot, *, kubeconfig: str | None,
                         allow_exec: bool = False, answer_within: float = 15.0
                         ) -> tuple[PreviousPlan, CapacitySnapshot, list[str]]:
    """What runs on the fleet's clusters as a previous plan, their capacity (folded as
    the controller folds them), and the clusters that could not be read."""
    async with connected(snap, kubeconfig=kubeconfig, allow_exec=allow_exec,
                         answer_within=answer_within) as (adapters, refused):
        previous, capacity, synced = _what_runs_now(snap.spec, adapters)
        unreadable = sorted(set(refused) | set(adapters) - set(synced))
    return previous, capacity, unreadable


def _what_runs_now(spec: FleetSpec, adapters: Mapping[str, ClusterAdapter]
                   ) -> tuple[PreviousPlan, CapacitySnapshot, dict[str, ClusterAdapter]]:
    """What runs on the clusters that listed, as a previous plan; the capacity to plan
    with (the planning facade's `live` source, folded as the controller folds it:
    `controllers.runtime.fleetstate`); and the clusters that listed."""
    synced = {name: a for name, a in adapters.items() if a.synced.is_set()}
    views = {name: ClusterView(a.health_state if name in synced else "Unknown", None,
                               tuple(a.nodes()), a.kueue_queues())
             for name, a in adapters.items()}
    previous = previous_from_live(
        spec.clusters, {name: a.live_workloads() for name, a in synced.items()})
    capacity, _source = capacity_for(spec, live=capacity_snapshot(spec.clusters, views))
    return previous, capacity, synced


def _document(snap: Snapshot, adapters: Mapping[str, ClusterAdapter],
              refused: Mapping[str, str]) -> dict[str, Any]:
    spec = snap.spec
    previous, capacity, synced = _what_runs_now(spec, adapters)
    planned = plan_from(spec, capacity, previous, commit=snap.commit)
    live_plan = _what_runs(planned, previous)
    live: dict[tuple[ClusterName, WorkloadId], PlacementLive] = {}
    for wid, assignments in previous.items():
        w = spec.workloads.get(wid)
        label = workload_label(wid)
        for asg in assignments:
            a = synced[asg.cluster]
            current = w is not None and live_intent(a, label) == intent_hash(w)
            commits = {(o.get("metadata") or {}).get("annotations", {}).get(
                SOURCE_COMMIT) for o in a.workload_objects(label)}
            commit = sorted(c for c in commits if c)
            live[(asg.cluster, wid)] = PlacementLive(
                "Synced" if current else "OutOfSync", a.workload_health(label),
                commit[0] if commit else None,
                unschedulable=unschedulable_pods(a.pods(label)),
                queued=kueue_queued(a.kueue_workloads_by_workload().get(label, [])))
    conditions = tuple(
        {"type": "ClusterUnavailable", "status": "True", "reason": "ConnectFailed",
         "message": f"{name}: {why}"} for name, why in sorted(refused.items()))
    conditions += tuple(
        {"type": "ClusterUnavailable", "status": "True", "reason": "NotListed",
         "message": f"{name}: did not answer in time; what runs there is unknown"}
        for name, a in sorted(adapters.items()) if not a.synced.is_set())
    notes = {name: HealthNote("ConnectFailed", f"cannot connect: {why}")
             for name, why in refused.items()}
    for name, a in adapters.items():
        why = a.health.why()
        if not a.synced.is_set():
            notes[name] = HealthNote("NotListed", "did not list what runs there in time"
                                     + (f"; {why[1]}" if why else ""))
        elif why is not None:
            notes[name] = HealthNote(*why)
    doc = status_document(spec=spec, plan=live_plan, snapshot=capacity,
                          source=SourceState(snap.commit, None, conditions),
                          live=live, drift=(), notes=notes)
    doc["source"]["live"] = True
    doc["source"]["unreadableClusters"] = sorted(
        set(refused) | {n for n, a in adapters.items() if not a.synced.is_set()})
    add_pods(doc, synced)
    for row in doc["workloads"]:
        if not row["placements"] and row["status"] == "Placed":
            row["sync"] = "OutOfSync"
    return doc


def last_known(repo: str | None, clusters: frozenset[str]
               ) -> dict[str, list[Period]] | None:
    """Per workload, its ledger periods still open on `clusters`: where the controller
    last placed it and has not pruned it since. None when the repo has no ledger (or it
    cannot be read): then nothing is known."""
    if repo is None:
        return None
    try:
        reader = LedgerReader(repo)
        if reader.commit is None:
            return None
        periods = build_periods(reader.rows(), lambda _commit: None).periods
    except WorkloadsError:
        return None
    out: dict[str, list[Period]] = {}
    for p in periods:
        if p.end is None and p.cluster in clusters:
            out.setdefault(p.workload, []).append(p)
    return out


def mark_unknown(doc: dict[str, Any], unreadable: list[str],
                 last: Mapping[str, list[Period]] | None) -> None:
    """Rows of workloads seen running nowhere, while `unreadable` clusters could not
    say: Unknown, with the last known state, never Pending."""
    names = ", ".join(unreadable)
    for row in doc["workloads"]:
        if row["placements"]:
            continue
        known = (last or {}).get(row["id"], [])
        if last is not None and not known:
            continue  # the ledger says it was not left running on those clusters
        row["liveState"] = "Unknown"
        row["unreadable"] = list(unreadable)
        row["sync"] = row["health"] = "Unknown"
        if known:
            row["status"] = "Placed"
            row["lastKnown"] = [{"cluster": p.cluster, "flavour": p.flavour,
                                 "gpus": p.gpus, "since": p.start, "commit": p.commit}
                                for p in sorted(known, key=lambda p: p.cluster)]
            where = "; ".join(f"on {p.cluster} since {p.start} ({p.gpus} GPUs)"
                              for p in sorted(known, key=lambda p: p.cluster))
            message = (f"{names} could not be read: what runs there is unknown; "
                       f"last known (ledger): placed {where}")
        else:
            message = (f"{names} could not be read: what runs there is unknown, and the "
                       "repo has no decision ledger to say what was placed there")
        row["reasons"] = [{"message": message, "rule": "Unreadable"}, *row["reasons"]]


def _what_runs(planned: Plan, previous: Mapping[WorkloadId, Any]) -> Plan:
    """Placements as they run; for what runs nowhere, what placement would do now."""
    rows: dict[WorkloadId, WorkloadPlacement] = {}
    for wid, wp in planned.workloads.items():
        running = previous.get(wid)
        if running:
            rows[wid] = WorkloadPlacement(wid, "Placed", tuple(running), wp.reasons)
        elif wp.status == "Placed":
            where = ", ".join(a.cluster for a in wp.assignments)
            rows[wid] = WorkloadPlacement(wid, "Placed", (), prepend((
                Reason(f"not running anywhere; placement would put it on {where}",
                       None, "Live"),), wp.reasons))
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
        add_row_pods(row, objects, pods_of)


def add_row_pods(row: dict[str, Any], objects: Mapping[str, Mapping[str, list[Any]]],
                 pods_of: Mapping[str, Mapping[str, list[Any]]]) -> None:
    """`add_pods` for one row, from each cluster's objects and pods by workload label."""
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
