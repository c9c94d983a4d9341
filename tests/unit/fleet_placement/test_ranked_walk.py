"""The pruned walk over clusters ranked alike (`Planner._options`).

A big fleet has many clusters of one shape, so at a workload's decision most of them
rank the same: the walk keeps a threshold (the `want`-th best score found so far) and
must still choose exactly what scoring every option would. Checked against `explain`'s
full table (every filter and scorer on every cluster), for single-cluster workloads and
for spreads over several clusters (the threshold of the 3rd best, not only the best).
"""

from __future__ import annotations

import pytest

from fleet.placement import explain, place
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

SPREAD = {"spread": {"minClusters": 1, "maxClusters": 3}}


def alike(clusters: int, workloads: int) -> FleetSpec:
    """`clusters` clusters of one shape (a few larger), then workloads of 1-8 GPUs,
    every third a spread over up to 3 clusters."""
    cs = [cluster(f"c{i:03d}", "DE", (("h100-80gb", 64 if i % 7 else 128, 8),))
          for i in range(clusters)]
    ws = [workload(f"w{i:03d}", wtype="inference", replicas=3, count=(1, 2, 4, 8)[i % 4],
                   placement=SPREAD, inference={"port": 8000}) if i % 3 == 0 else
          workload(f"w{i:03d}", count=(1, 2, 4, 8)[i % 4]) for i in range(workloads)]
    return fleet(*cs, *ws)


@pytest.mark.parametrize("clusters", [12, 60], ids=["12-alike", "60-alike"])
def test_the_walk_over_alike_clusters_chooses_the_full_tables_best(clusters: int) -> None:
    spec = alike(clusters, 24)
    capacity = declared(spec)
    plan = place(spec, capacity)
    for wid, p in sorted(plan.workloads.items()):
        assert p.status == "Placed", wid
        ex = explain(spec, capacity, wid)
        best = sorted((-(v.total or 0), c.cluster) for c in ex.clusters
                      for v in c.flavours if v.feasible)
        got = sorted((-(v.total or 0), c.cluster) for c in ex.clusters
                     for v in c.flavours if c.chosen)
        assert got == best[:len(got)], wid  # the top ones, ties by cluster name
        assert len(got) == (3 if spec.workloads[wid].spec.effective_spread.max_clusters > 1
                            else 1), wid
