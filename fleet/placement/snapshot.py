"""The frozen view of the fleet one placement pass works on, with its indexes.

Built once per (spec, capacity): per cluster the facts every filter needs (jurisdiction,
labels, taints, cordon, health, offers and prices) in one small object, the initial free
GPUs of every node per (cluster, flavour), and two indexes -- clusters by flavour and
clusters by jurisdiction -- so the candidates of a workload are an intersection of two
precomputed sets and the work per decision grows with the clusters that survive, not
with the size of the fleet (Karmada schedules on `schedulerCache.Snapshot()` the same
way). Nodes of a flavour the Cluster file does not offer are ignored: a flavour is a
fleet-wide name that only the repo defines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.capacity import (
    CapacitySnapshot,
    ClusterHealth,
    ClusterQueueCapacity,
    KueueCapacity,
    QueueQuota,
)
from fleet.ids import ClusterName, Flavour, Team
from fleet.models import FlavourQuota, GpuOffer, Taint
from fleet.placement.queues import Queues
from fleet.spec import FleetSpec

NodeKey = tuple[ClusterName, Flavour]


def histogram(frees: Iterable[int]) -> tuple[int, ...]:
    """Free GPUs per node -> how many nodes have each free-GPU value."""
    values = list(frees)
    h = [0] * (max(values, default=0) + 1)
    for v in values:
        h[v] += 1
    return tuple(h)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    name: ClusterName
    region: str
    jurisdiction: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    cordoned: bool
    health: ClusterHealth
    unreachable_seconds: float | None
    offers: Mapping[Flavour, GpuOffer]
    price_score: Mapping[Flavour, int]
    """0..100 per flavour: 100 is the cheapest GPU-hour of the fleet, 0 the dearest or
    unpriced (an unknown price is never treated as cheap)."""

    @property
    def seen(self) -> bool:
        """Whether its nodes are seen now (Healthy or Degraded): what runs on an
        Unreachable or Unknown cluster is not checked against nodes nobody can see."""
        return self.health in ("Healthy", "Degraded")


@dataclass(frozen=True, slots=True)
class QuotaRule:
    team: Team
    cohort: str | None
    limits: Mapping[Flavour, FlavourQuota]


@dataclass(slots=True)
class Snapshot:
    clusters: Mapping[ClusterName, ClusterInfo]
    nodes: Mapping[NodeKey, tuple[int, ...]]
    """Per (cluster, flavour), nodes by free GPUs (`fleet.placement.state.histogram`)
    before anything is placed."""
    capacity: Mapping[NodeKey, int]
    """Allocatable GPUs per (cluster, flavour), schedulable or not (for reports)."""
    by_flavour: Mapping[Flavour, frozenset[ClusterName]]
    by_jurisdiction: Mapping[str, frozenset[ClusterName]]
    quotas: Mapping[Team, QuotaRule]
    cohorts: Mapping[str, tuple[Team, ...]]
    names: tuple[ClusterName, ...] = ()
    min_capacity: Mapping[Flavour, int] = field(default_factory=dict)
    """Per flavour, the smallest non-zero capacity of a cluster offering it."""
    queues: Queues = field(default_factory=lambda: Queues({}, {}))
    """The Kueue clusters' team queues (`fleet.placement.queues`)."""
    _allowed: dict[str, frozenset[ClusterName]] = field(default_factory=dict)

    def allowed_clusters(self, spec: FleetSpec, data_class: str | None) -> frozenset[ClusterName]:
        """Clusters whose jurisdiction the dataClass allows (fail closed), cached."""
        name = spec.residency.data_class_of(data_class)
        key = name or ""
        found = self._allowed.get(key)
        if found is None:
            out: set[ClusterName] = set()
            for jur, names in self.by_jurisdiction.items():
                if spec.residency.allows(name, jur):
                    out |= names
            found = self._allowed[key] = frozenset(out)
        return found


def build_snapshot(spec: FleetSpec, capacity: CapacitySnapshot) -> Snapshot:
    prices = [o.price_per_hour for c in spec.clusters.values() for o in c.spec.gpus
              if o.price_per_hour is not None]
    lo, hi = (min(prices), max(prices)) if prices else (0.0, 0.0)

    clusters: dict[ClusterName, ClusterInfo] = {}
    nodes: dict[NodeKey, tuple[int, ...]] = {}
    cap: dict[NodeKey, int] = {}
    by_flavour: dict[Flavour, set[ClusterName]] = {}
    by_jur: dict[str, set[ClusterName]] = {}
    kueue: dict[ClusterName, KueueCapacity] = {}
    for name, c in sorted(spec.clusters.items()):
        live = capacity.get(name)
        if live.kueue is not None and c.spec.stack.kueue:
            kueue[name] = live.kueue  # only there are Jobs rendered for Kueue to queue
        offers = {Flavour(o.flavour): o for o in c.spec.gpus}
        price_score = {f: _price_score(o.price_per_hour, lo, hi) for f, o in offers.items()}
        clusters[name] = ClusterInfo(
            name=name, region=c.spec.region, jurisdiction=c.spec.jurisdiction,
            labels=dict(c.metadata.labels), taints=c.spec.taints, cordoned=c.spec.cordoned,
            health=live.health, unreachable_seconds=live.unreachable_seconds,
            offers=offers, price_score=price_score)
        by_jur.setdefault(c.spec.jurisdiction, set()).add(name)
        per_flavour = live.flavours()
        for f in sorted(offers):
            by_flavour.setdefault(f, set()).add(name)
            ns = per_flavour.get(f, ())
            nodes[(name, f)] = histogram(n.free for n in ns)
            cap[(name, f)] = sum(n.gpus for n in ns)

    quotas = {t: QuotaRule(t, q.spec.cohort, {Flavour(g.flavour): g for g in q.spec.gpus})
              for t, q in sorted(spec.quotas.items())}
    cohorts: dict[str, list[Team]] = {}
    for t, rule in quotas.items():
        if rule.cohort is not None:
            cohorts.setdefault(rule.cohort, []).append(t)
    return Snapshot(
        clusters=clusters, nodes=nodes, capacity=cap,
        by_flavour={f: frozenset(v) for f, v in sorted(by_flavour.items())},
        by_jurisdiction={j: frozenset(v) for j, v in sorted(by_jur.items())},
        quotas=quotas,
        cohorts={k: tuple(sorted(v)) for k, v in sorted(cohorts.items())},
        names=tuple(clusters),
        min_capacity={f: min((v for (_, g), v in cap.items() if g == f and v > 0), default=0)
                      for f in sorted(by_flavour)},
        queues=Queues(kueue, expected_queues(quotas)))


def expected_queues(quotas: Mapping[Team, QuotaRule]) -> dict[Team, ClusterQueueCapacity]:
    """Per TeamQuota, the GPU side of the ClusterQueue aifleet renders for the team on
    a Kueue cluster (`fleet.render.kueue.cluster_queue`: named after the team, in its
    cohort, nominal and, in a cohort, borrowing limit per flavour; nothing of it used
    yet): what a cluster not synced yet is about to get."""
    return {t: ClusterQueueCapacity(t, rule.cohort, {
        f: QueueQuota(q.nominal, q.borrowing_limit if rule.cohort is not None else None)
        for f, q in sorted(rule.limits.items())}) for t, rule in sorted(quotas.items())}


def _price_score(price: float | None, lo: float, hi: float) -> int:
    if price is None:
        return 0
    if hi <= lo:
        return 100
    return round(100 * (hi - price) / (hi - lo))

