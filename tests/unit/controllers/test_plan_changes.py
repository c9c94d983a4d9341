"""What follows from a plan, updated for the decisions it changed (issue 22).

A commit that changes k workloads gets a plan that differs from the last one in k
decisions (`controllers.runtime.placerproc.PlanDelta`, `ProcessPlacer.changes`). What
the controller keeps with the plan (`DesiredState.set_plan`) and the decisions it
records (`Records.plan_events`) are then worked out from those k alone: here, the same
as a whole pass, over runs of plans of drawn fleets, and without a pass over the plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from controllers.runtime.desired import DesiredState
from controllers.runtime.placementloop import replaced
from controllers.runtime.placerproc import apply_plan_delta, plan_delta
from controllers.runtime.records import Records
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from fleet.ids import ClusterName, WorkloadId
from fleet.placement import place
from fleet.placement.types import Plan, WorkloadPlacement
from fleet.planning import placements
from fleet.render import placed_by_cluster, render, workload_label
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import workloads_edited


def records(tmp_path: Path, desired: DesiredState, feed: EventFeed) -> Records:
    return Records(Settings(repo=str(tmp_path)), None, feed, desired=desired, adapters={},
                   may_act=lambda: True, task_group=lambda: None,
                   on_started=lambda _sink: None)


def kept(d: DesiredState) -> tuple[object, ...]:
    return (d.anything_placed, d.anything_pending, dict(d.last_placed),
            {c: list(on.items()) for c, on in d.placed_index().items()})


def signatures(d: DesiredState) -> dict[ClusterName, tuple[object, ...]]:
    assert d.spec is not None
    return {c: d.signature(c) for c in sorted(d.spec.clusters)}


def made_anew(d: DesiredState) -> dict[ClusterName, tuple[object, ...]]:
    """Each cluster's signature as it is defined, from the plan itself."""
    assert d.spec is not None and d.plan is not None
    index = placed_by_cluster(d.plan)
    invalid = set(d.spec.invalid) | {w for w, wp in d.plan.workloads.items()
                                     if wp.status == "Invalid"}
    assert d.protected() == {workload_label(w) for w in invalid}
    return {c: (*((w, a, d.workload_commit.get(w)) for w, a in index.get(c, {}).items()),
                ("protected", tuple(sorted(d.protected_on(c)))))
            for c in sorted(d.spec.clusters)}


def plans(f: Fleet, data: st.DataObject) -> Iterator[tuple[
        FleetSpec, Plan | None, Plan, frozenset[WorkloadId] | None]]:
    """A run of plans as the controller gets them from its worker: each laid over the
    last (`apply_plan_delta`), with the decisions it changed when the ids kept their
    order (as `ProcessPlacer.changes` says), after a commit of a few workload edits."""
    held: tuple[int, Plan] | None = None
    fleet_now = f
    for seq in range(1, data.draw(st.integers(2, 6)) + 1):
        previous = {} if held is None else placements(held[1])
        capacity = f.capacity if data.draw(st.booleans()) else type(f.capacity)({
            n: c for i, (n, c) in enumerate(sorted(f.capacity.clusters.items())) if i % 2})
        spec = fleet_now.spec()
        full = place(spec, capacity, previous, commit=str(seq))
        d = plan_delta(held, seq, full)
        plan = apply_plan_delta(held, d)
        changed = frozenset(d.workloads) if d.base and d.order is None else None
        yield spec, None if held is None else held[1], plan, changed
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
    for seq, (spec, old, plan, changed) in enumerate(plans(f, data)):
        for d in by_change, whole:
            before = d.spec
            same_ids = before is not None and set(before.workloads) == set(spec.workloads) \
                and not before.invalid and not spec.invalid
            edited = {w for w in spec.workloads if before is not None
                      and before.workloads[w] != spec.workloads[w]} if same_ids else None
            d.adopt_spec(spec, f"h{seq}", edited)  # a commit read through a tree diff
        if data.draw(st.booleans()):
            by_change.placed_index()  # an index made before is updated, not rebuilt
        if data.draw(st.booleans()):
            signatures(by_change)  # signatures kept from before are made again or kept
        by_change.set_plan(plan, changed)
        whole.plan = plan
        assert kept(by_change) == kept(whole)
        assert signatures(by_change) == signatures(whole) == made_anew(whole)
        counted = dict(sorted(Counter(wp.status for wp in plan.workloads.values()).items()))
        assert by_change.status_counts() == whole.status_counts() == counted
        if data.draw(st.booleans()) and spec.clusters:
            c = data.draw(st.sampled_from(sorted(spec.clusters)))
            by_change.objects_for(c)  # renders, and may set a workload's commit
            whole.objects_for(c)
            assert signatures(by_change) == made_anew(whole)
        for d, feed, given_changed in ((by_change, feeds[0], changed),
                                       (whole, feeds[1], None)):
            with capture_logs() as captured:
                records(tmp_path, d, feed).plan_events(old, plan, None, given_changed)
            logs.append(captured)
        assert logs[-2] == logs[-1]
        assert feeds[0].document() == feeds[1].document()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(fleets(max_workloads=8), st.data())
