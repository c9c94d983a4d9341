"""Minimal CustomResourceDefinitions of Kueue and JobSet, as their releases install them.

Only the fields the simulated controllers read or write are declared; every other
field of the real schema is kept as it comes (`x-kubernetes-preserve-unknown-fields`
on the nodes that hold them), so an object written for the real CRD is accepted.
Names, scope, short names, printer columns and the served/storage versions are the
upstream ones:

- Kueue (kubernetes-sigs/kueue `config/components/crd/bases/kueue.x-k8s.io_*.yaml`,
  types in `apis/kueue/v1beta2/*_types.go`): `kueue.x-k8s.io/v1beta2`, the only
  version Kueue serves since v0.20 ("Kueue no longer serves kueue.x-k8s.io/v1beta1",
  its release notes); ClusterQueue's cohort is `spec.cohortName` in v1beta2.
- JobSet (kubernetes-sigs/jobset `config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml`,
  `api/jobset/v1alpha2/jobset_types.go`): `jobset.x-k8s.io/v1alpha2`.
"""

from __future__ import annotations

from typing import Any

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
JOBSET_GROUP = "jobset.x-k8s.io"
JOBSET_VERSION = "v1alpha2"

Schema = dict[str, Any]
_DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_OPEN: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_QUANTITY: Schema = {"x-kubernetes-int-or-string": True}


def _name_ref() -> Schema:
    return {"type": "string", "maxLength": 253, "pattern": _DNS1123}


def _string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _crd(group: str, version: str, kind: str, plural: str, *, namespaced: bool,
         short: tuple[str, ...], spec: Schema, columns: list[Schema],
         categories: tuple[str, ...] = ()) -> Schema:
    names: Schema = {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                     "singular": kind.lower()}
    if short:
        names["shortNames"] = list(short)
    if categories:
        names["categories"] = list(categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "names": names,
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [{
                "name": version, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec, "status": dict(_OPEN)}}},
            }],
        },
    }


def _col(name: str, path: str, kind: str = "string", priority: int = 0) -> Schema:
    col: Schema = {"name": name, "jsonPath": path, "type": kind}
    if priority:
        col["priority"] = priority
    return col


def resource_flavor() -> Schema:
    spec = {"type": "object", "properties": {
        "nodeLabels": {**_string_map(), "maxProperties": 8},
        "nodeTaints": {"type": "array", "maxItems": 8, "items": _OPEN},
        "tolerations": {"type": "array", "maxItems": 8, "items": _OPEN},
        "topologyName": {"type": "string"},
    }}
    return _crd(KUEUE_GROUP, KUEUE_VERSION, "ResourceFlavor", "resourceflavors",
                namespaced=False, short=("flavor", "flavors", "rf"), spec=spec,
                columns=[_col("Age", ".metadata.creationTimestamp", "date")])


def cluster_queue() -> Schema:
    quota = {"type": "object", "required": ["name", "nominalQuota"], "properties": {
        "name": {"type": "string"}, "nominalQuota": _QUANTITY,
        "borrowingLimit": _QUANTITY, "lendingLimit": _QUANTITY}}
    flavor = {"type": "object", "required": ["name", "resources"], "properties": {
        "name": _name_ref(),
        "resources": {"type": "array", "minItems": 1, "maxItems": 64, "items": quota}}}
    group = {"type": "object", "required": ["coveredResources", "flavors"], "properties": {
        "coveredResources": {"type": "array", "minItems": 1, "maxItems": 64,
                             "items": {"type": "string"}},
        "flavors": {"type": "array", "minItems": 1, "maxItems": 64, "items": flavor}}}
    spec = {"type": "object", "properties": {
        "resourceGroups": {"type": "array", "maxItems": 16, "items": group},
        "cohortName": _name_ref(),
        "queueingStrategy": {"type": "string", "enum": ["StrictFIFO", "BestEffortFIFO"],
                             "default": "BestEffortFIFO"},
        "namespaceSelector": _OPEN,
        "flavorFungibility": _OPEN, "preemption": _OPEN,
        "admissionChecksStrategy": _OPEN, "fairSharing": _OPEN, "admissionScope": _OPEN,
        "stopPolicy": {"type": "string", "enum": ["None", "Hold", "HoldAndDrain"],
                       "default": "None"},
    }}
    return _crd(KUEUE_GROUP, KUEUE_VERSION, "ClusterQueue", "clusterqueues",
                namespaced=False, short=("cq",), spec=spec, columns=[
                    _col("Cohort", ".spec.cohortName"),
                    _col("Strategy", ".spec.queueingStrategy", priority=1),
                    _col("Pending Workloads", ".status.pendingWorkloads", "integer"),
                    _col("Admitted Workloads", ".status.admittedWorkloads", "integer", 1)])


