"""The scheduler's filter step and the kubelet's pod lifecycle, reduced to what we need.

Filters, in kube-scheduler's order: NodeUnschedulable (cordoned), NodeReady (the
not-ready taint), TaintToleration (NoSchedule and NoExecute taints must be tolerated),
NodeAffinity (nodeSelector and required node affinity `matchExpressions`), then
NodeResourcesFit (`pkg/scheduler/framework/plugins/noderesources/fit.go`): the pod's
effective request (`pod_requests`, as `k8s.io/component-helpers/resource` PodRequests
computes it: the containers' sum, at least the largest init container plus the
sidecars started before it, plus `overhead`) against the node's allocatable minus the
requests of every non-terminal pod bound to it (terminating pods included: they hold
their resources until they are gone), for the pod count, cpu, memory,
ephemeral-storage and extended resources such as `nvidia.com/gpu`. The first fitting
node by name wins (no scoring: deterministic is more useful here than spread). A pod
that fits nowhere stays Pending with `PodScheduled=False, reason=Unschedulable` and
the message `FitError.Error()` builds (`pkg/scheduler/framework/types.go`): one
"<count> <reason>" per reason over all nodes, sorted as strings, e.g. `0/3 nodes are
available: 1 Insufficient memory, 3 Insufficient cpu. preemption: ...`.

The pure functions here are used by `controllers.py`, which owns timers and writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from decimal import ROUND_CEILING
from functools import lru_cache
from typing import Any

from clusters.sim.nodes import GPU, is_ready
from clusters.sim.selectors import match_labels
from fleet.quantity import QuantityError, parse

Obj = dict[str, Any]
TERMINAL = frozenset({"Succeeded", "Failed"})
PODS_RESOURCE = "pods"
Usage = Counter[str]
"""Per resource name, in integer units: millicores for cpu, bytes or counts otherwise."""


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


def units(name: str, value: Any) -> int:
    """A quantity in the scheduler's integer units (see `_units`), for other
    components that count the same requests (the simulated Kueue's quota)."""
    return _units(name, value)


def _units(name: str, value: Any) -> int:
    """A quantity in the scheduler's integer units (`MilliValue` for cpu, `Value`,
    rounded up, for the rest); 0 when it does not parse (the API refuses those)."""
    if isinstance(value, str):
        return _units_of(name, value)  # stored quantities are strings: cached
    return _parse_units(name, value)


@lru_cache(maxsize=4096)
def _units_of(name: str, value: str) -> int:
    return _parse_units(name, value)


def _parse_units(name: str, value: Any) -> int:
    try:
        amount = parse(value).value
    except QuantityError:
        return 0
    if name == "cpu":
        amount *= 1000
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def _container_requests(c: Obj) -> Usage:
    res = c.get("resources") or {}
    requests = dict(res.get("requests") or {})
    for name, value in (res.get("limits") or {}).items():
        requests.setdefault(name, value)  # the API defaults requests from limits
    return Counter({name: _units(name, v) for name, v in requests.items()})


def _max_into(acc: Usage, other: Usage) -> None:
    for name, value in other.items():
        acc[name] = max(acc[name], value)


def pod_requests(pod: Obj) -> Usage:
    """The pod's effective request, as component-helpers `PodRequests` computes it:
    the sum of its containers; sidecars (init containers with `restartPolicy: Always`)
    add to it and to every later init container; the result is at least the largest
    init container's (with the sidecars before it); then `overhead` is added."""
    spec = pod.get("spec") or {}
    reqs: Usage = Counter()
    for c in spec.get("containers") or []:
        reqs.update(_container_requests(c))
    sidecars: Usage = Counter()
    init_max: Usage = Counter()
    for c in spec.get("initContainers") or []:
        one = _container_requests(c)
        if c.get("restartPolicy") == "Always":
            reqs.update(one)
            sidecars.update(one)
            _max_into(init_max, sidecars)
        else:
            _max_into(init_max, one + sidecars)
    _max_into(reqs, init_max)
    reqs.update(Counter({name: _units(name, v)
                         for name, v in (spec.get("overhead") or {}).items()}))
    return +reqs


def used_resources(pods: list[Obj], cache: dict[str, Usage] | None = None
                   ) -> dict[str, Usage]:
    """Per node: the requests of its non-terminal pods, and their count (`pods`).

    `cache` maps pod uid -> request: a pod's resources are immutable once created (no
    in-place resize here), so a scheduling pass over thousands of pods parses none."""
    used: dict[str, Usage] = {}
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if node and p.get("status", {}).get("phase") not in TERMINAL:
            add_usage(used, node, cached_requests(p, cache))
    return used


def cached_requests(pod: Obj, cache: dict[str, Usage] | None) -> Usage:
    if cache is None:
        return pod_requests(pod)
    uid = pod["metadata"].get("uid", "")
    found = cache.get(uid)
    if found is None:
        if len(cache) > 100_000:
            cache.clear()
        found = cache[uid] = pod_requests(pod)
    return found


def add_usage(used: dict[str, Usage], node: str, request: Usage) -> None:
    """Book one more pod with `request` on `node`."""
    usage = used.setdefault(node, Counter())
    usage.update(request)
    usage[PODS_RESOURCE] += 1


def insufficient_resources(request: Usage, node: Obj, used: Usage) -> list[str]:
    """NodeResourcesFit's reasons for `node` (`fitsRequest`): "Too many pods", then
    "Insufficient <name>" for each requested resource the node has too little left of."""
    alloc = node.get("status", {}).get("allocatable") or {}
    reasons = []
    if used[PODS_RESOURCE] + 1 > _units(PODS_RESOURCE, alloc.get(PODS_RESOURCE, "0")):
        reasons.append("Too many pods")
    for name in sorted(request, key=lambda n: (n not in _FIRST, _FIRST.get(n, 0), n)):
        want = request[name]
        if want <= 0:
            continue
        free = _units(name, alloc.get(name, "0")) - used[name]
        if want > free:
            reasons.append(f"Insufficient {name}")
    return reasons


_FIRST = {"cpu": 0, "memory": 1, "ephemeral-storage": 2}


def unschedulable_message(total: int, reasons: Mapping[str, int]) -> str:
    """`FitError.Error()`: "<count> <reason>" strings sorted as strings, then the
    preemption post-filter's verdict (no victims: nothing here preempts)."""
    histogram = sorted(f"{n} {r}" for r, n in reasons.items())
    msg = f"0/{total} nodes are available:"
    if histogram:
        msg += f" {', '.join(histogram)}."
    if total:
        msg += (f" preemption: 0/{total} nodes are available: "
                f"{total} No preemption victims found for incoming pod.")
    return msg


def choose_node(pod: Obj, nodes: list[Obj], used: Mapping[str, Usage]
                ) -> tuple[str | None, str]:
    """(node name, "") when the pod fits, else (None, the Unschedulable message)."""
    spec = pod.get("spec", {})
    request = pod_requests(pod)
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
        short = insufficient_resources(request, node, used.get(meta["name"], Counter()))
        if short:
            reasons.update(short)
            continue
        return meta["name"], ""
    return None, unschedulable_message(len(nodes), reasons)


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
