"""Pod specs and pod templates as kube-apiserver 1.35 validates them.

One home for the rules every pod-bearing kind shares (Pods, and the templates of
Deployments and Jobs), each from `pkg/apis/core/validation/validation.go`:
`ValidatePodTemplateSpec` (template labels and annotations), `validateContainers` and
`validateContainerCommon` (names are DNS-1123 labels and unique, an image, ports,
env names, resources), `validateContainerPorts`, `ValidateEnv` (relaxed names: the
RelaxedEnvironmentVariableValidation gate is on in 1.35),
`validateResourceRequirements` (requests <= limits, extended resources such as
`nvidia.com/gpu` are whole numbers with request == limit), `validateRestartPolicy`,
`ValidateTolerations` and the node selector's labels.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from clusters.sim.validation import (
    Errs,
    Unquoted,
    annotation_map,
    as_map,
    dns1123_label,
    label_value,
    labels,
    port_name,
    port_number,
    qualified_name,
)
from fleet.quantity import QuantityError, parse

Obj = dict[str, Any]

RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PROTOCOLS = ("SCTP", "TCP", "UDP")  # sets.List(supportedPortProtocols): sorted
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TERMINATION_POLICIES = ("File", "FallbackToLogsOnError")
_STANDARD_CONTAINER = frozenset({"cpu", "memory", "ephemeral-storage"})
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def template(errs: Errs, path: str, tmpl: Any) -> None:
    """`ValidatePodTemplateSpec`: labels, annotations, then the pod spec."""
    if not isinstance(tmpl, dict):
        errs.required(path)
        return
    meta = tmpl.get("metadata") or {}
    labels(errs, f"{path}.labels", meta.get("labels"))
    annotation_map(errs, f"{path}.annotations", meta.get("annotations"))
    pod_spec(errs, f"{path}.spec", tmpl.get("spec") or {})


def pod_spec(errs: Errs, path: str, spec: Obj) -> None:
    """`ValidatePodSpec`, the parts clients hit."""
    containers(errs, f"{path}.containers", spec.get("containers"))
    init_containers(errs, f"{path}.initContainers", spec.get("initContainers"),
                    spec.get("containers"))
    policy = spec.get("restartPolicy")
    if not policy:
        errs.required(f"{path}.restartPolicy")
    elif policy not in RESTART_POLICIES:
        errs.not_supported(f"{path}.restartPolicy", policy, RESTART_POLICIES)
    labels(errs, f"{path}.nodeSelector", spec.get("nodeSelector"))
    tolerations(errs, f"{path}.tolerations", spec.get("tolerations") or [])
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline,
                     "must be between 1 and 2147483647, inclusive")


def containers(errs: Errs, path: str, items: Any) -> None:
    """`validateContainers`: at least one; each valid; names unique."""
    if not items:
        errs.required(path)
        return
    seen: set[str] = set()
    for i, c in enumerate(items):
        if not isinstance(c, dict):
            continue
        container(errs, f"{path}[{i}]", c)
        name = c.get("name")
        if name in seen:
            errs.duplicate(f"{path}[{i}].name", name)
        elif name:
            seen.add(name)


def init_containers(errs: Errs, path: str, items: Any, regular: Any) -> None:
    """`validateInitContainers`: the same rules; names unique across both lists."""
    seen = {c.get("name") for c in regular or [] if isinstance(c, dict)}
    for i, c in enumerate(items or []):
        if not isinstance(c, dict):
            continue
        container(errs, f"{path}[{i}]", c)
        name = c.get("name")
        if name in seen:
            errs.duplicate(f"{path}[{i}].name", name)
        elif name:
            seen.add(name)


def container(errs: Errs, path: str, c: Obj) -> None:
    """`validateContainerCommon`."""
    name = c.get("name")
    if not name:
        errs.required(f"{path}.name")
    else:
        errs.each(f"{path}.name", name, dns1123_label(str(name)))
    if not c.get("image"):
        errs.required(f"{path}.image")
    policy = c.get("terminationMessagePolicy")
    if policy is not None and policy not in _TERMINATION_POLICIES:
        errs.not_supported(f"{path}.terminationMessagePolicy", policy, _TERMINATION_POLICIES)
    ports(errs, f"{path}.ports", c.get("ports") or [])
    env(errs, f"{path}.env", c.get("env") or [])
    pull = c.get("imagePullPolicy")
    if pull is not None and pull not in _PULL_POLICIES:
        errs.not_supported(f"{path}.imagePullPolicy", pull, _PULL_POLICIES)
    resources(errs, f"{path}.resources", c.get("resources") or {})


def ports(errs: Errs, path: str, items: list[Any]) -> None:
    """`validateContainerPorts`."""
    names: set[str] = set()
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            continue
        at = f"{path}[{i}]"
        name = p.get("name")
        if name:
            msgs = port_name(str(name))
            if msgs:
                errs.each(f"{at}.name", name, msgs)
            elif name in names:
                errs.duplicate(f"{at}.name", name)
            else:
                names.add(name)
        number = p.get("containerPort")
        if not number:
            errs.required(f"{at}.containerPort")
        else:
            errs.each(f"{at}.containerPort", number, port_number(int(number)))
        host = p.get("hostPort")
        if host:
            errs.each(f"{at}.hostPort", host, port_number(int(host)))
        protocol = p.get("protocol")
        if not protocol:
            errs.required(f"{at}.protocol")
        elif protocol not in _PROTOCOLS:
            errs.not_supported(f"{at}.protocol", protocol, _PROTOCOLS)


def env(errs: Errs, path: str, items: list[Any]) -> None:
    """`ValidateEnv` with `IsRelaxedEnvVarName` (printable ASCII other than '=')."""
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            continue
        name = e.get("name")
        if not name:
            errs.required(f"{path}[{i}].name")
        elif any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in str(name)):
            errs.invalid(f"{path}[{i}].name", name, "a valid environment variable name "
                         "must consist only of printable ASCII characters other than '='")


def _quantity(value: Any) -> Decimal | None:
    """The amount; quantities are stored canonical before validation, so the few
    spellings a cluster sees repeat: parsed once each."""
    return _parsed(value) if isinstance(value, str) else _parse(value)


@lru_cache(maxsize=4096)
def _parsed(text: str) -> Decimal | None:
    return _parse(text)


def _parse(value: Any) -> Decimal | None:
    try:
        return parse(value).value
    except QuantityError:
        return None


def _integer_resource(name: str) -> bool:
    """`helper.IsIntegerResourceName`: extended resources (a domain outside
    kubernetes.io, not `requests.`-prefixed) are counted in whole units."""
    return "/" in name and not name.split("/", 1)[0].endswith("kubernetes.io") and \
        not name.startswith("requests.")


def _resource_name(errs: Errs, path: str, name: str) -> None:
    """`validateContainerResourceName`."""
    msgs = qualified_name(name)
    if msgs:
        errs.each(path, name, msgs)
    elif "/" not in name and name not in _STANDARD_CONTAINER and \
            not name.startswith("hugepages-"):
        errs.invalid(path, name, "must be a standard resource for containers")


def _value(errs: Errs, path: str, name: str, q: Decimal, text: str) -> None:
    """`ValidateResourceQuantityValue`: not negative; whole for extended resources."""
    if q < 0:
        errs.invalid(path, text, "must be greater than or equal to 0")
    if _integer_resource(name) and (q * 1000) % 1000 != 0:
        errs.invalid(path, Unquoted(text), "must be an integer")


def resources(errs: Errs, path: str, res: Obj) -> None:
    """`validateResourceRequirements` (pkg/apis/core/validation): request <= limit, and
    for resources that cannot be overcommitted (extended ones) request == limit and a
    limit at all. The upstream messages name the limit: `must be less than or equal to
    cpu limit of 1`."""
    limits = as_map(res.get("limits"))
    requests = as_map(res.get("requests"))
    for name, raw in limits.items():
        at = f"{path}.limits[{name}]"
        _resource_name(errs, at, str(name))
        q = _quantity(raw)
        if q is not None:
            _value(errs, at, str(name), q, str(raw))
    for name, raw in requests.items():
        at = f"{path}.requests[{name}]"
        _resource_name(errs, at, str(name))
        q = _quantity(raw)
        if q is None:
            continue
        text = str(raw)  # stored canonical by the time validation runs
        _value(errs, at, str(name), q, text)
        overcommit = not _integer_resource(str(name))
        limit = _quantity(limits[name]) if name in limits else None
        if limit is not None:
            limit_text = str(limits[name])
            if q != limit and not overcommit:
                errs.invalid(f"{path}.requests", text,
                             f"must be equal to {name} limit of {limit_text}")
            elif q > limit:
                errs.invalid(f"{path}.requests", text,
                             f"must be less than or equal to {name} limit of {limit_text}")
        elif name not in limits and not overcommit:
            errs.required(f"{path}.limits",
                          "Limit must be set for non overcommitable resources")


def tolerations(errs: Errs, path: str, items: list[Any]) -> None:
    """`ValidateTolerations`."""
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            continue
        at = f"{path}[{i}]"
        key, op = t.get("key") or "", t.get("operator") or ""
        value, effect = t.get("value") or "", t.get("effect") or ""
        if key:
            errs.each(f"{at}.key", key, qualified_name(str(key)))
        if not key and op != "Exists":
            errs.invalid(f"{at}.operator", op, "operator must be Exists when `key` is "
                         'empty, which means "match all values and all keys"')
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.invalid(f"{at}.effect", effect,
                         "effect must be 'NoExecute' when `tolerationSeconds` is set")
        if op in ("Equal", ""):
            msgs = label_value(str(value))
            if msgs:
                errs.invalid(f"{at}.operator", value, ";".join(msgs))
        elif op == "Exists":
            if value:
                errs.invalid(f"{at}.operator", value,
                             "value must be empty when `operator` is 'Exists'")
        else:
            errs.not_supported(f"{at}.operator", op, ("Equal", "Exists"))
        if effect and effect not in _TAINT_EFFECTS:
            errs.not_supported(f"{at}.effect", effect, _TAINT_EFFECTS)