def local_queue() -> Schema:
    spec = {"type": "object", "properties": {
        "clusterQueue": _name_ref(),
        "stopPolicy": {"type": "string", "enum": ["None", "Hold", "HoldAndDrain"],
                       "default": "None"},
    }}
    return _crd(KUEUE_GROUP, KUEUE_VERSION, "LocalQueue", "localqueues", namespaced=True,
                short=("queue", "queues", "lq"), spec=spec, columns=[
                    _col("ClusterQueue", ".spec.clusterQueue"),
                    _col("Pending Workloads", ".status.pendingWorkloads", "integer"),
                    _col("Admitted Workloads", ".status.admittedWorkloads", "integer")])


def workload() -> Schema:
    pod_set = {"type": "object", "required": ["count", "template"], "properties": {
        "name": {"type": "string", "maxLength": 63, "default": "main"},
        "count": {"type": "integer", "minimum": 0, "default": 1},
        "minCount": {"type": "integer"},
        "template": _OPEN, "topologyRequest": _OPEN,
    }}
    spec = {"type": "object", "properties": {
        "podSets": {"type": "array", "minItems": 1, "maxItems": 8, "items": pod_set},
        "queueName": {"type": "string"},
        "priority": {"type": "integer"},
        "priorityClassRef": _OPEN,
        "active": {"type": "boolean", "default": True},
        "maximumExecutionTimeSeconds": {"type": "integer", "minimum": 1},
    }}
    return _crd(KUEUE_GROUP, KUEUE_VERSION, "Workload", "workloads", namespaced=True,
                short=("wl",), spec=spec, columns=[
                    _col("Queue", ".spec.queueName"),
                    _col("Reserved in", ".status.admission.clusterQueue"),
                    _col("Admitted", '.status.conditions[?(@.type=="Admitted")].status'),
                    _col("Finished", '.status.conditions[?(@.type=="Finished")].status'),
                    _col("Age", ".metadata.creationTimestamp", "date")])


def jobset() -> Schema:
    replicated = {"type": "object", "required": ["name", "template"], "properties": {
        "name": {"type": "string", "maxLength": 63},
        "replicas": {"type": "integer", "minimum": 0, "default": 1},
        "groupName": {"type": "string"},
        "dependsOn": {"type": "array", "items": _OPEN},
        "template": _OPEN,
    }}
    spec = {"type": "object", "properties": {
        "replicatedJobs": {"type": "array", "items": replicated},
        "network": {"type": "object", "properties": {
            "enableDNSHostnames": {"type": "boolean"},
            "subdomain": {"type": "string"},
            "publishNotReadyAddresses": {"type": "boolean"}}},
        "successPolicy": {"type": "object", "properties": {
            "operator": {"type": "string", "enum": ["All", "Any"], "default": "All"},
            "targetReplicatedJobs": {"type": "array", "items": {"type": "string"}}}},
        "failurePolicy": _OPEN, "startupPolicy": _OPEN, "coordinator": _OPEN,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
    }}
    return _crd(JOBSET_GROUP, JOBSET_VERSION, "JobSet", "jobsets", namespaced=True,
                short=(), spec=spec, columns=[
                    _col("TerminalState", ".status.terminalState"),
                    _col("Restarts", ".status.restarts"),
                    _col("Completed", '.status.conditions[?(@.type=="Completed")].status'),
                    _col("Suspended", ".spec.suspend"),
                    _col("Age", ".metadata.creationTimestamp", "date")])


def kueue_crds() -> list[Schema]:
    return [resource_flavor(), cluster_queue(), local_queue(), workload()]


def jobset_crds() -> list[Schema]:
    return [jobset()]
