"""The per-cluster client rate limit against a simulated cluster: a burst goes at once,
then requests are paced at the configured QPS; the pacing is per cluster.

The bucket runs on a test clock: pacing is counted (waits, and the seconds the clock
was moved by them), never timed, so a loaded machine cannot fail it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from clusters.adapter import ClusterAdapter
from clusters.client import NAMESPACE
from clusters.kubeconfig import ConnectionSpec
from tests.support.adapter import FAST, NAME, connected
from tests.support.clock import FakeClock


async def _burst(adapter: ClusterAdapter, n: int) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(lambda: adapter.client.request("GET", NAMESPACE.item("default"),
                                                         verb="get"))


async def test_requests_beyond_the_burst_are_paced_at_the_qps(tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        clock = FakeClock()
        slow = await ClusterAdapter.connect(
            ConnectionSpec(NAME, str(c.kubeconfig), NAME),
            dataclasses.replace(FAST, qps=20, burst=5, clock=clock, sleep=clock.sleep))
        try:
            await _burst(slow, 5)  # the burst: no waiting
            assert slow.client.bucket.waits == 0 and clock.sleeps == []
            started = clock.now
            await _burst(slow, 20)  # 20 more at 20 QPS: one second of the bucket's clock
            assert slow.client.bucket.waits == 20
            assert clock.now - started == pytest.approx(1.0)
            assert all(s == pytest.approx(0.05) for s in clock.sleeps)
            assert slow.stats.calls["get"] == 25
        finally:
            await slow.aclose()
        # Another adapter to the same cluster has its own bucket: 20 fit in its burst.
        await _burst(c.adapter, 20)
        assert c.adapter.client.bucket.waits == 0
        assert slow.client.bucket.waits == 20
