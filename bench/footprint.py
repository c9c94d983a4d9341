"""Benchmark: what one connected, idle cluster costs the controller (issue 22 item 1).

N simulated clusters (8 GPU nodes each, nothing deployed) run in a child process; this
process connects a real `ClusterAdapter` to each (informers and heartbeat running) and
waits until all are synced and the connections the first lists opened have been idle
longer than the keep-alive and closed (`--settle`). Reported: this process's RSS
before the first connection and after, per cluster (target <= 1 MiB); the same after
glibc's `malloc_trim(0)` (what is live, without the free heap the start-up's peak
left); the TLS connections and watches held per cluster; and with `--tracemalloc`
where the Python-allocated bytes went, by file (the TLS contexts and sockets live in
OpenSSL's and the kernel's memory, which RSS sees and tracemalloc does not).

    python -m bench.footprint                  # 50 clusters
    python -m bench.footprint --tracemalloc    # and the top allocating files
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import anyio
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.kubeconfig import ConnectionSpec

ROOT = Path(__file__).resolve().parents[1]

_SERVER = """
import asyncio, sys
from pathlib import Path
from clusters.sim import SimClusterSpec, SimNode, start_sim
async def main(n):
    specs = [SimClusterSpec(f"c{i:03d}", tuple(SimNode(f"c{i:03d}-h100-{j}",
             "NVIDIA-H100-80GB-HBM3", 8) for j in range(8))) for i in range(n)]
    async with await start_sim(specs) as sim:
        sim.write_kubeconfig(Path(sys.argv[2]))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main(int(sys.argv[1])))
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trimmed_rss_mib() -> float:
    """RSS after glibc's `malloc_trim(0)` has returned the heap's free pages: what is
    live now, without what the start-up's peak left in the heap (NaN off glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return float("nan")
    return rss_mib()


def sockets() -> int:
    """Open sockets of this process (every one a TLS connection to a cluster here)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


async def run(n: int, kubeconfig: Path, trace: bool, settle: float,
              watch_all: bool) -> dict[str, object]:
    opts = AdapterOptions(idle_relist=None if watch_all else 300.0)
    gc.collect()
    before = rss_mib()
    if trace:
        tracemalloc.start()
    adapters = [await ClusterAdapter.connect(
        ConnectionSpec(f"c{i:03d}", str(kubeconfig), f"c{i:03d}"), opts) for i in range(n)]
    out: dict[str, object] = {}
    try:
        async with anyio.create_task_group() as tg:
            for a in adapters:
                tg.start_soon(a.run)
            for a in adapters:
                await a.wait_synced(120)
            # Heartbeats meanwhile; the first lists' extra connections idle past
            # aiohttp's keep-alive (15 s) and close, as in a controller that has run a while.
            await anyio.sleep(settle)
            gc.collect()
            out["after"] = rss_mib()
            out["trimmed"] = trimmed_rss_mib()
            out["tls"] = sockets()
            kinds: dict[str, int] = {}
            for a in adapters:
                for kind in a.watching():
                    kinds[kind] = kinds.get(kind, 0) + 1
            out["watching"] = kinds
            if trace:
                snap = tracemalloc.take_snapshot()
                out["traced"] = sum(s.size for s in snap.statistics("filename"))
                out["top"] = [(str(s.traceback[0].filename).replace(str(ROOT) + "/", ""),
                               s.size) for s in snap.statistics("filename")[:15]]
            tg.cancel_scope.cancel()
    finally:
        for a in adapters:
            await a.aclose()
    out["before"] = before
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds to run after every cluster synced (default 20)")
    ap.add_argument("--watch-all", action="store_true",
                    help="watch every kind always (AdapterOptions.idle_relist=None), as "
                         "before issue 22's lazy watches")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(args.clusters), str(kubeconfig)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise SystemExit("simulated clusters did not start")
            r = asyncio.run(run(args.clusters, kubeconfig, args.tracemalloc, args.settle,
                                args.watch_all))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(30)
    before, after = float(r["before"]), float(r["after"])  # type: ignore[arg-type]
    per = (after - before) / args.clusters
    print(f"{args.clusters} idle clusters connected: RSS {before:.1f} -> {after:.1f} MiB, "
          f"{per * 1024:.0f} KiB per cluster (target <= 1024)")
    trimmed = float(r["trimmed"])  # type: ignore[arg-type]
    print(f"after malloc_trim(0): {trimmed:.1f} MiB, "
          f"{(trimmed - before) * 1024 / args.clusters:.0f} KiB per cluster (the heap's free "
          "pages returned: what the start-up's peak left is not counted)")
    tls = int(r["tls"])  # type: ignore[call-overload]
    print(f"TLS connections: {tls} ({tls / args.clusters:.1f} per cluster); watches per "
          f"cluster by kind: {r['watching']}")
    if args.tracemalloc:
        traced = int(r["traced"])  # type: ignore[call-overload]
        print(f"Python-allocated (tracemalloc): {traced / 2**20:.1f} MiB, "
              f"{traced / args.clusters / 1024:.0f} KiB per cluster; top files:")
        for name, size in r["top"]:  # type: ignore[attr-defined]
            print(f"  {size / args.clusters / 1024:8.1f} KiB/cluster  {name}")
    return 0 if per <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
