"""The pod template overlay: a strategic-merge patch over the rendered pod template, the
escape hatch for any pod field the Workload format does not name.

Merge, as `kubectl patch --type strategic` does for a PodTemplateSpec
(`k8s.io/apimachinery/pkg/util/strategicpatch`, merge keys from the
`patchMergeKey` tags of `k8s.io/api/core/v1/types.go`): maps merge key by key, `null`
removes a key, lists with a merge key merge item by item on it (containers, volumes,
env, ...), every other list replaces. Patch directives (`$patch`, `$retainKeys`, ...)
are not supported and refused.

Checked without a cluster (`overlay_problems`, run by `fleet validate`): the fields
exist in the 1.35 PodSpec / Container (names taken from the 1.35 OpenAPI schema), lists
are lists, list items carry their merge key, a new container has an image, and nothing
aifleet owns is touched:
- the contract's labels and annotations (`aifleet.dev/...`) and Kueue's queue name;
- the GPU product nodeSelector, `resourceClaims`, the main container's GPU resources
  and claims (what placement counted must be what the pod asks for);
- the rendezvous env (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, NODE_RANK) and the pod's
  hostname/subdomain (what makes a multi-node job find its rank 0).
The values themselves are the API server's to judge: the runtime ships no Kubernetes
schema (kubernetes-validate is a dev dependency), so the contract test
(`tests/contract/test_render_dry_run.py`) sends the rendered result to the server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from fleet.render.keys import DOMAIN, GPU_RESOURCE, PRODUCT_LABEL, QUEUE_NAME, RENDEZVOUS_ENV

MAIN = "main"
"""The rendered container's name: the one the overlay merges into by `name`."""

POD_FIELDS = frozenset((
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
    "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "hostnameOverride",
    "imagePullSecrets", "initContainers", "nodeName", "nodeSelector", "os", "overhead",
    "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
    "resourceClaims", "resources", "restartPolicy", "runtimeClassName", "schedulerName",
    "schedulingGates", "securityContext", "serviceAccount", "serviceAccountName",
    "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
    "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
    "workloadRef"))
"""io.k8s.api.core.v1.PodSpec properties in the 1.35 OpenAPI schema."""
CONTAINER_FIELDS = frozenset((
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "restartPolicyRules", "securityContext", "startupProbe", "stdin",
    "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
    "volumeDevices", "volumeMounts", "workingDir"))
"""io.k8s.api.core.v1.Container properties in the 1.35 OpenAPI schema."""
POD_MERGE_KEYS = {"containers": "name", "initContainers": "name",
                  "ephemeralContainers": "name", "volumes": "name",
                  "imagePullSecrets": "name", "hostAliases": "ip", "resourceClaims": "name",
                  "topologySpreadConstraints": "topologyKey", "schedulingGates": "name"}
CONTAINER_MERGE_KEYS = {"env": "name", "ports": "containerPort",
                        "volumeMounts": "mountPath", "volumeDevices": "devicePath"}
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_POD_LISTS = frozenset((*POD_MERGE_KEYS, "tolerations", "readinessGates"))
_CONTAINER_LIST_FIELDS = frozenset((*CONTAINER_MERGE_KEYS, "args", "command", "envFrom",
                                    "resizePolicy", "restartPolicyRules"))
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

Path = tuple[str | int, ...]
Problem = tuple[Path, str]


def apply_overlay(template: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template with the overlay merged in (a new dict; inputs untouched)."""
    out = copy.deepcopy(dict(template))
    for key, value in overlay.items():
        if key == "spec" and isinstance(value, Mapping):
            out["spec"] = _merge_map(out.get("spec") or {}, value, POD_MERGE_KEYS)
        else:
            out[key] = _merge_value(out.get(key), value, {})
    return out


def _merge_map(base: Mapping[str, Any], patch: Mapping[str, Any],
               list_keys: Mapping[str, str]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in list_keys and isinstance(value, list) and isinstance(out.get(key), list):
            inner = CONTAINER_MERGE_KEYS if key in _CONTAINER_LISTS else {}
            out[key] = _merge_list(out[key], value, list_keys[key], inner)
        else:
            out[key] = _merge_value(out.get(key), value, {})
    return out


def _merge_value(base: Any, patch: Any, list_keys: Mapping[str, str]) -> Any:
    if isinstance(patch, Mapping) and isinstance(base, Mapping):
        return _merge_map(base, patch, list_keys)
    if isinstance(patch, Mapping):
        return _merge_map({}, patch, list_keys)  # drops the patch's own nulls
    return copy.deepcopy(patch)


def _merge_list(base: list[Any], patch: list[Any], key: str,
                inner: Mapping[str, str]) -> list[Any]:
    out = [copy.deepcopy(x) for x in base]
    index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, Mapping)}
    for item in patch:
        if not isinstance(item, Mapping):
            continue  # refused by overlay_problems before any render
        at = index.get(item.get(key))
        if at is None:
            out.append(_merge_map({}, item, inner))
        else:
            out[at] = _merge_map(out[at], item, inner)
    return out


def overlay_problems(overlay: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with an overlay, at its own path (relative to the overlay)."""
    out = _directives(overlay, ())
    if out:
        return out  # said once, at the directive: the rest is not read as fields
    for key, value in overlay.items():
        if key == "metadata":
            out.extend(_metadata_problems(value))
        elif key == "spec":
            out.extend(_spec_problems(value))
        else:
            out.append(((key,), f"{key}: the overlay patches the pod template, which has "
                                "only `metadata` and `spec`"))
    return out


def _directives(node: Any, path: Path) -> list[Problem]:
    if isinstance(node, Mapping):
        out: list[Problem] = []
        for k, v in node.items():
            if isinstance(k, str) and k.startswith("$"):
                out.append(((*path, k), f"{k}: strategic-merge directives are not "
                                        "supported in an overlay; `null` removes a field"))
            else:
                out.extend(_directives(v, (*path, k)))
        return out
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _directives(v, (*path, i))]
    return []


