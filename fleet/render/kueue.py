"""The Kueue objects a Kueue cluster gets from the fleet's TeamQuotas. Pure.

On a cluster whose `spec.stack.kueue` is true, aifleet renders (and the controller
applies and keeps free of drift like every owned object):
- a ResourceFlavor per GPU flavour the cluster offers, named after the flavour, whose
  `nodeLabels` select the flavour's product (`nvidia.com/gpu.product`) and, for a spot
  offer, the nodes the Cluster's `spec.spot.nodeSelector` selects, and one
  `aifleet-cpu-memory` flavour for cpu and memory;
- a ClusterQueue per team (named after the team), admitting from the team's namespace
  only, in the TeamQuota's `cohort` (none without one). Its GPU resource group has one
  entry per GPU flavour of the cluster: `nominalQuota` = the TeamQuota's `nominal` for
  that flavour (0 when the TeamQuota does not list it) and `borrowingLimit` = its
  `borrowingLimit` (only in a cohort: Kueue's CEL rule "borrowingLimit must be nil when
  cohort is empty"; unset means no limit, as in the TeamQuota). So the quota a team
  sees on the PR (`fleet.plandiff.TeamUsage`) is the quota Kueue enforces on each
  cluster: the fleet-wide figure bounds what the team may hold on any one cluster,
  and placement keeps the fleet-wide sum. A team with workloads on the cluster but no
  TeamQuota has no limit: its queue's nominal quota is the cluster's GPUs of each
  flavour;
- cpu and memory are covered too, with a quota no cluster reaches (`1000000` cores,
  `1Ei`), because Kueue leaves a Job that requests a resource its ClusterQueue does
  not cover pending (`resource cpu unavailable in ClusterQueue`,
  kubernetes-sigs/kueue `pkg/scheduler/flavorassigner/flavorassigner.go`); aifleet
  rations GPUs only;
- a LocalQueue per team in the team's namespace, named after the team (the
  `kueue.x-k8s.io/queue-name` rendered Jobs carry), pointing at its ClusterQueue.

API: `kueue.x-k8s.io/v1beta2` (the only version Kueue serves since v0.20; fields as in
`apis/kueue/v1beta2/clusterqueue_types.go`: `cohortName`, `resourceGroups[].flavors[].
resources[].nominalQuota`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleet.models import Cluster, GpuOffer, TeamQuota
from fleet.render.keys import (
    GPU_RESOURCE,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    PRODUCT_LABEL,
    team_queue,
)

Manifest = dict[str, Any]
API_VERSION = "kueue.x-k8s.io/v1beta2"
CPU_MEMORY_FLAVOUR = "aifleet-cpu-memory"
UNRATIONED = {"cpu": "1000000", "memory": "1Ei"}
"""cpu and memory quota of every team queue: covered, never the limit."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label the API server sets on every Namespace to its name (1.22+)."""


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {MANAGED_BY: MANAGED_BY_VALUE}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _node_labels(cluster: Cluster, offer: GpuOffer) -> dict[str, str]:
    # A spot offer's nodes also carry the cluster's spot labels (`spec.spot`), as the
    # pods placed there select them (`fleet.render.pod`); Kueue matches a pod's
    # nodeSelector against the flavour's nodeLabels.
    extra = cluster.spec.spot.node_selector if offer.spot else {}
    return dict(sorted({**extra, PRODUCT_LABEL: offer.product}.items()))


def resource_flavours(cluster: Cluster) -> list[Manifest]:
    out = [{"apiVersion": API_VERSION, "kind": "ResourceFlavor",
            "metadata": _meta(CPU_MEMORY_FLAVOUR), "spec": {}}]
    for offer in cluster.spec.gpus:
        out.append({"apiVersion": API_VERSION, "kind": "ResourceFlavor",
                    "metadata": _meta(offer.flavour),
                    "spec": {"nodeLabels": _node_labels(cluster, offer)}})
    return out


def team_quota(quota: TeamQuota | None, flavour: str, unlimited: int
               ) -> tuple[int, int | None]:
    """(nominalQuota, borrowingLimit) of a team's queue for one flavour: the TeamQuota's
    figures (0 and none for a flavour it does not list), or `unlimited` without one."""
    if quota is None:
        return unlimited, None
    q = next((g for g in quota.spec.gpus if g.flavour == flavour), None)
    if q is None:
        return 0, None
    return q.nominal, q.borrowing_limit if quota.spec.cohort is not None else None


def cluster_queue(team: str, cluster: Cluster, quota: TeamQuota | None) -> Manifest:
    gpu_flavours = []
    for offer in cluster.spec.gpus:
        nominal, borrowing = team_quota(quota, offer.flavour, offer.count)
        res: dict[str, Any] = {"name": GPU_RESOURCE, "nominalQuota": nominal}
        if borrowing is not None:
            res["borrowingLimit"] = borrowing
        gpu_flavours.append({"name": offer.flavour, "resources": [res]})
    groups: list[dict[str, Any]] = [{
        "coveredResources": sorted(UNRATIONED),
        "flavors": [{"name": CPU_MEMORY_FLAVOUR, "resources": [
            {"name": r, "nominalQuota": UNRATIONED[r]} for r in sorted(UNRATIONED)]}]}]
    if gpu_flavours:
        groups.append({"coveredResources": [GPU_RESOURCE], "flavors": gpu_flavours})
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: team}},
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": groups,
    }
    if quota is not None and quota.spec.cohort is not None:
        spec["cohortName"] = quota.spec.cohort
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": _meta(team),
            "spec": spec}


def local_queue(team: str) -> Manifest:
    namespace, name = team_queue(team)
    return {"apiVersion": API_VERSION, "kind": "LocalQueue", "metadata": _meta(name, namespace),
            "spec": {"clusterQueue": team}}


def kueue_teams(quotas: Iterable[str], placed_teams: Iterable[str]) -> list[str]:
    """Teams that get a queue on a Kueue cluster: every TeamQuota's, and every team
    with a workload placed there."""
    return sorted(set(quotas) | set(placed_teams))


def kueue_objects(cluster: Cluster, quotas: dict[str, TeamQuota],
                  placed_teams: Iterable[str]) -> list[Manifest]:
    """Every Kueue object of `cluster` (none unless it runs Kueue), in apply order:
    flavours, then each team's ClusterQueue and LocalQueue."""
    if not cluster.spec.stack.kueue:
        return []
    out = resource_flavours(cluster)
    for team in kueue_teams(quotas, placed_teams):
        out.append(cluster_queue(team, cluster, quotas.get(team)))
        out.append(local_queue(team))
    return out
