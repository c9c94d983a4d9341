"""`fleet.transitions.transition`: the one classifier of plan diff, what-if and ledger.

The table holds the vocabulary; the properties hold that each caller's projection says
what that caller said before the three were merged (the plan schema's `change` enum for
the pull request, the ledger's arrival events), written out here as the old rules.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, PlacementStatus, WorkloadPlacement
from fleet.transitions import transition

W = WorkloadId("t/w")


def a(cluster: str, replicas: int = 1, flavour: str = "h100-80gb") -> Assignment:
    return Assignment(ClusterName(cluster), Flavour(flavour), replicas, 8)


def wp(status: PlacementStatus, *assignments: Assignment) -> WorkloadPlacement:
    return WorkloadPlacement(W, status, tuple(assignments))


@pytest.mark.parametrize(("before", "after", "down", "kind", "plan_change", "event"), [
    (None, wp("Placed", a("x")), (), "Added", "Added", "Placed"),
    ((a("x"),), None, (), "Removed", "Removed", None),
    ((a("x"),), wp("Invalid"), (), "Unchanged", "Unchanged", None),
    ((a("x"),), wp("Placed", a("x")), (), "Unchanged", "Unchanged", None),
    ((), wp("Pending"), (), "Unchanged", "Unchanged", None),
    ((), wp("Placed", a("x")), (), "Placed", "Moved", "Placed"),
    ((a("x"),), wp("Pending"), (), "Pending", "Moved", None),
    ((a("x"),), wp("Placed", a("x", 2)), (), "Resized", "Resized", None),
    ((a("x"),), wp("Placed", a("y")), (), "Moved", "Moved", "Moved"),
    ((a("x"),), wp("Placed", a("y")), ("x",), "FailedOver", "Moved", "FailedOver"),
    ((a("x"),), wp("Placed", a("y")), ("z",), "Moved", "Moved", "Moved"),
    ((a("x"),), wp("Placed", a("x"), a("y")), (), "Moved", "Moved", "Placed"),
    ((a("x"), a("y")), wp("Placed", a("x")), ("y",), "FailedOver", "Moved", None),
], ids=["added", "removed", "invalid-kept", "same", "still-pending", "placed",
        "lost", "resized", "moved", "failed-over", "other-down", "spread", "shrunk"])
def test_the_vocabulary(before: tuple[Assignment, ...] | None, after: WorkloadPlacement | None,
                        down: tuple[str, ...], kind: str, plan_change: str,
                        event: str | None) -> None:
    t = transition(before, after, down={ClusterName(c) for c in down})
    assert (t.kind, t.plan_change, t.arrival_event) == (kind, plan_change, event)


_assignments = st.lists(st.builds(a, st.sampled_from(["x", "y", "z"]), st.integers(1, 2)),
                        max_size=3, unique_by=lambda x: x.cluster).map(tuple)
_after = st.one_of(st.none(), st.builds(lambda s, asg: wp(s, *asg) if s == "Placed"
                                        else wp(s), st.sampled_from(["Placed", "Pending",
                                                                     "Invalid"]),
                                        _assignments))


def _old_plandiff(before: WorkloadPlacement | None, after: WorkloadPlacement | None) -> str:
    """fleet/plandiff.py `_classify` before the merge."""
    if before is None:
        return "Added"
    if after is None:
        return "Removed"
    if after.status == "Invalid":
        return "Unchanged"
    b, n = tuple(sorted(before.assignments)), tuple(sorted(after.assignments))
    if b == n:
        return "Unchanged"
    if {x.cluster for x in b} != {x.cluster for x in n}:
        return "Moved"
    return "Resized"


def _old_events(before: tuple[Assignment, ...], after: WorkloadPlacement,
                down: set[ClusterName]) -> list[tuple[str, str]]:
    """controllers/runtime/manager_io.py `record_plan_events` before the merge."""
    was, now = {x.cluster for x in before}, {x.cluster for x in after.assignments}
    if after.status != "Placed" or was == now:
        return []
    out: list[tuple[str, str]] = []
    for x in after.assignments:
        if x.cluster in was:
            continue
        left = sorted(was - now)
        event = "FailedOver" if [c for c in left if c in down] else (
            "Moved" if left else "Placed")
        out.append((event, x.cluster))
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.none(), st.builds(lambda asg: wp("Placed", *asg) if asg
                                      else wp("Pending"), _assignments)), _after)
def test_the_plan_diff_says_what_it_said(before: WorkloadPlacement | None,
                                          after: WorkloadPlacement | None) -> None:
    if before is None and after is None:
        return
    t = transition(before.assignments if before is not None else None, after)
    assert t.plan_change == _old_plandiff(before, after)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_assignments, _after, st.sets(st.sampled_from([ClusterName(c) for c in "xyz"])))
def test_the_ledger_records_what_it_recorded(before: tuple[Assignment, ...],
                                             after: WorkloadPlacement | None,
                                             down: set[ClusterName]) -> None:
    if after is None:
        return
    t = transition(before, after, down=down)
    got = [(t.arrival_event, x.cluster) for x in after.assignments
           if t.arrival_event is not None and x.cluster in t.arrived]
    assert got == _old_events(before, after, down)
