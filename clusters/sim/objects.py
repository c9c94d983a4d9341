"""What the API server does to an object on its way in: validate, default, protect.

The real server never stores what the client sent verbatim. It checks names
(RFC 1123), refuses changes to immutable fields with 422 Invalid, fills in defaults
(`imagePullPolicy`, `restartPolicy`, Deployment `strategy`, a Job's selector and
`backoffLimit`, a Service's `clusterIP`, ...) and keeps `status` out of reach of a main
resource write. The simulator does the same, so that a controller diffing what it sent
against what it reads back sees the same noise it would see on EKS or kind, and one
comparing only fields it owns does not.

Everything here is a pure function over plain dicts, called by the store.
"""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from clusters.sim.errors import SimError, bad_request, invalid
from clusters.sim.resources import Resource
from clusters.sim.selectors import match_labels
from fleet.quantity import QuantityError, canonical

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
    "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
    "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
# Kinds whose names must be DNS labels (they become DNS names themselves).
_LABEL_NAMED = frozenset({"Namespace", "Service"})


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def qualified(res: Resource) -> str:
    return f"{res.kind}.{res.group}" if res.group else res.kind


def validate_name(res: Resource, name: str) -> None:
    """422 for a name the real server refuses (`metadata.name: Invalid value: ...`)."""
    if not name:
        raise invalid(qualified(res), "", [(
            "metadata.name", "FieldValueRequired",
            "Required value: name or generateName is required")])
    label = res.kind in _LABEL_NAMED
    ok = (_LABEL.match(name) and len(name) <= 63) if label else \
        (_SUBDOMAIN.match(name) and len(name) <= 253)
    if not ok:
        msg = _LABEL_MSG if label else _SUBDOMAIN_MSG
        raise invalid(qualified(res), name, [(
            "metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {msg}')])


def immutable(res: Resource, name: str, field: str) -> SimError:
    return invalid(qualified(res), name, [(field, "FieldValueInvalid",
                                           "Invalid value: field is immutable")])


# ---------------------------------------------------------------- quantities

_QUANTITY_MAPS = frozenset({"requests", "limits"})
"""Under `resources`: maps of resource name -> quantity."""
_QUANTITY_MAP_KEYS = frozenset({"overhead", "capacity", "allocatable"})
_QUANTITY_KEYS = frozenset({"sizeLimit"})


def decode_quantities(res: Resource, obj: dict[str, Any]) -> None:
    """Every quantity as the real server stores it (in place): decoded and written back
    canonical (`0.5` -> `500m`, `1024Mi` -> `1Gi`, `8` -> `"8"`); one that does not
    parse is the decoder's 400, as kube-apiserver answers it."""
    try:
        _canonical_quantities(obj, None)
    except QuantityError as e:
        raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a '
                          f"{res.kind}: {e}") from None


def _canonical_quantities(node: Any, key: str | None) -> None:
    if isinstance(node, list):
        for item in node:
            _canonical_quantities(item, None)
        return
    if not isinstance(node, dict):
        return
    for k, v in node.items():
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
        _canonical_quantities(v, k)


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
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": "25%", "maxUnavailable": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec.setdefault("template", {}))
        obj.setdefault("status", {})
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


_SPEC_KINDS = frozenset({"Pod", "Deployment", "Job", "Service"})


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
    _default_template(tmpl, restart="Never")
    uid = obj["metadata"]["uid"]
    name = obj["metadata"]["name"]
    if "selector" not in spec:
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = tmpl["metadata"].setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": uid,
                       "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name})
    obj.setdefault("status", {})


def _qos(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    if any(c.get("resources", {}).get("requests") or c.get("resources", {}).get("limits")
           for c in containers):
        return "Burstable"
    return "BestEffort"


# ------------------------------------------------------------ validation


def validate(res: Resource, obj: dict[str, Any]) -> None:
    """The required-field checks clients hit most (422 with the field named)."""
    name = obj["metadata"]["name"]
    causes: list[tuple[str, str, str]] = []
    spec = obj.get("spec") or {}
    if res.kind == "Pod":
        _containers(spec, "spec", causes)
    elif res.kind == "Deployment":
        if not spec.get("selector"):
            causes.append(("spec.selector", "FieldValueRequired", "Required value"))
        else:
            labels = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
            if not match_labels(spec["selector"], labels):
                causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                               "Invalid value: `selector` does not match template "
                               "`labels`"))
        _containers(spec.get("template", {}).get("spec", {}), "spec.template.spec", causes)
    elif res.kind == "Job":
        tspec = spec.get("template", {}).get("spec", {})
        _containers(tspec, "spec.template.spec", causes)
        if tspec.get("restartPolicy") not in ("Never", "OnFailure"):
            causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                           f'Unsupported value: "{tspec.get("restartPolicy")}": '
                           'supported values: "OnFailure", "Never"'))
    if causes:
        raise invalid(qualified(res), name, causes)


def _containers(spec: dict[str, Any], path: str,
                causes: list[tuple[str, str, str]]) -> None:
    containers = spec.get("containers")
    if not containers:
        causes.append((f"{path}.containers", "FieldValueRequired", "Required value"))
        return
    for i, c in enumerate(containers):
        if not c.get("name"):
            causes.append((f"{path}.containers[{i}].name", "FieldValueRequired",
                           "Required value"))
        if not c.get("image"):
            causes.append((f"{path}.containers[{i}].image", "FieldValueRequired",
                           "Required value"))


def check_immutable(res: Resource, old: dict[str, Any], new: dict[str, Any]) -> None:
    """422 when an update changes a field the real API server keeps immutable."""
    name = old["metadata"]["name"]
    o, n = old.get("spec") or {}, new.get("spec") or {}
    if res.kind == "Job":
        for field in ("selector", "template", "completionMode"):
            if o.get(field) != n.get(field):
                raise immutable(res, name, f"spec.{field}")
        if o.get("completions") != n.get("completions"):
            # batch validation `validateCompletions` (elastic Indexed Jobs, GA): immutable
            # unless Indexed and changed in tandem with parallelism.
            if n.get("completionMode") != "Indexed":
                raise immutable(res, name, "spec.completions")
            if n.get("completions") is not None and \
                    n.get("completions") != n.get("parallelism"):
                raise invalid(qualified(res), name, [(
                    "spec.completions", "FieldValueInvalid",
                    f"Invalid value: {n.get('completions')}: can only be modified in "
                    "tandem with spec.parallelism")])
    elif res.kind == "Deployment" and o.get("selector") != n.get("selector"):
        raise immutable(res, name, "spec.selector")
    elif res.kind == "Service" and o.get("clusterIP") and \
            o.get("clusterIP") != n.get("clusterIP"):
        raise immutable(res, name, "spec.clusterIP")
    elif res.kind == "Pod":
        strip_o, strip_n = copy.deepcopy(o), copy.deepcopy(n)
        for s in (strip_o, strip_n):
            for c in s.get("containers") or []:
                c.pop("image", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
            if s is strip_n and "nodeName" not in o:
                s.pop("nodeName", None)
        if strip_o != strip_n:
            raise invalid(qualified(res), name, [(
                "spec", "FieldValueForbidden",
                "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                "existing tolerations), `spec.terminationGracePeriodSeconds` (allow it "
                "to be set to 1 if it was previously negative)")])


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a generation bump is measured on."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "status", "apiVersion", "kind")}
