"""The Manager's face: HTTP endpoints, status document, metrics, readiness.

Only reads the state the Manager's parts keep (`controllers.runtime.manager`); the
decisions they record are `controllers.runtime.records`'.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from clusters.health import kueue_queued, unschedulable_pods, workload_health
from controllers.apiauth import TokensFile
from controllers.runtime import busy
from controllers.runtime.control import act
from controllers.runtime.deletions import CONDITION as DELETIONS_HELD
from controllers.runtime.fleetstate import (
    ClusterView,
    capacity_snapshot,
)
from controllers.server import Endpoints, bound_port, build_app, serve, tls_context
from controllers.status.livestatus import add_pods
from controllers.status.operatorview import add_operator_fields
from controllers.status.statusdoc import (
    DriftItem,
    HealthNote,
    PlacementLive,
    SourceState,
    failover_grace,
    status_document,
)
from controllers.version import version
from controllers.web import index_html
from fleet.drift import diff
from fleet.ids import ClusterName, WorkloadId
from fleet.render import workload_label

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


# ---------------------------------------------------------------------- documents


def status(m: Manager) -> dict[str, Any]:
    spec = m.desired.spec
    snapshot = m.snapshot
    views = m.views()
    if spec is not None:
        snapshot = capacity_snapshot(spec.clusters, views, m.settings.failover_grace)
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
        left = len(a.live_workloads()) if a is not None else 0
        health = a.health_state if a is not None else "Unknown"
        conditions.append({"type": "ClusterRetiring", "status": "True",
                           "reason": "RemovedFromRepo",
                           "message": f"{name}: its Cluster file was removed; deleting the "
                                      f"{left} workloads still running there (cluster "
                                      f"{health})"})
    live, drift = live_now(m), drift_now(m)
    doc = status_document(
        spec=spec, plan=m.desired.plan, snapshot=snapshot,
        source=SourceState(m.source.observed, m.applied_commit, tuple(conditions)),
        live=live, drift=drift, notes=health_notes(m, views))
    add_pods(doc, m.adapters)
    add_operator_fields(doc, spec=spec, views=views, live=live, drift=drift,
                        failover_grace=m.settings.failover_grace)
    m.suspensions.annotate(doc)
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
    return doc


def health_notes(m: Manager, views: Mapping[str, ClusterView]) -> dict[str, HealthNote]:
    """Why each cluster that is not Healthy is so: its health tracker's cause, or the
    connection error of one never connected; with the failover countdown."""
    notes: dict[str, HealthNote] = {}
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
            failover_grace(m.desired.spec, m.desired.plan, name, m.settings.failover_grace)
            if gone is not None else None)
    for name, err in m.connect_errors.items():
        notes.setdefault(name, HealthNote("ConnectFailed", f"cannot connect: {err}"))
    return notes


def ledger_head(m: Manager) -> dict[str, Any] | None:
    return m.records.head()


def live_now(m: Manager) -> dict[tuple[ClusterName, WorkloadId], PlacementLive]:
    """What each reconcile recorded, with health read now from the informers' cache:
    pods start and Jobs finish between reconciles, and status is the state of now."""
    out = dict(m.live)
    by_label = {name: a.objects_by_workload() for name, a in m.adapters.items()}
    pods = {name: a.pods_by_workload() for name, a in m.adapters.items()}
    queued = {name: a.kueue_workloads_by_workload() for name, a in m.adapters.items()}
    for (cluster, wid), pl in m.live.items():
        objs = by_label.get(cluster)
        if objs is not None:
            label = workload_label(wid)
            out[(cluster, wid)] = replace(
                pl, health=workload_health(objs.get(label, [])),
                unschedulable=unschedulable_pods(pods.get(cluster, {}).get(label, [])),
                queued=kueue_queued(queued.get(cluster, {}).get(label, [])))
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
    return m.metrics.render()


def ready(m: Manager) -> tuple[bool, str]:
    problem = m.ledger_problem()
    if problem is not None:
        return False, f"{problem[0]}: {problem[1]}"
    if m.desired.plan is None:
        return False, "no plan yet (waiting for the repo and the clusters)"
    waiting = sorted(n for n, a in m.adapters.items()
                     if not a.synced.is_set() and a.health_state != "Unreachable")
    if waiting:
        return False, f"clusters not listed yet: {', '.join(waiting)}"
    if m.applied_commit is None:
        return False, "first plan not applied yet"
    return True, f"applied {m.applied_commit[:12]}"


# ------------------------------------------------------------------ server


async def start_server(m: Manager) -> tuple[web.AppRunner, int]:
    """The HTTP server, listening: its runner and the port it bound."""
    host, _, port = m.settings.listen.rpartition(":")
    secret = m.settings.webhook_secret
    tokens = m.settings.api_tokens_file
    auth = TokensFile(tokens) if tokens is not None else None
    if auth is None:
        log.warning("api_unauthenticated", listen=m.settings.listen,
                    hint="anyone who reaches --listen may read status and metrics and "
                         "trigger actions: give --api-tokens-file")
    app = build_app(Endpoints(
        status=m.status, capacity=m.capacity_json, metrics=m.metrics_text,
        ready=m.ready, on_git_hook=_hook(m), page=index_html,
        events=lambda since, wid: m.feed.document(since, wid),
        control=lambda action, body: act(m, action, body), version=version()),
        secret.get_secret_value().encode() if secret is not None else None, auth)
    cert, key = m.settings.tls_cert, m.settings.tls_key
    tls = tls_context(str(cert), str(key)) if cert is not None and key is not None else None
    runner = await serve(app, host or "127.0.0.1", int(port or 0), ssl_context=tls)
    bound = bound_port(runner)
    log.info("http_listening", host=host or "127.0.0.1", port=bound, tls=tls is not None,
             auth=auth is not None)
    return runner, bound


def _hook(m: Manager) -> Callable[[], Awaitable[None]]:
    async def on_hook() -> None:
        log.info("git_webhook_received")
        m.trigger_fetch()
    return on_hook
