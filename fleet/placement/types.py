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
- A Pending workload's `reasons` are a `Diagnosis`: the summary line, then one Reason
  per cluster that refused it, in cluster order, read like a tuple but kept by cause
  (`Refusal`: one message and rule, the clusters it refused), so a plan does not grow
  with clusters x Pending workloads (issue 22; docs/placement.md "Pending diagnosis").
- `PreviousPlan` is what runs now, by workload id: the input of stickiness. The
  controller builds it from its last plan, or after a restart from the live objects.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from typing import Literal, overload

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
class Refusal:
    """One cause of a diagnosis: the Reason (message, rule) of every cluster in
    `clusters` (sorted), which the workload's filters refused for it."""

    message: str
    rule: str | None
    clusters: tuple[ClusterName, ...]

    def __reduce__(self) -> tuple[object, ...]:
        return (Refusal, (self.message, self.rule, self.clusters))  # see Assignment


class Diagnosis(Sequence[Reason]):
    """Why a workload is Pending, kept by cause: the `lead` reasons as they are (why it
    could not stay where it ran, the summary line), then per cluster that refused it
    one `Reason(message, cluster, rule)` of its `Refusal`, in cluster order.

    It reads as the tuple of those Reasons (iteration, `len`, indexing, slicing, and
    equality and hash with an equal tuple), built as read, so what it holds grows with
    the causes, not the clusters: with every cluster Unknown (a cold start) or a full
    fleet, one Reason per cluster per Pending workload had been clusters x workloads of
    them, ~400 MiB of tuple slots at 1,000 x 50,000 (Reasons of static filters were
    shared), several GiB more where each was a capacity verdict of its own, pickled
    again by the placement worker. The planner shares equal refusals and diagnoses
    (`fleet.placement.diagnose`), so a pickled plan holds each once."""

    __slots__ = ("_refused", "lead", "refusals")

    lead: tuple[Reason, ...]
    refusals: tuple[Refusal, ...]
    _refused: int

    def __init__(self, lead: tuple[Reason, ...], refusals: tuple[Refusal, ...]) -> None:
        set_ = object.__setattr__  # frozen, as the dataclasses around it
        set_(self, "lead", lead)
        set_(self, "refusals", refusals)
        set_(self, "_refused", sum(len(r.clusters) for r in refusals))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Diagnosis is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Diagnosis is frozen: cannot delete {name}")

    def __reduce__(self) -> tuple[object, ...]:
        return (Diagnosis, (self.lead, self.refusals))

    def __repr__(self) -> str:
        return f"Diagnosis({self.lead!r}, {self.refusals!r})"

    def __len__(self) -> int:
        return len(self.lead) + self._refused

    @property
    def refused(self) -> int:
        """How many clusters refused the workload (the Reasons after `lead`)."""
        return self._refused

    def refusing(self) -> Iterator[Reason]:
        """The Reasons of the clusters that refused it, in cluster order, made as read."""
        # a cluster is in one refusal only, so the merge never compares two refusals
        return (Reason(r.message, c, r.rule) for c, r in self._merged())

    def _merged(self) -> Iterator[tuple[ClusterName, Refusal]]:
        rs = self.refusals
        if len(rs) == 1:
            return zip(rs[0].clusters, repeat(rs[0]))
        return heapq.merge(*(zip(r.clusters, repeat(r)) for r in rs))

    def refusal_of(self, cluster: ClusterName) -> Reason | None:
        """The Reason of this cluster's refusal, or None: without making the others."""
        for r in self.refusals:
            i = bisect_left(r.clusters, cluster)
            if i < len(r.clusters) and r.clusters[i] == cluster:
                return Reason(r.message, cluster, r.rule)
        return None

    def __iter__(self) -> Iterator[Reason]:
        yield from self.lead
        yield from self.refusing()

    @overload
    def __getitem__(self, i: int) -> Reason: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Reason, ...]: ...

    def __getitem__(self, i: int | slice) -> Reason | tuple[Reason, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        n = len(self)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError("Diagnosis index out of range")
        if j < len(self.lead):
            return self.lead[j]
        return next(islice(self.refusing(), j - len(self.lead), None))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Diagnosis):
            if len(self) != len(other):
                return False
            if self.lead == other.lead and self.refusals == other.refusals:
                return True
            # grouped otherwise: compare what they read as, without making Reasons
            return all(a == b for a, b in zip(self._items(), other._items(), strict=True))
        if not isinstance(other, tuple):
            return NotImplemented
        return len(self) == len(other) and all(
            a == b for a, b in zip(self, other, strict=True))

    def _items(self) -> Iterator[tuple[str, ClusterName | None, str | None]]:
        for r in self.lead:
            yield r.message, r.cluster, r.rule
        for c, g in self._merged():
            yield g.message, c, g.rule

    def __hash__(self) -> int:
        return hash(tuple(self))  # equal to an equal tuple, so hashed as one


def reasons_about(reasons: Sequence[Reason], cluster: ClusterName) -> tuple[Reason, ...]:
    """The reasons about one cluster, in order; of a Diagnosis without making the
    Reasons of the other clusters."""
    if isinstance(reasons, Diagnosis):
        found = reasons.refusal_of(cluster)
        return (*(r for r in reasons.lead if r.cluster == cluster),
                *((found,) if found is not None else ()))
    return tuple(r for r in reasons if r.cluster == cluster)


def fleetwide(reasons: Sequence[Reason]) -> tuple[Reason, ...]:
    """The reasons about no one cluster (a diagnosis line, why it could not stay as a
    whole), in order; of a Diagnosis, read from its lead only."""
    return tuple(r for r in (reasons.lead if isinstance(reasons, Diagnosis) else reasons)
                 if r.cluster is None)


def prepend(first: Sequence[Reason], reasons: Sequence[Reason]) -> Sequence[Reason]:
    """`first`, then `reasons`: a Diagnosis stays one (its lead grows)."""
    if not first:
        return reasons
    if isinstance(reasons, Diagnosis):
        return Diagnosis((*first, *reasons.lead), reasons.refusals)
    return (*first, *reasons)


@dataclass(frozen=True, slots=True)
class WorkloadPlacement:
    id: WorkloadId
    status: PlacementStatus
    assignments: tuple[Assignment, ...] = ()
    reasons: Sequence[Reason] = ()
    """A tuple, or for a Pending workload a `Diagnosis` (reads as one)."""

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
