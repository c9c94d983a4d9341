"""What placement needs of one workload, computed once per decision.

A `WorkloadContext` flattens the Workload model into the few fields filters and scorers
read on every candidate (pydantic attribute chains are slow in a hot loop), plus what
the pass knows about it: where it runs now (`previous`) and whether it is being judged
for *keeping* what runs (`keep`: the sticky phase, where cordon and NoSchedule taints do
not evict and an Unreachable cluster is kept until the grace runs out) or for a *new*
placement. `Candidate` is one (cluster, flavour) option.

`static_key` holds what every static plugin reads (its `key(w)`), set by the planner's
plugins; workloads that share it share one cached list of candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from fleet.ids import ClusterName, Flavour, Team, WorkloadId
from fleet.models import (
    DEFAULT_SPOT,
    LabelSelector,
    SpotRule,
    Toleration,
    Workload,
)
from fleet.placement.types import Assignment

StaticKey = tuple[tuple[Flavour, ...], Hashable, Hashable]
"""(flavours, the static filters' keys, the static scorers' keys), in profile order."""


@dataclass(frozen=True, slots=True)
class Candidate:
    cluster: ClusterName
    flavour: Flavour
    rank: int
    """Index of the flavour in the workload's preference list."""


@dataclass(frozen=True, slots=True)
class WorkloadContext:
    id: WorkloadId
    team: Team
    priority: int
    replicas: int
    count: int
    flavours: tuple[Flavour, ...]
    data_class: str | None
    selector: LabelSelector | None
    only_clusters: frozenset[str]
    tolerations: tuple[Toleration, ...]
    gang: bool
    min_clusters: int
    max_clusters: int
    grace_seconds: int
    spot: SpotRule
    previous: tuple[Assignment, ...]
    keep: bool = False
    static_key: StaticKey = ((), (), ())
    queued: bool = False
    """Its Jobs/JobSets wait in its team's Kueue queue on a Kueue cluster (types
    training and batch; a Deployment is not queued)."""

    @property
    def previous_clusters(self) -> frozenset[ClusterName]:
        return frozenset(a.cluster for a in self.previous)

    @property
    def spread(self) -> bool:
        return self.max_clusters > 1

    def replicas_needed(self, cluster: ClusterName) -> int:
        """Replicas that must fit on one cluster for it to be an option."""
        if self.keep:
            return sum(a.replicas for a in self.previous if a.cluster == cluster)
        return 1 if self.spread else self.replicas

    def with_keep(self, keep: bool) -> WorkloadContext:
        return self.rebound(self.previous, keep)

    def rebound(self, previous: tuple[Assignment, ...], keep: bool) -> WorkloadContext:
        """The same workload running elsewhere and/or judged for keeping: nothing else
        in a context depends on where it runs, so planners reuse the rest."""
        return WorkloadContext(
            self.id, self.team, self.priority, self.replicas, self.count, self.flavours,
            self.data_class, self.selector, self.only_clusters, self.tolerations, self.gang,
            self.min_clusters, self.max_clusters, self.grace_seconds, self.spot, previous,
            keep, self.static_key, self.queued)



NOWHERE: frozenset[str] = frozenset()
"""`only_clusters` of a workload that names none (shared: one object, not one each)."""


def workload_context(w: Workload, previous: tuple[Assignment, ...] = (),
                     key_of: Callable[[WorkloadContext], StaticKey] | None = None
                     ) -> WorkloadContext:
    """The context of `w`; with `key_of`, its `static_key` too (set once on the new
    object, as a frozen dataclass's `__post_init__` would: the key reads the context)."""
    s = w.spec
    p = s.placement
    gang = s.gang
    spread = p.spread if (not gang and p.spread is not None) else None
    ctx = WorkloadContext(
        id=w.id, team=w.team, priority=s.priority, replicas=s.replicas,
        count=s.resources.gpu.count,
        flavours=s.resources.gpu.flavours,  # type: ignore[arg-type]  # str is a Flavour
        data_class=p.data_class, selector=p.cluster_selector,
        only_clusters=frozenset(p.clusters) if p.clusters else NOWHERE,
        tolerations=p.tolerations, gang=gang,
        min_clusters=spread.min_clusters if spread else 1,
        max_clusters=min(spread.max_clusters, s.replicas) if spread else 1,
        grace_seconds=s.unreachable_grace_seconds, spot=p.spot or DEFAULT_SPOT,
        previous=previous, queued=s.type != "inference")
    if key_of is not None:
        object.__setattr__(ctx, "static_key", key_of(ctx))
    return ctx
