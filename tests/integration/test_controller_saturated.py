"""A busy controller never mistakes itself for a broken cluster (issue 22, item 0).

The real controller on simulated clusters over HTTP, its event loop saturated by a CPU
burner in the same loop (blocks longer than the heartbeat timeout and the Unreachable
threshold, again and again, while re-plans are asked for). The simulated clusters are
healthy all along (they share the loop, so they are starved too, as a controller's
heartbeats are when placement holds the CPU). Counted, not timed: no cluster is ever
reported Unreachable, no health change is seen, and no workload moves; the loop lag
was measured and the timeouts it caused were discounted."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel

from controllers.demo.sandbox import until
from controllers.runtime.manager import Manager
from tests.support.controller import (
    FAST,
    fast_settings,
    rolled_out,
    sandbox,
)

BLOCK = 1.5
"""Seconds each burn holds the loop: past the heartbeat timeout (1 s) and past
`unreachable_after` (1 s) of the FAST options."""
BURNS = 8


def burn(seconds: float) -> None:
    """Hold the CPU and the loop, as a placement pass in the loop's thread would."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1


def placements(m: Manager) -> dict[str, tuple[str, ...]]:
    plan = m.desired.plan
    assert plan is not None
    return {str(w): tuple(sorted(f"{a.cluster}:{a.flavour}:{a.replicas}"
                                 for a in p.assignments))
            for w, p in plan.workloads.items()}


async def test_a_saturated_controller_reports_no_healthy_cluster_unreachable(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=2.0), adapter_options=FAST) as m:
        before = await rolled_out(m, box)
        await until(lambda: all(a.health_state == "Healthy" for a in m.adapters.values()),
                    10, what="all healthy")
        plans_seen = {tuple(sorted(placements(m).items()))}
        states_seen: set[str] = set()
        discounted_before = sum(a.health.busy for a in m.adapters.values())
        done = anyio.Event()

        async def watch() -> None:
            while not done.is_set():
                states_seen.update(a.health_state for a in m.adapters.values())
                plans_seen.add(tuple(sorted(placements(m).items())))
                await anyio.sleep(0.05)

        async def saturate() -> None:
            for i in range(BURNS):
                if i % 4 == 0:
                    m.trigger_plan()  # re-plans under load: each must keep everything
                burn(BLOCK)
                # One turn of the loop between burns: a request goes out, but its
                # answer (a few more turns) waits behind the next burn and times out.
                await anyio.lowlevel.checkpoint()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(saturate)
        assert m.loop_lag.worst() >= BLOCK * 0.9  # the load did starve the loop
        assert sum(a.health.busy for a in m.adapters.values()) > discounted_before
        assert "Unreachable" not in states_seen, states_seen
        assert not any(state == "Unreachable" for _, state in m.replans.health_changes)
        assert len(plans_seen) == 1  # nothing moved, in any plan made meanwhile
        assert await rolled_out(m, box) == before
        assert m.status()["controller"]["eventLoop"]["stalledSeconds"] > 0
