"""Benchmark: the simulated API server's CPU per write, in-process (no HTTP, no children).

What a `fleet sim up` process spends its core on once a fleet is applied: the kubelets'
node Lease renewals and the simulated controllers' status writes. Measured with
`time.process_time` (CPU seconds of this process) around each phase, so a busy shared
machine changes the wall time but not the figures much:

1. lease renewals: `--clusters` SimClusters of `--nodes` nodes (built, not listening),
   `--rounds` renewals of every cluster's leases (one round is what the timers do every
   10 s);
2. apply + settle: `--workloads` workloads of `bench.apply.desired` (a Deployment of one
   replica, two Services and a Job each) server-side applied into one cluster under the
   field manager `aifleet` as `api._apply` does, then the event loop runs until the
   controllers are idle (ReplicaSets, pods bound and started; Jobs keep running);
3. status writes: `--writes` `ControlPlane.write_status` calls on those Deployments and
   Jobs, each changing the status (a Deployment's readyReplicas and its Progressing
   condition, a Job's ready count), as the controllers write them.

    python -m bench.simwrite               # 50 x 16 nodes, 300 workloads, 3,000 writes
    python -m bench.simwrite --smoke       # small, to keep it from rotting
    python -m bench.simwrite --profile 25  # cProfile of phases 1 and 3, top 25

Prints one line per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

from bench.apply import desired
from clusters.sim import SimCluster, SimClusterSpec, SimNode, objects, ssa
from clusters.sim.resources import BY_KIND

MANAGER = "aifleet"
DEPLOYS, JOBS = BY_KIND["Deployment"], BY_KIND["Job"]


def _cluster(name: str, nodes: int) -> SimCluster:
    spec = SimClusterSpec(name, tuple(SimNode(f"{name}-h100-{i}", "NVIDIA-H100-80GB-HBM3", 8)
                                      for i in range(nodes)))
    return SimCluster(spec, job_seconds=3600, pod_start_seconds=0.01)


def _apply(cluster: SimCluster, obj: dict[str, Any]) -> None:
    """A server-side apply by `aifleet`, as `api._apply` stores it."""
    store = cluster.store
    res = store.resources.lookup(obj["kind"])
    meta = obj["metadata"]
    live = store.find(res, meta.get("namespace", "") if res.namespaced else "", meta["name"])
    new = ssa.apply(live, obj, MANAGER, force=True, now=objects.now())
    if live is None:
        store.create(res, new)
    else:
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        store.replace(res, new, live, managed=True)


async def _settle() -> None:
    """Run the loop until the controllers have nothing left to do soon."""
    for _ in range(50):
        await asyncio.sleep(0.05)


def _status_writes(cluster: SimCluster, writes: int) -> int:
    cp, store = cluster.control, cluster.store
    targets = [(DEPLOYS, o["metadata"]["namespace"], o["metadata"]["name"])
               for o in store.list(DEPLOYS)]
    targets += [(JOBS, o["metadata"]["namespace"], o["metadata"]["name"])
                for o in store.list(JOBS)]
    done = 0
    for n in range(writes):
        res, ns, name = targets[n % len(targets)]
        obj = store.get(res, ns, name)
        status = dict(obj.get("status") or {})
        flip = (n // len(targets)) % 2
        if res is DEPLOYS:
            status["readyReplicas"] = flip
            conds = [dict(c) for c in status.get("conditions") or []]
            for c in conds:
                if c["type"] == "Progressing":
                    c["lastUpdateTime"] = f"2026-01-01T00:00:{n % 60:02d}Z"
            status["conditions"] = conds
        else:
            status["ready"] = flip
        if cp.write_status(res, obj, status, manager="kube-controller-manager") is not obj:
            done += 1
    return done


async def run(args: argparse.Namespace) -> None:
    clusters = [_cluster(f"c{i:03d}", args.nodes) for i in range(args.clusters)]
    await _settle()
    prof = cProfile.Profile() if args.profile else None

    if prof:
        prof.enable()
    t0 = time.process_time()
    renewed = sum(c.node_leases.renew() for _ in range(args.rounds) for c in clusters)
    lease_cpu = time.process_time() - t0
    if prof:
        prof.disable()
    print(f"lease renewals: {renewed} in {lease_cpu:.3f} CPU s, "
          f"{lease_cpu / renewed * 1e6:.1f} us each "
          f"({args.clusters} clusters x {args.nodes} nodes x {args.rounds} rounds)")

    one = clusters[0]
    one.store.history_size = 100_000
    objs = desired(args.workloads)
    t0 = time.process_time()
    for obj in objs:
        _apply(one, obj)
    await _settle()
    settle_cpu = time.process_time() - t0
    counts = {k: len(one.store.list(BY_KIND[k])) for k in ("Deployment", "ReplicaSet",
                                                           "Job", "Pod")}
    print(f"apply + settle: {len(objs)} objects in {settle_cpu:.3f} CPU s, "
          f"resourceVersion {one.store.rv} ({counts})")

    if prof:
        prof.enable()
    t0 = time.process_time()
    done = _status_writes(one, args.writes)
    write_cpu = time.process_time() - t0
    if prof:
        prof.disable()
    print(f"status writes: {done} in {write_cpu:.3f} CPU s, "
          f"{write_cpu / max(done, 1) * 1e6:.1f} us each")
    for c in clusters:
        c.control.close()
        c.node_leases.close()
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clusters", type=int, default=50)
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--workloads", type=int, default=300)
    p.add_argument("--writes", type=int, default=3000)
    p.add_argument("--profile", type=int, default=0, metavar="N")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.clusters, args.nodes, args.rounds = 3, 4, 2
        args.workloads, args.writes = 5, 40
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
