"""`LeaderPlans`: a follower's plan built from what changed equals the whole
`leader_plan` (hypothesis: successive publications, specs and capacities)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.capacity import CapacitySnapshot
from fleet.diagnostics import Diagnostic
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment
from fleet.shards import LeaderPlans, leader_plan
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.builders import cluster, declared, fleet, with_nodes
from tests.unit.fleet_placement.builders import workload as wl

BASE = fleet(cluster("a", "DE"), cluster("b", "FR"), wl("w"))
ONE = next(iter(BASE.workloads.values()))
IDS = [WorkloadId(f"t/w{i}") for i in range(8)]
CAPS = [declared(BASE), with_nodes(declared(BASE), "b", "h100-80gb", [8, 8, 0]),
        CapacitySnapshot({})]

assignment = st.builds(Assignment, st.sampled_from([ClusterName("a"), ClusterName("b"),
                                                    ClusterName("gone")]),
                       st.sampled_from([Flavour("h100-80gb"), Flavour("a100-40gb")]),
                       st.integers(1, 3), st.integers(1, 8))
placements = st.dictionaries(st.sampled_from(IDS), st.lists(
    assignment, min_size=0, max_size=2).map(lambda a: tuple(sorted(a))), max_size=8)
specs = st.tuples(st.sets(st.sampled_from(IDS)), st.sets(st.sampled_from(IDS), max_size=2))
step = st.tuples(specs, st.booleans(), placements, st.integers(0, 2),
                 st.sampled_from(["c1", "c2", None]), st.sets(st.sampled_from(IDS)),
                 st.booleans())


def spec_of(members: set[WorkloadId], invalid: set[WorkloadId]) -> FleetSpec:
    return replace(BASE, workloads={w: ONE for w in sorted(members)}, invalid={
        w: (Diagnostic(f"{w}.yaml", 1, "broken"),) for w in sorted(invalid)})


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=8))
def test_a_plan_built_from_what_changed_is_the_whole_leader_plan(steps: list) -> None:
    plans = LeaderPlans()
    spec = spec_of(set(), set())
    last: dict[WorkloadId, tuple[Assignment, ...]] = {}
    before = None
    for (members, invalid), same_spec, leader, cap, commit, extra, unknown in steps:
        if not same_spec:
            spec = spec_of(members, invalid)
        # every workload whose published placements differ, and any others
        changed = {w for w in IDS if last.get(w) != leader.get(w)} | extra
        got = plans.plan(spec, leader, commit, CAPS[cap], None if unknown else changed)
        want = leader_plan(spec, leader, commit, CAPS[cap])
        assert got == want
        assert list(got.workloads) == sorted(got.workloads)  # sorted, as the whole's
        # what it says changed is all that did (`DesiredState.set_plan`'s contract)
        said = plans.changes(before, got)
        if said is not None:
            assert before is not None and list(got.workloads) == list(before.workloads)
            assert all(got.workloads[w] is before.workloads[w]
                       for w in got.workloads if w not in said)
        assert plans.changes(got, got) is None
        last, before = leader, got
    assert plans.full + plans.incremental == len(steps)


def test_a_one_workload_change_looks_at_that_workload_only() -> None:
    spec = spec_of(set(IDS), set())
    there = (Assignment(ClusterName("a"), Flavour("h100-80gb"), 1, 8),)
    leader = {w: there for w in IDS}
    plans = LeaderPlans()
    first = plans.plan(spec, leader, "c1", CAPS[0], None)
    moved = dict(leader)
    moved[IDS[3]] = (Assignment(ClusterName("b"), Flavour("h100-80gb"), 1, 8),)
    second = plans.plan(spec, moved, "c2", CAPS[0], {IDS[3]})
    assert (plans.full, plans.incremental, plans.built) == (1, 1, 1)
    assert second == leader_plan(spec, moved, "c2", CAPS[0])
    assert all(second.workloads[w] is first.workloads[w] for w in IDS if w != IDS[3])
    assert second.usage[ClusterName("b")][Flavour("h100-80gb")].allocated == 8
    assert plans.changes(first, second) == {IDS[3]}
