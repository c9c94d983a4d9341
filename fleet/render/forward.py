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
`nvidia.com/gpu.product`, which `fleet.render.inverse.read_back` reads back.

`cluster_objects` is what the controller applies to a cluster (`controllers.desired`),
`render_cluster` the same for one commit (`fleet render`). Output is deterministic: the
same inputs give equal dicts, and `to_yaml` dumps them with sorted keys, so a diff shows
only real change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from fleet.ids import ClusterName, WorkloadId
from fleet.models import UNREACHABLE_TOLERATION_KEY, Cluster, Workload
from fleet.placement.types import Assignment, Plan
from fleet.render.keys import (
    FLAVOUR,
    GPU_RESOURCE,
    INTENT_HASH,
    KIND_ORDER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    PRODUCT_LABEL,
    RECREATE,
    SOURCE_COMMIT,
    WORKLOAD_LABEL,
    workload_label,
)
from fleet.render.kueue import kueue_objects, kueue_teams
from fleet.spec import FleetSpec

BACKOFF_LIMIT = 3

Manifest = dict[str, Any]
RenderFn = Callable[[Workload, Assignment, Cluster, str], tuple[Manifest, ...]]


def intent_hash(w: Workload) -> str:
    """sha256 of the Workload's canonical spec (camelCase JSON, sorted keys)."""
    doc = w.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def render(workload: Workload, assignment: Assignment, cluster: Cluster, commit: str
           ) -> tuple[Manifest, ...]:
    """The workload's objects in `cluster` (not its Namespace), for this assignment."""
    offer = cluster.offer(assignment.flavour)
    if offer is None:
        raise ValueError(f"cluster {cluster.name} offers no {assignment.flavour}")
    own = {WORKLOAD_LABEL: workload_label(workload.id), MANAGED_BY: MANAGED_BY_VALUE}
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


def namespace(team: str) -> Manifest:
    """A team's Namespace. Not stamped with a commit: every commit would rewrite it."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": team, "labels": {MANAGED_BY: MANAGED_BY_VALUE}}}


def placed_on(plan: Plan, cluster: ClusterName) -> dict[WorkloadId, Assignment]:
    """The Placed workloads' assignments in `cluster`, by workload id (sorted)."""
    return {wid: a for wid, wp in sorted(plan.workloads.items())
            for a in wp.assignments if a.cluster == cluster and wp.status == "Placed"}


def cluster_objects(spec: FleetSpec, placed: Mapping[WorkloadId, Assignment],
                    cluster: ClusterName, commit_of: Callable[[WorkloadId], str],
                    render_one: RenderFn = render
                    ) -> tuple[list[Manifest], dict[str, WorkloadId]]:
    """Every object `cluster` should have, in apply order (one Namespace per team with a
    workload there, on a Kueue cluster its Kueue objects (`fleet.render.kueue`: every
    TeamQuota's team gets a queue and a Namespace), then each workload's objects in id
    order), and the workload label -> id of them. `commit_of` gives each workload's
    commit (the controller's: where its intent last changed); `render_one` may cache
    `render`."""
    c = spec.clusters.get(cluster)
    if c is None:
        return [], {}
    objects: list[Manifest] = []
    teams: set[str] = set()
    labels: dict[str, WorkloadId] = {}
    for wid, a in placed.items():
        wl = spec.workloads.get(wid)
        if wl is None:
            continue
        objects.extend(render_one(wl, a, c, commit_of(wid)))
        teams.add(wl.team)
        labels[workload_label(wid)] = wid
    quotas = {str(t): q for t, q in spec.quotas.items()}
    queues = kueue_objects(c, quotas, teams)
    if queues:  # every team with a queue there needs its namespace for its LocalQueue
        teams |= set(kueue_teams(quotas, teams))
    objects[:0] = [namespace(t) for t in sorted(teams)] + queues
    return objects, labels


def render_cluster(spec: FleetSpec, plan: Plan, cluster: ClusterName, commit: str
                   ) -> list[Manifest]:
    """What the controller applies to `cluster` for this plan when every workload's
    intent is at `commit` (`fleet render`)."""
    objects, _labels = cluster_objects(spec, placed_on(plan, cluster), cluster,
                                       lambda _wid: commit)
    return objects


def sort_key(obj: Manifest) -> tuple[int, str, str]:
    meta = obj.get("metadata") or {}
    return (KIND_ORDER.get(str(obj.get("kind")), 9), str(meta.get("namespace") or ""),
            str(meta.get("name") or ""))


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter when present: the same YAML, ~10x faster than pure Python."""


def to_yaml(objects: Iterable[Manifest]) -> str:
    """Deterministic multi-document YAML (sorted keys): `fleet render`, the PR diff."""
    return str(yaml.dump_all(list(objects), Dumper=_DUMPER, sort_keys=True,
                             default_flow_style=False, explicit_start=True))
