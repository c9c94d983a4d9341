"""The controller's FleetStatus document, built one workload row at a time.

`GET /api/v1/status` of a 5,000-workload fleet took up to 30 s under load in issue 22:
the whole document was built, in the event loop, on every request. Here the document
is split where it splits naturally:

- the *head*: source and its conditions, one row per cluster, ledger, leader -- work
  in the number of clusters;
- one *row per workload* (`WorkloadRow`): its placement, sync, health and pods, its
  residency fields, its per-placement sync (`controllers.status.operatorview`), whether
  it is suspended. Everything a row says comes from inputs named in its `key`: the
  workload's placement, its `PlacementLive` on each of its clusters, its drift, the
  live objects and pods of it (by resourceVersion, which every write changes: not the
  objects themselves, which would keep their old versions alive), whether each of its
  clusters is Unreachable, its Workload document.

`steps(...)` yields between rows, so a caller may build the document in slices that
let the event loop run (`controllers.status.cache.StatusCache`), and may reuse the
rows whose key did not change (a commit that changes k workloads rebuilds k rows).
`document(m)` runs the same steps at once, with no reuse: `Manager.status()`, what
tests and the demo read, is always built fresh.

The per-cluster tallies of the page (`workloads: {placed, synced, ...}` and the failover
grace of an Unreachable cluster) are sums over the rows: each row keeps its share
(`WorkloadRow.tally`, `.grace`) so the sum needs no row rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TYPE_CHECKING, Any

from clusters.health import kueue_queued, unschedulable_pods, workload_health
from controllers.runtime import busy
from controllers.runtime.deletions import CONDITION as DELETIONS_HELD
from controllers.runtime.fleetstate import ClusterView, capacity_snapshot
from controllers.runtime.reconcile import DrainLeft
from controllers.status.livestatus import add_row_pods
from controllers.status.operatorview import Counts, Graces, cluster_fields, placement_fields
from controllers.status.statusdoc import (
    DriftItem,
    HealthNote,
    PlacementLive,
    _residency_fields,
    _workload_row,
    cluster_rows,
    failover_grace,
    failover_graces,
)
from fleet.drift import diff
from fleet.ids import ClusterName, WorkloadId
from fleet.models import API_VERSION
from fleet.placement.types import WorkloadPlacement
from fleet.render import workload_id_of_label, workload_label

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

JSON = dict[str, Any]


Key = tuple[Any, ...]
"""A row's inputs as one flat tuple: `(n, *equal, *same)`, the first `n` after the
count compared with ==, the rest element by element with `is` (one tuple per row, not
three: issue 22, the rows held between builds at 1,000 x 50,000)."""


@dataclass(slots=True)
class WorkloadRow:
    """One built row, with what it was built from and its share of the cluster tallies.

    Held between builds for every workload (`StatusCache`), so it holds no dict: the
    tallies are one flat tuple and the toleration, the row's dict is dropped once
    serialised."""

    wid: WorkloadId
    key: Key
    row: JSON | None
    """The row (None once serialised: `text` is what is served)."""
    tally: tuple[Any, ...] = ()
    """Its share of `Counts`, flat: (cluster, placed, synced, drifted, failed) for each
    of its clusters (small ints and the plan's cluster names: nothing new per row)."""
    grace: int | None = None
    """Its unreachable toleration, put in `Graces` once per placement on each of its
    clusters (None: unknown, none put)."""
    text: bytes | None = None
    """The row serialised, as the body's bytes (`StatusCache` keeps this and drops
    `row`): the document is then one join of bytes, no text copied to be encoded."""

    def add_to(self, counts: Counts, graces: Graces) -> None:
        """Add its share to the clusters' tallies (what `placement_fields` put in the
        row's own `counts` and `graces` when it was built)."""
        t = self.tally
        for i in range(0, len(t), 5):
            c = t[i]
            mine = counts.setdefault(c, {"placed": 0, "synced": 0, "drifted": 0,
                                         "failed": 0})
            mine["placed"] += t[i + 1]
            mine["synced"] += t[i + 2]
            mine["drifted"] += t[i + 3]
            mine["failed"] += t[i + 4]
            if self.grace is not None:
                graces.setdefault(c, []).extend([self.grace] * t[i + 1])


def packed(counts: Counts) -> tuple[Any, ...]:
    """`counts` of one row as `WorkloadRow.tally`."""
    return tuple(x for c, n in counts.items()
                 for x in (c, n["placed"], n["synced"], n["drifted"], n["failed"]))


def same_key(a: Key, b: Key) -> bool:
    n = a[0]
    return n == b[0] and len(a) == len(b) and a[1:n + 1] == b[1:n + 1] and all(
        x is y for x, y in zip(islice(a, n + 1, None), islice(b, n + 1, None),
                               strict=True))


@dataclass(slots=True)
class Inputs:
    """What every row reads, gathered once per document (work in clusters, the
    recorded placements and the drift kept, not in workloads)."""

    m: Manager
    views: Mapping[str, ClusterView]
    drift: list[DriftItem]
    by_workload: dict[WorkloadId, list[DriftItem]]
    open_drift: set[tuple[str, str]]
    objects: dict[str, dict[str, list[JSON]]]
    pods: dict[str, dict[str, list[JSON]]]
    queued: dict[str, dict[str, list[JSON]]]
    tallies: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)
    """The rows' tallies built so far, each kept once (`WorkloadRow.tally`: most rows
    are placed, synced, on one cluster; the same tuple of five serves all of them)."""


