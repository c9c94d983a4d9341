"""Each served kind's own rules and immutable fields, as kube-apiserver 1.35 has them.

- Deployments: `pkg/apis/apps/validation` `ValidateDeploymentSpec` (replicas >= 0, a
  non-empty valid selector that matches the template's labels, template
  `restartPolicy: Always`, strategy, minReadySeconds / revisionHistoryLimit /
  progressDeadlineSeconds); `spec.selector` is immutable in apps/v1
  (`pkg/registry/apps/deployment/strategy.go`).
- Jobs: `pkg/apis/batch/validation` (parallelism, completions, backoffLimit,
  activeDeadlineSeconds >= 0, completionMode, Indexed needs completions, template
  `restartPolicy` OnFailure or Never, selector matches the template); on update the
  selector, template and completionMode are immutable, and completions too unless
  the Job is Indexed and changes it together with parallelism (`validateCompletions`).
- Services: `pkg/apis/core/validation` `ValidateService` (type, ports with names,
  numbers, protocols and target ports, selector labels); the primary cluster IP may not
  change (`validateServiceClusterIPsRelatedFields`: `may not change once set`).
- Pods: the pod spec, and on update only the fields `ValidatePodUpdate` lets change.
  (Secrets' and ConfigMaps' keys and sizes: `storage_kinds`.)
"""

from __future__ import annotations

import copy
from typing import Any

from clusters.sim import validation_pods as pods
from clusters.sim.objects import job_labels
from clusters.sim.selectors import match_labels
from clusters.sim.validation import (
    Errs,
    Unquoted,
    as_map,
    dns1123_label,
    is_percent,
    label_value,
    labels,
    nonnegative,
    port_name,
    port_number,
    qualified_name,
)

Obj = dict[str, Any]
_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_PROTOCOLS = ("SCTP", "TCP", "UDP")


def validate_spec(kind: str, obj: Obj, errs: Errs) -> None:
    spec = as_map(obj.get("spec"))
    if kind == "Pod":
        pods.pod_spec(errs, "spec", spec)
    elif kind == "Deployment":
        _deployment(errs, spec)
    elif kind == "ReplicaSet":
        _replicaset(errs, spec)
    elif kind == "Job":
        _job(errs, spec)
    elif kind == "Service":
        _service(errs, spec)


def validate_new(kind: str, obj: Obj, errs: Errs) -> None:
    """Rules only a create runs."""
    if kind == "Job":
        _job_generated_selector(errs, obj)


def validate_immutable(kind: str, old: Obj, new: Obj, errs: Errs) -> None:
    o = as_map(old.get("spec"))
    n = as_map(new.get("spec"))
    if kind == "Job":
        _job_update(errs, o, n)
    elif kind in ("Deployment", "ReplicaSet") and o.get("selector") != n.get("selector"):
        errs.immutable("spec.selector", n.get("selector"))
    elif kind == "Service":
        _service_update(errs, o, n)
    elif kind == "Pod":
        _pod_update(errs, o, n)


# ------------------------------------------------------------------ selectors


def label_selector(errs: Errs, path: str, sel: Obj) -> None:
    """`metav1validation.ValidateLabelSelector` (strict label values)."""
    labels(errs, f"{path}.matchLabels", sel.get("matchLabels"))
    for i, req in enumerate(sel.get("matchExpressions") or []):
        if not isinstance(req, dict):
            continue
        at = f"{path}.matchExpressions[{i}]"
        op, values = req.get("operator"), req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.required(f"{at}.values",
                              "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(f"{at}.values", "may not be specified when `operator` is "
                               "'Exists' or 'DoesNotExist'")
        else:
            errs.invalid(f"{at}.operator", op, "not a valid selector operator")
        errs.each(f"{at}.key", req.get("key"), qualified_name(str(req.get("key") or "")))
        for j, v in enumerate(values):
            errs.each(f"{at}.values[{j}]", v, label_value(str(v)))


def _template_labels(spec: Obj) -> dict[str, str]:
    tmpl = as_map(spec.get("template"))
    meta = as_map(tmpl.get("metadata"))
    return dict(meta.get("labels") or {})


def _selector_matches(errs: Errs, spec: Obj, what: str) -> None:
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or
                                         sel.get("matchExpressions")):
        if sel is None:
            errs.required("spec.selector")
        else:
            errs.invalid("spec.selector", sel, f"empty selector is invalid for {what}")
        return
    label_selector(errs, "spec.selector", sel)
    tmpl = _template_labels(spec)
    if not match_labels(sel, tmpl):
        errs.invalid("spec.template.metadata.labels", tmpl,
                     "`selector` does not match template `labels`")


