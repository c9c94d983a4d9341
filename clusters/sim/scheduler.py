"""The scheduler's filter step and the kubelet's pod lifecycle, reduced to what we need.

Filters, in kube-scheduler's terms: NodeUnschedulable (cordoned), NodeReady, TaintToleration
(NoSchedule and NoExecute taints must be tolerated), NodeAffinity (nodeSelector and
required node affinity `matchExpressions`), NodeResourcesFit on `nvidia.com/gpu` only
(requests of every non-terminal pod bound to the node count). The first fitting node
by name wins (no scoring: deterministic is more useful here than spread). A pod that
fits nowhere stays Pending with `PodScheduled=False, reason=Unschedulable` and a
message in the real scheduler's shape (`0/8 nodes are available: 8 Insufficient
nvidia.com/gpu.`).

The pure functions here are used by `controllers.py`, which owns timers and writes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from clusters.sim.nodes import GPU, is_ready
from clusters.sim.selectors import match_labels

Obj = dict[str, Any]
TERMINAL = frozenset({"Succeeded", "Failed"})


def pod_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def gpu_request(pod: Obj) -> int:
    total = 0
    for c in pod.get("spec", {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("limits") or {}).get(GPU) or (res.get("requests") or {}).get(GPU)
        if value is not None:
            try:
                total += int(str(value))
            except ValueError:
                continue
    return total


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for t in tolerations:
        effect = t.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and \
                (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _affinity_ok(pod_spec: Obj, labels: dict[str, str]) -> bool:
    if not match_labels({"matchLabels": pod_spec.get("nodeSelector") or {}}, labels):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchExpressions") or []
        if match_labels({"matchExpressions": [
                {**e, "operator": {"Gt": "Exists", "Lt": "Exists"}.get(e.get("operator"),
                                                                     e.get("operator"))}
                for e in exprs]}, labels):
            return True
    return False


def used_gpus(pods: list[Obj]) -> Counter[str]:
    used: Counter[str] = Counter()
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if node and p.get("status", {}).get("phase") not in TERMINAL:
            used[node] += gpu_request(p)
    return used


def choose_node(pod: Obj, nodes: list[Obj], used: Counter[str]) -> tuple[str | None, str]:
    """(node name, "") when the pod fits, else (None, the Unschedulable message)."""
    spec = pod.get("spec", {})
    want = gpu_request(pod)
    tolerations = spec.get("tolerations") or []
    reasons: Counter[str] = Counter()
    for node in nodes:
        meta, nspec = node["metadata"], node.get("spec", {})
        if nspec.get("unschedulable"):
            reasons["node(s) were unschedulable"] += 1
            continue
        if not is_ready(node):
            reasons["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"] += 1
            continue
        bad = next((t for t in nspec.get("taints") or []
                    if t.get("effect") in ("NoSchedule", "NoExecute")
                    and not _tolerates(tolerations, t)), None)
        if bad is not None:
            reasons["node(s) had untolerated taint {"
                    f"{bad.get('key')}: {bad.get('value') or ''}" "}"] += 1
            continue
        if not _affinity_ok(spec, meta.get("labels") or {}):
            reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            continue
        if want:
            alloc = int(str(node["status"]["allocatable"].get(GPU, "0")))
            if alloc - used[meta["name"]] < want:
                reasons[f"Insufficient {GPU}"] += 1
                continue
        return meta["name"], ""
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    msg = f"0/{len(nodes)} nodes are available"
    msg += f": {detail}." if detail else "."
    if nodes:
        msg += (f" preemption: 0/{len(nodes)} nodes are available: "
                f"{len(nodes)} No preemption victims found for incoming pod.")
    return None, msg


def condition(kind: str, status: str, now: str, reason: str | None = None,
              message: str | None = None) -> Obj:
    c: Obj = {"type": kind, "status": status, "lastProbeTime": None,
              "lastTransitionTime": now}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def running_status(pod: Obj, now: str, pod_ip: str, host_ip: str, ready: bool = True
                   ) -> Obj:
    """The status a kubelet reports once every container started."""
    containers = pod["spec"].get("containers") or []
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", "True", now),
            condition("Initialized", "True", now),
            condition("Ready", flag, now),
            condition("ContainersReady", flag, now),
            condition("PodScheduled", "True", now),
        ],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": pod.get("status", {}).get("startTime", now),
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
        **{k: v for k, v in pod.get("status", {}).items() if k == "resourceClaimStatuses"},
        "containerStatuses": [{
            "name": c["name"], "image": c.get("image", ""),
            "imageID": f"sim://{c.get('image', '')}",
            "containerID": f"containerd://sim-{pod['metadata']['uid'][:8]}-{i}",
            "ready": ready, "started": True, "restartCount": 0,
            "state": {"running": {"startedAt": now}}, "lastState": {},
        } for i, c in enumerate(containers)],
    }


def finished_status(pod: Obj, now: str, phase: str = "Succeeded") -> Obj:
    status = dict(pod.get("status", {}))
    code = 0 if phase == "Succeeded" else 1
    reason = "Completed" if code == 0 else "Error"
    status["phase"] = phase
    status["conditions"] = [
        {**c, "status": "False", "lastTransitionTime": now,
         "reason": "PodCompleted" if code == 0 else "PodFailed"}
        if c["type"] in ("Ready", "ContainersReady") else c
        for c in status.get("conditions", [])]
    status["containerStatuses"] = [{
        **cs, "ready": False, "started": False,
        "state": {"terminated": {"exitCode": code, "reason": reason,
                                 "startedAt": now, "finishedAt": now,
                                 "containerID": cs.get("containerID", "")}},
    } for cs in status.get("containerStatuses", [])]
    return status