def test_a_plan_set_with_the_decisions_it_replaced_keeps_what_a_whole_pass_keeps(
        tmp_path: Path, f: Fleet, data: st.DataObject) -> None:
    """A plan borrowed from the leader's (or its placements laid over one's own) comes
    without its changes: `replaced` finds them by identity, and the state kept with
    the plan, its counts, signatures and recorded decisions are a whole pass's."""
    by_identity, whole = DesiredState(render), DesiredState(render)
    before: Plan | None = None
    for seq, (spec, _old, plan, _changed) in enumerate(plans(f, data)):
        for d in by_identity, whole:
            d.adopt_spec(spec, f"h{seq}")
        # the same decisions, some of them equal copies (a borrowed plan makes each
        # Invalid one anew)
        copied = copies(plan, data)
        delta = replaced(by_identity.plan, copied)
        if data.draw(st.booleans()):
            by_identity.placed_index()  # an index made before is updated, not rebuilt
        if data.draw(st.booleans()):
            signatures(by_identity)
        by_identity.set_plan(copied, delta)
        whole.plan = plan
        assert kept(by_identity) == kept(whole)
        assert signatures(by_identity) == made_anew(whole)
        counted = dict(sorted(Counter(wp.status for wp in plan.workloads.values()).items()))
        assert by_identity.status_counts() == whole.status_counts() == counted
        same = before is not None and set(before.workloads) == set(copied.workloads)
        assert (delta is not None) == same  # the same workloads: known as a change
        if before is not None and delta is not None:
            assert {w for w in copied.workloads
                    if before.workloads[w] != copied.workloads[w]} <= delta
            feeds = EventFeed(clock=lambda: 0.0), EventFeed(clock=lambda: 0.0)
            with capture_logs() as by_delta:
                records(tmp_path, by_identity, feeds[0]).plan_events(
                    before, copied, None, delta)
            with capture_logs() as by_pass:
                records(tmp_path, by_identity, feeds[1]).plan_events(before, copied, None)
            assert by_delta == by_pass
            assert feeds[0].document() == feeds[1].document()
        before = copied


def copies(plan: Plan, data: st.DataObject) -> Plan:
    """`plan` with some of its decisions (drawn) equal copies, not the same objects."""
    picked = data.draw(st.sets(st.sampled_from(sorted(plan.workloads)))) \
        if plan.workloads else set()
    return Plan(plan.commit, {w: replace(wp) if w in picked else wp
                              for w, wp in plan.workloads.items()},
                plan.usage, plan.capacity_digest, plan.policy_version)


def test_replaced_is_none_unless_the_same_workloads() -> None:
    a = WorkloadPlacement(WorkloadId("t/a"), "Pending", ())
    b = WorkloadPlacement(WorkloadId("t/b"), "Pending", ())
    one, two = Plan("1", {a.id: a}), Plan("2", {a.id: a, b.id: b})
    assert replaced(None, one) is None
    assert replaced(one, two) is None and replaced(two, one) is None
    assert replaced(one, Plan("2", {b.id: b})) is None
    assert replaced(two, Plan("3", {b.id: b, a.id: a})) == frozenset()
    assert replaced(two, Plan("3", {a.id: a, b.id: replace(b)})) == {b.id}


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


def test_a_signature_kept_is_made_again_when_a_workload_there_changes_commit() -> None:
    """A commit that edits a workload without moving it (its image) changes the
    signature of the cluster it runs on, and of no other."""
    from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

    clusters = [cluster(f"c{i}", "DE", (("h100-80gb", 64, 8),)) for i in range(3)]
    ws = [workload(f"w{i}") for i in range(6)]
    spec = fleet(*clusters, *ws)
    plan = place(spec, declared(spec), {}, commit="h1")
    d = DesiredState(render)
    d.adopt_spec(spec, "h1")
    d.plan = plan
    before = signatures(d)
    w = ws[0].id
    on = plan.workloads[w].clusters[0]
    edited = fleet(*clusters, workload("w0", image="registry.internal/other:v2"), *ws[1:])
    d.adopt_spec(edited, "h2", {w})
    d.set_plan(plan, frozenset())  # the same decisions
    after = signatures(d)
    assert after == made_anew(d)
    assert {c for c in after if after[c] != before[c]} == {on}
    assert {c for c in after if after[c] is not before[c]} == {on}, "the others kept"