# ------------------------------------------------------------------ Deployment


def _int_or_percent(errs: Errs, path: str, value: Any) -> int:
    """`ValidatePositiveIntOrPercent`; returns the value (percent or count) or -1."""
    if isinstance(value, str):
        if not is_percent(value):
            errs.invalid(path, Unquoted(value), "a valid percent string must be a "
                         "numeric string followed by an ending '%' (e.g. '1%',  or "
                         "'93%', regex used for validation is '[0-9]+%')")
            return -1
        pct = int(value[:-1])
        if pct > 100 and path.endswith("maxUnavailable"):
            errs.invalid(path, Unquoted(value), "must not be greater than 100%")
        return pct
    if isinstance(value, int) and not isinstance(value, bool):
        nonnegative(errs, path, value)
        return value
    return -1


def _replicated_pods(errs: Errs, spec: Obj, what: str) -> None:
    """What a Deployment and a ReplicaSet share (apps validation
    `ValidatePodTemplateSpecForReplicaSet`): replicas, a selector matching the template's
    labels, an Always pod template without activeDeadlineSeconds."""
    nonnegative(errs, "spec.replicas", spec.get("replicas"))
    _selector_matches(errs, spec, what)
    pods.template(errs, "spec.template", spec.get("template"))
    tspec = (spec.get("template") or {}).get("spec") or {}
    policy = tspec.get("restartPolicy")
    if policy and policy != "Always":
        errs.not_supported("spec.template.spec.restartPolicy", policy, ("Always",))
    active = tspec.get("activeDeadlineSeconds")
    if active is not None:
        errs.invalid("spec.template.spec.activeDeadlineSeconds", active,
                     "activeDeadlineSeconds in ReplicaSet is not Supported")


def _deployment(errs: Errs, spec: Obj) -> None:
    _replicated_pods(errs, spec, "deployment")
    _strategy(errs, spec.get("strategy") or {})
    for key in ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        nonnegative(errs, f"spec.{key}", spec.get(key))
    deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and isinstance(ready, int) and deadline <= ready:
        errs.invalid("spec.progressDeadlineSeconds", deadline,
                     "must be greater than minReadySeconds")


def _replicaset(errs: Errs, spec: Obj) -> None:
    """apps validation `ValidateReplicaSetSpec`."""
    _replicated_pods(errs, spec, "replicaset")
    nonnegative(errs, "spec.minReadySeconds", spec.get("minReadySeconds"))


def _strategy(errs: Errs, strategy: Obj) -> None:
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.forbidden("spec.strategy.rollingUpdate",
                           "may not be specified when strategy `type` is 'Recreate'")
    elif kind == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            errs.required("spec.strategy.rollingUpdate",
                          "this should be defaulted and never be nil")
            return
        path = "spec.strategy.rollingUpdate"
        unavailable = _int_or_percent(errs, f"{path}.maxUnavailable", ru.get("maxUnavailable"))
        surge = _int_or_percent(errs, f"{path}.maxSurge", ru.get("maxSurge"))
        if unavailable == 0 and surge == 0:
            errs.invalid(f"{path}.maxUnavailable", Unquoted(str(ru.get("maxUnavailable"))),
                         "may not be 0 when `maxSurge` is 0")
    else:
        errs.not_supported("spec.strategy", strategy, ("Recreate", "RollingUpdate"))


# ------------------------------------------------------------------ Job


def _job(errs: Errs, spec: Obj) -> None:
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"):
        nonnegative(errs, f"spec.{key}", spec.get(key))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errs.not_supported("spec.completionMode", mode, ("NonIndexed", "Indexed"))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.required("spec.completions", "when completion mode is Indexed")
    _selector_matches(errs, spec, "job")
    pods.template(errs, "spec.template", spec.get("template"))
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        errs.not_supported("spec.template.spec.restartPolicy", policy,
                           ("OnFailure", "Never"))


def _job_generated_selector(errs: Errs, obj: Obj) -> None:
    """batch `validateGeneratedSelector`: without manualSelector the template carries
    the job labels and the selector selects nothing but them."""
    spec = as_map(obj.get("spec"))
    sel = spec.get("selector")
    if spec.get("manualSelector") is True or not isinstance(sel, dict):
        return
    tmpl_labels = _template_labels(spec)
    expected = job_labels(as_map(obj.get("metadata")))
    for key, value in expected.items():
        at = f"spec.template.metadata.labels[{key}]"
        if key not in tmpl_labels:
            errs.required(at, f"must be '{value}'")
        elif tmpl_labels[key] != value:
            errs.invalid(at, tmpl_labels, f"must be '{value}'")
    if not match_labels(sel, expected):
        errs.invalid("spec.selector", sel, "`selector` not auto-generated")


