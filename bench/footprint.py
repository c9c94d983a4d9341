"""Benchmark: what one connected, idle cluster costs the controller (issue 22 item 1).

N simulated clusters (8 GPU nodes each, nothing deployed) run in a child process; this
process connects a real `ClusterAdapter` to each (informers and heartbeat running) and
waits until all are synced and a few heartbeats have passed. Reported: this process's
RSS before the first connection and after, per cluster (target <= 1 MiB), and with
`--tracemalloc` where the Python-allocated bytes went, by file (the TLS contexts and
sockets live in OpenSSL's and the kernel's memory, which RSS sees and tracemalloc
does not).

    python -m bench.footprint                  # 50 clusters
    python -m bench.footprint --tracemalloc    # and the top allocating files
"""

from __future__ import annotations

import argparse
import asyncio
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


async def run(n: int, kubeconfig: Path, trace: bool) -> dict[str, object]:
    opts = AdapterOptions(heartbeat_interval=1.0)
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
            await anyio.sleep(3.0)  # a few heartbeats: connections pooled, buffers sized
            gc.collect()
            out["after"] = rss_mib()
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
            r = asyncio.run(run(args.clusters, kubeconfig, args.tracemalloc))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(30)
    before, after = float(r["before"]), float(r["after"])  # type: ignore[arg-type]
    per = (after - before) / args.clusters
    print(f"{args.clusters} idle clusters connected: RSS {before:.1f} -> {after:.1f} MiB, "
          f"{per * 1024:.0f} KiB per cluster (target <= 1024)")
    if args.tracemalloc:
        traced = int(r["traced"])  # type: ignore[call-overload]
        print(f"Python-allocated (tracemalloc): {traced / 2**20:.1f} MiB, "
              f"{traced / args.clusters / 1024:.0f} KiB per cluster; top files:")
        for name, size in r["top"]:  # type: ignore[attr-defined]
            print(f"  {size / args.clusters / 1024:8.1f} KiB/cluster  {name}")
    return 0 if per <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
