"""The ReplicaSet controller's sync, as `pkg/controller/replicaset/replica_set.go` runs it.

One sync reads the ReplicaSet and the pods it controls (owner reference by uid), then:
- counts the active ones (`FilterActivePods`: not Succeeded/Failed, not terminating);
- creates the missing ones from the template, named `<rs>-<5 random>` with the
  ReplicaSet as controller owner, or deletes the surplus, ranked as
  `getPodsToDelete` ranks them (`controller.ActivePods` order: unassigned before
  assigned, Pending before Running, not ready before ready, ready for less time
  first, then the newest): a deleted pod terminates gracefully and keeps its node's
  resources meanwhile;
- writes status as `calculateStatus`: `replicas` (active pods), `fullyLabeledReplicas`,
  `readyReplicas`, `availableReplicas` (ready for at least `minReadySeconds`, measured
  in the control plane's scaled time) and `observedGeneration`; when a ready pod is
  not yet available, it looks again once it will be (the real controller's
  `AddAfter(minReadySeconds)`).
Writes go under the field manager `kube-controller-manager`, status as a `status`
subresource write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusters.sim.resources import BY_KIND
from clusters.sim.scheduler import TERMINAL, pod_ready
from clusters.sim.selectors import match_labels
from clusters.sim.store import Obj

if TYPE_CHECKING:
    from clusters.sim.controllers import ControlPlane

RSS, PODS = BY_KIND["ReplicaSet"], BY_KIND["Pod"]
MANAGER = "kube-controller-manager"


def active_pods(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if p.get("status", {}).get("phase") not in TERMINAL
            and not p["metadata"].get("deletionTimestamp")]


def _delete_rank(cp: ControlPlane, pod: Obj) -> tuple[Any, ...]:
    """Smaller first: which pods a scale-down deletes (`controller.ActivePods` Less)."""
    phase = pod.get("status", {}).get("phase")
    ready = pod_ready(pod)
    return (bool(pod["spec"].get("nodeName")),
            {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase or "", 0),
            ready, -cp.ready_since(pod) if ready else 0.0,
            # newer first: creationTimestamp descending, then name for determinism
            [-ord(ch) for ch in pod["metadata"].get("creationTimestamp", "")],
            pod["metadata"]["name"])


def sync_replicaset(cp: ControlPlane, ns: str, name: str) -> None:
    store = cp.store
    rs = store.find(RSS, ns, name)
    if rs is None or rs["metadata"].get("deletionTimestamp"):
        return
    spec = rs["spec"]
    pods = cp.owned(rs)
    active = active_pods(pods)
    want = int(spec.get("replicas", 1))
    diff = len(active) - want
    if diff < 0:
        labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        for _ in range(-diff):
            cp.new_pod(rs, f"{name}-{cp.suffix()}", dict(labels), {}, manager=MANAGER)
        active = active_pods(cp.owned(rs))
    elif diff > 0:
        for p in sorted(active, key=lambda p: _delete_rank(cp, p))[:diff]:
            store.delete(PODS, ns, p["metadata"]["name"])
            cp.event(rs, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                     source="replicaset-controller")
        active = active_pods(cp.owned(rs))
    min_ready = float(spec.get("minReadySeconds") or 0)
    ready = [p for p in active if pod_ready(p)]
    available = [p for p in ready if cp.available(p, min_ready)]
    if len(available) < len(ready):
        cp.recheck_when_available(rs, ready, min_ready)
    selector = spec.get("selector") or {}
    status: Obj = {"replicas": len(active),
                   "observedGeneration": rs["metadata"].get("generation", 1)}
    for key, value in (
            ("fullyLabeledReplicas",
             sum(1 for p in active if match_labels(
                 {"matchLabels": (spec["template"].get("metadata") or {}).get("labels")
                  or {}}, p["metadata"].get("labels") or {})
                 and match_labels(selector, p["metadata"].get("labels") or {}))),
            ("readyReplicas", len(ready)), ("availableReplicas", len(available))):
        if value:
            status[key] = value
    rs = store.get(RSS, ns, name)
    cp.write_status(RSS, rs, status, manager=MANAGER)