def _job_update(errs: Errs, o: Obj, n: Obj) -> None:
    if o.get("selector") != n.get("selector"):
        errs.immutable("spec.selector", n.get("selector"))
    if o.get("template") != n.get("template"):
        errs.immutable("spec.template", n.get("template"))
    if o.get("completionMode") != n.get("completionMode"):
        errs.immutable("spec.completionMode", n.get("completionMode"))
    if o.get("completions") == n.get("completions"):
        return
    # batch validation `validateCompletions` (elastic Indexed Jobs, GA since 1.31):
    # immutable unless Indexed and changed in tandem with parallelism.
    if n.get("completionMode") != "Indexed":
        errs.immutable("spec.completions", n.get("completions"))
    elif n.get("completions") is not None and n.get("completions") != n.get("parallelism"):
        errs.invalid("spec.completions", n.get("completions"),
                     "can only be modified in tandem with spec.parallelism")


# ------------------------------------------------------------------ Service


def _service(errs: Errs, spec: Obj) -> None:
    kind = spec.get("type") or "ClusterIP"
    if kind not in _SERVICE_TYPES:
        errs.not_supported("spec.type", kind, _SERVICE_TYPES)
    items = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not items and not headless and kind != "ExternalName":
        errs.required("spec.ports")
    names: set[str] = set()
    for i, p in enumerate(items):
        if isinstance(p, dict):
            _service_port(errs, f"spec.ports[{i}]", p, len(items) > 1, names)
    if kind != "ExternalName":
        labels(errs, "spec.selector", spec.get("selector"))


def _service_port(errs: Errs, path: str, p: Obj, require_name: bool,
                  names: set[str]) -> None:
    """`validateServicePort`."""
    name = p.get("name")
    if require_name and not name:
        errs.required(f"{path}.name")
    elif name:
        errs.each(f"{path}.name", name, dns1123_label(str(name)))
        if name in names:
            errs.duplicate(f"{path}.name", name)
        names.add(str(name))
    port = p.get("port") or 0  # a missing port decodes as 0
    if isinstance(port, int):
        errs.each(f"{path}.port", port, port_number(port))
    protocol = p.get("protocol")
    if not protocol:
        errs.required(f"{path}.protocol")
    elif protocol not in _PROTOCOLS:
        errs.not_supported(f"{path}.protocol", protocol, _PROTOCOLS)
    target = p.get("targetPort")  # `ValidatePortNumOrName`
    if isinstance(target, int) and not isinstance(target, bool):
        errs.each(f"{path}.targetPort", target, port_number(target))
    elif isinstance(target, str):
        errs.each(f"{path}.targetPort", target, port_name(target))


def _service_update(errs: Errs, o: Obj, n: Obj) -> None:
    """The primary cluster IP may not change once set; a changed `clusterIP` with the
    old `clusterIPs` is normalised into `clusterIPs` first, as the REST strategy does."""
    old_ips = o.get("clusterIPs") or ([o["clusterIP"]] if o.get("clusterIP") else [])
    if not old_ips or not old_ips[0]:
        return
    new_ips = n.get("clusterIPs") or []
    if n.get("clusterIP") != o.get("clusterIP") and new_ips == old_ips:
        new_ips = [n.get("clusterIP"), *new_ips[1:]]
    if not new_ips or not new_ips[0]:
        errs.required("spec.clusterIPs[0]", "primary clusterIP can not be unset")
    elif new_ips[0] != old_ips[0]:
        errs.invalid("spec.clusterIPs[0]", new_ips, "may not change once set")


# ------------------------------------------------------------------ Pod


_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations")


def _pod_update(errs: Errs, o: Obj, n: Obj) -> None:
    strip_o, strip_n = copy.deepcopy(o), copy.deepcopy(n)
    for s in (strip_o, strip_n):
        for c in s.get("containers") or []:
            c.pop("image", None)
        for key in _POD_MUTABLE:
            s.pop(key, None)
        if s is strip_n and "nodeName" not in o:
            s.pop("nodeName", None)
    if strip_o != strip_n:
        errs.forbidden("spec", "pod updates may not change fields other than "
                       "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                       "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions "
                       "to existing tolerations), `spec.terminationGracePeriodSeconds` "
                       "(allow it to be set to 1 if it was previously negative)")
