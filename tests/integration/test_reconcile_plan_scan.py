"""A cluster's reconcile does work in what runs there, not in the size of the plan.

Issue 22 at 1,000 clusters x 50,000 workloads: each cluster pass asked
`any(... Placed ...)` over the whole plan for prune's mass-deletion guard. While every
workload is Pending (every cluster still Unknown) that scan never stops early: 50,000
steps per cluster pass, 50 million per round of 1,000 clusters. The answer is now kept
with the plan (`DesiredState.anything_placed`). Through the real `ClusterReconciler`
against a simulated cluster over HTTPS: twenty passes look at the plan's workloads no
more often than one does, whether the plan holds 10 Pending workloads or 2,000, and the
guard still refuses to prune everything while nothing is placed anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.runtime.desired import DesiredState
from controllers.runtime.reconcile import ClusterReconciler
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, Reason, WorkloadPlacement
from fleet.render import render
from tests.support.adapter import NAME, connected, job, namespace

OTHER = ClusterName("elsewhere-1")


class CountingWorkloads(dict):  # type: ignore[type-arg]
    """A plan's workloads that count the passes over them."""

    passes = 0

    def items(self):  # type: ignore[no-untyped-def]
        CountingWorkloads.passes += 1
        return super().items()

    def values(self):  # type: ignore[no-untyped-def]
        CountingWorkloads.passes += 1
        return super().values()

    def __iter__(self):  # type: ignore[no-untyped-def]
        CountingWorkloads.passes += 1
        return super().__iter__()


def pending_plan(n: int, placed_elsewhere: int = 0) -> Plan:
    """`n` Pending workloads (every cluster refused them), and some placed on another
    cluster."""
    reason = (Reason("0/2 clusters: 2 Unknown", None, "Health"),)
    workloads = CountingWorkloads({
        WorkloadId(f"team-a/w{i:05d}"): WorkloadPlacement(
            WorkloadId(f"team-a/w{i:05d}"), "Pending", (), reason) for i in range(n)})
    for i in range(placed_elsewhere):
        wid = WorkloadId(f"team-b/p{i:05d}")
        workloads[wid] = WorkloadPlacement(
            wid, "Placed", (Assignment(OTHER, Flavour("h100-80gb"), 1, 1),))
    return Plan("c1", workloads)


@pytest.mark.parametrize("pending", [10, 2000])
async def test_twenty_passes_scan_the_plan_no_more_than_one(tmp_path: Path,
                                                            pending: int) -> None:
    async with connected(tmp_path) as c:
        # one object of ours runs there: prune would delete it, the guard must not let it
        await c.adapter.apply([namespace(), job("old")], prune=False)
        desired = DesiredState(render)
        desired.head = "c1"
        desired.plan = pending_plan(pending)
        assert desired.anything_placed is False
        reconcile = ClusterReconciler(desired, {NAME: c.adapter}, {})
        CountingWorkloads.passes = 0
        assert await reconcile(NAME) == reconcile.resync_interval
        one = CountingWorkloads.passes
        for _ in range(19):
            assert await reconcile(NAME) == reconcile.resync_interval
        assert CountingWorkloads.passes == one <= 3  # per plan, never per pass
        assert reconcile.totals.runs == 20 and reconcile.totals.pruned == 0
        assert NAME in reconcile.prune_refused  # nothing placed anywhere: nothing pruned
        assert "nlp-team.old" in c.adapter.live_workloads()


@pytest.mark.parametrize(("pending", "placed", "answers"), [
    (5, 0, (False, True)), (5, 1, (True, True)), (0, 2, (True, False)), (0, 0, (False, False)),
], ids=["all-pending", "both", "all-placed", "empty"])
def test_anything_placed_and_pending_follow_each_plan(
        pending: int, placed: int, answers: tuple[bool, bool]) -> None:
    desired = DesiredState(render)
    assert (desired.anything_placed, desired.anything_pending) == (False, False)
    desired.plan = pending_plan(3, placed_elsewhere=2)  # an earlier plan: both
    desired.plan = pending_plan(pending, placed_elsewhere=placed)
    assert (desired.anything_placed, desired.anything_pending) == answers
    desired.plan = None
    assert (desired.anything_placed, desired.anything_pending) == (False, False)
