"""What the controller tells the outside at each `/metrics` scrape, read from live state.

Gauges (and the counts adapters and the ledger keep) are read from the live state when
`/metrics` is scraped rather than updated on every event: nothing to keep in step, and
a scrape costs O(clusters x flavours + workloads). Histograms and event counters are
observed as things happen (`controllers.status.metrics.ControllerMetrics`).

    aifleet_reconcile_duration_seconds{cluster}      histogram, per cluster reconcile
    aifleet_apply_duration_seconds{cluster}          histogram, per server-side apply
    aifleet_placement_duration_seconds               histogram, per placement
    aifleet_commit_applied_seconds                   histogram, commit accepted -> applied
    aifleet_reconciles_total{cluster,result}         ok / failed
    aifleet_source_commits_total                     commits accepted
    aifleet_source_commits_refused_total{reason}     heads refused (e.g. unsigned)
    aifleet_placement_runs_total{kind}               full / baseline / incremental
    aifleet_event_loop_lag_seconds                   histogram, how late the loop wakes
    aifleet_event_loop_stalled_seconds_total         the lags summed
    aifleet_timeouts_discounted_total{cluster}       timeouts while the loop lagged
    aifleet_replans_total{outcome}                   asked / planned / coalesced / skipped
    aifleet_cluster_health_changes_total{cluster,state}  changes seen, by new state
    aifleet_status_fresh_reads_total{outcome}        status reads: fresh / late / cached
    aifleet_api_calls_total{cluster,verb}            Kubernetes API calls
    aifleet_api_retries_total{cluster}
    aifleet_drift_corrections_total{cluster}         drift healed by us
    aifleet_ledger_records_total                     ledger records written
    aifleet_ledger_write_failures_total              failed ledger writes
    aifleet_ledger_backlog                           decisions waiting to be written
    aifleet_ledger_head_seq                          seq of the last record written
    aifleet_queue_depth{queue}                       keys waiting
    aifleet_placements{status}                       workloads Placed / Pending / Invalid
    aifleet_clusters{state}                          clusters by health state
    aifleet_cluster_health{cluster,state}            1 for the cluster's state, else 0
    aifleet_cluster_healthy{cluster}                 1 Healthy, 0 otherwise
    aifleet_gpus_allocated{cluster,flavour}          GPUs the plan gives our workloads
    aifleet_gpus_free{cluster,flavour}               GPUs still free after the plan
    aifleet_leader                                   1 while this replica may write
    aifleet_shard_held{shard}                        with --shards: 1 for a shard held here
    aifleet_shard_clusters{shard}                    with --shards: clusters in the shard
    aifleet_build_info{version,python}               1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from controllers.runtime.fleetstate import capacity_snapshot
from controllers.status.cache import READ_OUTCOMES
from controllers.status.metrics import Monotonic
from controllers.status.statusdoc import cluster_rows
from fleet.capacity import HEALTH_STATES
from fleet.placement.types import Plan

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager


def manager_collector(m: Manager) -> Callable[[], Iterator[Metric]]:
    mono = m.metrics.monotonic
    counted = PlanCounts()

    def collect() -> Iterator[Metric]:
        yield from _counters(m, mono)
        yield from _gauges(m, counted)
    return collect


class PlanCounts:
    """Workloads by placement status, counted once per plan (not per scrape: a scrape
    is work in clusters, not in the fleet's workloads)."""

    def __init__(self) -> None:
        self._plan: Plan | None = None
        self._counts: Counter[str] = Counter()
        self.counted = 0
        """How many plans were counted."""

    def __call__(self, plan: Plan | None) -> Counter[str]:
        if plan is None:
            return Counter()
        if plan is not self._plan:
            self._plan, self._counts = plan, Counter(
                wp.status for wp in plan.workloads.values())
            self.counted += 1
        return self._counts


def _counters(m: Manager, mono: Monotonic) -> Iterator[Metric]:
    kinds = CounterMetricFamily(
        "aifleet_placement_runs", "Placements by how they were made: full, baseline "
        "(recorded for re-planning), incremental.", labels=["kind"])
    for kind, n in sorted((getattr(m.placer, "counts", None) or {}).items()):  # Replanner's
        kinds.add_metric([kind], mono.read(("runs", kind), n, m.placer))
    calls = CounterMetricFamily("aifleet_api_calls", "Kubernetes API calls by cluster, "
                                "verb.", labels=["cluster", "verb"])
    retries = CounterMetricFamily("aifleet_api_retries", "Kubernetes API call retries.",
                                  labels=["cluster"])
    drift = CounterMetricFamily("aifleet_drift_corrections", "Drifted objects corrected.",
                                labels=["cluster"])
    for name, a in sorted(m.adapters.items()):
        for verb, n in sorted(a.stats.calls.items()):
            mono.read(("calls", name, verb), n, a)
        mono.read(("retries", name), a.stats.retries, a)
        mono.read(("drift", name), a.applier.corrections, a)
    for key, total in sorted(mono.totals.items(), key=str):  # clusters gone keep theirs
        assert isinstance(key, tuple)
        if key[0] == "calls":
            calls.add_metric([key[1], key[2]], total)
        elif key[0] == "retries":
            retries.add_metric([key[1]], total)
        elif key[0] == "drift":
            drift.add_metric([key[1]], total)
    written = CounterMetricFamily("aifleet_ledger_records", "Ledger records written.")
    failed = CounterMetricFamily("aifleet_ledger_write_failures", "Failed ledger writes.")
    ledger = m.events
    written.add_metric([], mono.read(("ledger", "written"),
                                     getattr(ledger, "written", 0) or 0, ledger))
    failed.add_metric([], mono.read(("ledger", "failures"),
                                    getattr(ledger, "failures", 0) or 0, ledger))
    anchor_failed = CounterMetricFamily("aifleet_ledger_anchor_failures",
                                        "Failed pushes of the ledger head to the anchor.")
    anchor = getattr(m, "anchor", None)
    anchor_failed.add_metric([], mono.read(("ledger", "anchor_failures"),
                                           getattr(anchor, "failures", 0) or 0, anchor))
    yield from (kinds, calls, retries, drift, written, failed, anchor_failed)
    yield from _busy_counters(m, mono)
    if m.settings.leader_elect:
        renewals = CounterMetricFamily(
            "aifleet_lease_renewals", "Renewals of this replica's Leases (the leader's, "
            "with --shards each shard's) by its keeper thread: renewed, failed (tried "
            "again), lost (taken or let go), withheld (due while the event loop had not "
            "beaten within --lease-liveness).", labels=["outcome"])
        for outcome, n in m.leadership.keeper.totals().items():
            renewals.add_metric([outcome], float(n))
        yield renewals


def _busy_counters(m: Manager, mono: Monotonic) -> Iterator[Metric]:
    """Is the controller too busy, and did that ever count against a cluster?"""
    stalled = CounterMetricFamily("aifleet_event_loop_stalled_seconds", "Seconds the "
                                  "event loop woke late, summed.")
    stalled.add_metric([], m.loop_lag.total)
    discounted = CounterMetricFamily(
        "aifleet_timeouts_discounted", "Requests that timed out while the event loop "
        "lagged: not held against the cluster's health.", labels=["cluster"])
    for name, a in sorted(m.adapters.items()):
        mono.read(("busy", name), a.health.busy, a.health)
    replans = CounterMetricFamily(
        "aifleet_replans", "Re-plans asked by capacity and health changes, by outcome "
        "(asked, planned, coalesced into another, skipped as invisible to placement).",
        labels=["outcome"])
    for outcome, n in sorted(m.replans.counts.items()):
        replans.add_metric([outcome], n)
    changes = CounterMetricFamily("aifleet_cluster_health_changes", "Cluster health "
                                  "changes, by the new state.", labels=["cluster", "state"])
    for (cluster, state), n in sorted(m.replans.health_changes.items()):
        changes.add_metric([cluster, state], n)
    reads = CounterMetricFamily(
        "aifleet_status_fresh_reads", "Reads of the status document by how they were "
        "answered: fresh (waited for a document built after the read, and got one), "
        "late (waited fresh_wait in vain: the last one, with its Age), cached (the last "
        "one published, without waiting).", labels=["outcome"])
    cache = m.status_cache
    for outcome in READ_OUTCOMES:  # through Monotonic: a cache replaced counts on
        reads.add_metric([outcome], mono.read(("status_reads", outcome),
                                              cache.reads[outcome], cache))
    for key, total in sorted(mono.totals.items(), key=str):
        assert isinstance(key, tuple)
        if key[0] == "busy":
            discounted.add_metric([key[1]], total)
    yield from (stalled, discounted, replans, changes, reads)


def _gauges(m: Manager, counted: PlanCounts) -> Iterator[Metric]:
    plan, spec = m.desired.plan, m.desired.spec
    snapshot = m.snapshot if spec is None else capacity_snapshot(
        spec.clusters, m.views(), m.settings.failover_grace)
    rows = cluster_rows(spec, plan, snapshot)  # not the whole status document: cheaper
    queue = GaugeMetricFamily("aifleet_queue_depth", "Keys waiting in a work queue.",
                              labels=["queue"])
    queue.add_metric(["clusters"], m.queue.depth)
    by_state = Counter(str(r["health"]) for r in rows)
    clusters = GaugeMetricFamily("aifleet_clusters", "Clusters of the fleet by health "
                                 "state.", labels=["state"])
    health = GaugeMetricFamily("aifleet_cluster_health", "1 for the cluster's health "
                               "state, 0 for the others.", labels=["cluster", "state"])
    healthy = GaugeMetricFamily("aifleet_cluster_healthy", "1 when the cluster is Healthy.",
                                labels=["cluster"])
    alloc = GaugeMetricFamily("aifleet_gpus_allocated", "GPUs allocated to fleet workloads.",
                              labels=["cluster", "flavour"])
    free = GaugeMetricFamily("aifleet_gpus_free", "GPUs free after the plan.",
                             labels=["cluster", "flavour"])
    for state in HEALTH_STATES:
        clusters.add_metric([state], by_state.get(state, 0))
    for row in rows:
        name = str(row["name"])
        for state in HEALTH_STATES:
            health.add_metric([name, state], 1 if row["health"] == state else 0)
        healthy.add_metric([name], 1 if row["health"] == "Healthy" else 0)
        for flavour, g in sorted(row["gpus"].items()):
            alloc.add_metric([name, flavour], g["allocated"])
            free.add_metric([name, flavour], g["free"])
    by_status = counted(plan)
    placed = GaugeMetricFamily("aifleet_placements", "Workloads by placement status.",
                               labels=["status"])
    for status in ("Placed", "Pending", "Invalid"):
        placed.add_metric([status], by_status.get(status, 0))
    leader = GaugeMetricFamily("aifleet_leader", "1 while this replica may write.")
    leader.add_metric([], 1 if m.may_act() else 0)
    ledger = m.events
    backlog = GaugeMetricFamily("aifleet_ledger_backlog", "Decisions waiting to be "
                                "written to the ledger.")
    backlog.add_metric([], getattr(ledger, "pending", 0) or 0)
    head = GaugeMetricFamily("aifleet_ledger_head_seq", "Seq of the last ledger record "
                             "this controller wrote (0: none yet).")
    last = getattr(ledger, "last", None)
    head.add_metric([], getattr(last, "seq", 0) or 0)
    forged = GaugeMetricFamily("aifleet_ledger_forged", "1 while the remote ledger tip "
                               "is refused as rewritten.")
    forged.add_metric([], int(getattr(ledger, "forged", None) is not None))
    blocked = GaugeMetricFamily("aifleet_ledger_blocked", "1 while the ledger cannot take "
                                "records (forged, or the backlog limit reached on failing "
                                "writes).")
    problem = getattr(ledger, "problem", None)
    blocked.add_metric([], int(callable(problem) and problem() is not None))
    anchor = getattr(m, "anchor", None)
    anchored = GaugeMetricFamily("aifleet_ledger_anchored_seq", "Seq of the last ledger head "
                                 "written to the anchor (--ledger-anchor; 0: none yet).")
    last_anchor = getattr(anchor, "last", None)
    anchored.add_metric([], getattr(last_anchor, "seq", 0) or 0)
    yield from (queue, clusters, health, healthy, alloc, free, placed, leader, backlog, head,
                forged, blocked, anchored)
