"""Benchmark: a replica's memory after holding every shard, then one (issue 22).

The simulated clusters, the management home and the other replicas run in child
processes (`fleet sim up`, `fleet run`, as in `bench.shards`); in this one, replica
"a" (`fleet run --shards 4 --leader-elect`, the real Manager) alone: it takes every
shard and connects every cluster. Then three more replicas start and each asks for a
shard; once "a" holds one and has disconnected the others' clusters, the three stop
(before their Leases lapse, so "a" still holds one shard). Reported, with tracemalloc
on from the start and after `gc.collect()`: the Python-allocated bytes of this process
(replica "a" alone) before "a" starts, while it holds every shard (every placed
workload applied), and after it holds one; and how many of the adapters and informers
"a" ever made are still alive.

    python -m bench.shardmem                          # 24 clusters x 1,200 workloads
    python -m bench.shardmem --clusters 40 --workloads 4000
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import structlog

from bench.e2e import cluster_doc, fleet_files
from bench.shards import Replica, sim_up, stop_sims, wait_file
from clusters.adapter import AdapterOptions
from controllers.demo.sandbox import running, until
from controllers.runtime.manager import Manager
from controllers.settings import Settings
from workloads.scratch import FleetRepo

SHARDS = 4
MIB = 1024 * 1024


def held(m: Manager) -> list[int]:
    return m.shards.held() if m.shards is not None else []


def synced(m: Manager) -> bool:
    rows = [w for w in m.status()["workloads"] if w["status"] == "Placed"]
    return bool(rows) and all(w["sync"] == "Synced" for w in rows)


def traced() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / MIB


async def one_run(args: argparse.Namespace, root: Path) -> None:
    repo = FleetRepo(root / "fleet")
    repo.commit(fleet_files(args.clusters, args.workloads, args.nodes), "Initial fleet")
    home_repo = FleetRepo(root / "home")
    home_repo.commit({"clusters/home.yaml": cluster_doc("home", "DE", 1)}, "home")
    kube, home = root / "kubeconfig", root / "home-kubeconfig"
    sims = sim_up(repo.path, kube, root / "sims.log")
    home_sim = sim_up(home_repo.path, home, root / "home.log")
    options = AdapterOptions(qps=500, burst=1000, unreachable_after=5.0)

    @asynccontextmanager
    async def replica(who: str) -> AsyncIterator[Manager]:
        s = Settings(repo=str(repo.path), state_dir=root / f"state-{who}",
                     kubeconfig=str(kube), home_kubeconfig=str(home), listen="127.0.0.1:0",
                     poll_interval=1.0, resync_interval=30.0, unreachable_after=5.0,
                     leader_elect=True, identity=who, shards=SHARDS)
        async with running(Manager(s, adapter_options=options,
                                   lease_duration=args.lease_duration)) as m:
            yield m

    try:
        await wait_file(kube, sims, 120)
        await wait_file(home, home_sim, 60)
        base = traced()
        async with replica("a") as a:
            await until(lambda: held(a) == list(range(SHARDS)), 120, what="a holds all")
            await until(lambda: len(a.adapters) == args.clusters and all(
                x.synced.is_set() for x in a.adapters.values()), 600, what="a listed all")
            await until(lambda: synced(a), 600, what="a applied every placed workload")
            await anyio.sleep(args.settle)
            made = [weakref.ref(x) for x in a.adapters.values()]
            informers = [weakref.ref(i) for x in a.adapters.values()
                         for i in x._all_informers()]
            all_held = traced()
            before = tracemalloc.take_snapshot() if args.top else None
            print(f"a holds {held(a)}: {len(a.adapters)} clusters connected; "
                  f"traced {all_held:.1f} MiB (before a: {base:.1f} MiB)", flush=True)
            others = [Replica(root, repo.path, kube, home, SHARDS, i, args.lease_duration,
                              "warning") for i in (1, 2, 3)]
            try:
                await until(lambda: len(held(a)) == 1 and a.shards is not None and len(
                    set(a.shards.owners.values())) == SHARDS, 180, what="one shard each")
                mine = held(a)[0]
                assert a.shards is not None
                shard = a.shards.shard
                await until(lambda: all(shard(n) == mine for n in a.adapters), 120,
                            what="a disconnected the shards it let go")
            finally:
                for r in others:
                    r.stop()
            one = traced()
            managers = sum(isinstance(o, Manager) for o in gc.get_objects())  # a only
            alive = sum(r() is not None for r in made)
            alive_inf = sum(r() is not None for r in informers)
            print(f"a holds {held(a)}: {len(a.adapters)} clusters connected; "
                  f"traced {one:.1f} MiB; alive of a's first adapters {alive}/{len(made)}, "
                  f"informers {alive_inf}/{len(informers)}; Managers alive {managers}",
                  flush=True)
            if before is not None:
                after = tracemalloc.take_snapshot()
                for stat in after.compare_to(before, "filename")[:args.top]:
                    print(f"  {stat.size_diff / MIB:+7.2f} MiB  {stat.size / MIB:6.2f} MiB  "
                          f"{stat.traceback[0].filename}", flush=True)
            print(f"| {args.clusters} x {args.workloads} | {base:.1f} | {all_held:.1f} | "
                  f"{one:.1f} | {alive}/{len(made)} | {alive_inf}/{len(informers)} |")
    finally:
        stop_sims(sims, home_sim)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=24)
    p.add_argument("--workloads", type=int, default=1200)
    p.add_argument("--nodes", type=int, default=2, help="nodes per flavour per cluster")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds after a first plan before measuring")
    p.add_argument("--top", type=int, default=0,
                   help="the files whose Python allocations changed most, a -> one shard")
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="shardmem-") as tmp:
        anyio.run(one_run, args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
