"""The pod template of a workload's objects: its one container, GPUs (device plugin or
DRA claim), volumes, env with Secret references, probes, node scheduling, the
multi-node rendezvous env, and last the user's overlay (`fleet.render.overlay`).

Multi-node training (torchrun) needs every pod to know the rank-0 address, the world
size and its own rank. An Indexed Job gives each pod the hostname `<job>-<index>` and,
with `subdomain` naming a headless Service of the same name, the DNS name
`<job>-<index>.<job>.<ns>.svc` (pkg/controller/job/indexed_job_utils.go,
`addCompletionIndexAnnotation` / hostname from the index; the pattern in the Job docs'
"Job with Pod-to-Pod communication"). NODE_RANK is the completion index, read from the
pod's `batch.kubernetes.io/job-completion-index` annotation by a fieldRef, as the Job
controller itself does for JOB_COMPLETION_INDEX. Under JobSet the pods are named
`<jobset>-<replicatedJob>-<jobIndex>-<podIndex>` in the JobSet's subdomain (its name by
default), so rank 0 is `<name>-worker-0-0.<name>.<ns>.svc`.
"""

from __future__ import annotations

from typing import Any

from fleet.models import UNREACHABLE_TOLERATION_KEY, SpotNodes, Workload
from fleet.models.podspec import SHM_PATH, SHM_VOLUME, EnvValueFrom, KeyRef
from fleet.render.keys import (
    COMPLETION_INDEX,
    DRA_REQUEST,
    GPU_RESOURCE,
    MASTER_PORT,
    PRODUCT_LABEL,
)
from fleet.render.overlay import MAIN, apply_overlay

JOBSET_WORKER = "worker"
"""The JobSet's one replicated job."""


def master_addr(name: str, namespace: str, jobset: bool) -> str:
    """The rank-0 pod's DNS name (see the module docstring)."""
    first = f"{name}-{JOBSET_WORKER}-0-0" if jobset else f"{name}-0"
    return f"{first}.{name}.{namespace}.svc"


def rendezvous_env(name: str, namespace: str, world_size: int, jobset: bool
                   ) -> list[dict[str, Any]]:
    """MASTER_ADDR, MASTER_PORT, WORLD_SIZE and NODE_RANK (from the completion index)."""
    return [
        {"name": "MASTER_ADDR", "value": master_addr(name, namespace, jobset)},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(world_size)},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}},
    ]


def _key_ref(ref: KeyRef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional is not None:
        out["optional"] = ref.optional
    return out


def _env_value(name: str, value: str | EnvValueFrom) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": name, "value": value}
    if value.secret_key_ref is not None:
        return {"name": name, "valueFrom": {"secretKeyRef": _key_ref(value.secret_key_ref)}}
    assert value.config_map_key_ref is not None  # exactly one: checked by the model
    return {"name": name, "valueFrom": {"configMapKeyRef": _key_ref(value.config_map_key_ref)}}


def _env_from(w: Workload) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for src in w.spec.env_from:
        ref = src.secret_ref or src.config_map_ref
        assert ref is not None  # exactly one: checked by the model
        body: dict[str, Any] = {"name": ref.name}
        if ref.optional is not None:
            body["optional"] = ref.optional
        item: dict[str, Any] = {"secretRef" if src.secret_ref else "configMapRef": body}
        if src.prefix is not None:
            item["prefix"] = src.prefix
        out.append(item)
    return out


def _volumes(w: Workload) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container volumeMounts), `shm` first."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if w.spec.shm is not None:
        volumes.append({"name": SHM_VOLUME,
                        "emptyDir": {"medium": "Memory", "sizeLimit": w.spec.shm}})
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    for v in w.spec.volumes:
        volumes.append({"name": v.name, **v.source()})
        mount: dict[str, Any] = {"name": v.name, "mountPath": v.mount_path}
        if v.read_only:
            mount["readOnly"] = True
        if v.sub_path is not None:
            mount["subPath"] = v.sub_path
        mounts.append(mount)
    return volumes, mounts


