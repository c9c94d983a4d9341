"""`/metrics` on prometheus_client: exposition that parses, histograms that keep every
observation, counters that never go down (even when what they count restarts at 0)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from controllers.status.metrics import ControllerMetrics, Monotonic
from tests.support.clock import FakeClock


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exposition_parses_and_escapes_labels() -> None:
    m = ControllerMetrics()

    def collect() -> Iterator[Metric]:
        calls = CounterMetricFamily("aifleet_api_calls", "calls", labels=["cluster", "verb"])
        calls.add_metric(["eu-fra-1", "apply"], 3)
        gpus = GaugeMetricFamily("aifleet_gpus", "GPUs", labels=["cluster"])
        gpus.add_metric(['x"y\nz'], 8)
        yield from (calls, gpus)

    m.scrape_with(collect)
    m.reconcile.labels("eu-fra-1").observe(0.5)
    samples = _samples(m.render())
    assert samples[("aifleet_api_calls_total", (("cluster", "eu-fra-1"), ("verb", "apply")))] == 3
    assert samples[("aifleet_gpus", (("cluster", 'x"y\nz'),))] == 8
    assert samples[("aifleet_reconcile_duration_seconds_count", (("cluster", "eu-fra-1"),))] == 1
    assert samples[("aifleet_reconcile_duration_seconds_bucket",
                    (("cluster", "eu-fra-1"), ("le", "0.5")))] == 1
    build = [k for k in samples if k[0] == "aifleet_build_info"]
    assert build and dict(build[0][1])["version"]


def test_histograms_keep_every_observation() -> None:
    """The hand-written summaries kept the last 2,000: _count stuck, _sum went down."""
    m = ControllerMetrics()
    sums = []
    for i in range(2500):
        m.placement.observe(0.5 if i < 2000 else 0.1)
        if i in (1999, 2499):
            s = _samples(m.render())
            sums.append((s[("aifleet_placement_duration_seconds_count", ())],
                         s[("aifleet_placement_duration_seconds_sum", ())]))
    assert sums[0] == (2000, 1000.0)
    assert sums[1][0] == 2500 and sums[1][1] > sums[0][1]


def test_a_count_that_restarts_at_zero_keeps_counting() -> None:
    mono = Monotonic()
    seen = [mono.read("calls", raw) for raw in (5, 9, 2, 4, 4, 0, 1)]  # reconnects at 2, 0
    assert seen == [5, 9, 11, 13, 13, 13, 14]
    assert all(b >= a for a, b in itertools.pairwise(seen))


def test_a_new_source_is_a_restart_even_when_its_count_is_already_higher() -> None:
    """A reconnected adapter made 150 calls before the scrape; the old one had 100."""
    mono, old, new = Monotonic(), object(), object()
    assert mono.read("calls", 100, old) == 100
    assert mono.read("calls", 150, new) == 250
    assert mono.read("calls", 160, new) == 260


def test_commit_to_applied_is_observed_once_per_commit() -> None:
    clock = FakeClock()
    m = ControllerMetrics(clock=clock)
    m.commit_accepted("a" * 40)
    clock.advance(12.0)
    m.commit_done("a" * 40)
    m.commit_done("a" * 40)  # applied again (a resync): not a second rollout
    s = _samples(m.render())
    assert s[("aifleet_commit_applied_seconds_count", ())] == 1
    assert s[("aifleet_commit_applied_seconds_sum", ())] == 12.0
    assert s[("aifleet_commit_applied_seconds_bucket", (("le", "10.0"),))] == 0
    assert s[("aifleet_commit_applied_seconds_bucket", (("le", "20.0"),))] == 1
    assert s[("aifleet_source_commits_total", ())] == 1


def test_workloads_by_status_are_counted_once_per_plan_not_per_scrape() -> None:
    from controllers.status.observe import PlanCounts
    from fleet.ids import ClusterName, Flavour, WorkloadId
    from fleet.placement.types import Assignment, Plan, WorkloadPlacement

    a, b = WorkloadId("t/a"), WorkloadId("t/b")
    placed = WorkloadPlacement(a, "Placed", (Assignment(ClusterName("c"), Flavour("f"), 1, 1),))
    plan = Plan("c1", {a: placed, b: WorkloadPlacement(b, "Pending")})
    counted = PlanCounts()
    for _ in range(5):  # five scrapes of one plan
        assert counted(plan) == {"Placed": 1, "Pending": 1}
    assert counted.counted == 1
    after = Plan("c2", {a: placed})
    assert counted(after) == {"Placed": 1} and counted.counted == 2
    assert counted(None) == {}
