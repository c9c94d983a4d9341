"""What runs on each cluster at each fetch (`ClusterSet.running`, the deletion guard's
input): the ids of a cluster not listed here are kept with the plan index entry they
were made of, and are the plan's placements there, over runs of plans set with their
changes (copy-on-write index entries) and listed clusters drawn anew (issue 22)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.runtime.desired import DesiredState
from fleet.placement.types import Plan
from fleet.render import render, workload_label
from fleet.spec import FleetSpec
from tests.support.clustersets import bare_cluster_set
from tests.unit.controllers.test_plan_changes import plans
from tests.unit.fleet_placement.strategies import Fleet, fleets


def expected(spec: FleetSpec, plan: Plan, listed: dict[str, set[str]]
             ) -> dict[str, set[str]]:
    """`running` as defined: the listed clusters' ids, else the plan's placements."""
    out: dict[str, set[str]] = {}
    for name in sorted(spec.clusters):
        if name in listed:
            out[name] = set(listed[name])
            continue
        out[name] = {str(w) for w, wp in plan.workloads.items() if wp.status == "Placed"
                     and any(a.cluster == name for a in wp.assignments)}
    return out


def adapter(ids: set[str]) -> SimpleNamespace:
    synced = asyncio.Event()
    synced.set()
    return SimpleNamespace(synced=synced, live_workloads=lambda: {
        workload_label(w): None for w in ids})


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(fleets(max_workloads=10), st.data())
def test_running_with_kept_ids_is_what_runs(tmp_path: Path, f: Fleet,
                                            data: st.DataObject) -> None:
    desired = DesiredState(render)
    cs = bare_cluster_set(tmp_path)
    for seq, (spec, _old, plan, changed) in enumerate(plans(f, data)):
        desired.adopt_spec(spec, f"h{seq}")
        desired.set_plan(plan, changed)
        for _ in range(data.draw(st.integers(1, 3))):  # fetches at this plan
            listed = {str(c): set(data.draw(st.sets(st.sampled_from(
                sorted(str(w) for w in plan.workloads) or ["t/none"]))))
                for c in sorted(spec.clusters) if data.draw(st.booleans())}
            cs.adapters = {n: adapter(ids) for n, ids in listed.items()}  # type: ignore[misc]
            got = cs.running(spec, plan, desired.placed_index())
            assert got == expected(spec, plan, listed)
            for ids in got.values():
                ids.add("t/mine")  # the caller's own sets: changing them changes no other
            assert cs.running(spec, plan, desired.placed_index()) == \
                expected(spec, plan, listed)
            assert cs.running(spec, plan) == expected(spec, plan, listed)


def test_an_untouched_cluster_s_ids_are_not_made_again(tmp_path: Path) -> None:
    from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

    spec = fleet(*(cluster(f"c{i}", "DE", (("h100-80gb", 64, 8),)) for i in range(3)),
                 *(workload(f"w{i}") for i in range(6)))
    from fleet.placement import place
    plan = place(spec, declared(spec), {}, commit="1")
    desired = DesiredState(render)
    desired.plan = plan
    cs = bare_cluster_set(tmp_path)
    cs.running(spec, plan, desired.placed_index())
    before = dict(cs._planned_ids)
    desired.set_plan(plan, frozenset())  # no decision changed: every entry the same
    cs.running(spec, plan, desired.placed_index())
    assert before and all(cs._planned_ids[n][1] is ids for n, (_e, ids) in before.items())
