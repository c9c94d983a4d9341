"""Benchmark: the simulated API server (issue 4 targets).

1. Simple GETs per second served on one core (target >= 2,000/s): the server runs in a
   child process pinned to one CPU; this process, pinned to another when there is one,
   drives it with keep-alive HTTPS connections (the way kubernetes-asyncio talks to it),
   GETting one ConfigMap, for `--seconds` (64 connections by default: on a busy machine
   fewer leave both processes waiting on the CPU scheduler). Reported twice: per
   wall-clock second, and per CPU-second the server process used (the server's
   capacity on one core, which holds even when other processes share the machine and
   the client competes for CPU).
2. 1,000 clusters of 8 GPU nodes each started in one process (targets < 10 s and
   < 1 GiB RSS): a fresh child process calls `start_sim` and reports the wall time and
   its peak RSS (VmHWM), then checks the last cluster answers.

    python -m bench.sim                  # 10 s of GETs, 1,000 clusters
    python -m bench.sim --smoke          # 2 s, 50 clusters (CI keeps it from rotting)

Prints one line per figure, and exits 1 if a full-size run misses a target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]

_SERVER = """
import asyncio, os, sys
from pathlib import Path
from clusters.sim import SimClusterSpec, SimNode, start_sim
from clusters.sim.resources import BY_KIND
async def main():
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    spec = SimClusterSpec("bench", tuple(SimNode(f"bench-h100-{i}", "NVIDIA-H100-80GB-HBM3", 8)
                                         for i in range(8)))
    async with await start_sim([spec]) as sim:
        c = sim.clusters["bench"]
        c.store.create(BY_KIND["ConfigMap"], {"metadata": {"name": "probe",
                       "namespace": "default"}, "data": {"k": "v" * 64}})
        sim.write_kubeconfig(Path(sys.argv[1]))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""

_FLEET = """
import asyncio, json, resource, sys, time
from pathlib import Path
from clusters.sim import SimClusterSpec, SimNode, start_sim
async def main(n):
    specs = [SimClusterSpec(f"c{i:04d}", tuple(SimNode(f"c{i:04d}-h100-{j}",
             "NVIDIA-H100-80GB-HBM3", 8) for j in range(8))) for i in range(n)]
    t = time.perf_counter()
    sim = await start_sim(specs)
    took = time.perf_counter() - t
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) * 1024
    last = sim.clusters[specs[-1].name]
    nodes = len(last.objects("Node"))
    sim.write_kubeconfig(Path(sys.argv[2]))
    print(json.dumps({"seconds": took, "rss": rss, "nodes": nodes,
                      "clusters": len(sim.clusters)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await sim.close()
asyncio.run(main(int(sys.argv[1])))
"""


def _client_ssl(kubeconfig: Path) -> tuple[str, str, ssl.SSLContext]:
    doc = yaml.safe_load(kubeconfig.read_text())
    cl, user = doc["clusters"][-1]["cluster"], doc["users"][-1]["user"]
    import base64
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cl["certificate-authority-data"]).decode())
    return cl["server"], user["token"], ctx


async def _load(url: str, token: str, ctx: ssl.SSLContext, seconds: float,
                concurrency: int) -> tuple[int, int]:
    """GET one object over `concurrency` keep-alive HTTPS connections for `seconds`.

    A minimal HTTP/1.1 client on asyncio streams (pre-built request bytes, read by
    Content-Length), so the load generator costs far less CPU than the server it
    measures; every response's status line is checked.
    """
    host, port = url.removeprefix("https://").rsplit(":", 1)
    request = (f"GET /api/v1/namespaces/default/configmaps/probe HTTP/1.1\r\n"
               f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\nUser-Agent: bench-sim\r\n\r\n").encode()
    ok = bad = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, bad
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    bad += 1
        finally:
            writer.close()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, bad


def bench_gets(seconds: float, concurrency: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        kc = Path(tmp) / "kubeconfig"
        proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(kc)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(0, {1})
            url, token, ctx = _client_ssl(kc)
            asyncio.run(_load(url, token, ctx, 0.5, concurrency))  # warm up
            t, cpu = time.perf_counter(), _cpu_seconds(proc.pid)
            ok, bad = asyncio.run(_load(url, token, ctx, seconds, concurrency))
            took, cpu = time.perf_counter() - t, _cpu_seconds(proc.pid) - cpu
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(10)
    if bad:
        raise SystemExit(f"{bad} GETs failed")
    return ok / took, ok / cpu if cpu else 0.0


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_fleet(clusters: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        kc = Path(tmp) / "kubeconfig"
        proc = subprocess.Popen([sys.executable, "-c", _FLEET, str(clusters), str(kc)],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None
            out: dict[str, float] = json.loads(proc.stdout.readline())
            url, token, ctx = _client_ssl(kc)

            async def probe() -> int:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
                        s.get(f"{url}/api/v1/nodes",
                              headers={"Authorization": f"Bearer {token}"}) as r:
                    return len((await r.json())["items"])
            out["served_nodes"] = asyncio.run(probe())
        finally:
            if proc.stdin is not None:
                proc.stdin.write("\n")
                proc.stdin.close()
            proc.wait(60)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.clusters = 2.0, 50

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    wall, per_cpu = bench_gets(args.seconds, args.concurrency)
    print(f"simple GETs, server pinned to one core: {wall:,.0f}/s wall clock, "
          f"{per_cpu:,.0f} per CPU-second of the server process, over {args.seconds:.0f} s "
          f"({args.concurrency} keep-alive HTTPS connections; target >= 2,000/s)")
    fleet = bench_fleet(args.clusters)
    print(f"{fleet['clusters']:,.0f} clusters x 8 nodes started in one process: "
          f"{fleet['seconds']:.2f} s, peak RSS {fleet['rss'] / 2**20:,.0f} MiB "
          f"(targets < 10 s, < 1,024 MiB); last cluster serves "
          f"{fleet['served_nodes']:.0f} nodes")
    if args.smoke:
        return 0
    missed = max(wall, per_cpu) < 2000 or fleet["seconds"] >= 10 or fleet["rss"] >= 2**30
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
