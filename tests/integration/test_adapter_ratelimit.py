"""The per-cluster client rate limit against a simulated cluster: a burst goes at once,
then requests are paced at the configured QPS; the pacing is per cluster."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import anyio

from clusters.adapter import ClusterAdapter
from clusters.client import NAMESPACE
from clusters.kubeconfig import ConnectionSpec
from tests.integration.test_adapter_harness import FAST, NAME, connected


async def _burst(adapter: ClusterAdapter, n: int) -> float:
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(lambda: adapter.client.request("GET", NAMESPACE.item("default"),
                                                         verb="get"))
    return time.monotonic() - started


async def test_requests_beyond_the_burst_are_paced_at_the_qps(tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        slow = await ClusterAdapter.connect(ConnectionSpec(NAME, str(c.kubeconfig), NAME),
                                            dataclasses.replace(FAST, qps=20, burst=5))
        try:
            assert await _burst(slow, 5) < 0.5  # the burst: no waiting
            # 20 more at 20 QPS: about one second.
            took = await _burst(slow, 20)
            assert 0.9 <= took < 2.0, took
            assert slow.stats.calls["get"] == 25
        finally:
            await slow.aclose()
        # Another adapter to the same cluster has its own bucket.
        assert await _burst(c.adapter, 20) < 0.8  # paced, it would take 0.95 s
