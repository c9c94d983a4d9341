"""What follows from a plan, updated for the decisions it changed (issue 22).

A commit that changes k workloads gets a plan that differs from the last one in k
decisions (`controllers.runtime.placerproc.PlanDelta`, `ProcessPlacer.changes`). What
the controller keeps with the plan (`DesiredState.set_plan`) and the decisions it
records (`Records.plan_events`) are then worked out from those k alone: here, the same
as a whole pass, over runs of plans of drawn fleets, and without a pass over the plan.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from controllers.runtime.desired import DesiredState
from controllers.runtime.placerproc import apply_plan_delta, plan_delta
from controllers.runtime.records import Records
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from fleet.ids import WorkloadId
from fleet.placement import place
from fleet.placement.types import Plan, WorkloadPlacement
from fleet.planning import placements
from fleet.render import render
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import workloads_edited


def records(tmp_path: Path, desired: DesiredState, feed: EventFeed) -> Records:
    return Records(Settings(repo=str(tmp_path)), None, feed, desired=desired, adapters={},
                   may_act=lambda: True, task_group=lambda: None,
                   on_started=lambda _sink: None)


def kept(d: DesiredState) -> tuple[object, ...]:
    return (d.anything_placed, d.anything_pending, dict(d.last_placed),
            {c: list(on.items()) for c, on in d.placed_index().items()})


def plans(f: Fleet, data: st.DataObject) -> Iterator[tuple[Plan | None, Plan,
                                                            frozenset[WorkloadId] | None]]:
    """A run of plans as the controller gets them from its worker: each laid over the
    last (`apply_plan_delta`), with the decisions it changed when the ids kept their
    order (as `ProcessPlacer.changes` says), after a commit of a few workload edits."""
    held: tuple[int, Plan] | None = None
    fleet_now = f
    for seq in range(1, data.draw(st.integers(2, 6)) + 1):
        previous = {} if held is None else placements(held[1])
        capacity = f.capacity if data.draw(st.booleans()) else type(f.capacity)({
            n: c for i, (n, c) in enumerate(sorted(f.capacity.clusters.items())) if i % 2})
        full = place(fleet_now.spec(), capacity, previous, commit=str(seq))
        d = plan_delta(held, seq, full)
        plan = apply_plan_delta(held, d)
        changed = frozenset(d.workloads) if d.base and d.order is None else None
        yield None if held is None else held[1], plan, changed
        held = (seq, plan)
        if data.draw(st.booleans()):
            fleet_now = workloads_edited(fleet_now, data)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(fleets(max_workloads=8), st.data())
def test_a_plan_set_with_its_changes_keeps_what_a_whole_pass_keeps(
        tmp_path: Path, f: Fleet, data: st.DataObject) -> None:
    by_change, whole = DesiredState(render), DesiredState(render)
    feeds = EventFeed(clock=lambda: 0.0), EventFeed(clock=lambda: 0.0)
    logs = []
    for old, plan, changed in plans(f, data):
        if data.draw(st.booleans()):
            by_change.placed_index()  # an index made before is updated, not rebuilt
        by_change.set_plan(plan, changed)
        whole.plan = plan
        assert kept(by_change) == kept(whole)
        for d, feed, given_changed in ((by_change, feeds[0], changed),
                                       (whole, feeds[1], None)):
            with capture_logs() as captured:
                records(tmp_path, d, feed).plan_events(old, plan, None, given_changed)
            logs.append(captured)
        assert logs[-2] == logs[-1]
        assert feeds[0].document() == feeds[1].document()


class Unscanned(Mapping[WorkloadId, WorkloadPlacement]):
    """A plan's decisions that count the lookups made and refuse a pass over them."""

    def __init__(self, decisions: Mapping[WorkloadId, WorkloadPlacement]) -> None:
        self.decisions = decisions
        self.lookups = 0

    def __getitem__(self, wid: WorkloadId) -> WorkloadPlacement:
        self.lookups += 1
        return self.decisions[wid]

    def __iter__(self) -> Iterator[WorkloadId]:
        raise AssertionError("a pass over every decision")

    def __len__(self) -> int:
        return len(self.decisions)


def test_a_plan_that_changes_one_decision_costs_one_decision(tmp_path: Path) -> None:
    from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

    clusters = [cluster(f"c{i}", "DE", (("h100-80gb", 64, 8),)) for i in range(4)]
    spec = fleet(*clusters, *[workload(f"w{i:03d}") for i in range(24)])
    first = place(spec, declared(spec), placements(place(spec, declared(spec), {},
                                                         commit="1")), commit="1")
    edited = fleet(*clusters, *[workload(f"w{i:03d}", count=4 if i == 7 else 8)
                                for i in range(24)])
    full = place(edited, declared(edited), placements(first), commit="2")
    d = plan_delta((1, first), 2, full)
    assert len(d.workloads) == 1 and d.order is None
    laid = apply_plan_delta((1, first), d)
    decisions = Unscanned(laid.workloads)
    second = Plan(laid.commit, decisions, laid.usage, laid.capacity_digest,
                  laid.policy_version)
    desired, whole = DesiredState(render), DesiredState(render)
    desired.plan = whole.plan = first
    desired.placed_index()
    feed = EventFeed(clock=lambda: 0.0)
    desired.set_plan(second, frozenset(d.workloads))
    records(tmp_path, desired, feed).plan_events(first, second, None, frozenset(d.workloads))
    assert decisions.lookups <= 2  # the one changed decision, no pass over 24
    whole.plan = full
    assert kept(desired) == kept(whole)
    whole_feed = EventFeed(clock=lambda: 0.0)
    records(tmp_path, whole, whole_feed).plan_events(first, full, None)
    assert feed.document() == whole_feed.document()
