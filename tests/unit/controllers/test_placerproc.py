"""Placement in a worker process: the same plans as a full plan, and only what a commit
changed crosses the process boundary."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.runtime.placerproc import (
    NeedFull,
    ProcessPlacer,
    apply_delta,
    apply_plan_delta,
    delta,
    plan_delta,
)
from fleet.guardrails import GuardrailPolicy
from fleet.ids import WorkloadId
from fleet.owners import OwnersPolicy
from fleet.placement import place
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.spec import placement_view
from tests.support.procs import alive, descendants
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import workloads_edited
from workloads.loader import read_fleet


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


def test_a_delta_rebuilds_exactly_the_new_spec_and_keeps_unchanged_objects() -> None:
    old = fleet(cluster("de-1"), cluster("fr-1", "FR"), workload("a"), workload("b"),
                workload("c"))
    cap = declared(old)
    held = apply_delta(None, delta(None, 1, old, cap))
    assert held[1] == old and held[2] == cap
    new = fleet(cluster("de-1"), cluster("fr-1", "FR"), workload("a"),
                workload("b", count=4), workload("d"))  # b edited, c gone, d new
    d = delta(held, 2, new, cap)
    assert sorted(d.workloads) == ["nlp-team/b", "nlp-team/d"]
    assert d.capacity is None  # the same capacity is not sent again
    seq, spec, capacity = apply_delta(held, d)
    assert (seq, spec, capacity) == (2, new, cap)
    assert list(spec.workloads) == list(new.workloads)
    assert spec.workloads[WorkloadId("nlp-team/a")] is held[1].workloads[WorkloadId("nlp-team/a")]


def test_a_worker_without_the_deltas_base_asks_for_everything() -> None:
    spec = fleet(cluster("de-1"), workload("a"))
    cap = declared(spec)
    held = apply_delta(None, delta(None, 1, spec, cap))
    with pytest.raises(NeedFull):
        apply_delta(None, delta(held, 2, spec, cap))
    with pytest.raises(NeedFull):
        apply_delta((7, held[1], held[2]), delta(held, 2, spec, cap))  # another base


def test_the_worker_process_plans_as_a_full_plan_sent_only_the_change() -> None:
    clusters = [cluster(f"c{i}", "DE", (("h100-80gb", 32, 8),)) for i in range(6)]
    spec = fleet(*clusters, *[workload(f"w{i}") for i in range(20)])
    edited = fleet(*clusters, *[workload(f"w{i}", count=2 if i in (3, 11) else 8)
                                for i in range(20)])
    cap = declared(spec)
    placer = ProcessPlacer()

    async def run() -> None:
        first = await placer.place_async(spec, cap, {}, commit="1")
        assert first == place(spec, cap, {}, commit="1")
        prev = previous_of(first)
        second = await placer.place_async(spec, cap, prev, commit="2")  # settled
        assert placer.sent_workloads == 20
        kept = placer.placements(second)
        assert kept == placements(second) and placer.placements(second) is kept
        third = await placer.place_async(edited, cap, kept, commit="3")
        assert third == place(edited, cap, previous_of(second), commit="3")
        # the next plan's placements, made from these and the decisions changed (kept
        # with the answer: no pass over the plan when asked)
        known = placer._placements
        assert known is not None and known[0] is third
        assert placer.placements(third) == placements(third)
        assert placer.placements(third) is placer.placements(third)
        assert placer.sent_workloads == 22  # the two edited, not the fleet
        moved = [w for w, wp in third.workloads.items() if wp != second.workloads[w]]
        assert len(moved) == 2
        # the changed decisions are known without a pass over the plan, only for the
        # plan answered and the one it was laid over
        assert placer.changes(second, third) == frozenset(moved)
        assert placer.changes(first, third) is None
        assert placer.changes(second, replace(third)) is None
        assert placer.changes(first, second) is None
        assert placer.received_decisions == 20 + 20 + 2, \
            "a plan comes back as the decisions it changed (the second: each reason)"
        assert placer.counts == {"full": 1, "baseline": 1, "incremental": 1}
        placer.close()  # a lost worker: the next call starts one and sends it all
        again = await placer.place_async(edited, cap, previous_of(third), commit="4")
        assert again == place(edited, cap, previous_of(third), commit="4")
        assert placer.sent_workloads == 42 and placer.workers_started == 2
        assert placer.changes(third, again) is None  # a whole plan: not known
        assert placer.counts["full"] == 2  # counts continue across workers
    try:
        asyncio.run(run())
    finally:
        placer.close()


def test_a_closed_placer_has_no_worker_process_left_when_aclose_returns() -> None:
    """`aclose` (what `Manager.run` stops with) waits until the worker is gone; the
    forkserver and resource tracker are this process's, shared, and stay with it."""
    placer = ProcessPlacer()

    async def run() -> None:
        before = {p.pid for p in descendants(os.getpid())}
        await placer.warm()
        ours = {p.pid for p in descendants(os.getpid())}
        workers = [p for p in descendants(os.getpid())
                   if p.pid not in before and p.ppid in ours and p.ppid != os.getpid()]
        assert len(workers) == 1, workers  # the worker: a child of the forkserver
        await placer.aclose()
        assert not alive(workers[0])
        await placer.aclose()  # twice is harmless
    try:
        asyncio.run(run())
    finally:
        placer.close()


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=8), st.data())
def test_a_run_of_deltas_always_rebuilds_the_spec_the_controller_holds(
        f: Fleet, data: st.DataObject) -> None:
    held = None
    fleet_now = f
    for seq in range(1, data.draw(st.integers(2, 5)) + 1):
        spec = fleet_now.spec()
        held = apply_delta(held, delta(held, seq, spec, f.capacity))
        assert held == (seq, spec, f.capacity)
        assert list(held[1].workloads) == list(spec.workloads)
        fleet_now = workloads_edited(fleet_now, data)