def gather(m: Manager) -> Generator[None, None, Inputs]:
    """The inputs, a cluster's informer caches at a time."""
    drift = drift_now(m)
    by_workload: dict[WorkloadId, list[DriftItem]] = {}
    for d in drift:
        by_workload.setdefault(d.workload, []).append(d)
    objects, pods, queued = {}, {}, {}
    for name, a in list(m.adapters.items()):
        objects[name] = a.objects_by_workload()
        pods[name] = a.pods_by_workload()
        queued[name] = a.kueue_workloads_by_workload()
        yield
    return Inputs(m, m.views(), drift, by_workload,
                  {(d.cluster, str(d.workload)) for d in drift if not d.corrected},
                  objects, pods, queued)


def _placement_live(inp: Inputs, cluster: ClusterName, wid: WorkloadId,
                    label: str) -> PlacementLive | None:
    """What the last reconcile recorded, with health read now from the informers'
    cache (pods start and Jobs finish between reconciles)."""
    pl = inp.m.live.get((cluster, wid))
    objs = inp.objects.get(cluster)
    if pl is None or objs is None:
        return pl
    return replace(pl, health=workload_health(objs.get(label, [])),
                   unschedulable=unschedulable_pods(inp.pods[cluster].get(label, [])),
                   queued=kueue_queued(inp.queued[cluster].get(label, [])))


def row_key(inp: Inputs, wp: WorkloadPlacement) -> Key:
    m, wid = inp.m, wp.id
    label = workload_label(wid)
    spec = m.desired.spec
    equal: list[Hashable] = [wp, tuple(inp.by_workload.get(wid, ())),
                             m.suspensions.workloads.get(str(wid))]
    same: list[Any] = [spec.workloads.get(wid) if spec is not None else None,
                       spec.residency if spec is not None else None,
                       spec.invalid.get(wid) if spec is not None else None,
                       m.desired.plan is None]
    for a in wp.assignments:
        c = a.cluster
        view = inp.views.get(c)
        equal += [c, m.live.get((c, wid)), view is not None and view.health == "Unreachable"]
        if c in inp.objects:
            for by in (inp.objects, inp.pods, inp.queued):
                found = by[c].get(label, ())
                equal.append(len(found))
                for o in found:
                    rv = _version(o)
                    if rv is None:  # none to compare by: the object itself, by identity
                        equal.append(None)
                        same.append(o)
                    else:
                        equal.append(rv)
    return (len(equal), *equal, *same)


def _version(obj: JSON) -> str | None:
    """An object's resourceVersion: the API server gives every write a new one, so a
    row keyed by it is rebuilt when the object changed. A key holding the object
    instead kept every object's previous version alive until the row's next build
    (the informers replace an object on each change): a rollout's worth of objects
    twice over on the replica serving the status (issue 22)."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return rv if isinstance(rv, str) and rv else None


def build_row(inp: Inputs, wp: WorkloadPlacement, key: Key) -> WorkloadRow:
    m, wid = inp.m, wp.id
    spec, plan = m.desired.spec, m.desired.plan
    label = workload_label(wid)
    live: dict[tuple[ClusterName, WorkloadId], PlacementLive] = {}
    for a in wp.assignments:
        pl = _placement_live(inp, a.cluster, wid, label)
        if pl is not None:
            live[(a.cluster, wid)] = pl
    row = _workload_row(wp, live, inp.by_workload)
    if spec is not None:
        _residency_fields(spec, [row])
        diags = spec.invalid.get(wid)
        if plan is not None and diags and not row["reasons"]:
            # An invalid workload's reasons are its diagnostics, with file and line.
            row["reasons"] = [{"message": str(d), "file": d.file, "line": d.line}
                              for d in diags]
    add_row_pods(row, inp.objects, inp.pods)
    w = spec.workloads.get(wid) if spec is not None else None
    grace = w.spec.unreachable_grace_seconds if w is not None else None
    counts: Counts = {}
    placement_fields(row, grace, views=inp.views, live=live, open_drift=inp.open_drift,
                     counts=counts, graces={})
    tally = packed(counts)
    built = WorkloadRow(wid, key, row, inp.tallies.setdefault(tally, tally), grace)
    since = m.suspensions.workloads.get(str(wid))
    if since is not None:
        row["suspended"] = {"since": since}
    return built


def placements_of(m: Manager) -> list[WorkloadPlacement]:
    """The rows to build, in id order: the plan's, or before any plan the invalid ones."""
    spec, plan = m.desired.spec, m.desired.plan
    if plan is not None:
        return [plan.workloads[wid] for wid in sorted(plan.workloads)]
    if spec is not None:
        return [WorkloadPlacement(wid, "Invalid") for wid in sorted(spec.invalid)]
    return []


