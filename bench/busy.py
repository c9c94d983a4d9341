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

With `--heap N`, instead: the garbage collector on a controller-sized heap (`N` live
objects shaped like the informers' JSON, about 60 container objects each) while the
loop does what a busy controller does (informer events replace objects, a status
document's worth of temporaries is built and dropped), for `--seconds`, twice: with the
interpreter's defaults, then with `controllers.runtime.gctune` (its thresholds, and the
heap frozen once loaded). For each: the worst loop lag, the seconds stalled, and the
full (generation 2) collections with their pauses.

    python -m bench.busy                      # 5,000 workloads x 100 clusters
    python -m bench.busy --workloads 500 --clusters 20   # quick
    python -m bench.busy --heap 20000 --seconds 30        # the garbage collector
    python -m bench.busy --status                         # GET /api/v1/status

With `--status`: the status document of the synthetic fleet (placed, every placement
recorded Synced; no cluster connected, so no pods), built whole per request as before
(`controllers.status.fleetdoc.document` and one `json.dumps`), then through
`controllers.status.cache.StatusCache`: its first build in slices, a request with
nothing changed, and one after a reconcile re-recorded one workload.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio

from bench.placement import synthetic_spec
from controllers.runtime import busy, gctune
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


def live_object(i: int, generation: int = 0) -> dict[str, Any]:
    """A Deployment as an informer holds it (labels, annotations, managedFields, a pod
    template, status conditions): about 60 container objects."""
    name = f"w{i:06d}"
    fields: dict[str, Any] = {f"f:{k}": {}
                              for k in ("labels", "annotations", "replicas", "template")}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": f"team-{i % 50}", "uid": f"u-{i}-{generation}",
                     "resourceVersion": str(generation * 1_000_000 + i),
                     "labels": {"aifleet.dev/workload": f"team.{name}",
                                "aifleet.dev/managed-by": "aifleet"},
                     "annotations": {"aifleet.dev/source-commit": "c" * 40,
                                     "aifleet.dev/intent-hash": "h" * 16},
                     "managedFields": [{"manager": "aifleet", "operation": "Apply",
                                        "fieldsV1": {"f:metadata": dict(fields),
                                                     "f:spec": dict(fields)}}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{
                                  "name": "main", "image": "registry.internal/serve:v1",
                                  "env": [{"name": f"E{k}", "value": str(k)} for k in range(8)],
                                  "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                  "ports": [{"containerPort": 8080}]}],
                                       "nodeSelector": {"nvidia.com/gpu.product": "H100"}}}},
        "status": {"conditions": [{"type": t, "status": "True", "reason": "R"}
                                  for t in ("Available", "Progressing")],
                   "replicas": 2, "readyReplicas": 2},
    }