def test_the_worker_gets_only_what_placement_reads_and_plans_the_same() -> None:
    root = Path(__file__).parents[3] / "examples" / "fleet"
    spec = read_fleet(root, worktree=True).spec
    assert spec.sources and spec.owners.rules  # the example has both: dropping them shows
    view = placement_view(spec)
    assert (view.sources, view.errors, view.violations) == ({}, (), ())
    assert view.guardrails == GuardrailPolicy() and view.owners == OwnersPolicy()
    assert (view.workloads, view.invalid, view.clusters, view.quotas, view.residency) == (
        spec.workloads, spec.invalid, spec.clusters, spec.quotas, spec.residency)
    cap = declared(spec)
    assert place(view, cap, None, commit="c1") == place(spec, cap, None, commit="c1")
    # A spec that differs only in what the view drops sends the worker nothing more.
    held = apply_delta(None, delta(None, 1, view, cap))
    other = placement_view(replace(spec, errors=(), sources={}))
    d = delta(held, 2, other, cap)
    assert (dict(d.workloads), dict(d.other), d.capacity) == ({}, {}, None)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_workloads=8), st.data())
def test_a_run_of_plan_deltas_always_rebuilds_the_full_plan(
        f: Fleet, data: st.DataObject) -> None:
    """Each plan, laid over the last one answered, equals the full plan of its spec
    (order, decisions, usage); unchanged decisions are not sent again."""
    held: tuple[int, Plan] | None = None
    fleet_now, previous = f, {}
    for seq in range(1, data.draw(st.integers(2, 5)) + 1):
        full = place(fleet_now.spec(), f.capacity, previous, commit=str(seq))
        d = plan_delta(held, seq, full)
        plan = apply_plan_delta(held, d)
        assert plan == full
        assert list(plan.workloads) == list(full.workloads)
        if held is not None:
            assert all(held[1].workloads.get(w) != full.workloads[w] for w in d.workloads)
        held, previous = (seq, plan), previous_of(plan)
        fleet_now = workloads_edited(fleet_now, data)


def test_a_plan_delta_on_another_base_asks_for_everything() -> None:
    spec = fleet(cluster("de-1"), workload("a"))
    plan = place(spec, declared(spec), {}, commit="1")
    d = plan_delta((3, plan), 4, plan)
    assert d.workloads == {} and d.order is None and d.usage is None
    assert apply_plan_delta((3, plan), d) == plan
    with pytest.raises(NeedFull):
        apply_plan_delta((2, plan), d)
    with pytest.raises(NeedFull):
        apply_plan_delta(None, d)
