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

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from fleet.ids import ClusterName, WorkloadId
from fleet.models import Cluster, Workload
from fleet.placement.types import Assignment, Plan
from fleet.render.keys import (
    CREATE_ONLY,
    DRA_DEVICE_CLASS,
    DRA_MIG_CLASS,
    DRA_REQUEST,
    FLAVOUR,
    GPUS_PER_REPLICA,
    INTENT_HASH,
    KIND_ORDER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    MASTER_PORT,
    QUEUE_NAME,
    RECREATE,
    SOURCE_COMMIT,
    WORKLOAD_LABEL,
    team_queue,
    workload_label,
)
from fleet.render.kueue import kueue_objects, kueue_teams
from fleet.render.pod import JOBSET_WORKER, pod_template, rendezvous_env
from fleet.spec import FleetSpec

BACKOFF_LIMIT = 3

Manifest = dict[str, Any]
RenderFn = Callable[[Workload, Assignment, Cluster, str], tuple[Manifest, ...]]


_LATER_FIELDS: tuple[tuple[str, object], ...] = (
    ("envFrom", []), ("volumes", []),
    ("pod", {"imagePullSecrets": [], "tolerations": []}))


def intent_hash(w: Workload) -> str:
    """sha256 of the Workload's canonical spec (camelCase JSON, sorted keys)."""
    doc = w.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    # Fields added after v1alpha1's first release are left out while they are empty,
    # so a workload that does not use them keeps its hash (and its objects are not
    # re-applied when aifleet is upgraded).
    for key, empty in _LATER_FIELDS:
        if doc.get(key) == empty:
            doc.pop(key, None)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def render(workload: Workload, assignment: Assignment, cluster: Cluster, commit: str
           ) -> tuple[Manifest, ...]:
    """The workload's objects in `cluster` (not its Namespace), for this assignment, in
    the shape the cluster's `spec.stack` calls for."""
    offer = cluster.offer(assignment.flavour)
    if offer is None:
        raise ValueError(f"cluster {cluster.name} offers no {assignment.flavour}")
    stack = cluster.spec.stack
    # The Assignment names the flavour; the cluster's offer of it is spot or not.
    spot = cluster.spec.spot if offer.spot else None
    w, s = workload, workload.spec
    own = {WORKLOAD_LABEL: workload_label(w.id), MANAGED_BY: MANAGED_BY_VALUE}
    labels = dict(sorted({**w.metadata.labels, **own}.items()))
    annotations = {SOURCE_COMMIT: commit, FLAVOUR: assignment.flavour,
                   INTENT_HASH: intent_hash(w)}
    dra = stack.gpu_allocation == "dra"
    if dra:
        annotations[GPUS_PER_REPLICA] = str(assignment.gpus_per_replica)
    meta: Manifest = {"name": w.metadata.name, "namespace": w.team, "labels": labels,
                      "annotations": dict(sorted(annotations.items()))}
    claims: tuple[Manifest, ...] = ()
    claim_name = None
    if dra:
        claim_name = f"{w.metadata.name}-{DRA_REQUEST}"
        claims = (_claim_template(claim_name, meta, assignment.gpus_per_replica,
                                  offer.product),)
    if s.type == "inference":
        template = pod_template(w, labels, assignment.gpus_per_replica, offer.product,
                                dra_template=claim_name, rendezvous=[], subdomain=None,
                                restart_policy=None, spot=spot)
        return (*claims, *_inference(w, meta, own, template, assignment.replicas))
    job_meta = _copy_meta(meta, {RECREATE: s.recreate})
    if stack.kueue:
        job_meta["labels"] = dict(sorted({**labels, QUEUE_NAME: team_queue(w.team)[1]}.items()))
    jobset = s.type == "training" and stack.jobset
    rendezvous = (rendezvous_env(w.metadata.name, w.team, assignment.replicas, jobset)
                  if s.type == "training" else [])
    template = pod_template(
        w, labels, assignment.gpus_per_replica, offer.product, dra_template=claim_name,
        rendezvous=rendezvous, restart_policy="Never", spot=spot,
        subdomain=w.metadata.name if s.type == "training" and not jobset else None)
    job_spec = _job_spec(s.type, assignment.replicas, template)
    if jobset:
        return (*claims, _jobset(w.metadata.name, job_meta, job_spec, stack.kueue))
    if stack.kueue:
        job_spec["suspend"] = True
    job: Manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
                     "spec": job_spec}
    if s.type == "training":
        return (*claims, _headless_service(meta, own), job)
    return (*claims, job)


