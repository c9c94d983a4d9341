"""The stale copies the placement loop looks for after each plan, worked out for the
decisions the plan changed (`controllers.runtime.placementloop.StaleCopies`): the same
as `DesiredState.stale_on` over everything that runs, over runs of plans of drawn
fleets with what runs on each cluster drawn anew or kept, and with a pass over what
runs only when it changed (issue 22)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.runtime.desired import DesiredState
from controllers.runtime.placementloop import StaleCopies, replaced
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.render import render, workload_label
from tests.unit.controllers.test_plan_changes import plans
from tests.unit.fleet_placement.strategies import Fleet, fleets


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=12), st.data())
def test_stale_copies_kept_with_the_changes_are_a_whole_pass(
        f: Fleet, data: st.DataObject) -> None:
    desired = DesiredState(render)
    stale = StaleCopies(desired)
    live: dict[ClusterName, dict[str, None]] = {}
    for seq, (spec, _old, plan, changed) in enumerate(plans(f, data)):
        desired.adopt_spec(spec, f"h{seq}")
        base = desired.plan
        given_changed = changed if data.draw(st.booleans()) else replaced(base, plan)
        desired.set_plan(plan, given_changed)
        labels = sorted({workload_label(w) for w in plan.workloads} | {"other.gone"})
        for c in sorted(spec.clusters):
            if c not in live or data.draw(st.integers(0, 3)) == 0:  # what runs changed
                live[c] = dict.fromkeys(data.draw(st.sets(st.sampled_from(labels),
                                                          min_size=len(labels) // 2)))
            if data.draw(st.integers(0, 4)) == 0:
                continue  # not asked at this plan (its signature changed first)
            assert stale.on(c, dict(live[c]), base, given_changed) == \
                desired.stale_on(c, set(live[c]))


def placed(wid: str, cluster: str) -> WorkloadPlacement:
    from fleet.ids import Flavour
    return WorkloadPlacement(WorkloadId(wid), "Placed", (
        Assignment(ClusterName(cluster), Flavour("h100-80gb"), 1, 1),))


def test_a_plan_that_moves_one_workload_looks_at_it_alone() -> None:
    """A workload moved off a cluster that still runs it is stale there; the copies of
    the other workloads are not looked at again, and a change of what runs is a pass."""
    ids = [f"t/w{i}" for i in range(6)]
    first = Plan("1", {WorkloadId(w): placed(w, "a" if i % 2 else "b")
                       for i, w in enumerate(ids)})
    desired = DesiredState(render)
    desired.plan = first
    stale = StaleCopies(desired)
    on_a = {workload_label(WorkloadId(w)): None for i, w in enumerate(ids) if i % 2}
    assert stale.on(ClusterName("a"), dict(on_a), None, None) == frozenset()
    assert stale.passes == 1
    moved = WorkloadId("t/w1")
    second = Plan("2", {**first.workloads, moved: placed("t/w1", "b")})
    delta = replaced(first, second)
    assert delta == {moved}
    desired.set_plan(second, delta)
    assert stale.on(ClusterName("a"), dict(on_a), first, delta) == {"t.w1"}
    assert stale.passes == 1  # the one changed decision, no pass over what runs
    third = Plan("3", {**second.workloads, moved: replace(second.workloads[moved])})
    desired.set_plan(third, replaced(second, third))
    assert stale.on(ClusterName("a"), dict(on_a), second, {moved}) == {"t.w1"}
    assert stale.passes == 1
    gone = {k: v for k, v in on_a.items() if k != "t.w1"}
    assert stale.on(ClusterName("a"), gone, third, frozenset()) == frozenset()
    assert stale.passes == 2  # what runs changed: a whole pass
    stale.forget({})
    assert stale.on(ClusterName("a"), gone, third, frozenset()) == frozenset()
    assert stale.passes == 3  # forgotten: made anew