def steps(m: Manager, reuse: Mapping[WorkloadId, WorkloadRow] | None = None,
          encode: Callable[[JSON], bytes] | None = None
          ) -> Generator[None, None, tuple[JSON, list[WorkloadRow], int]]:
    """The document without its workload rows, the rows (those of `reuse` whose key
    did not change, others built), and how many were built; yields between rows.

    With `encode`, each row built is serialised at once (`WorkloadRow.text`) and its
    dict dropped, before the next is built: a first build held every row's dict at
    the same time (~1 KB each: 14 MiB of 40 at 15,000 workloads, `bench.statusmem`),
    now one."""
    inp = yield from gather(m)
    rows: list[WorkloadRow] = []
    built = 0
    for wp in placements_of(m):
        key = row_key(inp, wp)
        old = reuse.get(wp.id) if reuse is not None else None
        if old is None or not same_key(old.key, key):
            old = build_row(inp, wp, key)
            if encode is not None and old.row is not None:
                old.text = encode(old.row)
                old.row = None  # the text is what is served; the dict was only for it
            built += 1
        rows.append(old)
        yield
    counts: Counts = {}
    graces: Graces = {}
    for r in rows:
        r.add_to(counts, graces)
    return head(m, inp.views, counts, graces), rows, built


def document(m: Manager) -> JSON:
    """The whole document, built now (no row reused)."""
    gen = steps(m)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            doc, rows, _ = done.value
            doc["workloads"] = [r.row for r in rows]
            return doc  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- the head


def head(m: Manager, views: Mapping[str, ClusterView], counts: Counts,
         graces: Graces) -> JSON:
    """Everything but the workload rows."""
    spec = m.desired.spec
    snapshot = m.snapshot
    if spec is not None:
        snapshot = capacity_snapshot(spec.clusters, views, m.settings.failover_grace)
    conditions = source_conditions(m)
    clusters = cluster_rows(spec, m.desired.plan, snapshot, health_notes(m, views))
    cluster_fields(clusters, counts=counts, graces=graces, views=views,
                   failover_grace=m.settings.failover_grace)
    doc: JSON = {
        "apiVersion": API_VERSION, "kind": "FleetStatus",
        "source": {"observedCommit": m.source.observed, "appliedCommit": m.applied_commit,
                   "conditions": conditions},
        "clusters": clusters,
    }
    m.suspensions.annotate(doc)  # clusters and the condition (no rows yet)
    ledger = ledger_head(m)
    if ledger is not None:
        doc["ledger"] = ledger
    if m.settings.leader_elect:
        doc["leader"] = {"leading": m.may_act(),
                         "generation": m.elector.generation if m.elector else 0,
                         "identity": m.elector.identity if m.elector else None,
                         "home": m.home.name}
    # an extra field: the schema allows it
    doc["controller"] = busy.controller_summary(m.loop_lag, m.adapters, m.replans)
    if m.shards is not None:  # shards: each cluster row's shard and owner, `shards`
        m.shards.annotate(doc)
    return doc


