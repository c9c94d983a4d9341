"""The Manager's face: HTTP endpoints, status document, metrics, readiness, decisions.

Split from `controllers.manager` (which runs the loops) so each stays readable; this
half only reads the state the loops keep, plus turns plan changes into events for the
ledger (Placed, Moved, FailedOver, Pending) and log lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from clusters.health import workload_health
from clusters.kubeconfig import ConnectionSpec
from controllers.deletions import CONDITION as DELETIONS_HELD
from controllers.fleetstate import capacity_snapshot, decision_fields
from controllers.livestatus import add_pods
from controllers.observe import render_metrics
from controllers.server import Endpoints, bound_port, build_app, serve
from controllers.statusdoc import (
    DriftItem,
    PlacementLive,
    SourceState,
    cluster_rows,
    status_document,
)
from controllers.web import index_html
from fleet.drift import diff
from fleet.ids import ClusterName, WorkloadId
from fleet.models import Cluster
from fleet.placement.types import Plan, PreviousPlan

if TYPE_CHECKING:
    from controllers.manager import Manager

log = structlog.get_logger()


# ---------------------------------------------------------------------- documents


def status(m: Manager) -> dict[str, Any]:
    spec = m.desired.spec
    snapshot = m.snapshot
    if spec is not None:
        snapshot = capacity_snapshot(spec.clusters, m.views(),
                                     m.settings.failover_grace)
    conditions = [{"type": c.type, "status": c.status, "reason": c.reason,
                   "message": c.message} for c in m.conditions]
    ok, why = m.ready()
    conditions.insert(0, {"type": "Ready", "status": "True" if ok else "False",
                          "reason": "Ready" if ok else "NotReady", "message": why})
    if m.home.error:
        conditions.append({"type": "HomeUnavailable", "status": "True",
                           "reason": "ConnectFailed",
                           "message": f"management cluster: {m.home.error}"})
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
        left = len(a.live_workloads()) if a is not None else 0
        health = a.health_state if a is not None else "Unknown"
        conditions.append({"type": "ClusterRetiring", "status": "True",
                           "reason": "RemovedFromRepo",
                           "message": f"{name}: its Cluster file was removed; deleting the "
                                      f"{left} workloads still running there (cluster "
                                      f"{health})"})
    doc = status_document(
        spec=spec, plan=m.desired.plan, snapshot=snapshot,
        source=SourceState(m.source.observed, m.applied_commit, tuple(conditions)),
        live=live_now(m), drift=drift_now(m))
    add_pods(doc, m.adapters)
    ledger = ledger_head(m)
    if ledger is not None:
        doc["ledger"] = ledger
    if m.settings.leader_elect:
        doc["leader"] = {"leading": m.may_act(),
                         "generation": m.elector.generation if m.elector else 0,
                         "identity": m.elector.identity if m.elector else None,
                         "home": m.home.name}
    return doc


def ledger_head(m: Manager) -> dict[str, Any] | None:
    """The ledger's head as this controller last wrote it, and the last anchor: what an
    auditor compares with `fleet ledger verify` (None without --ledger)."""
    last = getattr(m.events, "last", None)
    if not hasattr(m.events, "written"):
        return None
    anchor = m.anchor.last if m.anchor is not None else None
    return {"headSeq": last.seq if last is not None else 0,
            "headHash": last.hash if last is not None else None,
            "pending": getattr(m.events, "pending", 0),
            "signed": m.settings.ledger_signing_key is not None,
            "anchor": None if m.anchor is None else {
                "seq": anchor.seq if anchor else None, "hash": anchor.hash if anchor else None,
                "ledgerCommit": anchor.ledger_commit if anchor else None,
                "time": anchor.time if anchor else None,
                "failures": m.anchor.failures, "error": m.anchor.error or None}}


def live_now(m: Manager) -> dict[tuple[ClusterName, WorkloadId], PlacementLive]:
    """What each reconcile recorded, with health read now from the informers' cache:
    pods start and Jobs finish between reconciles, and status is the state of now."""
    out = dict(m.live)
    by_label = {name: a.objects_by_workload() for name, a in m.adapters.items()}
    for (cluster, wid), pl in m.live.items():
        objs = by_label.get(cluster)
        if objs is not None:
            out[(cluster, wid)] = replace(
                pl, health=workload_health(objs.get(wid.replace("/", ".", 1), [])))
    return out


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


def capacity_json(m: Manager) -> dict[str, Any]:
    spec = m.desired.spec
    if spec is None:
        return m.snapshot.to_json()
    return capacity_snapshot(spec.clusters, m.views(), None).to_json()


def metrics_text(m: Manager) -> str:
    plan = m.desired.plan
    spec = m.desired.spec
    snapshot = m.snapshot if spec is None else capacity_snapshot(
        spec.clusters, m.views(), m.settings.failover_grace)
    return render_metrics(  # cluster rows only: the whole status document costs far more
        adapters=m.adapters, reconcile_durations=m.reconciler.totals.durations,
        placement_durations=m.placement_durations, queue_depth=m.queue.depth,
        status_clusters=cluster_rows(spec, plan, snapshot),
        placement_status=[wp.status for wp in plan.workloads.values()] if plan else [],
        leader=m.may_act(), commits=m.commits_accepted,
        placements_by_kind=getattr(m.placer, "counts", None)) + ledger_metrics(m)


def ledger_metrics(m: Manager) -> str:
    """The ledger's head seq (and the anchored one) as gauges; empty without --ledger."""
    head = ledger_head(m)
    if head is None:
        return ""
    lines = ["# HELP aifleet_ledger_head_seq seq of the last ledger record this controller "
             "wrote", "# TYPE aifleet_ledger_head_seq gauge",
             f"aifleet_ledger_head_seq {head['headSeq']}"]
    if head["anchor"] is not None:
        lines += ["# HELP aifleet_ledger_anchored_seq seq of the last ledger head written to "
                  "the anchor", "# TYPE aifleet_ledger_anchored_seq gauge",
                  f"aifleet_ledger_anchored_seq {head['anchor']['seq'] or 0}",
                  "# HELP aifleet_ledger_anchor_failures_total failed anchor pushes",
                  "# TYPE aifleet_ledger_anchor_failures_total counter",
                  f"aifleet_ledger_anchor_failures_total {head['anchor']['failures']}"]
    return "\n".join(lines) + "\n"


