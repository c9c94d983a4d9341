"""The Manager's face: HTTP endpoints, status document, metrics, readiness, decisions.

Split from `controllers.runtime.manager` (which runs the loops) so each stays readable; this
half only reads the state the loops keep, plus turns plan changes into events for the
ledger (Placed, Moved, FailedOver, Pending) and log lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import chain
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from aiohttp import web

from clusters.kubeconfig import ConnectionSpec
from controllers.apiauth import TokensFile
from controllers.persist.ledger import Ledger
from controllers.runtime.control import act
from controllers.runtime.fleetstate import (
    capacity_snapshot,
    decision_fields,
)
from controllers.runtime.reconcile import live_manifest_digest
from controllers.server import Endpoints, bound_port, build_app, serve, tls_context
from controllers.status import fleetdoc
from controllers.version import version
from controllers.web import index_html
from fleet.audit import open_placements
from fleet.ids import ClusterName
from fleet.models import Cluster
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.render import workload_id_of_label, workload_label
from fleet.transitions import transition
from workloads.errors import WorkloadsError

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


# ---------------------------------------------------------------------- documents


def status(m: Manager) -> dict[str, Any]:
    """The FleetStatus document, built now (`controllers.status.fleetdoc`; the HTTP
    endpoint serves `m.status_cache`'s pre-serialised copy instead)."""
    return fleetdoc.document(m)


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


def connection_of(m: Manager, cluster: Cluster) -> ConnectionSpec:
    """The Cluster file's connection; `--kubeconfig` and the cluster's name as context
    when it names none, or, with `--cluster-secrets`, its credentials Secret when it
    names no kubeconfig (`clusters.credentials`)."""
    conn = cluster.spec.connection
    if m.settings.cluster_secrets and not conn.kubeconfig:
        return ConnectionSpec(cluster.name, None, cluster.name, secret=cluster.name)
    return ConnectionSpec(cluster.name, conn.kubeconfig or m.settings.kubeconfig,
                          conn.context or cluster.name)

# ------------------------------------------------------------------ server


async def start_server(m: Manager) -> web.AppRunner:
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
        control=lambda action, body: _acted(m, action, body), version=version(),
        status_body=lambda fresh: m.status_cache.body(fresh=fresh)),
        secret.get_secret_value().encode() if secret is not None else None, auth)
    cert, key = m.settings.tls_cert, m.settings.tls_key
    tls = tls_context(str(cert), str(key)) if cert is not None and key is not None else None
    runner = await serve(app, host or "127.0.0.1", int(port or 0), ssl_context=tls)
    m.port = bound_port(runner)
    log.info("http_listening", host=host or "127.0.0.1", port=m.port, tls=tls is not None,
             auth=auth is not None)
    return runner


async def _acted(m: Manager, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An operator action; the status document asked for next is built after it."""
    answer = await act(m, action, body)
    m.status_cache.invalidate()
    return answer


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
        {} if old is None else placements(old))
    spec = m.desired.spec
    down = {ClusterName(c) for c, a in m.adapters.items() if a.health_state == "Unreachable"}
    for wid, wp in sorted(new.workloads.items()):
        prev = before.get(wid, ())
        old_status = old.workloads[wid].status if old and wid in old.workloads else None
        if wp.status == "Pending" and old_status != "Pending":
            reason = wp.reasons[0].message if wp.reasons else ""
            log.warning("workload_pending", workload=wid, reason=reason)
            _record(m, "Pending", wid, commit=new.commit, reason=reason[:300])
        t = transition(prev, wp, down=down)  # one classifier with plan diff and what-if
        event, left = t.arrival_event, t.left
        if event is None:
            continue
        for a in wp.assignments:
            if a.cluster not in t.arrived:
                continue
            c = spec.clusters.get(a.cluster) if spec else None
            log.info("workload_placed", workload=wid, cluster=a.cluster,
                     flavour=a.flavour, gpus=a.gpus, decision=event,
                     from_cluster=left[0] if left else None)
            _record(m, event, wid, cluster=a.cluster, flavour=a.flavour, gpus=a.gpus,
                         from_cluster=left[0] if left else None,
                         jurisdiction=c.spec.jurisdiction if c else None,
                         commit=new.commit, policy_version=new.policy_version or None)


def _record(m: Manager, event: str, wid: str, **fields: Any) -> None:
    # `m.record` keeps it in the events feed always, in the ledger only if we may act.
    fields = {**decision_fields(m.desired.spec, wid, fields.get("cluster")), **fields}
    fields.setdefault("commit", m.desired.head)  # decided at (Pending names no plan commit)
    m.record(event, wid, **{k: v for k, v in fields.items() if v is not None})


async def reconcile_ledger(m: Manager, previous: PreviousPlan) -> bool:
    """Make the ledger agree with what runs, once, when this process starts to act.

    What a stopped process left behind: a period the ledger holds open on a cluster
    that does not show the workload is closed (`Pruned`, "not found at restart": a
    placement recorded but never applied, or a delete done but never recorded); an
    apply whose intent was journaled but never recorded is recorded from what the
    cluster shows; a workload of ours running with no open period is recorded as found.
    Only clusters that listed count: a cluster that does not answer proves nothing.
    False when the ledger could not be read (tried again at the next plan).
    """
    ledger = m.events
    if not isinstance(ledger, Ledger):
        return True
    try:
        rows = await anyio.to_thread.run_sync(ledger.writer.remote_events)
    except WorkloadsError as e:
        log.error("ledger_restart_reconcile_failed", error=str(e)[:300])
        return False
    opened = open_placements(chain(rows, ledger.buffered))
    live = {name: {str(workload_id_of_label(lbl)) for lbl in a.live_workloads()}
            for name, a in m.adapters.items() if a.synced.is_set()}
    shape = {(str(w), str(a.cluster)): a for w, assignments in previous.items()
             for a in assignments}
    closed = found = 0
    for w, c in sorted(opened):
        if c in live and w not in live[c]:
            _record(m, "Pruned", w, cluster=c, result="gone", reason="not found at restart")
            closed += 1
    done: set[tuple[str, str]] = set()
    for intent in ledger.take_intents():
        for label in intent.workloads:
            w = str(workload_id_of_label(label))
            if intent.cluster in live and w in live[intent.cluster]:
                done.add((w, intent.cluster))
    for c, ids in sorted(live.items()):
        for w in sorted(ids):
            if (w, c) in opened and (w, c) not in done:
                continue
            a = shape.get((w, c))
            adapter = m.adapters[c]
            digest = live_manifest_digest(adapter.workload_objects(workload_label(w)))
            why = ("applied by a process that stopped before recording it (its journaled "
                   "intent)") if (w, c) in done else "found running at restart with no record"
            _record(m, "Applied", w, cluster=c, flavour=a.flavour if a else None,
                    gpus=a.gpus if a else 0, manifest_digest=digest, reason=why)
            found += 1
    log.info("ledger_reconciled_at_restart", open_periods=len(opened), closed=closed,
             recorded=found)
    return True
