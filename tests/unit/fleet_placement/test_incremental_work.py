"""A commit that changes k workloads costs O(k) placement decisions, not O(fleet).

Work is counted (`IncrementalPlanner.decided`: decisions made again, the rest reused),
never timed; each re-plan is also checked equal to a full plan, as the property test
`test_placement_properties.py::test_incremental_replan_equals_a_full_plan` does on
random fleets and edits."""

from __future__ import annotations

import pytest

from fleet.placement import place
from fleet.placement.incremental import IncrementalPlanner
from fleet.placement.types import Plan, PreviousPlan
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

PER_CHANGE = 20
"""Decisions one changed workload may cost: itself, its cluster's co-tenants (five
per cluster here), its team's quota readers and the pending ones of its flavour."""


def spec_of(n: int, edited: frozenset[str] = frozenset()) -> FleetSpec:
    """n workloads, five per cluster on average, room for all; `edited` ask 2 GPUs."""
    clusters = [cluster(f"c{i:03d}", "DE", (("h100-80gb", 64, 8),)) for i in range(n // 5)]
    ws = [workload(f"w{i:04d}", team=f"t{i % 7}",
                   count=2 if f"w{i:04d}" in edited else (8 if i % 3 else 1))
          for i in range(n)]
    return fleet(*clusters, *ws)


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


@pytest.mark.parametrize("n", [200, 1000], ids=["200-workloads", "1000-workloads"])
@pytest.mark.parametrize("k", [1, 4], ids=["1-changed", "4-changed"])
def test_a_commit_of_k_workloads_redecides_o_k_not_the_fleet(n: int, k: int) -> None:
    spec = spec_of(n)
    capacity = declared(spec)
    previous = previous_of(place(spec, capacity, {}, commit="a"))
    inc = IncrementalPlanner(spec, capacity, previous, commit="b")
    assert all(p.status == "Placed" for p in inc.plan.workloads.values())
    edited = spec_of(n, frozenset(f"w{i:04d}" for i in range(1, 3 * k + 1, 3)))
    got = inc.replan(edited, previous, commit="c")
    assert got == place(edited, capacity, previous, commit="c")
    assert 1 <= inc.decided <= PER_CHANGE * k  # a full plan decides all n
