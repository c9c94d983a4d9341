"""`fleet.planning`: the choices every planner of the fleet makes the same way."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.capacity import CapacitySnapshot, declared_capacity
from fleet.ids import WorkloadId, team_of
from fleet.placement import Planner, place
from fleet.planning import (
    capacity_for,
    placement_key,
    placements,
    plan_change,
    plan_from,
    same_capacity,
)
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import workloads_edited


def _ours_started(capacity: CapacitySnapshot) -> CapacitySnapshot:
    return CapacitySnapshot({n: replace(c, nodes=tuple(replace(x, used_by_fleet=x.gpus)
                                                        for x in c.nodes))
                             for n, c in capacity.clusters.items()})


def test_the_capacity_is_live_over_file_over_declared() -> None:
    spec = fleet(cluster("de-1", "DE"), workload("a"))
    decl = declared_capacity(spec.clusters)
    other = CapacitySnapshot({})
    assert capacity_for(spec) == (decl, "declared")
    assert capacity_for(spec, file=other) == (other, "file")
    assert capacity_for(spec, file=decl, live=other, live_source="server") == (other, "server")


def test_the_previous_plan_is_what_a_plan_places() -> None:
    spec = fleet(cluster("de-1", "DE"), workload("a"),
                 workload("huge", count=8, replicas=64))
    plan = place(spec, declared(spec), {}, commit="1")
    assert {w: p.status for w, p in plan.workloads.items()} == {
        "nlp-team/a": "Placed", "nlp-team/huge": "Pending"}
    a = WorkloadId("nlp-team/a")
    assert placements(plan) == {a: plan.workloads[a].assignments}


def test_a_plan_from_what_runs_keeps_it_where_it_runs() -> None:
    # `fleet plan --live` and `fleet status --live` plan this way: what runs is the
    # previous plan, so a workload that fits where it runs stays there.
    spec = fleet(cluster("de-1", "DE"), cluster("fr-1", "FR"), workload("a"))
    first = plan_from(spec, declared(spec), None, commit="1")
    a = WorkloadId("nlp-team/a")
    elsewhere = "fr-1" if first.workloads[a].clusters == ("de-1",) else "de-1"
    running = {a: (replace(first.workloads[a].assignments[0], cluster=elsewhere),)}
    kept = plan_from(spec, declared(spec), running, commit="2")
    assert kept.workloads[a].clusters == (elsewhere,)
    assert kept.commit == "2"


def test_a_workload_ids_team_is_what_comes_before_its_slash() -> None:
    assert team_of("nlp-team/train") == "nlp-team"
    assert team_of("*") == "*"  # a record for the whole fleet names no team


def _seen_flipped(capacity: CapacitySnapshot, which: list[bool]) -> CapacitySnapshot:
    """Clusters whose nodes are seen, Healthy <-> Degraded where `which` says (a watch
    timing out on a busy controller), with some unreachable time on the way."""
    out = {}
    for (n, c), flip in zip(sorted(capacity.clusters.items()), which + [False] * 8,
                            strict=False):
        if flip and c.health in ("Healthy", "Degraded"):
            c = replace(c, health="Degraded" if c.health == "Healthy" else "Healthy",
                        unreachable_seconds=3.0)
        out[n] = c
    return CapacitySnapshot(out)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=8), st.lists(st.booleans(), max_size=5), st.data())
def test_healthy_and_degraded_are_one_capacity_to_placement(
        f: Fleet, which: list[bool], data: st.DataObject) -> None:
    """Placement reads a seen cluster alike whether Healthy or Degraded: the same key,
    the same plan (digest too), and the planner of one reused for the other (the
    controller's re-plan of a commit) gives the full plan of the other."""
    flipped = _seen_flipped(f.capacity, which)
    spec = f.spec()
    assert same_capacity(f.capacity, flipped)
    assert f.capacity.digest() == flipped.digest()
    before = place(spec, f.capacity, {}, commit="base")
    assert place(spec, flipped, {}, commit="base") == before
    planner = Planner(spec, f.capacity)
    edited = workloads_edited(f, data).spec()
    got = plan_change(planner.plan({}, commit="base"), edited, flipped, commit="head",
                      planner=planner, planner_capacity=f.capacity)
    assert got == place(edited, flipped, placements(before), commit="head")


def test_a_cluster_no_longer_seen_is_another_capacity() -> None:
    spec = fleet(cluster("de-1", "DE"), workload("a"))
    cap = declared(spec)
    for health in ("Unreachable", "Unknown"):
        gone = CapacitySnapshot({n: replace(c, health=health)
                                 for n, c in cap.clusters.items()})
        assert not same_capacity(cap, gone)
        assert cap.digest() != gone.digest()


def test_the_fleets_own_pods_do_not_change_the_capacity_placement_reads() -> None:
    spec = fleet(cluster("de-1", "DE"), workload("a"))
    cap = declared(spec)
    assert same_capacity(cap, _ours_started(cap))
    assert placement_key(cap) == placement_key(_ours_started(cap))
    fewer = CapacitySnapshot({n: replace(c, nodes=c.nodes[1:])
                              for n, c in cap.clusters.items()})
    assert not same_capacity(cap, fewer)


def test_the_fleets_own_kueue_reservations_do_not_change_the_capacity_placement_reads(
) -> None:
    from fleet.capacity import ClusterQueueCapacity, KueueCapacity, QueueQuota
    from fleet.ids import Flavour

    spec = fleet(cluster("de-1", "DE"), workload("a"))

    def with_queue(others: int, ours: int) -> CapacitySnapshot:
        k = KueueCapacity({"t": ClusterQueueCapacity("t", None, {
            Flavour("h100-80gb"): QueueQuota(16, None, None, others, ours)})}, {})
        return CapacitySnapshot({n: replace(c, kueue=k)
                                 for n, c in declared(spec).clusters.items()})
    assert same_capacity(with_queue(4, 0), with_queue(4, 8))
    assert not same_capacity(with_queue(4, 0), with_queue(5, 0))
    assert not same_capacity(with_queue(4, 0), declared(spec))


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=8), st.data(), st.booleans())
def test_the_plan_of_a_change_is_the_full_plan_from_the_earlier_one(
        f: Fleet, data: st.DataObject, ours: bool) -> None:
    # Whether the earlier planner is reused (only workloads changed, same capacity) or
    # not, the plan that follows equals a full plan with the earlier placements.
    spec = f.spec()
    planner = Planner(spec, f.capacity)
    before = planner.plan({}, commit="base")
    edited = workloads_edited(f, data).spec()
    cap = _ours_started(f.capacity) if ours else f.capacity
    got = plan_change(before, edited, cap, commit="head", planner=planner,
                      planner_capacity=f.capacity)
    assert got == place(edited, cap, placements(before), commit="head")
