"""The controller's Prometheus metrics, on `prometheus_client`.

Two kinds, one registry per controller (not the process-global one: tests and the
demo run several controllers in one process):

- **Observed as they happen** (`ControllerMetrics`): duration histograms (reconcile,
  apply, placement, commit accepted -> applied everywhere) and event counters. A
  histogram keeps every observation in its buckets, `_count` and `_sum`, so `rate()`
  and `histogram_quantile()` over them are right for the life of the process (the
  hand-written summaries this replaced kept the last 2,000 observations: `_count`
  stuck and `_sum` went down).
- **Read at scrape time** from the live state (`controllers.status.observe`): gauges (health,
  workloads by status, GPUs, queue, ledger backlog and head) and the counts the
  adapters and the ledger keep. Those counts restart at 0 when an adapter reconnects,
  so they go through `Monotonic`, which turns a restart into a continued count: a
  counter never goes down.

Names: `aifleet_` prefix, counters `_total`, durations `_seconds`; plus
`aifleet_build_info` and the standard `process_*` and `python_info` metrics.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Hashable, Iterable
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0)
"""Reconcile, apply and placement: milliseconds for a small cluster, seconds for a
big fleet's placement, minutes only when something is wrong."""
ROLLOUT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
                   1800.0, 3600.0)
"""Commit accepted -> applied on every reachable cluster: seconds to an hour."""
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""How late the event loop wakes: a millisecond when idle, seconds when starved."""
CPU_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""An HTTP request's CPU: under a millisecond for a cached document, more to build one."""


class Monotonic:
    """Counters from cumulative counts that may restart at zero.

    `read(key, raw, source)` adds what `raw` grew by since the last read; a `raw` below
    the last one, or read from another `source` object (a reconnected adapter with
    fresh stats), is a restart, counted from zero. Keys seen once stay exported with
    their total."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[int, float]] = {}
        self.totals: dict[Hashable, float] = {}

    def read(self, key: Hashable, raw: float, source: object = None) -> float:
        src, last = self._last.get(key, (id(source), 0.0))
        grew = raw - last if raw >= last and src == id(source) else raw
        self._last[key] = (id(source), raw)
        self.totals[key] = self.totals.get(key, 0.0) + grew
        return self.totals[key]


class _Scrape(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not read the live state (the manager registers
        this while it is still being built)."""
        return []


class ControllerMetrics:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        reg = self.registry
        self.reconcile = Histogram(
            "aifleet_reconcile_duration_seconds", "Duration of one cluster reconcile "
            "(stale copies, apply, prune).", ["cluster"], buckets=DURATION_BUCKETS,
            registry=reg)
        self.apply = Histogram(
            "aifleet_apply_duration_seconds", "Duration of one server-side apply (with "
            "prune) of a cluster's desired objects.", ["cluster"],
            buckets=DURATION_BUCKETS, registry=reg)
        self.placement = Histogram(
            "aifleet_placement_duration_seconds", "Duration of one placement (plan) of the "
            "fleet.", buckets=DURATION_BUCKETS, registry=reg)
        self.commit_applied = Histogram(
            "aifleet_commit_applied_seconds", "From a commit accepted by the controller to "
            "it being applied on every reachable cluster.", buckets=ROLLOUT_BUCKETS,
            registry=reg)
        self.loop_lag = Histogram(
            "aifleet_event_loop_lag_seconds", "How late the controller's event loop woke "
            "from a sleep, sampled every 0.1 s (controllers.runtime.looplag).",
            buckets=LAG_BUCKETS, registry=reg)
        self.http_cpu = Histogram(
            "aifleet_http_request_cpu_seconds", "CPU seconds of one HTTP request on the "
            "server's thread (time.thread_time around its handler; what it waited for on "
            "the controller's loop is not in it), by route.", ["route"],
            buckets=CPU_BUCKETS, registry=reg)
        self.http_seconds = Histogram(
            "aifleet_http_request_seconds", "Seconds of one HTTP request from its handler "
            "to its answer written, on the server's thread, by route.", ["route"],
            buckets=LAG_BUCKETS, registry=reg)
        self.reconciles = Counter(
            "aifleet_reconciles", "Cluster reconciles by result (ok, failed).",
            ["cluster", "result"], registry=reg)
        self.commits = Counter(
            "aifleet_source_commits", "Commits accepted from the repo.", registry=reg)
        self.refused = Counter(
            "aifleet_source_commits_refused", "Heads refused, by reason "
            "(e.g. SourceUnverified).", ["reason"], registry=reg)
        Info("aifleet_build", "The controller's version.", registry=reg).info({
            "version": _version(), "python": platform.python_version()})
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        self.monotonic = Monotonic()
        self._accepted: dict[str, float] = {}

    def scrape_with(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Metrics read from the live state at each scrape (`controllers.status.observe`)."""
        self.registry.register(_Scrape(collect))

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    # ------------------------------------------------------------------ events

    def http_request(self, route: str, cpu: float, wall: float) -> None:
        """One HTTP request answered (called on the server's thread: the histograms
        take a lock)."""
        self.http_cpu.labels(route).observe(cpu)
        self.http_seconds.labels(route).observe(wall)

    def commit_accepted(self, commit: str) -> None:
        self.commits.inc()
        self._accepted.setdefault(commit, self.clock())
        for old in list(self._accepted)[:-20]:  # bounded: superseded commits never apply
            del self._accepted[old]

    def commit_done(self, commit: str) -> None:
        """`commit` is applied everywhere reachable: observe how long it took, once."""
        started = self._accepted.pop(commit, None)
        if started is not None:
            self.commit_applied.observe(max(0.0, self.clock() - started))


def _version() -> str:
    try:
        return metadata.version("aifleet")
    except metadata.PackageNotFoundError:
        return "unknown"
