"""fleet.safety, returning clusters: which plan a cluster that was away is reconciled
against, what the first plan after its return takes as running, and when a live copy of
a workload still in the repo may be deleted."""

from __future__ import annotations

import pytest

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import (
    DEGRADED,
    Assignment,
    PlacementStatus,
    PreviousPlan,
    Reason,
    WorkloadPlacement,
)
from fleet.safety import (
    copy_still_running,
    gang_start_waits,
    hold_reconcile,
    keep_live_copy,
    previous_with_returned,
    returned_clusters,
    stale_retry_after,
)

A, B, C = ClusterName("a"), ClusterName("b"), ClusterName("c")
W = WorkloadId("team/w")
H100 = Flavour("h100-80gb")


def on(cluster: ClusterName, replicas: int = 1) -> Assignment:
    return Assignment(cluster, H100, replicas, 8)


def wp(status: PlacementStatus, *clusters: ClusterName, reasons: tuple[Reason, ...] = ()
       ) -> WorkloadPlacement:
    return WorkloadPlacement(W, status, tuple(on(c) for c in clusters), reasons)


@pytest.mark.parametrize(("saw", "held"), [
    ("Healthy", False),
    ("Degraded", False),
    ("Unreachable", True),
    ("Unknown", True),
    (None, True),
], ids=["saw-it-healthy", "saw-it-degraded", "made-while-it-was-away",
        "made-before-it-listed", "made-before-it-was-in-the-fleet"])
def test_a_cluster_is_reconciled_only_against_a_plan_that_saw_it_answer(
        saw: str | None, held: bool) -> None:
    plan_saw = {B: "Healthy", **({A: saw} if saw is not None else {})}
    why = hold_reconcile(A, plan_saw)
    assert (why is not None) is held
    if why is not None:
        assert "waiting for a plan made after it answered" in why


def test_returned_clusters_answer_now_and_did_not_when_the_plan_was_made() -> None:
    saw = {A: "Unreachable", B: "Healthy", C: "Unknown"}
    now = {A: "Healthy", B: "Healthy", C: "Unreachable"}
    assert returned_clusters(saw, now) == {A}
    assert returned_clusters(saw, {**now, C: "Degraded"}) == {A, C}
    assert returned_clusters(now, now) == set()


DEG = (Reason("degraded: 2 of 4 replicas on 1 cluster", None, DEGRADED),)


@pytest.mark.parametrize(("last", "placed", "live", "expected"), [
    # Failed over to b while a was away: the failover stands, a's copy is stale.
    (wp("Placed", B), {W: (on(B, 2),)}, {W: (on(A, 2),)}, {W: (on(B, 2),)}),
    # Pending while a was away (it fitted nowhere else): it runs on a, so it counts.
    (wp("Pending"), {}, {W: (on(A, 2),)}, {W: (on(A, 2),)}),
    # A spread kept degraded on b: a's copy joins it again.
    (wp("Placed", B, reasons=DEG), {W: (on(B, 2),)}, {W: (on(A, 2),)},
     {W: (on(A, 2), on(B, 2))}),
    # Kept on a through the grace (never moved): nothing to add.
    (wp("Placed", A), {W: (on(A, 2),)}, {W: (on(A, 2),)}, {W: (on(A, 2),)}),
    # Not in the last plan at all (a new commit while it was away): it runs on a.
    (None, {}, {W: (on(A, 1),)}, {W: (on(A, 1),)}),
], ids=["completed-failover-stands", "pending-runs-there", "degraded-spread-rejoins",
        "kept-through-the-grace", "unknown-to-the-last-plan"])
def test_the_first_plan_after_a_return_takes_what_still_runs_there_as_running(
        last: WorkloadPlacement | None, placed: PreviousPlan, live: PreviousPlan,
        expected: PreviousPlan) -> None:
    previous = previous_with_returned(placed, {W: last} if last is not None else {}, live)
    assert previous == expected


RESIDENCY_HERE = (Reason("0/3 clusters: 3 residency(eu-personal)", None, "Residency"),
                  Reason("dataClass eu-personal may not run in US", A, "Residency"))
CAPACITY_HERE = (Reason("0/3 clusters: 1 health(Unreachable), 2 capacity", None, "Capacity"),
                 Reason("h100-80gb: needs 8 on one node, largest free 0", A, "Capacity"))

TAINTED_HERE = Reason("cannot stay: taint gpu-drain:NoExecute is not tolerated", A, "Taint")
SELECTED_AWAY = Reason("cannot stay: not in placement.clusters", A, "Selector")
AWAY_THERE = Reason("cannot stay: Unreachable for 400s, past the 300s grace: failing over",
                    B, "Health")