def source_conditions(m: Manager) -> list[dict[str, str]]:
    conditions = [{"type": c.type, "status": c.status, "reason": c.reason,
                   "message": c.message} for c in m.conditions]
    ok, why = m.ready()
    conditions.insert(0, {"type": "Ready", "status": "True" if ok else "False",
                          "reason": "Ready" if ok else "NotReady", "message": why})
    problem = m.ledger_problem()
    if problem is not None:
        held = " Cluster actions are stopped until it is writable (fail closed)." \
            if m.settings.ledger_fail_closed else ""
        conditions.append({"type": problem[0], "status": "True",
                           "reason": "Refused" if problem[0] == "LedgerForged"
                           else "WriteFailing", "message": problem[1] + held})
    if m.home.error:
        conditions.append({"type": "HomeUnavailable", "status": "True",
                           "reason": "ConnectFailed",
                           "message": f"management cluster: {m.home.error}"})
    if m.shared.error and m.may_act():
        conditions.append({"type": "SharedStateNotSaved", "status": "True",
                           "reason": "WriteFailing",
                           "message": "the next leader would not know the latest "
                                      f"suspensions, holds or drains: {m.shared.error}"})
    for name, err in sorted(m.connect_errors.items()):
        conditions.append({"type": "ClusterConnectionFailed", "status": "True",
                           "reason": "ConnectFailed", "message": f"{name}: {err}"})
    refused = {n: why for n, why in m.reconciler.prune_refused.items() if n in m.adapters}
    if refused and not any(c["type"] == DELETIONS_HELD for c in conditions):
        conditions.append({"type": DELETIONS_HELD, "status": "True", "reason": "EmptyFleet",
                           "message": "the plan places no workload anywhere; deleting "
                                      "everything we run is refused on "
                                      + "; ".join(f"{n} ({why})"
                                                  for n, why in sorted(refused.items()))})
    for name in sorted(m.retiring):
        a = m.adapters.get(name)
        left = m.reconciler.drain_left(name, a) if a is not None else None
        health = a.health_state if a is not None else "Unknown"
        conditions.append({"type": "ClusterRetiring", "status": "True",
                           "reason": "RemovedFromRepo",
                           "message": retiring_message(name, left, health)})
    return conditions


def retiring_message(name: str, left: DrainLeft | None, health: str) -> str:
    """What a retiring cluster's drain waits for, as its `ClusterRetiring` condition
    says it (`left`: None while it is not connected)."""
    def ids(labels: frozenset[str]) -> str:
        return ", ".join(sorted(str(workload_id_of_label(lb)) for lb in labels))

    def count(labels: frozenset[str]) -> str:
        return f"{len(labels)} workload{'' if len(labels) == 1 else 's'}"

    if left is None:
        waits = ["not connected: what runs there is not known yet"]
    else:
        waits = []
        if left.deleting:
            waits.append(f"deleting the {count(left.deleting)} still running there")
        if left.kept:
            waits.append(f"keeping {ids(left.kept)} there (Invalid in the applied commit, "
                         "or suspended) until it may go")
        if left.terminating:
            waits.append(f"waiting for the pods of {ids(left.terminating)} to terminate "
                         "(their objects are deleted)")
        if not waits:
            waits.append("nothing of ours is left there: letting it go")
    return f"{name}: its Cluster file was removed; {'; '.join(waits)} (cluster {health})"


def health_notes(m: Manager, views: Mapping[str, ClusterView]) -> dict[str, HealthNote]:
    """Why each cluster that is not Healthy is so: its health tracker's cause, or the
    connection error of one never connected; with the failover countdown."""
    notes: dict[str, HealthNote] = {}
    d, fleet_wide = m.desired, m.settings.failover_grace

    def graces() -> dict[str, float]:  # kept with the plan: not a scan per cluster
        return d.kept(("failover_graces",), lambda: failover_graces(d.spec, d.plan))
    for name, a in m.adapters.items():
        why = a.health.why()
        view = views.get(name)
        if why is None and view is not None and view.health == "Unknown":
            why = ("NotListed", "connected, but has not listed what runs there yet")
        if why is None:
            continue
        gone = view.unreachable_for if view is not None else None
        notes[name] = HealthNote(
            why[0], why[1], gone,
            failover_grace(d.spec, d.plan, name, fleet_wide,
                           graces() if fleet_wide is None else None)
            if gone is not None else None)
    for name, err in m.connect_errors.items():
        notes.setdefault(name, HealthNote("ConnectFailed", f"cannot connect: {err}"))
    return notes


def ledger_head(m: Manager) -> dict[str, Any] | None:
    return m.records.head()


def drift_now(m: Manager) -> list[DriftItem]:
    """Drift as reported, each item marked corrected once live matches desired again
    (a report made while a correction was under way says "not corrected" for ever)."""
    out: list[DriftItem] = []
    for d in m.drift:
        adapter = m.adapters.get(d.cluster)
        if not d.corrected and d.key is not None and adapter is not None:
            want = adapter.applier.desired.get(d.key)
            live = adapter.applier.live.get(d.key)
            if want is not None and live is not None and not diff(want, live):
                d = replace(d, corrected=True)
        out.append(d)
    return out

