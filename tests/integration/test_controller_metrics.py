"""`/metrics` of the real controller on simulated clusters, over real HTTP: it parses
with prometheus_client's parser, has the histograms and gauges dashboards need, and no
counter (nor histogram count, sum or bucket) goes down between two scrapes."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from controllers.demo.sandbox import synced, until
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox, serve_doc

Key = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> tuple[dict[Key, float], dict[str, str]]:
    """(sample -> value, family -> type) of a scrape; raises if it does not parse."""
    values: dict[Key, float] = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values, types


def monotonic_samples(values: dict[Key, float], types: dict[str, str]) -> dict[Key, float]:
    """The samples that must never go down: counters' `_total`, histograms' parts."""
    out = {}
    for (name, labels), v in values.items():
        if name.endswith("_created"):
            continue
        fam = next((f for f in types if name == f or name.startswith(f + "_")), None)
        if fam is not None and types[fam] in ("counter", "histogram"):
            out[(name, labels)] = v
    return out


async def test_metrics_parse_and_counters_never_go_down(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            first, types = parse((await c.get("/metrics")).text)
            commit = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(2)},
                                     "serve: 2 replicas")
            await until(lambda: synced(m.status(), commit) == (3, 3), 30,
                        what="the second commit applied")
            second, types2 = parse((await c.get("/metrics")).text)

    before, after = monotonic_samples(first, types), monotonic_samples(second, types2)
    assert before, "no counters in the first scrape"
    for key, v in before.items():
        assert key in after, f"{key} disappeared"
        assert after[key] >= v, f"{key} went down: {v} -> {after[key]}"
    assert types["aifleet_reconcile_duration_seconds"] == "histogram"
    assert types["aifleet_apply_duration_seconds"] == "histogram"
    assert types["aifleet_placement_duration_seconds"] == "histogram"
    assert types["aifleet_api_calls"] == "counter"  # exposed as aifleet_api_calls_total
    assert second[("aifleet_commit_applied_seconds_count", ())] == 2
    assert second[("aifleet_source_commits_total", ())] == 2
    assert after[("aifleet_placement_duration_seconds_count", ())] > \
        before[("aifleet_placement_duration_seconds_count", ())]
    assert second[("aifleet_clusters", (("state", "Healthy"),))] == 3
    assert second[("aifleet_cluster_health", (("cluster", "eu-fra-1"),
                                              ("state", "Healthy")))] == 1
    assert second[("aifleet_cluster_health", (("cluster", "eu-fra-1"),
                                              ("state", "Unreachable")))] == 0
    assert second[("aifleet_placements", (("status", "Placed"),))] == 3
    assert second[("aifleet_ledger_backlog", ())] == 0
    assert ("aifleet_ledger_head_seq", ()) in second
    assert any(k[0] == "aifleet_build_info" for k in second)
    assert ("process_cpu_seconds_total", ()) in second