def _metadata_problems(meta: Any) -> list[Problem]:
    if not isinstance(meta, Mapping):
        return [(("metadata",), "metadata must be a map (labels, annotations)")]
    out: list[Problem] = []
    for key, value in meta.items():
        path: Path = ("metadata", key)
        if key not in ("labels", "annotations"):
            out.append((path, f"{key}: an overlay's metadata takes only labels and "
                              "annotations"))
            continue
        if not isinstance(value, Mapping):
            out.append((path, f"{key} must be a map"))
            continue
        for k in value:
            if not isinstance(k, str) or not _LABEL_KEY.match(k):
                out.append(((*path, str(k)), f"{k!r} is not a valid {key[:-1]} key"))
            elif k.startswith(DOMAIN + "/") or k == QUEUE_NAME:
                out.append(((*path, k), f"{k}: aifleet owns this {key[:-1]}; an overlay "
                                        "may not set or remove it"))
    return out


def _spec_problems(spec: Any) -> list[Problem]:
    if not isinstance(spec, Mapping):
        return [(("spec",), "spec must be a map (a PodSpec)")]
    out: list[Problem] = []
    for key, value in spec.items():
        path: Path = ("spec", key)
        if key not in POD_FIELDS:
            out.append((path, f"{key}: not a field of a Kubernetes 1.35 PodSpec"))
        elif key in ("hostname", "subdomain", "resourceClaims"):
            out.append((path, f"{key}: aifleet owns it (multi-node rendezvous, GPU "
                              "claims); an overlay may not set or remove it"))
        elif key == "nodeSelector" and (value is None or (
                isinstance(value, Mapping) and PRODUCT_LABEL in value)):
            out.append(((*path, PRODUCT_LABEL) if value is not None else path, (
                f"nodeSelector {PRODUCT_LABEL}: aifleet owns it (the placed GPU "
                "flavour); an overlay may not set or remove it")))
        elif key in _POD_LISTS and value is not None and not isinstance(value, list):
            out.append((path, f"{key} must be a list"))
        elif key in _CONTAINER_LISTS and isinstance(value, list):
            out.extend(_containers_problems(key, value))
        elif key in POD_MERGE_KEYS and isinstance(value, list):
            out.extend(_keyed_items(path, value, POD_MERGE_KEYS[key]))
    return out


def _keyed_items(path: Path, items: list[Any], key: str) -> list[Problem]:
    return [((*path, i), f"each item needs its merge key `{key}`")
            for i, item in enumerate(items)
            if not isinstance(item, Mapping) or item.get(key) is None]


def _containers_problems(field: str, items: list[Any]) -> list[Problem]:
    out: list[Problem] = []
    for i, c in enumerate(items):
        path: Path = ("spec", field, i)
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
            out.append((path, "each container needs its `name` (the merge key; the "
                              f"rendered one is `{MAIN}`)"))
            continue
        is_main = field == "containers" and c["name"] == MAIN
        if not is_main and "image" not in c:
            out.append((path, f"container {c['name']}: a new container needs an image"))
        for key, value in c.items():
            if key not in CONTAINER_FIELDS:
                out.append(((*path, key), f"{key}: not a field of a Kubernetes 1.35 "
                                          "Container"))
            elif key in _CONTAINER_LIST_FIELDS and value is not None \
                    and not isinstance(value, list):
                out.append(((*path, key), f"{key} must be a list"))
            elif key in CONTAINER_MERGE_KEYS and isinstance(value, list):
                out.extend(_keyed_items((*path, key), value, CONTAINER_MERGE_KEYS[key]))
        if is_main:
            out.extend(_main_problems(path, c))
    return out


def _main_problems(path: Path, c: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    res = c.get("resources", {})
    if res is None or ("resources" in c and not isinstance(res, Mapping)):
        out.append(((*path, "resources"), "resources: aifleet owns the GPU resources; an "
                                          "overlay may add CPU/memory, not replace them"))
    elif isinstance(res, Mapping):
        if "claims" in res:
            out.append(((*path, "resources", "claims"), "resources.claims: aifleet owns "
                                                       "the GPU claims"))
        for part in ("limits", "requests"):
            value = res.get(part, {})
            if value is None or (isinstance(value, Mapping) and GPU_RESOURCE in value):
                out.append(((*path, "resources", part), (
                    f"resources.{part}.{GPU_RESOURCE}: aifleet owns the GPU count (what "
                    "placement counted); set resources.gpu.count")))
    env = c.get("env")
    if env is None and "env" in c:
        out.append(((*path, "env"), "env: null would remove the rendezvous env"))
    for i, e in enumerate(env if isinstance(env, list) else ()):
        if isinstance(e, Mapping) and e.get("name") in RENDEZVOUS_ENV:
            out.append(((*path, "env", i), f"env {e['name']}: aifleet sets it (multi-node "
                                           "rendezvous); an overlay may not"))
    return out
