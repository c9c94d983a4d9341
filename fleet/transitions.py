"""What changed for one workload between two plans: one classifier, one vocabulary. Pure.

The plan diff of a pull request, the what-if and the ledger's placement events all ask
the same question -- where did this workload run before, where does it run now, and what
is that called -- and all three answer it here (`transition`).

The vocabulary (`Kind`):

- `Added` / `Removed`: the workload is new in the repo / gone from it;
- `Unchanged`: the same assignments, or Invalid now (the controller keeps an Invalid
  workload as it runs: nothing moves);
- `Placed`: it ran nowhere and is placed now;
- `Pending`: it ran somewhere and is placed nowhere now;
- `Resized`: the same clusters, other replicas or flavours;
- `Moved`: other clusters (it left some, or spread to more);
- `FailedOver`: moved, and a cluster it left does not answer.

Two projections, each defined here and nowhere else: the plan schema's `change` enum
(`docs/spec/plan.schema.json`: Added, Unchanged, Moved, Resized, Removed), which folds
Placed, Pending and FailedOver into Moved (`Transition.plan_change`); and the ledger
event recorded for each cluster a workload arrives on (`Transition.arrival_event`:
FailedOver, Moved, or Placed when it left nothing).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Literal

from fleet.ids import ClusterName
from fleet.placement.types import Assignment, WorkloadPlacement

Kind = Literal["Added", "Removed", "Unchanged", "Placed", "Pending", "Resized", "Moved",
               "FailedOver"]
PlanChange = Literal["Added", "Removed", "Unchanged", "Moved", "Resized"]
ArrivalEvent = Literal["Placed", "Moved", "FailedOver"]

_PLAN_CHANGE: dict[Kind, PlanChange] = {
    "Added": "Added", "Removed": "Removed", "Unchanged": "Unchanged", "Resized": "Resized",
    "Placed": "Moved", "Pending": "Moved", "Moved": "Moved", "FailedOver": "Moved"}


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Kind
    before: tuple[Assignment, ...]
    """Where it ran (sorted); () when nowhere or not in the repo before."""
    after: tuple[Assignment, ...]
    """Where it is placed now (sorted); () when nowhere, Invalid or removed."""
    left: tuple[ClusterName, ...]
    """Clusters it ran on and is not placed on any more (sorted)."""
    arrived: tuple[ClusterName, ...]
    """Clusters it is placed on and did not run on (sorted)."""

    @property
    def plan_change(self) -> PlanChange:
        """The plan schema's `change` (what a pull request's plan diff says)."""
        return _PLAN_CHANGE[self.kind]

    @property
    def arrival_event(self) -> ArrivalEvent | None:
        """The ledger event for each cluster in `arrived`; None when it arrives nowhere."""
        if not self.arrived:
            return None
        if self.kind == "FailedOver":
            return "FailedOver"
        return "Moved" if self.left else "Placed"


def transition(before: Sequence[Assignment] | None, after: WorkloadPlacement | None, *,
               down: Set[ClusterName] = frozenset()) -> Transition:
    """Classify one workload's change.

    `before`: its assignments in the earlier plan (or what runs: the previous plan), None
    when it was not in the repo; `after`: its placement now, None when it is not in the
    repo any more; `down`: clusters that do not answer (leaving one is a failover)."""
    was = tuple(sorted(before or ()))
    now = tuple(sorted(after.assignments)) if after is not None and \
        after.status == "Placed" else ()
    old = {a.cluster for a in was}
    new = {a.cluster for a in now}
    left, arrived = tuple(sorted(old - new)), tuple(sorted(new - old))
    kind = _kind(before, after, was, now, old, new, left, down)
    if kind == "Unchanged" or after is None or after.status == "Invalid":
        left, arrived = (), ()
    return Transition(kind, was, now, left, arrived)


def _kind(before: Sequence[Assignment] | None, after: WorkloadPlacement | None,
          was: tuple[Assignment, ...], now: tuple[Assignment, ...],
          old: set[ClusterName], new: set[ClusterName], left: tuple[ClusterName, ...],
          down: Set[ClusterName]) -> Kind:
    if after is None:
        return "Removed"
    if before is None:
        return "Added"
    if after.status == "Invalid":
        return "Unchanged"  # kept as it runs
    if after.status != "Placed":
        return "Pending" if was else "Unchanged"
    if was == now:
        return "Unchanged"
    if not was:
        return "Placed"
    if old == new:
        return "Resized"
    return "FailedOver" if set(left) & set(down) else "Moved"
