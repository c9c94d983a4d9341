"""Operator actions on a running controller: suspend, resume, sync now.

What `POST /api/v1/suspend|resume|sync` do (`controllers.server`), kept apart from the
read-only status side (`controllers.runtime.manager_io`). A suspension is in the home
cluster (`controllers.runtime.handover`) before it is answered. Each answers `(HTTP status, JSON)`:
200 done (or nothing to do: suspending twice is not an error), 400 a body that names
neither or both of a workload and a cluster, 404 one the fleet does not have, 409 while
this replica may not act (a follower, or a refused rollback being served): only the
replica that writes may decide what is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from controllers.runtime.handover import publish
from fleet.ids import ClusterName, WorkloadId
from fleet.render import workload_label

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()

Answer = tuple[int, dict[str, Any]]


def _error(code: int, message: str) -> Answer:
    return code, {"ok": False, "error": message}


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _known_workloads(m: Manager) -> set[str]:
    spec, plan = m.desired.spec, m.desired.plan
    out: set[str] = set()
    if spec is not None:
        out |= {str(w) for w in spec.workloads} | {str(w) for w in spec.invalid}
    if plan is not None:
        out |= {str(w) for w in plan.workloads}
    return out


def _target(m: Manager, body: dict[str, Any], *, optional: bool = False
            ) -> tuple[str | None, str | None]:
    workload, cluster = body.get("workload"), body.get("cluster")
    if not all(v is None or (isinstance(v, str) and v) for v in (workload, cluster)):
        raise _Refused(400, "workload and cluster are non-empty strings")
    if workload is not None and cluster is not None:
        raise _Refused(400, "name a workload or a cluster, not both")
    if workload is None and cluster is None and not optional:
        raise _Refused(400, "name a workload ({\"workload\": \"team/name\"}) or a cluster "
                           "({\"cluster\": \"name\"})")
    if workload is not None and workload not in _known_workloads(m):
        raise _Refused(404, f"no workload {workload} in the fleet")
    spec = m.desired.spec
    if cluster is not None and (spec is None or ClusterName(cluster) not in spec.clusters):
        raise _Refused(404, f"no cluster {cluster} in the fleet")
    return workload, cluster


def _clusters_of(m: Manager, workload: str | None, cluster: str | None) -> list[str]:
    """The clusters a change to this target concerns: its cluster, or every cluster
    that runs the workload or is planned to (a move waits on both ends), or all."""
    if cluster is not None:
        return [cluster] if cluster in m.adapters else []
    if workload is None:
        return sorted(m.adapters)
    wid = WorkloadId(workload)
    plan = m.desired.plan
    out: set[str] = {str(a.cluster) for a in plan.workloads[wid].assignments} \
        if plan is not None and wid in plan.workloads else set()
    label = workload_label(workload)
    out |= {n for n, a in m.adapters.items() if label in a.live_workloads()}
    return sorted(n for n in out if n in m.adapters)


async def act(m: Manager, action: str, body: dict[str, Any]) -> Answer:
    if not m.may_act():
        return _error(409, "this replica may not act now (not the leader, or serving a "
                           "refused rollback): ask the leader")
    try:
        workload, cluster = _target(m, body, optional=action == "sync")
    except _Refused as e:
        return _error(e.code, str(e))
    what = f"workload {workload}" if workload is not None else (
        f"cluster {cluster}" if cluster is not None else "the fleet")
    if action == "sync":
        m.trigger_fetch()
        clusters = _clusters_of(m, workload, cluster)
        for name in clusters:
            m.queue.add(name)
        log.info("sync_requested", workload=workload, cluster=cluster, clusters=clusters)
        held = [n for n in clusters if workload is None and n in m.suspensions.clusters] + (
            [workload] if workload is not None and workload in m.suspensions.workloads else [])
        note = f" (suspended, so left alone: {', '.join(held)})" if held else ""
        return 200, {"ok": True, "clusters": clusters,
                     "message": f"fetch and reconcile of {what} started on "
                                f"{len(clusters)} cluster(s){note}"}
    if getattr(m, "shards", None) is not None:
        # Suspensions live in this replica's state dir; another replica's shards would
        # not see them: refused rather than honoured on some clusters only.
        return _error(409, f"fleet {action} is not supported with --shards yet: "
                           "suspensions are not shared between replicas")
    suspend = action == "suspend"
    changed = m.suspensions.change(suspend=suspend, workload=workload, cluster=cluster)
    event = "Suspended" if suspend else "Resumed"
    if changed:
        log.info("workload_suspended" if suspend else "workload_resumed",
                 workload=workload, cluster=cluster)
        m.record(event, workload if workload is not None else "*",
                 **({"cluster": cluster} if cluster is not None else {}),
                 reason=f"fleet {action} {what}")
        if not suspend:  # reconcile what was held, now
            for name in _clusters_of(m, workload, cluster):
                m.queue.add(name)
    state = "suspended" if suspend else "resumed"
    message = f"{what} {state}" if changed else f"{what} was already {state}"
    # In the home cluster before the answer, so that the next leader keeps it too
    # (`controllers.runtime.handover`); if the home cannot take it now, it is kept here
    # and written as soon as it can, and the answer says so.
    unsaved = await publish(m) if changed else None
    if unsaved:
        message += f" (not yet saved in the home cluster: {unsaved}; retried)"
    return 200, {"ok": True, "changed": changed, "message": message}
