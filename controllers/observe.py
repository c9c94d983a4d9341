"""What the controller tells the outside: Prometheus metrics, built at scrape time.

Gauges and counters are read from the live state (adapters, queue, plan) when
`/metrics` is scraped rather than updated on every event: nothing to keep in step,
and a scrape costs O(clusters x flavours + workloads).

    aifleet_reconcile_duration_seconds{cluster}      summary, per cluster reconcile
    aifleet_placement_duration_seconds               summary, per placement cycle
    aifleet_queue_depth{queue}                       keys waiting
    aifleet_api_calls_total{cluster,verb}            Kubernetes API calls
    aifleet_api_retries_total{cluster}
    aifleet_drift_corrections_total{cluster}         drift healed by us
    aifleet_placements{status}                       workloads Placed / Pending / Invalid
    aifleet_gpus_allocated{cluster,flavour}          GPUs the plan gives our workloads
    aifleet_gpus_free{cluster,flavour}               GPUs still free after the plan
    aifleet_cluster_healthy{cluster}                 1 Healthy, 0 otherwise
    aifleet_leader                                   1 while this replica may write
    aifleet_source_commits_total                     commits accepted
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clusters.adapter import ClusterAdapter
from controllers.metrics import Registry


def render_metrics(*, adapters: Mapping[str, ClusterAdapter],
                   reconcile_durations: Mapping[str, Sequence[float]],
                   placement_durations: Iterable[float], queue_depth: int,
                   status_clusters: Sequence[Mapping[str, Any]],
                   placement_status: Iterable[str], leader: bool,
                   commits: int, placements_by_kind: Mapping[str, int] | None = None) -> str:
    reg = Registry()
    rec = reg.summary("aifleet_reconcile_duration_seconds",
                      "Duration of one cluster reconcile (apply, prune).")
    for cluster, obs in sorted(reconcile_durations.items()):
        for v in obs:
            rec.observe(v, cluster=cluster)
    plc = reg.summary("aifleet_placement_duration_seconds", "Duration of one placement.")
    for v in placement_durations:
        plc.observe(v)
    kinds = reg.counter("aifleet_placement_runs_total",
                        "Placements by how they were made: full, baseline (recorded for "
                        "re-planning), incremental.")
    for kind, n in sorted((placements_by_kind or {}).items()):
        kinds.set(n, kind=kind)
    reg.gauge("aifleet_queue_depth", "Keys waiting in a work queue.").set(
        queue_depth, queue="clusters")
    calls = reg.counter("aifleet_api_calls_total", "Kubernetes API calls by cluster, verb.")
    retries = reg.counter("aifleet_api_retries_total", "Kubernetes API call retries.")
    drift = reg.counter("aifleet_drift_corrections_total", "Drifted objects corrected.")
    healthy = reg.gauge("aifleet_cluster_healthy", "1 when the cluster is Healthy.")
    for name, a in sorted(adapters.items()):
        for verb, n in sorted(a.stats.calls.items()):
            calls.set(n, cluster=name, verb=verb)
        retries.set(a.stats.retries, cluster=name)
        drift.set(a.applier.corrections, cluster=name)
        healthy.set(1 if a.health_state == "Healthy" else 0, cluster=name)
    by_status = Counter(placement_status)
    placed = reg.gauge("aifleet_placements", "Workloads by placement status.")
    for status in ("Placed", "Pending", "Invalid"):
        placed.set(by_status.get(status, 0), status=status)
    alloc = reg.gauge("aifleet_gpus_allocated", "GPUs allocated to fleet workloads.")
    free = reg.gauge("aifleet_gpus_free", "GPUs free after the plan.")
    for row in status_clusters:
        for flavour, g in sorted(row["gpus"].items()):
            alloc.set(g["allocated"], cluster=row["name"], flavour=flavour)
            free.set(g["free"], cluster=row["name"], flavour=flavour)
    reg.gauge("aifleet_leader", "1 while this replica may write.").set(1 if leader else 0)
    reg.counter("aifleet_source_commits_total", "Commits accepted from the repo.").set(commits)
    return reg.render()
