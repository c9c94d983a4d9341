"""Benchmark: how much a placement pass starves the controller's event loop.

The controller's loop reads heartbeats, serves `/api/v1/status` and the webhook; a
placement pass in a worker thread still holds the GIL, so the loop wakes late. This
plans a synthetic fleet (`bench.placement.synthetic_spec`) while
`controllers.runtime.looplag.LoopLag` samples the loop every 0.1 s, three ways:

1. thread: `Replanner` in `anyio.to_thread` (the controller before issue 22's item 0);
2. process: `ProcessPlacer` (a forkserver worker; the whole spec sent once);
3. process, one commit later: five workloads edited, on a settled fleet (only those
   five are sent; an incremental re-plan in the worker);
4. a capacity change (a node lost): a full plan again, in a thread and in the worker
   (the spec is not sent again, only the capacity) -- the steady state of a fleet whose
   capacity moves.

For each: wall time, the worst loop lag, and the seconds the loop was stalled in all.

    python -m bench.busy                      # 5,000 workloads x 100 clusters
    python -m bench.busy --workloads 500 --clusters 20   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import anyio

from bench.placement import synthetic_spec
from controllers.runtime import busy
from controllers.runtime.looplag import LoopLag
from controllers.runtime.placerproc import ProcessPlacer
from controllers.runtime.replanner import Replanner
from fleet.capacity import CapacitySnapshot, declared_capacity
from fleet.placement.types import Plan, PreviousPlan
from fleet.spec import FleetSpec


async def measured(what: str, call: Callable[[], Awaitable[Plan]]) -> Plan:
    lag = LoopLag(0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.run)
        await anyio.sleep(0.3)  # a few quiet samples first
        started, stalled = time.perf_counter(), lag.stalled()
        plan = await call()
        wall, stalled = time.perf_counter() - started, lag.stalled() - stalled
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    print(f"{what}: {wall:.2f} s wall; event loop lag max {lag.worst():.2f} s, "
          f"stalled {stalled:.2f} s in all ({100 * stalled / max(wall, 1e-9):.0f}% of "
          "the pass)", flush=True)
    return plan


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


def node_lost(cap: CapacitySnapshot) -> CapacitySnapshot:
    name = sorted(cap.clusters)[0]
    c = cap.clusters[name]
    return CapacitySnapshot({**cap.clusters, name: replace(c, nodes=c.nodes[1:])})


def edited(spec: FleetSpec, k: int) -> FleetSpec:
    ws = dict(spec.workloads)
    for wid in sorted(ws)[:k]:
        w = ws[wid]
        ws[wid] = w.model_copy(update={"spec": w.spec.model_copy(update={"priority": 7})})
    return replace(spec, workloads=ws)


async def run(args: argparse.Namespace) -> None:
    spec = synthetic_spec(args.clusters, args.workloads)
    cap: CapacitySnapshot = declared_capacity(spec.clusters)
    print(f"{args.workloads} workloads x {args.clusters} clusters; "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    thread = Replanner()
    first = await measured("thread, full plan", lambda: busy.place(
        thread, spec, cap, {}, "a"))
    placer = ProcessPlacer()
    try:
        again = await measured("process, full plan (worker start included)", lambda: (
            busy.place(placer, spec, cap, {}, "a")))
        assert again == first
        prev = previous_of(first)
        await busy.place(placer, spec, cap, prev, "b")  # settled: the baseline
        sent = placer.sent_workloads
        head = edited(spec, 5)
        inc = await measured("process, a commit of 5 workloads", lambda: busy.place(
            placer, head, cap, prev, "c"))
        assert inc == thread(head, cap, prev, commit="c")
        print(f"  workloads sent for that commit: {placer.sent_workloads - sent}; "
              f"worker plans: {placer.counts}", flush=True)
        lost = node_lost(cap)
        by_thread = await measured("thread, full plan after a node was lost", lambda: (
            busy.place(Replanner(), head, lost, prev, "d")))
        by_worker = await measured("process, the same", lambda: busy.place(
            placer, head, lost, prev, "d"))
        assert by_worker == by_thread
    finally:
        placer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--workloads", type=int, default=5000)
    anyio.run(run, ap.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
