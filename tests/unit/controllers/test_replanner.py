"""The controller's placement function gives exactly a full plan, whichever way it took."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.runtime.replanner import Replanner
from fleet.capacity import CapacitySnapshot
from fleet.placement import place
from fleet.placement.types import Plan, PreviousPlan
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import workloads_edited


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=8), st.data())
def test_a_run_of_commits_plans_as_full_plans_would(f: Fleet, data: st.DataObject) -> None:
    # As the controller calls it: previous = the last plan; commits edit workloads; now
    # and then the capacity moves (a node lost), which a re-plan cannot reuse.
    replan = Replanner(rebase_after=data.draw(st.integers(1, 4)))
    fleet, previous, capacity = f, {}, f.capacity
    for step in range(data.draw(st.integers(2, 7))):
        what = data.draw(st.sampled_from(("same", "commit", "commit", "capacity", "ours")))
        if what == "commit":
            fleet = workloads_edited(fleet, data)
        elif what == "capacity":
            capacity = _drop_a_node(capacity, data)
        elif what == "ours":  # the fleet's own pods started: not a change for placement
            capacity = _fleet_pods_started(capacity, data)
        spec = fleet.spec()
        commit = f"c{step}"
        got = replan(spec, capacity, previous, commit=commit)
        assert got == place(spec, capacity, previous, commit=commit), (step, what)
        previous = previous_of(got)


def test_a_settled_fleet_is_replanned_incrementally() -> None:
    from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

    spec = fleet(cluster("de-1", "DE"), cluster("fr-1", "FR"),
                 workload("a", data_class="eu-personal"), workload("b"))
    cap = declared(spec)
    replan = Replanner()
    first = replan(spec, cap, {}, commit="1")
    second = replan(spec, cap, previous_of(first), commit="2")  # settled: a baseline
    edited = fleet(cluster("de-1", "DE"), cluster("fr-1", "FR"),
                   workload("a", data_class="eu-personal"), workload("b", count=4))
    third = replan(edited, cap, previous_of(second), commit="3")
    assert replan.counts == {"full": 1, "baseline": 1, "incremental": 1}
    assert third == place(edited, cap, previous_of(second), commit="3")


def _fleet_pods_started(capacity: CapacitySnapshot, data: st.DataObject
                        ) -> CapacitySnapshot:
    clusters = {}
    for name, c in capacity.clusters.items():
        nodes = tuple(replace(n, used_by_fleet=data.draw(st.integers(0, n.gpus)))
                      for n in c.nodes)
        clusters[name] = replace(c, nodes=nodes)
    return CapacitySnapshot(clusters)


def test_the_fleet_own_pods_starting_keep_the_baseline() -> None:
    from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

    spec = fleet(cluster("de-1", "DE"), workload("a"), workload("b"))
    cap = declared(spec)
    busy = CapacitySnapshot({name: replace(c, nodes=tuple(
        replace(n, used_by_fleet=n.gpus) for n in c.nodes)) for name, c in
        cap.clusters.items()})
    replan = Replanner()
    plan = replan(spec, cap, {}, commit="1")
    plan = replan(spec, cap, previous_of(plan), commit="2")  # baseline
    got = replan(spec, busy, previous_of(plan), commit="3")
    assert replan.counts["incremental"] == 1
    assert got == place(spec, busy, previous_of(plan), commit="3")


def _drop_a_node(capacity: CapacitySnapshot, data: st.DataObject) -> CapacitySnapshot:
    names = [n for n, c in capacity.clusters.items() if c.nodes]
    if not names:
        return capacity
    name = data.draw(st.sampled_from(sorted(names)))
    c = capacity.clusters[name]
    clusters = dict(capacity.clusters)
    clusters[name] = type(c)(c.name, c.health, c.unreachable_seconds, c.nodes[1:])
    return CapacitySnapshot(clusters)
