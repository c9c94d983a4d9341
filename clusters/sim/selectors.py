"""Label and field selectors, parsed as the API server parses `?labelSelector=`.

Label selector grammar (k8s.io/apimachinery/pkg/labels): comma-separated requirements,
each `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`.
`!=` and `notin` also match objects without the key, as the real server does. Field
selectors take `=`, `==`, `!=` on the fields each kind's field label conversion
accepts (`SELECTABLE`, from `pkg/apis/core/v1/conversion.go` and
`pkg/apis/batch/v1/conversion.go`; every other kind `metadata.name` and
`metadata.namespace`, apimachinery's `DefaultMetaV1FieldSelectorConversion`); any
other field is the real server's 400, in that function's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from clusters.sim.errors import SimError, bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
# Field values are free text (`type=helm.sh/release.v1`); `\,` `\=` `\\` escape.
_FIELD_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)(.*)$")
_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: str(o.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda o: str(o.get("metadata", {}).get("namespace", "")),
    "spec.nodeName": lambda o: str(o.get("spec", {}).get("nodeName", "")),
    "status.phase": lambda o: str(o.get("status", {}).get("phase", "")),
    "spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get("unschedulable"))).lower(),
    "involvedObject.name": lambda o: str(o.get("involvedObject", {}).get("name", "")),
    "involvedObject.kind": lambda o: str(o.get("involvedObject", {}).get("kind", "")),
    "involvedObject.namespace":
        lambda o: str(o.get("involvedObject", {}).get("namespace", "")),
    "involvedObject.uid": lambda o: str(o.get("involvedObject", {}).get("uid", "")),
    "status.successful": lambda o: str(int(o.get("status", {}).get("succeeded") or 0)),
    "spec.hostNetwork": lambda o: str(bool(o.get("spec", {}).get("hostNetwork"))).lower(),
}


def _split(text: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def _requirement(req: str) -> Callable[[dict[str, str]], bool]:
    m = _EQ.match(req)
    if m:
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _SET.match(req)
    if m:
        neg, key, op, values = m.groups()
        if op is None:
            if neg:
                return lambda labels: key not in labels
            return lambda labels: key in labels
        if neg:
            raise bad_request(f"unable to parse requirement: {req!r}")
        vals = frozenset(v.strip() for v in values.split(",") if v.strip())
        if op == "in":
            return lambda labels: labels.get(key) in vals
        return lambda labels: labels.get(key) not in vals
    raise bad_request(f"unable to parse requirement: found '{req.strip()}', "
                      "expected: key, !key, key=value, key!=value, key in (...), "
                      "key notin (...)")


def label_matcher(selector: str | None) -> Matcher | None:
    """A predicate over objects, or None when the selector selects everything."""
    if not selector or not selector.strip():
        return None
    reqs = [_requirement(r) for r in _split(selector)]

    def match(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r(labels) for r in reqs)
    return match


_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
SELECTABLE: dict[str, frozenset[str]] = {
    "Pod": _META_FIELDS | {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                           "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                           "status.podIP", "status.nominatedNodeName"},
    "Node": frozenset({"metadata.name", "spec.unschedulable"}),
    "Event": _META_FIELDS | {"involvedObject.kind", "involvedObject.namespace",
                             "involvedObject.name", "involvedObject.uid",
                             "involvedObject.apiVersion", "involvedObject.resourceVersion",
                             "involvedObject.fieldPath", "reason", "reportingComponent",
                             "source", "type"},
    "Namespace": frozenset({"metadata.name", "status.phase"}),
    "Secret": _META_FIELDS | {"type"},
    "Service": _META_FIELDS | {"spec.clusterIP", "spec.type"},
    "Job": _META_FIELDS | {"status.successful"},
}
_SOURCE = {"source": "source.component"}


def _unsupported(kind: str | None, field: str) -> SimError:
    if kind == "Job":
        return bad_request(f'field label "{field}" not supported for batchv1.Job')
    if kind in SELECTABLE:
        return bad_request(f"field label not supported: {field}")
    return bad_request(f'"{field}" is not a known field selector: only "metadata.name", '
                       '"metadata.namespace"')


def _getter(field: str) -> Callable[[dict[str, Any]], str]:
    known = _FIELDS.get(field)
    if known is not None:
        return known
    path = _SOURCE.get(field, field).split(".")

    def get(obj: dict[str, Any]) -> str:
        node: Any = obj
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool):
            return str(node).lower()
        return "" if node is None else str(node)
    return get


def field_matcher(selector: str | None, kind: str | None = None) -> Matcher | None:
    """A predicate for `?fieldSelector=`; `kind` picks the fields it may name (None:
    any field the simulator knows, for in-process callers)."""
    if not selector or not selector.strip():
        return None
    reqs: list[tuple[Callable[[dict[str, Any]], str], bool, str]] = []
    allowed = SELECTABLE.get(kind, _META_FIELDS) if kind is not None else None
    for part in _split(selector):
        m = _FIELD_EQ.match(part)
        if not m:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        field, op, value = m.groups()
        value = re.sub(r"\\(.)", r"\1", value.strip())
        if field == "spec.host" and kind == "Pod":
            field = "spec.nodeName"  # the old v1 spelling the conversion still maps
        if allowed is not None and field not in allowed:
            raise _unsupported(kind, field)
        if allowed is None and field not in _FIELDS:
            raise _unsupported(kind, field)
        reqs.append((_getter(field), op == "!=", value))

    def match(obj: dict[str, Any]) -> bool:
        return all((g(obj) != v) if neg else (g(obj) == v) for g, neg, v in reqs)
    return match


def combine(*matchers: Matcher | None) -> Matcher | None:
    ms = [m for m in matchers if m is not None]
    if not ms:
        return None
    if len(ms) == 1:
        return ms[0]
    return lambda obj: all(m(obj) for m in ms)


def match_labels(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or \
           (op == "NotIn" and labels.get(key) in values) or \
           (op == "Exists" and key not in labels) or \
           (op == "DoesNotExist" and key in labels):
            return False
    return True
