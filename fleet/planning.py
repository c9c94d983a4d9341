"""The planning facade: what every planner of the fleet decides the same way. Pure.

`fleet plan`, `fleet plan --base/--head` (the pull request's plan diff), `fleet whatif`,
`fleet explain`, `fleet status --live` and the controller's Manager all plan a spec on
a capacity with a previous plan. Each of these choices is made here, once:

- the capacity to plan with and what it is called (`capacity_for`): what a controller
  or the clusters report (`live`/`server`), else a CapacitySnapshot file (`file`), else
  what the Cluster files declare (`declared`);
- the previous plan a plan leaves to the next (`placements`): the assignments of its
  Placed workloads (Pending and Invalid ones run nowhere new; an Invalid workload's
  copies are kept by the controller, not re-placed);
- whether two capacity snapshots are the same to placement (`same_capacity`, by
  `placement_key`): GPUs held by the fleet's own pods are informational (the plan
  allocates those itself), every other field counts;
- the plan from what runs (`plan_from`): what the clusters or a controller say runs is
  the previous plan;
- the plan that follows another (`plan_change`): the new spec planned with the earlier
  plan as previous, reusing the earlier plan's planner when only workloads changed and
  the capacity is the same, as the controller does after a merge.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from fleet.capacity import CapacitySnapshot, ClusterCapacity, KueueCapacity, declared_capacity
from fleet.ids import WorkloadId
from fleet.placement.core import Planner, place
from fleet.placement.types import Assignment, Plan, PreviousPlan
from fleet.spec import FleetSpec

CapacitySource = Literal["declared", "file", "live", "server"]


def capacity_for(spec: FleetSpec, *, file: CapacitySnapshot | None = None,
                 live: CapacitySnapshot | None = None,
                 live_source: Literal["live", "server"] = "live"
                 ) -> tuple[CapacitySnapshot, CapacitySource]:
    """The capacity to plan `spec` with, and where it came from: `live` (read from the
    clusters, or `server`: from a controller) over `file` over the declared capacity."""
    if live is not None:
        return live, live_source
    if file is not None:
        return file, "file"
    return declared_capacity(spec.clusters), "declared"


def placements(plan: Plan) -> dict[WorkloadId, tuple[Assignment, ...]]:
    """What a plan places, as the previous plan of the next one: Placed workloads'
    assignments."""
    return {wid: wp.assignments for wid, wp in plan.workloads.items()
            if wp.status == "Placed" and wp.assignments}


def placement_key(capacity: CapacitySnapshot) -> CapacitySnapshot:
    """The snapshot as placement reads it: without `used_by_fleet` (the fleet's own
    pods' GPUs and Kueue reservations, informational: the plan allocates those itself),
    so the fleet's own pods starting and ending, and its Jobs being admitted, do not
    make a re-plan start over; and a cluster whose nodes are seen (Healthy or Degraded:
    `ClusterInfo.seen`, all placement asks of a seen cluster's health) as Healthy with
    no unreachable time. A watch timing out on a busy fleet flips clusters between
    Healthy and Degraded; at 1,000 x 50,000 that made 33 of 56 of the leader's plans
    full ones (10-17 s each) instead of re-plans of the commit's workloads (issue 22).
    Every other field counts."""
    return CapacitySnapshot({
        name: replace(c, nodes=tuple(replace(n, used_by_fleet=0) for n in c.nodes),
                      kueue=_kueue_key(c.kueue), **_seen_key(c))
        for name, c in capacity.clusters.items()})


def _seen_key(c: ClusterCapacity) -> dict[str, Any]:
    if c.health in ("Healthy", "Degraded"):
        return {"health": "Healthy", "unreachable_seconds": None}
    return {}


def _kueue_key(k: KueueCapacity | None) -> KueueCapacity | None:
    if k is None:
        return None
    return replace(k, cluster_queues={
        name: replace(q, flavours={f: replace(v, used_by_fleet=0)
                                   for f, v in q.flavours.items()})
        for name, q in k.cluster_queues.items()})


def same_capacity(a: CapacitySnapshot, b: CapacitySnapshot) -> bool:
    """Whether placement would read the two snapshots alike (`placement_key`)."""
    return a is b or placement_key(a) == placement_key(b)


def plan_from(spec: FleetSpec, capacity: CapacitySnapshot,
              running: PreviousPlan | None, *,
              commit: str | None) -> Plan:
    """The plan of `spec` on `capacity` starting from what runs (`running`: read from
    the clusters, or a controller's placements; None: nothing runs), so only what must
    move moves. `fleet plan` and `fleet status --live` plan this way."""
    return place(spec, capacity, running, commit=commit)


def plan_change(before: Plan, spec: FleetSpec, capacity: CapacitySnapshot, *,
                commit: str | None, planner: Planner | None = None,
                planner_capacity: CapacitySnapshot | None = None) -> Plan:
    """The plan of `spec` that follows `before`: `before`'s placements as the previous
    plan (stickiness: only what the change forces moves). `planner`, the planner that
    made `before` on `planner_capacity`, is reused (rebound: its snapshot, filter
    verdicts and workload contexts) when the fleet is the same but for its workloads
    and the capacity is the same."""
    previous = placements(before)
    if planner is not None and planner_capacity is not None \
            and planner.same_fleet(spec) and same_capacity(planner_capacity, capacity):
        return planner.rebind(spec).plan(previous, commit=commit)
    return place(spec, capacity, previous, commit=commit)
