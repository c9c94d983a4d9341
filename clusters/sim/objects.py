"""What the API server does to an object on its way in: decode, default, protect.

The real server never stores what the client sent verbatim. It stores quantities
canonical, fills in defaults (`imagePullPolicy`, `restartPolicy`, Deployment
`strategy`, a Job's selector and `backoffLimit`, a Service's `clusterIP`, ...) and
keeps `status` out of reach of a main resource write; what it then refuses is
`validation.py`'s. The simulator does the same, so that a controller diffing what it
sent against what it reads back sees the same noise it would see on EKS or kind, and one
comparing only fields it owns does not.

Everything here is a pure function over plain dicts, called by the store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from clusters.sim.errors import bad_request
from clusters.sim.resources import Resource
from fleet.quantity import QuantityError, canonical


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """Seconds since the epoch of an RFC 3339 timestamp as `now()` writes them."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def format_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- quantities

_QUANTITY_MAPS = frozenset({"requests", "limits"})
"""Under `resources`: maps of resource name -> quantity."""
_QUANTITY_MAP_KEYS = frozenset({"overhead", "capacity", "allocatable"})
_QUANTITY_KEYS = frozenset({"sizeLimit"})


DECODED_WHEN_STORED = frozenset({"Pod", "Deployment", "ReplicaSet", "Job", "Node", "Lease"})
"""Kinds whose stored objects `decode_quantities` leaves as they are (and never refuses):
everything the store writes into one after decoding it (defaults, admission,
managedFields, status from the controllers) is a decoded copy or names no quantity
key, and `canonical` is idempotent. Not so for custom resources (their schema defaults
come after the decoding) nor Secrets (`stringData` becomes base64 `data` after it)."""


def decode_quantities(res: Resource, obj: dict[str, Any],
                      stored: dict[str, Any] | None = None) -> None:
    """Every quantity as the real server stores it (in place): decoded and written back
    canonical (`0.5` -> `500m`, `1024Mi` -> `1Gi`, `8` -> `"8"`); one that does not
    parse is the decoder's 400, as kube-apiserver answers it.

    `stored`: the stored object `obj` replaces. For a kind in `DECODED_WHEN_STORED` a
    part of `obj` that is the very object `stored` holds at the same path (a status
    write's spec and metadata, a renewed Lease's managedFields) was decoded when it was
    stored, so it is not walked again (a controller's status write spent half its time
    there)."""
    skip = stored if stored is not None and res.kind in DECODED_WHEN_STORED \
        and not res.custom else None
    try:
        _canonical_quantities(obj, None, skip)
    except QuantityError as e:
        raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a '
                          f"{res.kind}: {e}") from None


_ABSENT = object()


def _canonical_quantities(node: Any, key: str | None,
                          skip: dict[str, Any] | None = None) -> None:
    if isinstance(node, list):
        for item in node:
            _canonical_quantities(item, None)
        return
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        was = skip.get(k, _ABSENT) if skip is not None else _ABSENT
        if was is v:
            continue
        if ((k in _QUANTITY_MAPS and key == "resources") or k in _QUANTITY_MAP_KEYS) \
                and isinstance(v, dict):
            for name, q in v.items():
                if isinstance(q, dict):  # DRA: a device's capacity is {value: quantity}
                    if "value" in q:
                        q["value"] = canonical(q["value"])
                    continue
                v[name] = canonical(q)
            continue
        if k in _QUANTITY_KEYS and v is not None:
            node[k] = canonical(v)
            continue
        _canonical_quantities(v, k, was if isinstance(was, dict) else None)


# ---------------------------------------------------------------- defaults


def _default_container(c: dict[str, Any]) -> None:
    image = str(c.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    res = c["resources"]
    if "limits" in res and "requests" not in res:
        res["requests"] = dict(res["limits"])


def default_pod_spec(spec: dict[str, Any], *, restart: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)


def _default_template(tmpl: dict[str, Any], restart: str = "Always") -> None:
    tmpl.setdefault("metadata", {})
    default_pod_spec(tmpl.setdefault("spec", {}), restart=restart)


def apply_defaults(res: Resource, obj: dict[str, Any], cluster_ip: str) -> None:
    """Fill in what the API server defaults for `res.kind` (in place)."""
    kind = res.kind
    spec = obj.setdefault("spec", {}) if kind in _SPEC_KINDS else None
    if kind == "Pod" and spec is not None:
        default_pod_spec(spec)
        obj.setdefault("status", {"phase": "Pending", "qosClass": _qos(spec)})
    elif kind == "Deployment" and spec is not None:
        spec.setdefault("replicas", 1)
        _default_strategy(spec.setdefault("strategy", {}))
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec.setdefault("template", {}))
        obj.setdefault("status", {})
    elif kind == "ReplicaSet" and spec is not None:
        spec.setdefault("replicas", 1)
        _default_template(spec.setdefault("template", {}))
        obj.setdefault("status", {"replicas": 0})
    elif kind == "Job" and spec is not None:
        _default_job(obj, spec)
    elif kind == "Service" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("clusterIP", cluster_ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = obj.get("status") or {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind == "Lease":
        obj.setdefault("spec", {})


def _default_strategy(strategy: dict[str, Any]) -> None:
    """apps/v1 `SetDefaults_Deployment`: RollingUpdate, each bound 25% when unset."""
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = strategy["rollingUpdate"] = {}
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")


_SPEC_KINDS = frozenset({"Pod", "Deployment", "ReplicaSet", "Job", "Service"})


def _default_job(obj: dict[str, Any], spec: dict[str, Any]) -> None:
    if "parallelism" not in spec:
        spec["parallelism"] = 1
    if "completions" not in spec and spec.get("completionMode") != "Indexed":
        spec["completions"] = 1
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    tmpl = spec.setdefault("template", {})
    # core/v1 SetDefaults_PodSpec runs on a Job's template too: a Job that names no
    # restartPolicy gets Always, which batch validation then refuses (OnFailure|Never).
    _default_template(tmpl)
    if spec.get("manualSelector") is not True:
        _generate_selector(obj["metadata"], spec, tmpl)
    obj.setdefault("status", {})


def job_labels(meta: dict[str, Any]) -> dict[str, str]:
    """The labels the Job strategy puts on a Job's pods and selects them by."""
    uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
    return {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
            "controller-uid": uid, "job-name": name}


def _generate_selector(meta: dict[str, Any], spec: dict[str, Any],
                       tmpl: dict[str, Any]) -> None:
    """batch `generateSelector` (pkg/registry/batch/job/strategy.go): the template gets
    the job labels it lacks, the selector the controller-uid; a selector of the user's
    own then fails validation (`selector` not auto-generated) unless manualSelector."""
    tmeta = tmpl["metadata"] if isinstance(tmpl.get("metadata"), dict) else {}
    tmpl["metadata"] = tmeta
    labels = tmeta["labels"] if isinstance(tmeta.get("labels"), dict) else {}
    tmeta["labels"] = labels
    for key, value in job_labels(meta).items():
        labels.setdefault(key, value)
    sel = spec["selector"] if isinstance(spec.get("selector"), dict) else {}
    spec["selector"] = sel
    match = sel["matchLabels"] if isinstance(sel.get("matchLabels"), dict) else {}
    sel["matchLabels"] = match
    match.setdefault("batch.kubernetes.io/controller-uid", str(meta.get("uid") or ""))


def _qos(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    if any(c.get("resources", {}).get("requests") or c.get("resources", {}).get("limits")
           for c in containers):
        return "Burstable"
    return "BestEffort"


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a generation bump is measured on."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "status", "apiVersion", "kind")}
