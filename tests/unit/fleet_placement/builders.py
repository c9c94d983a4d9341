"""Builders of fleet specs in memory (models validated as the loader does), for tests.

Placement tests and property tests build thousands of fleets; going through Git and
YAML for each would make the suite minutes long, and what is under test is the core,
which only ever sees a `FleetSpec`.
"""

from __future__ import annotations

from typing import Any

from fleet.capacity import CapacitySnapshot, ClusterCapacity, NodeCapacity, declared_capacity
from fleet.diagnostics import SourceRef
from fleet.ids import ClusterName, Flavour
from fleet.models import Cluster, Document, ResidencyPolicy, TeamQuota, Workload
from fleet.spec import FleetSpec, assemble

API = "aifleet.dev/v1alpha1"


def cluster(name: str, jurisdiction: str = "DE",
            offers: tuple[tuple[str, int, int], ...] = (("h100-80gb", 16, 8),), *,
            prices: dict[str, float] | None = None, labels: dict[str, str] | None = None,
            taints: list[dict[str, Any]] | None = None, cordoned: bool = False,
            stack: dict[str, Any] | None = None) -> Cluster:
    return Cluster.model_validate({
        "apiVersion": API, "kind": "Cluster",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"region": f"r-{name}", "jurisdiction": jurisdiction,
                 "gpus": [{"flavour": f, "product": f"NVIDIA-{f.upper()}", "count": count,
                           "perNode": per,
                           **({"pricePerHour": prices[f]} if prices and f in prices else {})}
                          for f, count, per in offers],
                 "taints": taints or [], "cordoned": cordoned,
                 **({"stack": stack} if stack else {})}})


def policy() -> ResidencyPolicy:
    return ResidencyPolicy.model_validate({
        "apiVersion": API, "kind": "ResidencyPolicy", "metadata": {"name": "default"},
        "spec": {"dataClasses": {"public": {"allowed": ["*"]},
                                 "eu-personal": {"allowed": ["EU"]},
                                 "us-phi": {"allowed": ["US"]},
                                 "br-personal": {"allowed": ["BR"]}},
                 "default": "public"}})


def quota(team: str, *limits: tuple[str, int, int | None], cohort: str | None = None
          ) -> TeamQuota:
    return TeamQuota.model_validate({
        "apiVersion": API, "kind": "TeamQuota", "metadata": {"name": team},
        "spec": {**({"cohort": cohort} if cohort else {}),
                 "gpus": [{"flavour": f, "nominal": n,
                           **({"borrowingLimit": b} if b is not None else {})}
                          for f, n, b in limits]}})


def workload(name: str, team: str = "nlp-team", *, wtype: str = "training",
             replicas: int = 1, count: int = 8, flavours: tuple[str, ...] = ("h100-80gb",),
             data_class: str | None = "public", priority: int = 0,
             placement: dict[str, Any] | None = None, **spec: Any) -> Workload:
    p: dict[str, Any] = {**({"dataClass": data_class} if data_class else {}),
                         **(placement or {})}
    return Workload.model_validate({
        "apiVersion": API, "kind": "Workload",
        "metadata": {"name": name, "namespace": team},
        "spec": {"type": wtype, "image": "registry.internal/x:1", "replicas": replicas,
                 "resources": {"gpu": {"count": count, "flavours": list(flavours)}},
                 "placement": p, "priority": priority, **spec}})


def fleet(*docs: Document) -> FleetSpec:
    """A spec of these documents plus the default residency policy."""
    items: list[tuple[Document, SourceRef]] = [(policy(), SourceRef("policies/r.yaml", 1, {}))]
    for i, d in enumerate(docs):
        items.append((d, SourceRef(f"doc{i}.yaml", 1, {})))
    return assemble(items)


def declared(spec: FleetSpec) -> CapacitySnapshot:
    return declared_capacity(spec.clusters)


def with_health(cap: CapacitySnapshot, name: str, health: str,
                unreachable: float | None = None) -> CapacitySnapshot:
    c = cap.clusters[ClusterName(name)]
    clusters = dict(cap.clusters)
    clusters[ClusterName(name)] = ClusterCapacity(c.name, health,  # type: ignore[arg-type]
                                                  unreachable, c.nodes)
    return CapacitySnapshot(clusters)


def with_nodes(cap: CapacitySnapshot, name: str, flavour: str, frees: list[int],
               gpus: int = 8) -> CapacitySnapshot:
    """Replace a cluster's nodes of one flavour: each node `gpus`, `gpus - free` used."""
    c = cap.clusters[ClusterName(name)]
    others = tuple(n for n in c.nodes if n.flavour != flavour)
    nodes = tuple(NodeCapacity(f"{name}-{flavour}-{i}", Flavour(flavour), gpus, gpus - free)
                  for i, free in enumerate(frees))
    clusters = dict(cap.clusters)
    clusters[ClusterName(name)] = ClusterCapacity(c.name, c.health, c.unreachable_seconds,
                                                  tuple(sorted(others + nodes,
                                                               key=lambda n: n.name)))
    return CapacitySnapshot(clusters)
