"""The resource types a simulated cluster serves, and the discovery documents for them.

A `Resource` is one REST collection as the API server's discovery describes it:
group, version, plural name, kind, whether it is namespaced, its verbs and short
names. Discovery (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) is generated from this
one table, so what clients discover is exactly what the server routes. kubectl picks
its REST mapping (`kubectl get deploy`, `jobs.batch`) from these documents alone.
"""

from __future__ import annotations

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

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_generation(self) -> bool:
        """Kinds whose `metadata.generation` the server maintains (spec-carrying)."""
        return self.kind in {"Deployment", "Job", "Pod", "ReplicaSet", "Service"} or \
            self.kind in _GENERATION_KINDS


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


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "127.0.0.1"}]}


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, v) for g, v in sorted(GROUPS.items()) if g]}


def api_group(name: str) -> dict[str, Any] | None:
    if not name or name not in GROUPS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, GROUPS[name])}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group version, subresources included."""
    items: list[dict[str, Any]] = []
    for r in RESOURCES:
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
