"""The work queue coalesces, never runs a key twice at once, backs off per key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

from controllers.demo.sandbox import until
from controllers.runtime.workqueue import WorkQueue


async def _idle(q: WorkQueue[str], runs: Callable[[], int], at_least: int) -> None:
    """Until the handler ran `at_least` times and the queue has nothing left to do (no
    key waiting, running or on a timer): counted, never timed."""
    await until(lambda: runs() >= at_least and not q.depth and not q._active, 30,
                what=f"{at_least} runs, then an idle queue")


async def test_events_for_a_waiting_key_coalesce_into_one_reconcile() -> None:
    seen: list[str] = []

    async def handler(key: str) -> None:
        seen.append(key)

    q: WorkQueue[str] = WorkQueue("t", handler, concurrency=2)
    for _ in range(10):
        q.add("a")
    q.add("b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.run)
        await _idle(q, lambda: len(seen), 2)
        tg.cancel_scope.cancel()
    assert sorted(seen) == ["a", "b"]


async def test_a_key_added_while_processing_runs_once_more_never_concurrently() -> None:
    running: set[str] = set()
    overlaps = 0
    runs = 0
    gate = asyncio.Event()

    async def handler(key: str) -> None:
        nonlocal overlaps, runs
        if key in running:
            overlaps += 1
        running.add(key)
        runs += 1
        if runs == 1:
            await gate.wait()
        running.discard(key)

    q: WorkQueue[str] = WorkQueue("t", handler, concurrency=4)
    q.add("a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.run)
        # The first run is in the handler, waiting at the gate.
        await until(lambda: runs == 1, 30, what="the first run")
        q.add("a")
        q.add("a")
        gate.set()
        await _idle(q, lambda: runs, 2)
        tg.cancel_scope.cancel()
    assert (runs, overlaps) == (2, 0)


async def test_failures_back_off_per_key_and_reset_on_success() -> None:
    calls: list[str] = []

    async def handler(key: str) -> None:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("boom")

    q: WorkQueue[str] = WorkQueue("t", handler, base_backoff=0.02)
    q.add("a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.run)
        await _idle(q, lambda: len(calls), 3)
        tg.cancel_scope.cancel()
    assert len(calls) == 3
    assert q.stats.backoffs == [0.02, 0.04]  # exponential, per key
    assert q.failures("a") == 0 and q.stats.failures == 2
