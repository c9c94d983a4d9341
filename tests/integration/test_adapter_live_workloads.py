"""`ClusterAdapter.live_workloads()` (asked by every reconcile, placement pass, status
page and drain check) is kept as the informers' objects change, not rebuilt from every
live object per call: a real adapter on a simulated cluster over HTTPS; counted (the
objects read back), not timed."""

from __future__ import annotations

from pathlib import Path

from clusters.inventory import placement_of
from tests.support.adapter import TEAM, all_seen, connected, job, namespace, serving, until


async def test_a_hundred_reads_with_nothing_changed_rebuild_nothing(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), job("train", parallelism=2),
                               *serving("serve", replicas=3)], prune=False)
        await all_seen(c, "Job", "train")
        await all_seen(c, "Deployment", "serve")
        live = c.adapter.applier.live
        first = c.adapter.live_workloads()
        assert {k: v.replicas for k, v in first.items()} == {
            f"{TEAM}.train": 2, f"{TEAM}.serve": 3}
        reads = live.read_backs
        for _ in range(100):
            assert c.adapter.live_workloads() == first
        assert live.read_backs == reads  # 0 rebuilds, 0 objects read back
        # A change comes as events: it shows, and what is kept is what a pass over
        # every object says.
        await c.adapter.apply([namespace(), job("train", parallelism=2)], prune=True)
        await until(lambda: f"{TEAM}.serve" not in c.adapter.live_workloads(),
                    what="the pruned Deployment gone from what runs")
        assert c.adapter.live_workloads() == {
            lp.workload: lp for _k, o in sorted(live.items())
            if (lp := placement_of(o)) is not None}
        assert set(c.adapter.live_workloads()) == {f"{TEAM}.train"}
