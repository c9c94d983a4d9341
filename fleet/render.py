"""Rendering: a workload's intent plus its placement in one cluster -> Kubernetes objects.

Pure functions from (Workload, Assignment, Cluster, commit) to plain JSON-able dicts, the
way gitops-engine renders desired state before any diff or apply:

- `training` -> a `batch/v1` Job, Indexed, `completions = parallelism = replicas` of
  this cluster's share, `restartPolicy: Never` and a `backoffLimit`;
- `batch` -> a `batch/v1` Job (NonIndexed: its replicas are interchangeable);
- `inference` -> an `apps/v1` Deployment plus a `v1` Service on the inference port.

Every object carries the labels `aifleet.dev/workload: <team>.<name>` and
`aifleet.dev/managed-by: aifleet` (the controller's inventory: `clusters.apply` owns
exactly what has them) and the annotations `aifleet.dev/source-commit`,
`aifleet.dev/flavour` and `aifleet.dev/intent-hash` (sha256 of the Workload's canonical
spec, so a change of intent is visible without diffing the whole object). The pod
template carries the two labels as well (capacity discovery counts GPUs of pods with
`managed-by: aifleet` as the fleet's own) but not the commit: a Job's template is
immutable, and a new commit that changes nothing about the workload must not force a
re-create. GPU pods request and limit `nvidia.com/gpu` and select nodes by
`nvidia.com/gpu.product`, which `clusters.adapter.live_workloads()` reads back.

Output is deterministic: the same inputs give equal dicts, and `to_yaml` dumps them with
sorted keys, so a diff shows only real change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import yaml

from fleet.ids import ClusterName
from fleet.models import UNREACHABLE_TOLERATION_KEY, Cluster, Workload
from fleet.placement.types import Assignment, Plan
from fleet.spec import FleetSpec

MANAGED_BY = "aifleet.dev/managed-by"
WORKLOAD_LABEL = "aifleet.dev/workload"
SOURCE_COMMIT = "aifleet.dev/source-commit"
FLAVOUR = "aifleet.dev/flavour"
INTENT_HASH = "aifleet.dev/intent-hash"
RECREATE = "aifleet.dev/recreate"
"""On a Job: `never` or `onChange`, the workload's `spec.recreate` (what the applier may
do when the API server refuses a change to the running Job in place)."""
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
BACKOFF_LIMIT = 3
KIND_ORDER = {"Namespace": 0, "Service": 1, "Deployment": 2, "Job": 3}

Manifest = dict[str, Any]


def intent_hash(w: Workload) -> str:
    """sha256 of the Workload's canonical spec (camelCase JSON, sorted keys)."""
    doc = w.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def workload_label(w: Workload) -> str:
    return f"{w.team}.{w.metadata.name}"


def render(workload: Workload, assignment: Assignment, cluster: Cluster, commit: str
           ) -> tuple[Manifest, ...]:
    """The workload's objects in `cluster` (not its Namespace), for this assignment."""
    offer = cluster.offer(assignment.flavour)
    if offer is None:
        raise ValueError(f"cluster {cluster.name} offers no {assignment.flavour}")
    own = {WORKLOAD_LABEL: workload_label(workload), MANAGED_BY: "aifleet"}
    labels = {**workload.metadata.labels, **own}
    annotations = {SOURCE_COMMIT: commit, FLAVOUR: assignment.flavour,
                   INTENT_HASH: intent_hash(workload)}
    meta: dict[str, Any] = {"name": workload.metadata.name, "namespace": workload.team,
                            "labels": dict(sorted(labels.items())),
                            "annotations": dict(sorted(annotations.items()))}
    pod = _pod_spec(workload, assignment, offer.product)
    template = {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": pod}
    s = workload.spec
    if s.type == "inference":
        port = s.inference_port
        deployment: Manifest = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": assignment.replicas,
                     "selector": {"matchLabels": {WORKLOAD_LABEL: own[WORKLOAD_LABEL]}},
                     "template": template}}
        service: Manifest = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {**meta, "labels": dict(meta["labels"]),
                         "annotations": dict(meta["annotations"])},
            "spec": {"type": "ClusterIP",
                     "selector": {WORKLOAD_LABEL: own[WORKLOAD_LABEL]},
                     "ports": [{"name": "http", "port": port, "targetPort": port,
                                "protocol": "TCP"}]}}
        return (service, deployment)
    pod["restartPolicy"] = "Never"
    job_spec: dict[str, Any] = {"completions": assignment.replicas,
                                "parallelism": assignment.replicas,
                                "backoffLimit": BACKOFF_LIMIT, "template": template}
    if s.type == "training":
        job_spec["completionMode"] = "Indexed"
    job_meta = {**meta, "annotations": dict(sorted(
        {**meta["annotations"], RECREATE: s.recreate}.items()))}
    return ({"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
             "spec": job_spec},)


