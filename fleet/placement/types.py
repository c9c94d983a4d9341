"""What placement returns: a `Plan`, per workload its status, assignments and reasons.

These types are the contract between the placement core and everything that consumes a
plan (rendering, the controller, `fleet plan`, plan diffs, the ledger). Plain frozen
dataclasses, so a plan can be compared, hashed and serialised deterministically.

- An `Assignment` is one cluster's share of a workload: `replicas` pods of one flavour.
  A gang workload has exactly one; an inference workload with `spread` may have several
  (one per cluster); a Pending or Invalid workload has none.
- A `Reason` says why a cluster was chosen or filtered out (`cluster` set), or why the
  workload is Pending (`cluster` None, the diagnosis line). `rule` names the filter or
  scorer: Residency, Selector, Taint, Health, Cordon, Flavour, Capacity, Gang, KueueQueue, Quota,
  Spread, Sticky, Invalid, and Degraded (`DEGRADED`).
- `PreviousPlan` is what runs now, by workload id: the input of stickiness. The
  controller builds it from its last plan, or after a restart from the live objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from fleet.ids import ClusterName, Flavour, WorkloadId

PlacementStatus = Literal["Placed", "Pending", "Invalid"]

KEPT = "Sticky"
"""The rule of a Reason of the keep phase: kept where it runs, or why its shape (replicas,
GPUs per replica) no longer matches what runs."""
CHOSEN = "Score"
"""The rule of the Reason of a cluster chosen by score."""
SPREAD = "Spread"
"""The rule of a spread workload's Reasons: a chosen cluster's share, or why the clusters
it runs on or could run on do not make a spread."""
GONE = "Health"
"""The rule of a running workload's Reason when its cluster is gone from the repo."""
DROPPED = "Flavour"
"""The rule of a running workload's Reason when its flavour left the workload's list."""

DEGRADED = "Degraded"
"""The rule of the first Reason of a placement that keeps fewer clusters or replicas
than the workload asks for, because that is what is left where it runs (a spread
workload that lost a cluster): Placed, not Pending, so its surviving copies stay."""


@dataclass(frozen=True, slots=True, order=True)
class Assignment:
    cluster: ClusterName
    flavour: Flavour
    replicas: int
    gpus_per_replica: int

    def __reduce__(self) -> tuple[object, ...]:
        # Slotted dataclasses pickle through dataclasses.fields() per object; a plan
        # of 10,000 workloads crosses a pipe and sits in a cache: by value, ~3x faster.
        return (Assignment, (self.cluster, self.flavour, self.replicas, self.gpus_per_replica))

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


@dataclass(frozen=True, slots=True)
class Reason:
    message: str
    cluster: ClusterName | None = None
    rule: str | None = None

    def __reduce__(self) -> tuple[object, ...]:
        return (Reason, (self.message, self.cluster, self.rule))  # see Assignment


@dataclass(frozen=True, slots=True)
class WorkloadPlacement:
    id: WorkloadId
    status: PlacementStatus
    assignments: tuple[Assignment, ...] = ()
    reasons: tuple[Reason, ...] = ()

    def __reduce__(self) -> tuple[object, ...]:
        return (WorkloadPlacement, (self.id, self.status, self.assignments, self.reasons))

    @property
    def clusters(self) -> tuple[ClusterName, ...]:
        return tuple(a.cluster for a in self.assignments)


@dataclass(frozen=True, slots=True)
class FlavourUsage:
    capacity: int
    allocated: int

    def __reduce__(self) -> tuple[object, ...]:
        return (FlavourUsage, (self.capacity, self.allocated))


@dataclass(frozen=True, slots=True)
class Plan:
    commit: str | None
    workloads: Mapping[WorkloadId, WorkloadPlacement]
    """Every workload of the spec, valid or not, sorted by id."""
    usage: Mapping[ClusterName, Mapping[Flavour, FlavourUsage]] = field(default_factory=dict)
    """Per cluster and flavour, GPU capacity and what this plan allocates there."""
    capacity_digest: str = ""
    """`CapacitySnapshot.digest()` of the capacity planned with (stale-plan detection)."""
    policy_version: str = ""
    """`Residency.version` of the policy in force (ledger, audit)."""


PreviousPlan = Mapping[WorkloadId, tuple[Assignment, ...]]