def _resources(w: Workload, gpus: int, dra: bool) -> dict[str, Any]:
    requests: dict[str, str] = {}
    if not dra:
        requests[GPU_RESOURCE] = str(gpus)
    if w.spec.resources.cpu is not None:
        requests["cpu"] = w.spec.resources.cpu
    if w.spec.resources.memory is not None:
        requests["memory"] = w.spec.resources.memory
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = dict(sorted(requests.items()))
    if dra:
        out["claims"] = [{"name": DRA_REQUEST}]
    else:
        out["limits"] = {GPU_RESOURCE: str(gpus)}
    return out


def _container(w: Workload, gpus: int, dra: bool, rendezvous: list[dict[str, Any]],
               mounts: list[dict[str, Any]]) -> dict[str, Any]:
    s = w.spec
    c: dict[str, Any] = {"name": MAIN, "image": s.image,
                         "resources": _resources(w, gpus, dra)}
    if s.command is not None:
        c["command"] = list(s.command)
    if s.args is not None:
        c["args"] = list(s.args)
    env = [_env_value(k, v) for k, v in sorted(s.env.items())] + rendezvous
    if env:
        c["env"] = env
    if s.env_from:
        c["envFrom"] = _env_from(w)
    if mounts:
        c["volumeMounts"] = mounts
    if s.type == "inference":
        port = s.inference_port
        c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        inf = s.inference
        if inf is not None and inf.readiness_probe is not None:
            c["readinessProbe"] = inf.readiness_probe.render(port)
        if inf is not None and inf.liveness_probe is not None:
            c["livenessProbe"] = inf.liveness_probe.render(port)
    return c


def _tolerations(w: Workload, spot: SpotNodes | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in w.spec.placement.tolerations:
        if t.key == UNREACHABLE_TOLERATION_KEY:
            continue  # a fleet-level grace, not a node taint
        tol: dict[str, Any] = {"operator": t.operator}
        for key, value in (("key", t.key), ("value", t.value), ("effect", t.effect),
                           ("tolerationSeconds", t.toleration_seconds)):
            if value is not None:
                tol[key] = value
        out.append(tol)
    out.extend(t.render() for t in w.spec.pod.tolerations)
    if spot is not None:
        out.extend(t for t in (t.render() for t in spot.tolerations) if t not in out)
    return out


def _node_selector(product: str, spot: SpotNodes | None) -> dict[str, str]:
    extra = spot.node_selector if spot is not None else {}
    return dict(sorted({**extra, PRODUCT_LABEL: product}.items()))


def pod_template(w: Workload, labels: dict[str, str], gpus: int, product: str, *,
                 dra_template: str | None, rendezvous: list[dict[str, Any]],
                 subdomain: str | None, restart_policy: str | None,
                 spot: SpotNodes | None = None) -> dict[str, Any]:
    """The pod template (`metadata.labels` and `spec`), with the overlay merged last.
    `dra_template`: the ResourceClaimTemplate the pod claims its GPUs from (DRA), else
    None (the device plugin's `nvidia.com/gpu`). `spot`: the cluster's spot nodes when
    the placed offer is spot (their nodeSelector and tolerations are added), else None."""
    s = w.spec
    dra = dra_template is not None
    volumes, mounts = _volumes(w)
    pod: dict[str, Any] = {"containers": [_container(w, gpus, dra, rendezvous, mounts)],
                           "nodeSelector": _node_selector(product, spot)}
    if volumes:
        pod["volumes"] = volumes
    if dra:
        pod["resourceClaims"] = [{"name": DRA_REQUEST,
                                  "resourceClaimTemplateName": dra_template}]
    tolerations = _tolerations(w, spot)
    if tolerations:
        pod["tolerations"] = tolerations
    if s.pod.node_affinity is not None:
        pod["affinity"] = {"nodeAffinity": s.pod.node_affinity.render()}
    if s.pod.service_account_name is not None:
        pod["serviceAccountName"] = s.pod.service_account_name
    if s.pod.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in s.pod.image_pull_secrets]
    if s.pod.priority_class_name is not None:
        pod["priorityClassName"] = s.pod.priority_class_name
    if subdomain is not None:
        pod["subdomain"] = subdomain
    if restart_policy is not None:
        pod["restartPolicy"] = restart_policy
    template: dict[str, Any] = {"metadata": {"labels": dict(sorted(labels.items()))},
                                "spec": pod}
    if s.pod.overlay:
        template = apply_overlay(template, s.pod.overlay)
    return template