def _pod_spec(w: Workload, a: Assignment, product: str) -> dict[str, Any]:
    s = w.spec
    gpus = str(a.gpus_per_replica)
    requests: dict[str, str] = {GPU_RESOURCE: gpus}
    if s.resources.cpu is not None:
        requests["cpu"] = s.resources.cpu
    if s.resources.memory is not None:
        requests["memory"] = s.resources.memory
    container: dict[str, Any] = {
        "name": "main", "image": s.image,
        "resources": {"requests": dict(sorted(requests.items())),
                      "limits": {GPU_RESOURCE: gpus}},
    }
    if s.command is not None:
        container["command"] = list(s.command)
    if s.args is not None:
        container["args"] = list(s.args)
    if s.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(s.env.items())]
    if s.type == "inference":
        container["ports"] = [{"name": "http", "containerPort": s.inference_port,
                               "protocol": "TCP"}]
    pod: dict[str, Any] = {"containers": [container],
                           "nodeSelector": {PRODUCT_LABEL: product}}
    tolerations = []
    for t in s.placement.tolerations:
        if t.key == UNREACHABLE_TOLERATION_KEY:
            continue  # a fleet-level grace, not a node taint
        tol: dict[str, Any] = {"operator": t.operator}
        if t.key is not None:
            tol["key"] = t.key
        if t.value is not None:
            tol["value"] = t.value
        if t.effect is not None:
            tol["effect"] = t.effect
        if t.toleration_seconds is not None:
            tol["tolerationSeconds"] = t.toleration_seconds
        tolerations.append(tol)
    if tolerations:
        pod["tolerations"] = tolerations
    return pod


def namespace(team: str, commit: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": team, "labels": {MANAGED_BY: "aifleet"},
                         "annotations": {SOURCE_COMMIT: commit}}}


def render_cluster(spec: FleetSpec, plan: Plan, cluster: ClusterName, commit: str
                   ) -> list[Manifest]:
    """Every object the plan puts in `cluster`: one Namespace per team with a workload
    there, then each workload's objects; sorted by kind order, namespace and name."""
    c = spec.clusters[cluster]
    out: list[Manifest] = []
    teams: set[str] = set()
    for wid, p in sorted(plan.workloads.items()):
        w = spec.workloads.get(wid)
        if w is None:
            continue
        for a in p.assignments:
            if a.cluster == cluster:
                out.extend(render(w, a, c, commit))
                teams.add(w.team)
    out.extend(namespace(t, commit) for t in sorted(teams))
    return sorted(out, key=sort_key)


def sort_key(obj: Manifest) -> tuple[int, str, str]:
    meta = obj.get("metadata") or {}
    return (KIND_ORDER.get(str(obj.get("kind")), 9), str(meta.get("namespace") or ""),
            str(meta.get("name") or ""))


def to_yaml(objects: Iterable[Manifest]) -> str:
    """Deterministic multi-document YAML (sorted keys), for `fleet plan` and diffs."""
    return str(yaml.safe_dump_all(list(objects), sort_keys=True, default_flow_style=False,
                                  explicit_start=True))
