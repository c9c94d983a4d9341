"""Reading rendered objects back: what a live object says about its workload.

The inverse of `fleet.render.forward`: a restarted controller rebuilds its previous
plan from it (`clusters.adapter.live_workloads`), live status and the audit count GPUs
with it, capacity discovery counts each pod's GPUs with it. One rule each, here, so
what is applied and what is read back agree by construction (a unit test renders every
workload type and reads it back).

GPUs of a pod follow kube-scheduler's effective request
(`k8s.io/component-helpers/resource/helpers.go`, `AggregateContainerRequests`): the sum
of its containers, with restartable init containers (sidecars) added to it, and at
least the largest of the init containers (each with the sidecars started before it).
A container's GPUs are its request, else its limit: for an extended resource a request
must equal the limit, and the API server defaults a missing request to the limit
(`pkg/apis/core/v1/defaults.go`, `SetDefaults_Pod`), so both spellings read the same.
A quantity that is not a whole number of GPUs counts 0 (the server refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.quantity import QuantityError, parse
from fleet.render.keys import (
    GPU_RESOURCE,
    GPUS_PER_REPLICA,
    INTENT_HASH,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    PRODUCT_LABEL,
    SOURCE_COMMIT,
    WORKLOAD_KINDS,
    WORKLOAD_LABEL,
)

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReadBack:
    """What one live object says about the workload it belongs to."""

    kind: str
    workload: str | None
    """The `aifleet.dev/workload` label value (`team.name`), or None."""
    managed: bool
    """Labelled `aifleet.dev/managed-by: aifleet`."""
    replicas: int
    """A Job's parallelism, a Deployment's replicas, a JobSet's pods; 0 for other
    kinds."""
    product: str | None
    """The GPU product its pods select (`nvidia.com/gpu.product`)."""
    gpus_per_replica: int
    """GPUs of one of its pods (`pod_gpus` of its template); a Pod's own GPUs."""
    commit: str | None
    intent_hash: str | None


def container_gpus(container: Obj) -> int:
    """GPUs one container asks for: its request, else its limit."""
    res = container.get("resources") or {}
    value = (res.get("requests") or {}).get(GPU_RESOURCE)
    if value is None:
        value = (res.get("limits") or {}).get(GPU_RESOURCE)
    if value is None:
        return 0
    try:
        q = parse(value).value
    except QuantityError:
        return 0
    return int(q) if q == q.to_integral_value() and q > 0 else 0


def pod_spec_gpus(spec: Obj) -> int:
    """GPUs a pod with this spec holds on its node (kube-scheduler's rule, above)."""
    total = sum(container_gpus(c) for c in spec.get("containers") or ())
    sidecars = 0
    init_peak = 0
    for c in spec.get("initContainers") or ():
        gpus = container_gpus(c)
        if c.get("restartPolicy") == "Always":
            total += gpus
            sidecars += gpus
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, gpus + sidecars)
    return max(total, init_peak)


def pod_gpus(pod: Obj) -> int:
    """GPUs of a Pod object."""
    return pod_spec_gpus(pod.get("spec") or {})


def read_back(obj: Obj) -> ReadBack:
    """What a live (or rendered) object says: its workload, replicas, GPU product,
    GPUs per replica, commit and intent hash."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    kind = str(obj.get("kind") or "")
    spec = obj.get("spec") or {}
    replicas = 0
    pod: Obj = {}
    if kind == "JobSet":  # one replicated job of one Job (`fleet.render.forward`)
        jobs = spec.get("replicatedJobs") or [{}]
        spec = (jobs[0].get("template") or {}).get("spec") or {}
        replicas = _int(jobs[0].get("replicas", 1)) * _int(spec.get("parallelism"))
        pod = (spec.get("template") or {}).get("spec") or {}
    elif kind in WORKLOAD_KINDS:
        replicas = _int(spec.get("parallelism" if kind == "Job" else "replicas"))
        pod = (spec.get("template") or {}).get("spec") or {}
    elif kind == "Pod":
        pod = spec
    gpus = pod_spec_gpus(pod) if pod else 0
    if not gpus and pod.get("resourceClaims"):
        # DRA: the count is in the claim template; the object says it (GPUS_PER_REPLICA)
        gpus = _int(annotations.get(GPUS_PER_REPLICA))
    workload = labels.get(WORKLOAD_LABEL)
    commit = annotations.get(SOURCE_COMMIT)
    intent = annotations.get(INTENT_HASH)
    return ReadBack(
        kind=kind, workload=str(workload) if workload else None,
        managed=labels.get(MANAGED_BY) == MANAGED_BY_VALUE, replicas=replicas,
        product=(pod.get("nodeSelector") or {}).get(PRODUCT_LABEL),
        gpus_per_replica=gpus,
        commit=str(commit) if commit else None, intent_hash=str(intent) if intent else None)


def workload_of(obj: Obj) -> str | None:
    """The `aifleet.dev/workload` label of an object, or None."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(WORKLOAD_LABEL)
    return str(value) if value else None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
