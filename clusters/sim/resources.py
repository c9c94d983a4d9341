"""The resource types a simulated cluster serves, and the discovery documents for them.

A `Resource` is one REST collection as the API server's discovery describes it:
group, version, plural name, kind, whether it is namespaced, its verbs and short
names. Discovery (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) is generated from this
one table, so what clients discover is exactly what the server routes. kubectl picks
its REST mapping (`kubectl get deploy`, `jobs.batch`) from these documents alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update",
             "watch")


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    custom: bool = False
    """Served from a CustomResourceDefinition of one cluster (`crds.py`), not built in."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_generation(self) -> bool:
        """Kinds whose `metadata.generation` the server maintains (spec-carrying)."""
        return self.custom or self.kind in {
            "CustomResourceDefinition", "Deployment", "Job", "Pod", "ReplicaSet", "Service"} \
            or self.kind in _GENERATION_KINDS


# Storage-only kinds with a spec whose registry strategy sets `generation` (policy,
# networking PrepareForCreate/Update); Secrets, ServiceAccounts and RBAC have none.
_GENERATION_KINDS = frozenset({"PodDisruptionBudget", "NetworkPolicy", "Ingress"})


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",),
             ("create", "delete", "get", "list", "patch", "update", "watch"),
             subresources=("status", "finalize")),
    Resource("", "v1", "nodes", "Node", False, ("no",), subresources=("status",)),
    Resource("", "v1", "pods", "Pod", True, ("po",), categories=("all",),
             subresources=("status", "log", "binding", "eviction")),
    Resource("", "v1", "services", "Service", True, ("svc",), categories=("all",),
             subresources=("status",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",),
             categories=("all",), subresources=("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",),
             categories=("all",), subresources=("status", "scale")),
    Resource("batch", "v1", "jobs", "Job", True, (), categories=("all",),
             subresources=("status",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    # Storage-only kinds (no controller): what `helm install` of a small chart and
    # kubectl's generators create. Short names and subresources as kube-apiserver 1.35
    # discovery lists them.
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
             False),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
             subresources=("status",)),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
             ("netpol",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",),
             subresources=("status",)),
    # apiextensions-apiserver: installing a CRD serves its kind (`crds.py`).
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", False, ("crd", "crds"),
             categories=("api-extensions",), subresources=("status",)),
    # Dynamic Resource Allocation, GA (resource.k8s.io/v1) since 1.34 (`dra.py`).
    Resource("resource.k8s.io", "v1", "deviceclasses", "DeviceClass", False),
    Resource("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", True,
             subresources=("status",)),
    Resource("resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate",
             True),
    Resource("resource.k8s.io", "v1", "resourceslices", "ResourceSlice", False),
)

BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
GROUPS: dict[str, str] = {r.group: r.version for r in RESOURCES}


def lookup(kind_or_plural: str) -> Resource:
    """A resource by kind (`Job`), plural (`jobs`) or short name (`deploy`)."""
    low = kind_or_plural.lower()
    for r in RESOURCES:
        if low in (r.kind.lower(), r.plural, *r.short_names):
            return r
    raise KeyError(kind_or_plural)


class Registry:
    """The resources one cluster serves: the built-in table, plus the kinds its
    CustomResourceDefinitions added (`crds.py`). Routing, discovery, OpenAPI and the
    store's garbage collection all ask this, so a CRD's kind exists on its cluster only.
    """

    def __init__(self) -> None:
        self._custom: dict[tuple[str, str, str], Resource] = {}
        self._storage: dict[tuple[str, str], Resource] = {}

    def storage_key(self, res: Resource) -> Resource:
        """Where the store keeps `res`'s objects: one collection for every version of a
        CRD (its objects are served in each, `served_as`), the resource itself else."""
        if not res.custom:
            return res
        return self._storage.get((res.group, res.plural), res)

    def all(self) -> tuple[Resource, ...]:
        return RESOURCES + tuple(self._custom[k] for k in sorted(self._custom))

    def custom(self) -> tuple[Resource, ...]:
        return tuple(self._custom[k] for k in sorted(self._custom))

    def by_path(self, group: str, version: str, plural: str) -> Resource | None:
        return BY_PATH.get((group, version, plural)) or \
            self._custom.get((group, version, plural))

    def lookup(self, kind_or_plural: str) -> Resource:
        """Built-in first (`lookup`), then the custom kinds by kind, plural, short name
        or `plural.group`."""
        try:
            return lookup(kind_or_plural)
        except KeyError:
            pass
        low = kind_or_plural.lower()
        for r in self.custom():
            if low in (r.kind.lower(), r.plural, f"{r.plural}.{r.group}", *r.short_names):
                return r
        raise KeyError(kind_or_plural)

    def add(self, res: Resource) -> None:
        self._custom[(res.group, res.version, res.plural)] = res
        self._storage.setdefault((res.group, res.plural), res)

    def remove(self, res: Resource) -> None:
        key = (res.group, res.version, res.plural)
        if self._custom.get(key) == res:  # not a newer registration of the same path
            del self._custom[key]
        if not any((g, p) == (res.group, res.plural) for g, _, p in self._custom):
            self._storage.pop((res.group, res.plural), None)


def served_as(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored custom object as served in `res`'s version: conversion strategy None
    changes only `apiVersion` (apiextensions-apiserver pkg/apiserver/conversion)."""
    if obj.get("apiVersion") in (None, res.api_version):
        return obj
    return {**obj, "apiVersion": res.api_version}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "127.0.0.1"}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key, highest priority first, as apimachinery's `CompareKubeAwareVersionStrings`
    orders versions: GA > beta > alpha, higher numbers first, then non-kube-like ones
    alphabetically (apimachinery/pkg/version/helpers.go)."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


def _versions(served: Iterable[Resource] | None) -> dict[str, list[str]]:
    """Group -> its served versions, preferred (highest priority) first."""
    out: dict[str, set[str]] = {}
    for r in (RESOURCES if served is None else served):
        out.setdefault(r.group, set()).add(r.version)
    return {g: sorted(vs, key=version_priority) for g, vs in out.items()}


def api_group_list(served: Iterable[Resource] | None = None) -> dict[str, Any]:
    groups = _versions(served)
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, vs) for g, vs in sorted(groups.items()) if g]}


def api_group(name: str, served: Iterable[Resource] | None = None) -> dict[str, Any] | None:
    groups = _versions(served)
    if not name or name not in groups:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, groups[name])}


def resource_list(group: str, version: str, served: Iterable[Resource] | None = None
                  ) -> dict[str, Any] | None:
    """The APIResourceList of one group version, subresources included."""
    items: list[dict[str, Any]] = []
    for r in (RESOURCES if served is None else served):
        if (r.group, r.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": list(r.verbs),
            "storageVersionHash": f"sim-{r.plural}",
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        items.append(entry)
        for sub in r.subresources:
            verbs = {"log": ["get"], "binding": ["create"], "finalize": ["update"],
                     "eviction": ["create"]}.get(sub, ["get", "patch", "update"])
            kind = {"scale": "Scale", "binding": "Binding", "eviction": "Eviction"}.get(
                sub, r.kind)
            sub_entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "",
                                         "namespaced": r.namespaced, "kind": kind,
                                         "verbs": verbs}
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1")
            elif sub == "eviction":
                sub_entry.update(group="policy", version="v1")
            items.append(sub_entry)
    if not items:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": items}


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
            "minCompatibilityMajor": "1", "minCompatibilityMinor": "34",
            "gitVersion": "v1.35.0-aifleet-sim", "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}