@pytest.mark.parametrize(("placement", "reachable", "deletable"), [
    # Moved to b, which answers: the copy on a is stale and goes (failover completed).
    (wp("Placed", B), {A, B}, True),
    # Spread degraded on b and c, both answer: a's copy may go.
    (wp("Placed", B, C, reasons=DEG), {A, B, C}, True),
    # Placed only on b, which does not answer now: a's copy may be its only one.
    (wp("Placed", B), {A}, False),
    # Pending because a spread lost a cluster / nothing else fits: never deleted.
    (wp("Pending", reasons=CAPACITY_HERE), {A, B, C}, False),
    (wp("Pending"), {A}, False),
    # Pending because residency now forbids where it runs: residency fails closed.
    (wp("Pending", reasons=RESIDENCY_HERE), {A, B}, True),
    # Could not stay: a NoExecute taint here (evicted), or its team moved it away.
    (wp("Pending", reasons=(TAINTED_HERE, *CAPACITY_HERE)), {A, B}, True),
    (wp("Pending", reasons=(SELECTED_AWAY, *CAPACITY_HERE)), {A, B}, True),
    # Could not stay because another cluster of its spread is away: it stays here.
    (wp("Pending", reasons=(AWAY_THERE, *CAPACITY_HERE)), {A, C}, False),
    # Invalid in this commit: keeps its last good state.
    (wp("Invalid"), {A, B}, False),
    # The plan keeps it here: not a deletion at all.
    (wp("Placed", A, B), {A, B}, False),
    # Removed from the repo: for the deletion guards to judge, not this rule.
    (None, {A, B}, True),
], ids=["stale-after-failover", "stale-after-degraded-move", "placed-only-on-the-unreachable",
        "pending-capacity-or-spread", "pending-everything-away", "pending-residency-here",
        "pending-evicted-by-taint", "pending-moved-by-its-team", "pending-other-cluster-away",
        "invalid", "placed-here", "removed-from-repo"])
def test_a_live_copy_is_deleted_only_when_the_workload_runs_on_in_clusters_that_answer(
        placement: WorkloadPlacement | None, reachable: set[ClusterName],
        deletable: bool) -> None:
    why = keep_live_copy(A, placement, reachable)
    assert (why is None) is deletable, why



@pytest.mark.parametrize(("taint", "b_down", "spread", "status", "deletable"), [
    ("NoExecute", False, False, "Pending", True),
    ("NoExecute", False, True, "Placed", True),
    ("NoSchedule", False, True, "Placed", False),
    (None, True, True, "Placed", False),
    (None, True, False, "Placed", False),
], ids=["gang-evicted-by-a-noexecute-taint", "spread-evicted-from-a-moves-to-b",
        "noschedule-keeps-what-runs", "spread-partner-away-degraded-on-a",
        "gang-on-a-while-b-is-away"])
def test_the_planners_own_reasons_tell_an_eviction_from_an_absence(
        taint: str | None, b_down: bool, spread: bool, status: str, deletable: bool
        ) -> None:
    # The rule reads the reasons placement writes: checked against the real Planner.
    # A runs the workload (with B for a spread); may A's copy be deleted?
    from fleet.placement import place
    from tests.unit.fleet_placement.builders import (
        cluster,
        declared,
        fleet,
        with_health,
        workload,
    )

    taints = [{"key": "gpu-drain", "effect": taint}] if taint else None
    w = (workload("w", "team", wtype="inference", replicas=2, count=8,
                  data_class="eu-personal",
                  placement={"spread": {"minClusters": 2, "maxClusters": 2}})
         if spread else workload("w", "team", count=8, data_class="eu-personal",
                                 placement={"clusters": ["a"]}))
    spec = fleet(cluster("a", "DE", (("h100-80gb", 8, 8),), taints=taints),
                 cluster("b", "FR", (("h100-80gb", 8, 8),)), w)
    cap = declared(spec)
    if b_down:
        cap = with_health(cap, "b", "Unreachable", 10_000)
    runs = (on(A, 1), on(B, 1)) if spread else (on(A, 1),)
    p = place(spec, cap, {W: runs}).workloads[W]
    assert p.status == status, p.reasons
    assert (keep_live_copy(A, p, {A} if b_down else {A, B}) is None) is deletable


@pytest.mark.parametrize(("failures", "asked", "expected"), [
    (1, None, 0.25),
    (2, None, 0.5),
    (3, None, 1.0),
    (4, None, 1.0),
    (40, None, 1.0),  # never backed off towards a minute
    (1, 3.0, 3.0),  # the API server's Retry-After is honoured
    (5, 0.1, 1.0),
], ids=["first", "second", "capped", "stays-capped", "forty", "retry-after", "short-asked"])
def test_a_stale_copy_that_could_not_be_deleted_is_tried_again_within_a_second(
        failures: int, asked: float | None, expected: float) -> None:
    assert stale_retry_after(failures, asked) == expected


@pytest.mark.parametrize(("listed", "phases", "running"), [
    (True, [], True),
    (False, ["Running"], True),
    (False, ["Pending"], True),
    (False, ["Running", "Succeeded"], True),
    (False, ["Succeeded", "Failed"], False),
    (False, [], False),
], ids=["its-job-is-listed", "deleted-but-a-pod-still-runs", "a-pod-not-started-yet",
        "one-pod-of-two-still-runs", "all-pods-finished", "gone"])
def test_a_copy_runs_until_its_objects_are_gone_and_its_pods_terminated(
        listed: bool, phases: list[str], running: bool) -> None:
    assert copy_still_running(listed, phases) is running


@pytest.mark.parametrize(("gang", "runs_here", "elsewhere", "waits"), [
    (True, False, {"a"}, True),
    (True, False, {"a", "c"}, True),
    (True, False, set(), False),
    (True, True, {"a"}, False),
    (False, False, {"a"}, False),
], ids=["gang-held-by-another-cluster", "held-by-two", "held-nowhere",
        "already-runs-here", "not-a-gang-may-overlap"])
def test_a_gang_starts_only_once_no_other_answering_cluster_holds_it(
        gang: bool, runs_here: bool, elsewhere: set[str], waits: bool) -> None:
    why = gang_start_waits(gang=gang, runs_here=runs_here, held_elsewhere=elsewhere)
    assert (why is not None) is waits
    if why is not None:
        assert all(c in why for c in elsewhere) and "never runs on two clusters" in why
