"""The controller's placement function: a full plan, or an incremental re-plan when only
workloads changed since the last one.

The controller plans on every commit, capacity or health change and resync. A full pass
grows with the fleet; `fleet.placement.IncrementalPlanner` gives the same
plan (a property test checks it equals a full one) re-deciding only what a change
touches, in milliseconds, as long as the fleet's snapshot (clusters, policy, quotas,
capacity) is the one it recorded. So:

- same snapshot as the recorded run: `replan` (the common case for a commit that edits
  workloads on a steady fleet);
- a snapshot seen twice in a row (the fleet has settled): record a new baseline
  (recording costs more than a plain plan, so it is not paid while capacity moves on
  every pass);
- otherwise: a plain full plan.

"Same snapshot" is what placement reads of it (`fleet.planning.placement_key`, the
one definition of "same capacity"): GPUs held by the
fleet's own pods are informational, so the fleet's own pods starting do not count as
a capacity change; nodes, other tenants' pods, health and unreachable time do.

After `rebase_after` re-plans the baseline is recorded again, so the work of a re-plan
stays proportional to the change since a recent baseline, not since the first.
Not thread-safe: the Manager calls it from one worker thread at a time.
"""

from __future__ import annotations

from fleet.capacity import CapacitySnapshot
from fleet.placement import IncrementalPlanner, place
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placement_key
from fleet.spec import FleetSpec

__all__ = ["Replanner", "placement_key"]


class Replanner:
    def __init__(self, *, rebase_after: int = 50) -> None:
        self.rebase_after = rebase_after
        self._inc: IncrementalPlanner | None = None
        self._replans = 0
        self._inc_key: CapacitySnapshot | None = None
        self._last_key: CapacitySnapshot | None = None
        self.counts = {"full": 0, "baseline": 0, "incremental": 0}
        """How each plan was made (for metrics and tests)."""

    def __call__(self, spec: FleetSpec, capacity: CapacitySnapshot,
                 previous: PreviousPlan | None = None, *, commit: str | None = None) -> Plan:
        inc = self._inc
        key = placement_key(capacity)
        if inc is not None and self._replans < self.rebase_after \
                and key == self._inc_key and inc.planner.same_fleet(spec):
            self._replans += 1
            self.counts["incremental"] += 1
            return inc.replan(spec, previous or {}, commit=commit)
        settled = key == self._last_key
        self._last_key = key
        self._inc = None
        if not settled:
            self.counts["full"] += 1
            plan: Plan = place(spec, capacity, previous, commit=commit)
            return plan
        self._inc = IncrementalPlanner(spec, capacity, previous, commit=commit)
        self._inc_key = key
        self._replans = 0
        self.counts["baseline"] += 1
        return self._inc.plan