def ready(m: Manager) -> tuple[bool, str]:
    if m.desired.plan is None:
        return False, "no plan yet (waiting for the repo and the clusters)"
    waiting = sorted(n for n, a in m.adapters.items()
                     if not a.synced.is_set() and a.health_state != "Unreachable")
    if waiting:
        return False, f"clusters not listed yet: {', '.join(waiting)}"
    if m.applied_commit is None:
        return False, "first plan not applied yet"
    return True, f"applied {m.applied_commit[:12]}"


def connection_of(m: Manager, cluster: Cluster) -> ConnectionSpec:
    """The Cluster file's connection; `--kubeconfig` and the cluster's name as context
    when it names none."""
    conn = cluster.spec.connection
    return ConnectionSpec(cluster.name, conn.kubeconfig or m.settings.kubeconfig,
                          conn.context or cluster.name)

# ------------------------------------------------------------------ server


async def start_server(m: Manager) -> web.AppRunner:
    host, _, port = m.settings.listen.rpartition(":")
    secret = m.settings.webhook_secret
    app = build_app(Endpoints(
        status=m.status, capacity=m.capacity_json, metrics=m.metrics_text,
        ready=m.ready, on_git_hook=_hook(m), page=index_html),
        secret.get_secret_value().encode() if secret is not None else None)
    runner = await serve(app, host or "127.0.0.1", int(port or 0))
    m.port = bound_port(runner)
    log.info("http_listening", host=host or "127.0.0.1", port=m.port)
    return runner


def _hook(m: Manager) -> Callable[[], Awaitable[None]]:
    async def on_hook() -> None:
        log.info("git_webhook_received")
        m.trigger_fetch()
    return on_hook

# ------------------------------------------------------------------ decisions


def record_plan_events(m: Manager, old: Plan | None, new: Plan,
                       live: PreviousPlan | None) -> None:
    """Log and record what the new plan decides differently from the old one."""
    before: PreviousPlan = live if live is not None else (
        {} if old is None else {w: p.assignments for w, p in old.workloads.items()})
    spec = m.desired.spec
    for wid, wp in sorted(new.workloads.items()):
        prev = before.get(wid, ())
        was = {a.cluster for a in prev}
        now = {a.cluster for a in wp.assignments}
        old_status = old.workloads[wid].status if old and wid in old.workloads else None
        if wp.status == "Pending" and old_status != "Pending":
            reason = wp.reasons[0].message if wp.reasons else ""
            log.warning("workload_pending", workload=wid, reason=reason)
            _record(m, "Pending", wid, reason=reason[:300])
        if wp.status != "Placed" or was == now:
            continue
        for a in wp.assignments:
            if a.cluster in was:
                continue
            left = sorted(was - now)
            down = [c for c in left if m.adapters.get(c) is not None
                    and m.adapters[c].health_state == "Unreachable"]
            event = "FailedOver" if down else ("Moved" if left else "Placed")
            c = spec.clusters.get(a.cluster) if spec else None
            log.info("workload_placed", workload=wid, cluster=a.cluster,
                     flavour=a.flavour, gpus=a.gpus, decision=event,
                     from_cluster=left[0] if left else None)
            _record(m, event, wid, cluster=a.cluster, flavour=a.flavour, gpus=a.gpus,
                         from_cluster=left[0] if left else None,
                         jurisdiction=c.spec.jurisdiction if c else None,
                         commit=new.commit, policy_version=new.policy_version or None)


def _record(m: Manager, event: str, wid: str, **fields: Any) -> None:
    if m.events is None or not m.may_act():  # a follower records nothing
        return
    fields = {**decision_fields(m.desired.spec, wid, fields.get("cluster")), **fields}
    m.record(event, wid, **{k: v for k, v in fields.items() if v is not None})
