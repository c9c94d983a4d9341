"""What the clusters say, folded into the core's terms: capacity and the previous plan.

Placement is pure and knows nothing of Nodes, Pods or labels. This module turns what
the cluster adapters have learned into its inputs, once per placement cycle:

- `capacity_snapshot`: per cluster of the repo, its nodes as `NodeCapacity` (node
  product -> flavour through the Cluster file's `gpus[].product`; GPUs held by our own
  pods and DRA claims (`NodeState.held_ours`) are `used_by_fleet`, never
  `used_by_others`, so a re-plan keeps running workloads
  where they are and never double-books a GPU), the cluster's health and how long it has
  been Unreachable; on a Kueue cluster its ClusterQueues' GPU quota per fleet flavour and
  our LocalQueues (`kueue_capacity`). With a fleet-wide failover grace (`--failover-grace`), the
  unreachable time is reported as "past every toleration" once the grace is over and
  as zero before, so that one number overrides each workload's toleration.
- `previous_from_live`: after a restart, the plan that is live, read back from the owned
  Jobs and Deployments of every cluster (workload label, replicas, GPU product -> flavour),
  so the first plan of the new process moves nothing.

Plain functions over plain inputs: testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusters.capacity import KueueView, NodeState
from clusters.inventory import LivePlacement
from fleet.capacity import (
    CapacitySnapshot,
    ClusterCapacity,
    ClusterHealth,
    ClusterQueueCapacity,
    KueueCapacity,
    NodeCapacity,
    QueueQuota,
)
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.models import Cluster
from fleet.placement.types import Assignment, PreviousPlan
from fleet.render import intent_hash, workload_id_of_label
from fleet.spec import FleetSpec

PAST_EVERY_GRACE = 10.0**9
"""Unreachable seconds reported once a fleet-wide failover grace is over."""


def flavour_of_product(cluster: Cluster, product: str | None) -> Flavour | None:
    for offer in cluster.spec.gpus:
        if product is not None and offer.product == product:
            return Flavour(offer.flavour)
    return None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one adapter knows, as the snapshot needs it."""

    health: ClusterHealth
    unreachable_for: float | None
    """Seconds the cluster has been Unreachable (None while it answers)."""
    nodes: tuple[NodeState, ...] = ()
    kueue: KueueView | None = None
    """Kueue's queues where the cluster serves Kueue (`ClusterAdapter.kueue_queues`)."""


def kueue_capacity(cluster: Cluster, view: KueueView) -> KueueCapacity:
    """A Kueue cluster's queues in fleet flavours: a ResourceFlavor is the flavour it is
    named after when the cluster offers one of that name (as aifleet renders them,
    `fleet.render.kueue`), else the flavour of the product its nodeLabels select; a
    ResourceFlavor of neither is left out (no fleet workload asks for it). Where two of
    one queue map to one flavour, the first the queue lists counts (Kueue tries its
    flavours in order)."""
    offered = {o.flavour for o in cluster.spec.gpus}
    queues: dict[str, ClusterQueueCapacity] = {}
    for q in view.cluster_queues:
        flavours: dict[Flavour, QueueQuota] = {}
        for rf, product, quota, others, ours in q.flavours:
            flavour = Flavour(rf) if rf in offered else flavour_of_product(cluster, product)
            if flavour is None or flavour in flavours:
                continue
            flavours[flavour] = QueueQuota(quota.nominal, quota.borrowing_limit,
                                           quota.lending_limit, others, ours)
        queues[q.name] = ClusterQueueCapacity(q.name, q.cohort, dict(sorted(flavours.items())))
    return KueueCapacity(queues, dict(view.local_queues))


def cluster_capacity(cluster: Cluster, view: ClusterView | None,
                     failover_grace: float | None = None) -> ClusterCapacity:
    name = ClusterName(cluster.name)
    if view is None:
        return ClusterCapacity(name, "Unknown", None, ())
    nodes: list[NodeCapacity] = []
    for n in sorted(view.nodes, key=lambda n: n.name):
        flavour = flavour_of_product(cluster, n.gpu_product)
        if flavour is None or n.gpus <= 0:
            continue  # not a GPU node of a flavour this cluster offers
        nodes.append(NodeCapacity(
            name=n.name, flavour=flavour, gpus=n.gpus,
            used_by_others=max(0, n.held - n.held_ours), used_by_fleet=n.held_ours,
            schedulable=n.ready and not n.unschedulable))
    unreachable = view.unreachable_for if view.health == "Unreachable" else None
    if unreachable is not None and failover_grace is not None:
        unreachable = PAST_EVERY_GRACE if unreachable >= failover_grace else 0.0
    kueue = kueue_capacity(cluster, view.kueue) if view.kueue is not None else None
    return ClusterCapacity(name, view.health, unreachable, tuple(nodes), kueue)


def capacity_snapshot(clusters: Mapping[ClusterName, Cluster],
                      views: Mapping[str, ClusterView],
                      failover_grace: float | None = None) -> CapacitySnapshot:
    """The fleet's capacity as placement sees it; a cluster without a view is Unknown."""
    return CapacitySnapshot({
        name: cluster_capacity(c, views.get(name), failover_grace)
        for name, c in sorted(clusters.items())})


def previous_from_live(clusters: Mapping[ClusterName, Cluster],
                       live: Mapping[str, Mapping[str, LivePlacement]]) -> PreviousPlan:
    """The plan that runs, rebuilt from owned objects: per workload, where and how much.

    `live` is per cluster name, `ClusterAdapter.live_workloads()`. A copy whose product
    is not one the cluster offers (edited out of band, or the Cluster file changed) is
    left out: placement then decides afresh for it rather than trusting a guess.
    """
    out: dict[WorkloadId, list[Assignment]] = {}
    for cname in sorted(live):
        cluster = clusters.get(ClusterName(cname))
        if cluster is None:
            continue
        for label, lp in sorted(live[cname].items()):
            flavour = flavour_of_product(cluster, lp.product)
            if flavour is None or lp.replicas < 1:
                continue
            out.setdefault(workload_id_of_label(label), []).append(
                Assignment(ClusterName(cname), flavour, lp.replicas, lp.gpus_per_replica))
    return {wid: tuple(sorted(a)) for wid, a in sorted(out.items())}


def decision_fields(spec: FleetSpec | None, wid: str, cluster: str | None) -> dict[str, Any]:
    """What every ledger record of a workload carries besides its event, from the spec in
    force: the effective dataClass (the policy default when the Workload names none),
    the intent hash, the policy version, and the cluster's jurisdiction at this moment.
    An auditor then proves residency from the record itself, not from today's repo."""
    if spec is None:
        return {}
    out: dict[str, Any] = {"policy_version": spec.residency.version}
    w = spec.workloads.get(WorkloadId(wid))
    if w is not None:
        out["data_class"] = spec.residency.data_class_of(w.spec.placement.data_class)
        out["intent_hash"] = intent_hash(w)
    c = spec.clusters.get(ClusterName(cluster)) if cluster else None
    if c is not None:
        out["jurisdiction"] = c.spec.jurisdiction
    return out
