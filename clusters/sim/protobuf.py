"""Kubernetes protobuf request bodies, decoded for the kinds kubectl creates imperatively.

kubectl's generators (`kubectl create namespace|configmap|deployment|job|service`,
`kubectl run`) go through typed client-go clientsets, which send built-in kinds as
`application/vnd.kubernetes.protobuf` and never fall back to JSON. So the simulator
decodes that encoding for the messages those commands produce: the `k8s\\0` magic, a
`runtime.Unknown` envelope (type meta, raw bytes), then the object's message.

The schema below names, per message, the field numbers the Kubernetes wire format
uses and the JSON field each one is. Go's non-pointer fields are always on the wire,
empty or not; JSON omits them when empty, so empty strings, zero numbers and false
booleans of such fields are dropped (`*` marks pointer fields, whose zero is kept).
A field number the schema does not know, with a value that is not empty, is refused
with 415 naming it: better an explicit "send JSON" than a silently lost field.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from clusters.sim.errors import SimError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# message -> {field number: (json name, type)}; types: s string, i int, b bool,
# `*` suffix pointer (zero kept), map (string->string), mapb (string->bytes),
# mapq (string->Quantity), ios (IntOrString), time, [X] repeated X, ignore, or a
# message name.
_META = {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"),
         4: ("selfLink", "s"), 5: ("uid", "s"), 6: ("resourceVersion", "s"),
         7: ("generation", "i"), 8: ("creationTimestamp", "time"),
         9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "i*"),
         11: ("labels", "map"), 12: ("annotations", "map"),
         13: ("ownerReferences", "[OwnerReference]"), 14: ("finalizers", "[s]"),
         17: ("managedFields", "ignore")}
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": _META,
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"),
                       5: ("apiVersion", "s"), 6: ("controller", "b*"),
                       7: ("blockOwnerDeletion", "b*")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"),
                  3: ("status", "ignore")},
    "NamespaceSpec": {1: ("finalizers", "[s]")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map"),
                  3: ("binaryData", "mapb"), 4: ("immutable", "b*")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"),
                   3: ("status", "ignore")},
    "DeploymentSpec": {1: ("replicas", "i*"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"),
                       4: ("strategy", "DeploymentStrategy"), 5: ("minReadySeconds", "i"),
                       6: ("revisionHistoryLimit", "i*"), 7: ("paused", "b"),
                       9: ("progressDeadlineSeconds", "i*")},
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdate")},
    "RollingUpdate": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "LabelSelector": {1: ("matchLabels", "map"),
                      2: ("matchExpressions", "[LabelSelectorRequirement]")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "[s]")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "ignore")},
    "JobSpec": {1: ("parallelism", "i*"), 2: ("completions", "i*"),
                3: ("activeDeadlineSeconds", "i*"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "b*"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "i*"), 8: ("ttlSecondsAfterFinished", "i*"),
                9: ("completionMode", "s*"), 10: ("suspend", "b*")},
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec"), 3: ("status", "ignore")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "[Container]"), 3: ("restartPolicy", "s"),
                4: ("terminationGracePeriodSeconds", "i*"),
                5: ("activeDeadlineSeconds", "i*"), 6: ("dnsPolicy", "s"),
                7: ("nodeSelector", "map"), 8: ("serviceAccountName", "s"),
                9: ("serviceAccount", "s"), 10: ("nodeName", "s"), 11: ("hostNetwork", "b"),
                12: ("hostPID", "b"), 13: ("hostIPC", "b"), 16: ("hostname", "s"),
                17: ("subdomain", "s"), 19: ("schedulerName", "s"),
                20: ("initContainers", "[Container]"), 22: ("tolerations", "[Toleration]"),
                24: ("priorityClassName", "s")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "[s]"),
                  4: ("args", "[s]"), 5: ("workingDir", "s"), 6: ("ports", "[ContainerPort]"),
                  7: ("env", "[EnvVar]"), 8: ("resources", "ResourceRequirements"),
                  13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"),
                  16: ("stdin", "b"), 17: ("stdinOnce", "b"), 18: ("tty", "b"),
                  20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                      4: ("protocol", "s"), 5: ("hostIP", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", "mapq"), 2: ("requests", "mapq")},
    "Toleration": {1: ("key", "s"), 2: ("operator", "s"), 3: ("value", "s"),
                   4: ("effect", "s"), 5: ("tolerationSeconds", "i*")},
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    # DeleteOptions also arrive alone: typed clients (helm's Secret storage driver,
    # `helm uninstall`) send DELETE bodies in protobuf (k8s.io/apimachinery
    # pkg/apis/meta/v1/generated.proto field numbers).
    "DeleteOptions": {1: ("gracePeriodSeconds", "i*"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "b*"), 4: ("propagationPolicy", "s*"),
                      5: ("dryRun", "[s]"),
                      6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "b*")},
    "Preconditions": {1: ("uid", "s*"), 2: ("resourceVersion", "s*")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "mapb"), 3: ("type", "s*"),
               4: ("stringData", "map"), 5: ("immutable", "b*")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"),
                       3: ("imagePullSecrets", "[LocalObjectReference]"),
                       4: ("automountServiceAccountToken", "b*")},
    "LocalObjectReference": {1: ("name", "s")},
    # rbac.authorization.k8s.io/v1 (`kubectl create role|clusterrole|rolebinding|...`),
    # field numbers from k8s.io/api rbac/v1/types.go.
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[LabelSelector]")},
    "PolicyRule": {1: ("verbs", "[s]"), 2: ("apiGroups", "[s]"), 3: ("resources", "[s]"),
                   4: ("resourceNames", "[s]"), 5: ("nonResourceURLs", "[s]")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                           3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"),
                4: ("namespace", "s")},
    "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"),
                3: ("status", "ignore")},
    "ServiceSpec": {1: ("ports", "[ServicePort]"), 2: ("selector", "map"),
                    3: ("clusterIP", "s"), 4: ("type", "s"), 7: ("sessionAffinity", "s"),
                    8: ("loadBalancerIP", "s"), 10: ("externalName", "s"),
                    11: ("externalTrafficPolicy", "s"), 12: ("healthCheckNodePort", "i"),
                    13: ("publishNotReadyAddresses", "b")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"),
                    4: ("targetPort", "ios"), 5: ("nodePort", "i")},
}
KINDS = frozenset({"Namespace", "ConfigMap", "Deployment", "Job", "Pod", "Service",
                   "Eviction", "DeleteOptions", "Secret", "ServiceAccount", "Role",
                   "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


def _unsupported(message: str) -> SimError:
    return SimError(415, "UnsupportedMediaType",
                    f"the simulator cannot decode this protobuf body ({message}); send "
                    "JSON instead (kubectl apply or kubectl create -f)")


def _varint(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(b):
            raise _unsupported("truncated varint")
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return value, i


def _fields(b: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, varint value or length-delimited bytes) in wire order."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
            out.append((number, value))
        elif wire == 2:
            n, i = _varint(b, i)
            out.append((number, b[i:i + n]))
            i += n
        else:
            raise _unsupported(f"wire type {wire} of field {number}")
    return out


def _pairs(entries: list[bytes]) -> list[tuple[str, bytes]]:
    out = []
    for e in entries:
        kv = dict(_fields(e))
        key, value = kv.get(1, b""), kv.get(2, b"")
        out.append((bytes(key).decode() if isinstance(key, bytes) else str(key),
                    value if isinstance(value, bytes) else b""))
    return out


def _int(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, raw: int | bytes) -> Any:
    base = kind.rstrip("*")
    if base == "s":
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    if base == "i":
        return _int(raw) if isinstance(raw, int) else 0
    if base == "b":
        return bool(raw)
    if base == "ios":
        f = dict(_fields(raw)) if isinstance(raw, bytes) else {}
        text = f.get(3, b"")
        if f.get(1) == 1:
            return text.decode() if isinstance(text, bytes) else str(text)
        value = f.get(2, 0)
        return _int(value) if isinstance(value, int) else 0
    if base == "time":
        f = dict(_fields(raw)) if isinstance(raw, bytes) else {}
        seconds = f.get(1, 0)
        if not isinstance(seconds, int) or not seconds:
            return None
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return decode_message(base, raw if isinstance(raw, bytes) else b"")


def decode_message(name: str, b: bytes) -> dict[str, Any]:
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    grouped: dict[int, list[int | bytes]] = {}
    for number, raw in _fields(b):
        grouped.setdefault(number, []).append(raw)
    for number, raws in grouped.items():
        if number not in schema:
            if all(r in (0, b"") for r in raws):
                continue
            raise _unsupported(f"field {number} of {name}")
        field, kind = schema[number]
        if kind == "ignore":
            continue
        if kind in ("map", "mapb", "mapq"):
            entries = [r for r in raws if isinstance(r, bytes)]
            m: dict[str, Any] = {}
            for key, value in _pairs(entries):
                if kind == "map":
                    m[key] = value.decode()
                elif kind == "mapb":
                    m[key] = base64.b64encode(value).decode()
                else:
                    q = dict(_fields(value)).get(1, b"")
                    m[key] = q.decode() if isinstance(q, bytes) else str(q)
            if m:
                out[field] = m
        elif kind.startswith("["):
            items = [_scalar(kind[1:-1], r) for r in raws]
            if items:
                out[field] = items
        else:
            value = _scalar(kind, raws[-1])
            pointer = kind.endswith("*")
            if value is None or (not pointer and value in ("", 0, False)) or value == {}:
                continue
            out[field] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (see module docstring)."""
    if not body.startswith(MAGIC):
        raise _unsupported("no k8s protobuf magic")
    envelope = dict(_fields(body[len(MAGIC):]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise _unsupported("malformed envelope")
    tm = dict(_fields(type_meta))
    raw_version, raw_kind = tm.get(1, b""), tm.get(2, b"")
    api_version = raw_version.decode() if isinstance(raw_version, bytes) else ""
    kind = raw_kind.decode() if isinstance(raw_kind, bytes) else ""
    if kind not in KINDS:
        raise _unsupported(f"kind {kind or '(none)'}")
    obj = decode_message(kind, raw)
    obj["apiVersion"], obj["kind"] = api_version, kind
    obj.setdefault("metadata", {})
    return obj
