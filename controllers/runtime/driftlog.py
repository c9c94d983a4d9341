"""Drift the adapters report: kept for status, logged, recorded when corrected.

A Manager-owned part: `handler(cluster)` is what a cluster's adapter calls on each drift
report; `held(cluster)` tells its applier which workloads' drift to leave uncorrected
(a suspended workload or cluster). The last 200 reports are kept (`items`).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from clusters.apply import DriftReport
from controllers.runtime.desired import DesiredState
from controllers.runtime.suspension import Suspensions
from controllers.status.statusdoc import DriftItem
from fleet.render import workload_id_of_label

log = structlog.get_logger()

KEEP = 200


class DriftLog:
    def __init__(self, *, desired: DesiredState, suspensions: Suspensions,
                 record: Callable[..., None], blocked: Callable[[], str | None]) -> None:
        self.desired = desired
        self.suspensions = suspensions
        self.record = record
        self.blocked = blocked
        self.items: list[DriftItem] = []

    def handler(self, cluster: str) -> Callable[[DriftReport], None]:
        def on_drift(report: DriftReport) -> None:
            self._seen(cluster, report)
        return on_drift

    def _seen(self, cluster: str, report: DriftReport) -> None:
        wid = workload_id_of_label(report.workload or "")
        managers = sorted({f.manager for f in report.fields if f.manager})
        self.items.append(DriftItem(cluster, wid, tuple(f.path for f in report.fields),
                                    managers[0] if managers else None, report.corrected,
                                    report.key))
        del self.items[:-KEEP]
        log.warning("drift_detected", cluster=cluster, workload=wid,
                    object=f"{report.key[1]} {report.key[2]}/{report.key[3]}",
                    paths=[f.path for f in report.fields][:10], managers=managers,
                    corrected=report.corrected)
        if report.corrected:
            # Recorded before the correction runs; held while the ledger is blocked.
            held = self.blocked()
            self.record("DriftCorrected", str(wid), cluster=cluster,
                        commit=self.desired.head, result="ok" if held is None else "held",
                        reason=", ".join(f.path for f in report.fields)[:200])

    def held(self, cluster: str) -> Callable[[str | None], bool]:
        """Whether drift of a workload (its label) on `cluster` is left uncorrected:
        while it, or the cluster, is suspended."""
        def held(label: str | None) -> bool:
            return label is not None and self.suspensions.holds(
                cluster, str(workload_id_of_label(label)))
        return held

