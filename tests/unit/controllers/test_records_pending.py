"""A plan that leaves many workloads newly Pending logs a bounded number of lines.

The 1,000 x 50,000 run's first plans left every workload Pending and logged one
`workload_pending` warning each: 50,000 lines in seconds, per plan and per replica. Now
the first `PENDING_LINES` are logged one by one and the rest counted by reason in one
`workloads_pending` line; every one is still a record (events feed, ledger).
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from controllers.runtime.desired import DesiredState
from controllers.runtime.records import PENDING_LINES, Records
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from fleet.ids import WorkloadId
from fleet.placement.types import Plan, Reason, WorkloadPlacement
from tests.support.logs import logged


def pending_plan(n: int) -> Plan:
    def why(i: int) -> str:
        return "0/2 clusters: 2 health(Unknown)" if i % 4 else "0/2 clusters: 2 quota"
    return Plan("c1", {WorkloadId(f"team/w{i:05d}"): WorkloadPlacement(
        WorkloadId(f"team/w{i:05d}"), "Pending", (), (Reason(why(i)),)) for i in range(n)})


def records(tmp_path: Path, feed: EventFeed) -> Records:
    return Records(Settings(repo=str(tmp_path)), None, feed,
                   desired=DesiredState(lambda *_a, **_k: {}),  # type: ignore[arg-type]
                   adapters={}, may_act=lambda: True, task_group=lambda: None,
                   on_started=lambda _sink: None)


def test_many_newly_pending_workloads_log_a_bounded_number_of_lines(tmp_path: Path) -> None:
    feed = EventFeed(size=1000)
    n = PENDING_LINES * 10
    with capture_logs() as logs:
        records(tmp_path, feed).plan_events(None, pending_plan(n), None)
    assert logged(logs, "workload_pending") == PENDING_LINES
    summary = [e for e in logs if e["event"] == "workloads_pending"]
    assert len(summary) == 1 and summary[0]["workloads"] == n
    assert summary[0]["reasons"] == {"0/2 clusters: 2 health(Unknown)": n * 3 // 4,
                                     "0/2 clusters: 2 quota": n // 4}
    # every one still recorded
    assert [e["event"] for e in feed.document()["events"]].count("Pending") == n


def test_a_few_newly_pending_workloads_are_each_logged(tmp_path: Path) -> None:
    with capture_logs() as logs:
        records(tmp_path, EventFeed()).plan_events(None, pending_plan(3), None)
    assert logged(logs, "workload_pending") == 3
    assert logged(logs, "workloads_pending") == 0