async def churn(heap: list[dict[str, Any]], seconds: float, rate: int = 10) -> int:
    """What the loop of a busy controller does with its heap, for `seconds`, in small
    steps (each well under the 0.1 s the lag is sampled at, so what lags is the
    collector): informer events replace objects of a hot fifth of the heap (new
    long-lived objects, old ones freed: pods and Jobs change, the rest holds still),
    and a status document's worth of rows is built, 500 rows a step, and dropped once
    whole. Returns the events made."""
    events, generation = 0, 1
    hot = max(1, len(heap) // 5)
    end = time.perf_counter() + seconds
    rows: list[dict[str, Any]] = []
    while time.perf_counter() < end:
        for _ in range(rate):
            i = (events * 7919) % hot  # pods and Jobs change; the rest holds still
            heap[i] = live_object(i, generation)
            events += 1
        generation += 1
        start = len(rows)
        rows.extend({"id": o["metadata"], "placements": [dict(o["spec"])],
                     "pods": [{"name": str(k)} for k in range(4)]}
                    for o in heap[start:start + 500])
        if len(rows) >= 5000:
            rows = []
        await anyio.sleep(0.002)
    return events


async def gc_phase(what: str, heap: list[dict[str, Any]], seconds: float) -> None:
    lag = LoopLag(0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.run)
        await anyio.sleep(0.3)
        started, stalled = time.perf_counter(), lag.stalled()
        events = await churn(heap, seconds)
        wall, stalled = time.perf_counter() - started, lag.stalled() - stalled
        tg.cancel_scope.cancel()
    g = lag.gc
    print(f"{what}: {events} informer events in {wall:.1f} s; event loop lag max "
          f"{lag.worst():.2f} s, stalled {stalled:.2f} s ({100 * stalled / wall:.0f}%); "
          f"collections by generation {g.collections}, paused {g.seconds[0]:.2f} / "
          f"{g.seconds[1]:.2f} / {g.seconds[2]:.2f} s, longest "
          f"{' / '.join(f'{x:.2f}' for x in g.longest)} s; "
          f"frozen {gc.get_freeze_count()}", flush=True)


async def run_heap(args: argparse.Namespace) -> None:
    print(f"heap of {args.heap} live objects; {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    heap = [live_object(i) for i in range(args.heap)]
    gc.collect()
    await gc_phase(f"defaults {gc.get_threshold()}", heap, args.seconds)
    gc.collect()
    before = gctune.tune()
    if args.thresholds:
        gc.set_threshold(*(int(t) for t in args.thresholds.split(",")))
    if not args.no_freeze:
        gctune.Settler().settle(force=True)
    try:
        await gc_phase(f"thresholds {gc.get_threshold()}, "
                       + ("not frozen" if args.no_freeze else "frozen once loaded"), heap,
                       args.seconds)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def fake_manager(spec: FleetSpec, plan: Plan, state: Any) -> Any:
    """What the status document reads of a Manager, for a fleet with no cluster
    connected: the spec, the plan, every placement recorded Synced."""
    from types import SimpleNamespace

    from controllers.runtime.desired import DesiredState
    from controllers.runtime.suspension import Suspensions
    from controllers.status.cache import Versioned
    from controllers.status.statusdoc import PlacementLive
    from fleet.render import render

    desired = DesiredState(render)
    desired.adopt_spec(spec, "c" * 40)
    desired.plan = plan
    live: Versioned[Any, Any] = Versioned()
    for wid, wp in plan.workloads.items():
        for a in wp.assignments:
            live[(a.cluster, wid)] = PlacementLive("Synced", "Running", "c" * 40)
    return SimpleNamespace(
        desired=desired, live=live, adapters={}, drift=[], events=None, anchor=None,
        snapshot=declared_capacity(spec.clusters), conditions=(), applied_commit="c" * 40,
        source=SimpleNamespace(observed="c" * 40), home=SimpleNamespace(error=None, name=None),
        connect_errors={}, reconciler=SimpleNamespace(prune_refused={}), retiring=set(),
        suspensions=Suspensions.load(state), elector=None, loop_lag=LoopLag(),
        replans=busy.Replans(), views=dict, ready=lambda: (True, "applied"),
        shared=SimpleNamespace(error=None), shards=None,
        records=SimpleNamespace(head=lambda: None),
        ledger_problem=lambda: None, may_act=lambda: True,
        settings=SimpleNamespace(failover_grace=None, leader_elect=False,
                                 ledger_fail_closed=False))


async def run_status(args: argparse.Namespace) -> None:
    import json
    import tempfile
    from pathlib import Path

    from controllers.status import fleetdoc
    from controllers.status.cache import StatusCache
    from controllers.status.statusdoc import PlacementLive

    spec = synthetic_spec(args.clusters, args.workloads)
    cap = declared_capacity(spec.clusters)
    plan = Replanner()(spec, cap, {}, commit="c" * 40)
    print(f"status of {args.workloads} workloads x {args.clusters} clusters; "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        m = fake_manager(spec, plan, Path(tmp))

        async def whole() -> Plan:
            body = json.dumps(fleetdoc.document(m), sort_keys=True, separators=(",", ":"))
            print(f"  {len(body) / 1e6:.1f} MB", flush=True)
            return plan
        await measured("whole document per request (as before)", whole)
        cache = StatusCache(m)

        async def cached() -> Plan:
            await cache.body()
            return plan
        await measured("cache, first build (in slices)", cached)
        await measured("cache, nothing changed", cached)
        wid, wp = next((w, p) for w, p in sorted(plan.workloads.items()) if p.assignments)
        m.live[(wp.assignments[0].cluster, wid)] = PlacementLive("Failed", "Failed", "d" * 40)
        rows = cache.rows_built
        await measured("cache, one workload re-recorded", cached)
        print(f"  rows built again: {cache.rows_built - rows} of {len(plan.workloads)}",
              flush=True)
        if args.http:
            await over_http(m, cache, args.http)


async def over_http(m: Any, cache: Any, n: int) -> None:
    """`GET /api/v1/status` through the real aiohttp server, `n` times each way (curl
    in its own process: no client work in this one), nothing changed between them:
    this process's CPU per request (load-independent) and the wall time curl saw."""

    from controllers.server import Endpoints, bound_port, build_app, serve

    ep = Endpoints(status=lambda: {}, capacity=lambda: {}, metrics=lambda: "",
                   ready=lambda: (True, ""), on_git_hook=_nothing,
                   status_body=lambda fresh: cache.body(fresh=fresh))
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}/api/v1/status"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cache.run)
            for label, extra in (("identity", []), ("gzip", ["--compressed"])):
                cpu: list[float] = []
                walls: list[float] = []
                sizes: list[int] = []
                for _ in range(n):
                    started = time.process_time()
                    done = await anyio.run_process(
                        ["curl", "-s", "-o", "/dev/null", *extra, "-w",
                         "%{time_total} %{size_download}", url])
                    cpu.append(time.process_time() - started)
                    wall, size = done.stdout.decode().split()
                    walls.append(float(wall))
                    sizes.append(int(size))
                cpu.sort()
                walls.sort()
                print(f"  over HTTP ({label}): {sizes[-1] / 1e6:.2f} MB on the wire; "
                      f"server CPU per request p50 {cpu[n // 2] * 1000:.1f} ms, max "
                      f"{cpu[-1] * 1000:.1f} ms; curl's wall p50 {walls[n // 2] * 1000:.1f} "
                      f"ms, max {walls[-1] * 1000:.1f} ms; builds {cache.builds}",
                      flush=True)
            tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()


async def _nothing() -> None:
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--workloads", type=int, default=5000)
    ap.add_argument("--heap", type=int, default=0,
                    help="measure the garbage collector on a heap of N live objects instead")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--thresholds", default="",
                    help="with --heap: try these gc thresholds (a,b,c) instead of gctune's")
    ap.add_argument("--no-freeze", action="store_true",
                    help="with --heap: the thresholds alone, the heap not frozen")
    ap.add_argument("--status", action="store_true",
                    help="measure GET /api/v1/status's document instead")
    ap.add_argument("--http", type=int, default=0, metavar="N",
                    help="with --status: then N requests through the real HTTP server")
    args = ap.parse_args()
    anyio.run(run_status if args.status else run_heap if args.heap else run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
