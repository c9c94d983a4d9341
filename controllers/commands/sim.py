"""`fleet sim up`: simulated clusters for a fleet repo's Cluster files, until Ctrl-C.

For trying the controller, kubectl or a demo without real clusters: each Cluster file
becomes a simulated Kubernetes API server on 127.0.0.1 with the GPU nodes it declares,
and a kubeconfig gets one context per cluster (named after it, bearer token, the
simulator's own CA). Fault injection is at `POST <server>/_sim/faults` with the same
token (see docs/simulator.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from controllers.commands.common import add_repo_arguments, fail, read_snapshot

if TYPE_CHECKING:
    from clusters.sim import SimClusterSpec

DESCRIPTION = """\
Start one simulated Kubernetes cluster per Cluster file of a fleet repo (GPU nodes as
declared in spec.gpus: one node per whole node, nvidia.com/gpu capacity, GPU feature
discovery labels; Kueue and JobSet CRDs with small simulated controllers where the
Cluster's spec.stack says kueue / jobset), write a kubeconfig with one context per
cluster, and serve until interrupted (Ctrl-C).

Examples:
  fleet sim up                                   # the fleet in the current folder
  fleet sim up examples/fleet --worktree --kubeconfig /tmp/sim.kubeconfig
  kubectl --kubeconfig /tmp/sim.kubeconfig --context eu-fra-1 get nodes"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="simulated clusters for a fleet repo (fleet sim up)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="sim_action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start the simulated clusters and serve until Ctrl-C",
                            description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(up)
    up.add_argument("--kubeconfig", type=Path, default=Path("fleet-sim.kubeconfig"),
                    help="the kubeconfig to WRITE for the simulated clusters (default: "
                         "./fleet-sim.kubeconfig); an existing file that `fleet sim up` did "
                         "not write is never replaced without --overwrite")
    up.add_argument("--overwrite", action="store_true",
                    help="replace --kubeconfig even if it is not one `fleet sim up` wrote")
    up.add_argument("--port-base", type=int, default=0,
                    help="listen on consecutive ports from this one, clusters in name "
                         "order (default: free ports)")
    up.add_argument("--job-seconds", type=float, default=30.0,
                    help="how long a Job's pods run before they succeed (default: 30)")
    up.add_argument("--pod-start-seconds", type=float, default=1.0,
                    help="from scheduled to Running (default: 1)")
    up.add_argument("--time-scale", type=float, default=1.0,
                    help="real seconds per second an object declares: grace periods, "
                         "minReadySeconds, progress deadlines (default: 1, real time)")
    up.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from clusters.sim import spec_from_cluster  # aiohttp and friends: only when run
    from controllers.runtime import heaptrim

    heaptrim.limit_arenas()  # before any thread: glibc's setting, as `fleet run` makes it
    _may_write(args.kubeconfig, args.overwrite)
    snap = read_snapshot(args)
    clusters = snap.spec.clusters
    if not clusters:
        fail(f"{args.repo}: no Cluster files (clusters/*.yaml) to simulate")
    for d in snap.spec.errors:
        print(d.format(), file=sys.stderr)
    specs = [spec_from_cluster(clusters[name]) for name in sorted(clusters)]
    ports = ({s.name: args.port_base + i for i, s in enumerate(specs)}
             if args.port_base else None)
    try:
        asyncio.run(_serve(specs, args, ports))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        fail(f"cannot listen: {e}")
    return 0


SETTLE_EVERY = 60.0
"""Seconds between two freezes of the simulator's heap."""


def _settle_heap(*, freeze: Callable[[], None] = gc.freeze,
                 collect: Callable[[int], object] = gc.collect,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 ) -> asyncio.Task[None] | None:
    """The garbage collector tuned as `fleet run` tunes it (`controllers.runtime.gctune`):
    a simulator's heap is mostly its stored objects, created and kept, and with the
    interpreter's defaults each full collection walked all of them again. Measured with
    `bench.scale` at 300 x 15,000 (4 `fleet sim up` processes): 26% of each simulator's
    CPU was the collector, 22% in full collections. A setting of this process, made
    here: the simulator library, run in-process by tests, is left alone.
    AIFLEET_GC_DEFAULTS=1 keeps the interpreter's. Answers do not change; the price is
    gctune's (a reference cycle already old when frozen is never collected).

    Returns the task freezing the heap every `SETTLE_EVERY` seconds (None: defaults)."""
    from controllers.runtime import gctune

    if os.environ.get("AIFLEET_GC_DEFAULTS") == "1":
        return None
    gctune.tune()

    async def settle() -> None:
        # `gctune.Settler`'s two calls without its log line: a simulator's stdout is
        # its listing, which `bench.scale` stops reading once it serves
        while True:
            collect(1)  # the young cycles go now rather than be frozen for ever
            freeze()
            await sleep(SETTLE_EVERY)

    return asyncio.get_running_loop().create_task(settle())


def _may_write(path: Path, overwrite: bool) -> None:
    """Refuse to replace a kubeconfig that is not ours: `--kubeconfig` means "read
    from" everywhere else, and a real one was lost this way."""
    from clusters.sim.server import SIM_KUBECONFIG_MARK

    if overwrite or not path.exists():
        return
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
    except OSError as e:
        fail(f"{path}: cannot read it to check it is ours: {e.strerror}")
    if first != SIM_KUBECONFIG_MARK:
        fail(f"{path} exists and was not written by `fleet sim up`: not replacing it "
             "(choose another --kubeconfig, or pass --overwrite)")


async def _serve(specs: list[SimClusterSpec], args: argparse.Namespace,
                 ports: dict[str, int] | None) -> None:
    from clusters.sim import start_sim
    from controllers.runtime import heaptrim

    sim = await start_sim(specs, job_seconds=args.job_seconds,
                          pod_start_seconds=args.pod_start_seconds, ports=ports,
                          time_scale=args.time_scale)
    async with sim:
        path = sim.write_kubeconfig(args.kubeconfig)
        for name in sorted(sim.clusters):
            c = sim.clusters[name]
            gpus = sum(n.gpus for n in c.spec.nodes)
            how = " as DRA devices (driver gpu.nvidia.com)" if c.spec.dra else ""
            runs = f"; runs {' + '.join(sorted(c.spec.stack))}" if c.spec.stack else ""
            print(f"{name:24} {c.url:28} {len(c.spec.nodes)} nodes, {gpus} GPUs{how}{runs}")
        print(f"kubeconfig: {path} (one context per cluster)")
        print(f"try: kubectl --kubeconfig {path} --context {specs[0].name} get nodes")
        print("Ctrl-C to stop", flush=True)
        settling = _settle_heap()
        # glibc's free heap given back as `fleet run` gives it (`controllers.runtime.
        # heaptrim`): a simulator's stored objects churn as a rollout rewrites them,
        # and glibc keeps what is freed below what is still in use
        trimmer = heaptrim.start()
        await _until_signalled()
        if settling is not None:
            settling.cancel()
        if trimmer is not None:
            trimmer.stop()
        print("stopping", file=sys.stderr)


async def _until_signalled() -> None:
    """Until SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