def _copy_meta(meta: Manifest, more_annotations: Mapping[str, str]) -> Manifest:
    return {**meta, "labels": dict(meta["labels"]), "annotations": dict(sorted(
        {**meta["annotations"], **more_annotations}.items()))}


def _inference(w: Workload, meta: Manifest, own: Mapping[str, str], template: Manifest,
               replicas: int) -> tuple[Manifest, Manifest]:
    port = w.spec.inference_port
    deployment: Manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {WORKLOAD_LABEL: own[WORKLOAD_LABEL]}},
                 "template": template}}
    service: Manifest = {
        "apiVersion": "v1", "kind": "Service", "metadata": _copy_meta(meta, {}),
        "spec": {"type": "ClusterIP", "selector": {WORKLOAD_LABEL: own[WORKLOAD_LABEL]},
                 "ports": [{"name": "http", "port": port, "targetPort": port,
                            "protocol": "TCP"}]}}
    return (service, deployment)


def _job_spec(wtype: str, replicas: int, template: Manifest) -> Manifest:
    """A Job's spec. Training is Indexed (one rank per index) and fails per index
    (`backoffLimitPerIndex`: a rank that fails is retried, up to the limit, without
    counting the others' retries), and a pod disrupted by a drain or a preemption
    (condition DisruptionTarget) does not count as a failure. Upstream allows these
    together only with `completionMode: Indexed` and `restartPolicy: Never`, both set
    here (pkg/apis/batch/validation/validation.go, `validateJobSpec`,
    `validatePodFailurePolicy`); both fields are immutable, like the template."""
    spec: Manifest = {"completions": replicas, "parallelism": replicas,
                      "backoffLimit": BACKOFF_LIMIT, "template": template}
    if wtype == "training":
        spec["completionMode"] = "Indexed"
        spec["backoffLimitPerIndex"] = BACKOFF_LIMIT
        spec["podFailurePolicy"] = {"rules": [{
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    return spec


def _headless_service(meta: Manifest, own: Mapping[str, str]) -> Manifest:
    """The headless Service an Indexed Job's pods resolve each other through
    (`<name>-<index>.<name>.<ns>.svc`): no cluster IP, not-ready pods published (ranks
    must find rank 0 before any is ready), selecting the workload's pods."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _copy_meta(meta, {}),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {WORKLOAD_LABEL: own[WORKLOAD_LABEL]},
                     "ports": [{"name": "rendezvous", "port": MASTER_PORT,
                                "targetPort": MASTER_PORT, "protocol": "TCP"}]}}


def _jobset(name: str, meta: Manifest, job_spec: Manifest, kueue: bool) -> Manifest:
    """A JobSet (`jobset.x-k8s.io/v1alpha2`) of one replicated job: the JobSet
    controller makes the Job and the headless Service (`network.subdomain`, default the
    JobSet's name) and restarts the whole set on a failure (`failurePolicy.maxRestarts`),
    which a torchrun job needs. Pods of a JobSet fail as a group: no per-index retries."""
    job = {k: v for k, v in job_spec.items()
           if k not in ("backoffLimitPerIndex", "podFailurePolicy")}
    job["backoffLimit"] = 0
    spec: Manifest = {"network": {"enableDNSHostnames": True, "subdomain": name},
                      "failurePolicy": {"maxRestarts": BACKOFF_LIMIT},
                      "replicatedJobs": [{"name": JOBSET_WORKER, "replicas": 1,
                                          "template": {"spec": job}}]}
    if kueue:
        spec["suspend"] = True
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
            "spec": spec}


def _claim_template(name: str, meta: Manifest, gpus: int, product: str) -> Manifest:
    """The ResourceClaimTemplate the pods claim their GPUs from (`resource.k8s.io/v1`,
    GA in 1.34; k8s.io/api/resource/v1/types.go: `ResourceClaimTemplateSpec.spec` is a
    `ResourceClaimSpec`, whose `devices.requests[].exactly` is an `ExactDeviceRequest`
    with `deviceClassName`, `allocationMode`, `count` and CEL `selectors`). The NVIDIA
    driver publishes the product as the `productName` attribute in its own domain."""
    attrs = f'device.attributes["{DRA_DEVICE_CLASS}"]'
    mig = _MIG_PRODUCT.match(product)
    device_class = DRA_MIG_CLASS if mig else DRA_DEVICE_CLASS
    expressions = [f"{attrs}.productName == {json.dumps(mig.group(1) if mig else product)}"]
    if mig:  # a MIG slice: the driver names its parent GPU and its profile
        expressions.append(f"{attrs}.profile == {json.dumps(mig.group(2))}")
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {**_copy_meta(meta, {}), "name": name},
            "spec": {"spec": {"devices": {"requests": [{
                "name": DRA_REQUEST,
                "exactly": {"deviceClassName": device_class,
                            "allocationMode": "ExactCount", "count": gpus,
                            "selectors": [{"cel": {"expression": e}} for e in expressions]}}]}}}}


_MIG_PRODUCT = re.compile(r"^(.+)-MIG-(\d+g\.\d+gb)$")
"""GPU feature discovery's product label for a MIG slice, `<parent>-MIG-<profile>`
(`NVIDIA-A100-SXM4-80GB-MIG-3g.40gb`): on DRA, a device of class `mig.nvidia.com` whose
`productName` is the parent's and whose `profile` is the slice's
(NVIDIA/k8s-dra-driver-gpu, `deviceinfo.go`)."""


def for_existing(obj: Manifest) -> Manifest:
    """`obj` as applied to an object that already exists: without its create-only
    fields (`keys.CREATE_ONLY`), so they are neither re-applied nor compared for drift.
    A new dict where something is dropped; `obj` itself otherwise."""
    paths = CREATE_ONLY.get(str(obj.get("kind")), ())
    if not any(_has(obj, p) for p in paths):
        return obj
    out = copy.deepcopy(obj)
    for path in paths:
        node: Any = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _has(obj: Manifest, path: tuple[str, ...]) -> bool:
    node: Any = obj
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def namespace(team: str) -> Manifest:
    """A team's Namespace. Not stamped with a commit: every commit would rewrite it."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": team, "labels": {MANAGED_BY: MANAGED_BY_VALUE}}}


def placed_on(plan: Plan, cluster: ClusterName) -> dict[WorkloadId, Assignment]:
    """The Placed workloads' assignments in `cluster`, by workload id (sorted)."""
    return placed_by_cluster(plan).get(cluster, {})


def placed_by_cluster(plan: Plan) -> dict[ClusterName, dict[WorkloadId, Assignment]]:
    """`placed_on` for every cluster at once, in one pass over the plan (the controller
    keeps it per plan: asked per cluster, `placed_on` would be O(clusters x workloads))."""
    out: dict[ClusterName, dict[WorkloadId, Assignment]] = {}
    for wid, wp in sorted(plan.workloads.items()):
        if wp.status != "Placed":
            continue
        for a in wp.assignments:
            out.setdefault(a.cluster, {})[wid] = a
    return out


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
