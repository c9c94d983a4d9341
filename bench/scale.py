"""Benchmark: the fleet at scale, run from the outside (issue 22, item 5).

Nothing runs in this process but the measuring: the simulated clusters are `fleet sim
up` in `--sim-procs` separate processes (each serving its share of the clusters, so the
controller's CPU is its own and no single simulator process is the bottleneck); the
controller is `fleet run` in its own process against the merged kubeconfig and a
synthetic fleet repo (pygit2) made here; progress is read from `GET /api/v1/status`
every `--status-interval` seconds for the whole run. Reported, each against issue 22's
target for 100 x 5,000:

1. cold start: controller start -> the first commit applied and every placed workload
   Synced in /api/v1/status (target <= 60 s);
2. commit -> applied: commit a change to one workload, POST the webhook, until its
   Deployment in its cluster (read from the simulator's API) carries the new source
   commit (target p50 <= 1 s);
3. the controller's peak RSS (VmHWM) (target <= 512 MiB);
4. `/api/v1/status` and webhook response times, max over the run (target < 200 ms);
5. health changes of (healthy) clusters in the controller's log (target 0).

At 1,000 x 50,000 the targets are a cold apply <= 5 min with 4 shards, commit ->
applied p50 <= 2 s and each replica <= 1 GiB: `--replicas N` runs N replicas
`fleet run --leader-elect --shards N` (`bench.shards.Replica`) against a home cluster
for their Leases (one more `fleet sim up`), reports CPU and peak RSS per replica, and
sends each commit's webhook to every replica. A line of progress every `--progress`
seconds during the cold start (synced so far, CPU, RSS, load); the load average is
printed before and after.

    python -m bench.scale                                # 100 clusters x 5,000 workloads
    python -m bench.scale --clusters 1000 --workloads 50000 --nodes 8 --sim-procs 8 \
        --status-interval 15 [--replicas 4]
    python -m bench.scale --smoke                        # 4 clusters x 40, 2 processes (CI)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import yaml

from bench.e2e import (
    Controller,
    busy_report,
    children_report,
    cluster_doc,
    cpu_seconds,
    descendants,
    fleet_files,
    pct,
    post_webhook,
    rss_mib,
    server_view,
    tree_cpu_seconds,
    workload_doc,
)
from bench.shards import Replica, sim_up, stop_sims, wait_file
from controllers.demo.sandbox import synced
from fleet.render import SOURCE_COMMIT
from workloads.scratch import FleetRepo

ROOT = Path(__file__).resolve().parents[1]


def uptime() -> str:
    """The load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


class Sims:
    """`fleet sim up` in several processes, each for its share of the Cluster files."""

    def __init__(self, root: Path, files: dict[str, str | bytes], procs: int) -> None:
        self.root = root
        names = sorted(k for k in files if k.startswith("clusters/"))
        self.procs: list[subprocess.Popen[str]] = []
        self.kubeconfigs: list[Path] = []
        for i in range(procs):
            share = names[i::procs]
            if not share:
                continue
            repo = FleetRepo(root / f"sim{i}")
            repo.commit({k: files[k] for k in share}, "clusters")
            kubeconfig = root / f"sim{i}.kubeconfig"
            self.kubeconfigs.append(kubeconfig)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "controllers.cli", "sim", "up", str(repo.path),
                 "--kubeconfig", str(kubeconfig), "--job-seconds", "36000",
                 "--pod-start-seconds", "0.05"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))

    def wait_ready(self) -> None:
        for p in self.procs:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("Ctrl-C to stop"):
                    break
            else:
                raise RuntimeError(f"`fleet sim up` exited with {p.wait()} before serving")

    def merged_kubeconfig(self) -> Path:
        """One kubeconfig with every process's contexts (each process has its own CA)."""
        doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [],
                               "users": [], "contexts": []}
        for path in self.kubeconfigs:
            part = yaml.safe_load(path.read_text())
            for key in ("clusters", "users", "contexts"):
                doc[key].extend(part[key])
        doc["current-context"] = doc["contexts"][0]["name"]
        out = self.root / "kubeconfig"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        return out

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def peak_rss(self) -> list[float]:
        """VmHWM of each simulator process, MiB."""
        return [rss_mib(p.pid)[1] for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        stop_sims(*self.procs)


class ClusterReader:
    """Reads objects straight from a simulated cluster's API (not through the
    controller), with the kubeconfig's server, CA and token."""

    def __init__(self, kubeconfig: Path) -> None:
        doc = yaml.safe_load(kubeconfig.read_text())
        users = {u["name"]: u["user"] for u in doc["users"]}
        clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
        self._ctx: dict[str, tuple[str, str, str]] = {}
        for c in doc["contexts"]:
            cl = clusters[c["context"]["cluster"]]
            self._ctx[c["name"]] = (cl["server"], cl["certificate-authority-data"],
                                    users[c["context"]["user"]]["token"])
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def get(self, cluster: str, path: str) -> dict[str, Any] | None:
        server, ca, token = self._ctx[cluster]
        client = self._clients.get(ca)
        if client is None:
            ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
            client = self._clients[ca] = httpx.AsyncClient(verify=ctx, timeout=30)
        r = await client.get(server + path, headers={"Authorization": f"Bearer {token}"})
        return dict(r.json()) if r.status_code == 200 else None

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()


class Controllers:
    """The controller measured: one `fleet run` (`bench.e2e.Controller`), or with
    `--replicas N` (N >= 2) N replicas `fleet run --leader-elect --shards N`
    (`bench.shards.Replica`) against a home cluster for their Leases, itself a
    `fleet sim up` process of its own. `first` is the one whose `/api/v1/status` is
    read (every replica answers for the whole fleet)."""

    def __init__(self, args: argparse.Namespace, root: Path, repo: Path,
                 kubeconfig: Path) -> None:
        self.args, self.root, self.repo, self.kubeconfig = args, root, repo, kubeconfig
        self.single: Controller | None = None
        self.replicas: list[Replica] = []
        self.home_sim: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        if self.args.replicas <= 1:
            self.single = Controller(self.repo, self.kubeconfig, self.root,
                                     self.args.log_level)
            return
        home_repo = FleetRepo(self.root / "home")
        home_repo.commit({"clusters/home.yaml": cluster_doc("home", "DE", 1)}, "home")
        home = self.root / "home-kubeconfig"
        self.home_sim = sim_up(home_repo.path, home, self.root / "home.log")
        await wait_file(home, self.home_sim, 120)
        n = self.args.replicas
        self.replicas = [Replica(self.root, self.repo, self.kubeconfig, home, n, i,
                                 self.args.lease_duration, self.args.log_level)
                         for i in range(n)]

    @property
    def procs(self) -> list[tuple[str, subprocess.Popen[Any], Path]]:
        """(name, process, log) of every controller process."""
        if self.single is not None:
            return [("controller", self.single.proc, self.single.log_path)]
        return [(r.identity, r.proc, r.log_path) for r in self.replicas]

    @property
    def url(self) -> str:
        return self.single.url if self.single is not None else self.replicas[0].url

    @property
    def urls(self) -> list[str]:
        return [self.single.url] if self.single is not None else [r.url for r in
                                                                   self.replicas]

    def check_alive(self) -> None:
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def cpu(self) -> list[float]:
        """CPU seconds per controller process, its placement worker included."""
        return [tree_cpu_seconds(p.pid) if p.poll() is None else 0.0
                for _, p, _ in self.procs]

    def peak_rss(self) -> list[float]:
        """VmHWM per controller process (the process itself, MiB)."""
        return [rss_mib(p.pid)[1] if p.poll() is None else 0.0 for _, p, _ in self.procs]

    def helpers_rss(self) -> list[float]:
        """VmHWM of each controller's largest helper process (the placement worker)."""
        out = []
        for _, p, _ in self.procs:
            peaks = [0.0]
            for kid, _ in descendants(p.pid) if p.poll() is None else ():
                try:
                    peaks.append(rss_mib(kid)[1])
                except OSError:
                    continue
            out.append(max(peaks))
        return out

    def stop(self, keep: Path | None) -> None:
        if self.single is not None:
            self.single.stop(keep)
        for r in self.replicas:
            r.stop()
            if keep is not None:
                keep.with_name(f"{keep.name}.{r.identity}").write_bytes(r.log_path.read_bytes())
        if self.home_sim is not None:
            self.home_sim.send_signal(signal.SIGINT)
            try:
                self.home_sim.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.home_sim.kill()


@dataclass
class Watcher:
    """Reads /api/v1/status every `interval` s for the whole run: progress and the
    response times."""

    url: str
    interval: float
    doc: dict[str, Any] | None = None
    times: list[float] = field(default_factory=list)
    parsed: list[float] = field(default_factory=list)
    """The same reads with the JSON parsed here (how the figures before were taken)."""
    failures: int = 0
    """Reads that failed after the controller first answered."""
    unhealthy: Counter[str] = field(default_factory=Counter)
    """Clusters seen not Healthy, counted per read, by health and the reason the
    status document gives (what made a healthy cluster Degraded)."""
    reads: list[tuple[int, float, float, str]] = field(default_factory=list)
    """Each answered read: (its number, seconds since the watcher started, seconds it
    took, what the document said): which reads were slow, and when."""
    started: float = field(default_factory=time.perf_counter)
    parsing: anyio.Lock = field(default_factory=anyio.Lock)
    """Held while a read is parsed here: `json.loads` of a 50,000-row document holds
    this process's loop (and the GIL) for seconds, and a webhook or a cluster read
    timed meanwhile would count that stall as the controller's (`commit_latency`
    holds it while it times a commit)."""

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            started = time.perf_counter()
            try:
                # no deadline worth the name: how long an answer takes is measured
                r = await client.get(f"{self.url}/api/v1/status", timeout=900)
                if r.status_code == 200:
                    # the answer, whole; not this process parsing it (tens of ms for
                    # 4.5 MB, counted in the runs before this split)
                    took = time.perf_counter() - started
                    self.times.append(took)
                    async with self.parsing:
                        self.doc = dict(r.json())
                    self.reads.append((len(self.times), started - self.started, took,
                                       _said(self.doc)))
                    self.parsed.append(time.perf_counter() - started)
                    self._count_unhealthy(self.doc)
                elif self.times:
                    self.failures += 1
            except httpx.HTTPError:
                if self.times:  # before the first answer it is not listening yet
                    self.failures += 1
            # `interval` after each answer, not at a fixed rate: a status document that
            # takes longer than the interval to build must not be asked for back to back.
            await anyio.sleep(self.interval)

    def _count_unhealthy(self, doc: dict[str, Any]) -> None:
        for c in doc.get("clusters") or []:
            if c.get("health") not in ("Healthy", "Unknown"):
                why = str(c.get("message") or c.get("reason") or "")
                self.unhealthy[f"{c.get('health')}: {why[:160]}"] += 1

    def slowest(self, n: int = 3) -> str:
        """The `n` slowest reads: which read, when, what the document said."""
        top = sorted(self.reads, key=lambda r: -r[2])[:n]
        return "slowest status reads: " + "; ".join(
            f"#{i} at {at:.1f} s: {took * 1000:.0f} ms ({said})" for i, at, took, said in top)

    def summary(self) -> str:
        if not self.times:
            return "GET /api/v1/status: never answered"
        return (f"GET /api/v1/status: max {max(self.times) * 1000:.0f} ms, p90 "
                f"{pct(self.times, 0.9) * 1000:.0f} ms, p50 "
                f"{statistics.median(self.times) * 1000:.0f} ms over {len(self.times)} "
                f"reads ({self.failures} failed); with the JSON parsed here: max "
                f"{max(self.parsed) * 1000:.0f} ms, p50 "
                f"{statistics.median(self.parsed) * 1000:.0f} ms")


def _said(doc: dict[str, Any]) -> str:
    """What a status document said, in short: the commit applied and workloads synced."""
    applied = (doc.get("source") or {}).get("appliedCommit")
    done, placed = synced(doc)
    return (f"applied {applied[:8]}" if applied else "nothing applied") + \
        f", {done}/{placed} synced, {len(doc.get('workloads') or [])} rows"


def blockers(log: Path) -> str:
    """The controller's longest loop blockers (`AIFLEET_TRACE_BLOCKERS=1`), if traced."""
    import json

    last = None
    for line in log.read_text(errors="replace").splitlines():
        if '"loop_blockers"' in line:
            last = line
    if last is None:
        return "loop blockers: not traced (AIFLEET_TRACE_BLOCKERS=1 to trace)"
    top = json.loads(last).get("top") or []
    return "loop blockers (s, stack):\n" + "\n".join(
        f"  {b['seconds']:.2f} {' <- '.join(b['stack'][:4])}" for b in top[:6])


def progress(started: float, ctls: Controllers, sims: Sims, watcher: Watcher) -> str:
    """One line while the cold start runs: what /api/v1/status last said, CPU and
    memory so far, the load."""
    doc = watcher.doc
    where = "no status yet"
    if doc is not None:
        done, placed = synced(doc)
        applied = (doc.get("source") or {}).get("appliedCommit") or "none"
        where = f"{done}/{placed} placed workloads Synced, applied commit {applied[:12]}"
    cpu = " + ".join(f"{c:.0f}" for c in ctls.cpu())
    rss = " / ".join(f"{m:.0f}" for m in ctls.peak_rss())
    return (f"  {time.perf_counter() - started:6.0f} s: {where}; controller CPU {cpu} s, "
            f"peak RSS {rss} MiB; simulators CPU {sims.cpu():.0f} s; "
            f"{len(watcher.times)} status reads; load {uptime()}")


async def cold_start(ctls: Controllers, sims: Sims, watcher: Watcher, commit: str,
                     limit: float, every: float) -> float:
    started = time.perf_counter()
    said = started
    last = (0, 0)
    while time.perf_counter() - started < limit:
        ctls.check_alive()
        if watcher.doc is not None:
            last = synced(watcher.doc, commit)
            if last[1] and last[0] == last[1]:
                return time.perf_counter() - started
        if every and time.perf_counter() - said >= every:
            said = time.perf_counter()
            print(progress(started, ctls, sims, watcher), flush=True)
        await anyio.sleep(0.1)
    raise TimeoutError(f"not synced within {limit:.0f} s (last {last[0]}/{last[1]})")


def applied_by_logs(ctls: Controllers, commit: str, started: float) -> str:
    """When each replica logged `commit_applied` for `commit` (its own clusters all
    applied), in seconds from `started` (wall clock, as the log's timestamps): when the
    work was done, apart from how late the status document said so (another shard's
    rows are read at most every `shardstatus.rows_late` seconds, and this bench reads
    the status only every --status-interval). Needs --log-level info."""
    at: list[str] = []
    last = 0.0
    for name, _proc, log in ctls.procs:
        when = None
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            if '"commit_applied"' not in line or commit not in line:
                continue
            try:
                event = json.loads(line)
                stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError):
                continue
            when = stamp.timestamp() - started
            break
        if when is None:
            return (f"each replica's own account: {name} logged no commit_applied "
                    "(--log-level info to see it)")
        at.append(f"{name} {when:.1f} s")
        last = max(last, when)
    return (f"each replica's own account (commit_applied in its log): {', '.join(at)}; "
            f"the first commit applied on every cluster {last:.1f} s after the start")


def cluster_of(doc: dict[str, Any], name: str) -> str | None:
    for w in doc["workloads"]:
        if w["id"].rsplit("/", 1)[-1].rsplit(".", 1)[-1] == name and w["placements"]:
            return str(w["placements"][0]["cluster"])
    return None


async def commit_latency(repo: FleetRepo, ctls: Controllers, client: httpx.AsyncClient,
                         reader: ClusterReader, doc: dict[str, Any], samples: int,
                         workloads: int, limit: float, quiet: anyio.Lock
                         ) -> tuple[list[float], list[float]]:
    """(commit -> applied, webhook response) seconds per sample. With replicas the
    webhook goes to each of them (one that does not lead would otherwise wait for the
    leader's poll), each answer timed. Each sample is timed holding `quiet` (the
    watcher's `parsing`): the status is still read meanwhile, not parsed here."""
    applied: list[float] = []
    hooks: list[float] = []
    inference = [i for i in range(workloads) if i % 10 >= 3]
    step = max(1, len(inference) // max(1, samples))
    for n in range(samples):
        i = inference[(n * step) % len(inference)]
        name, team = f"w{i:05d}", f"team-{i % 10:02d}"
        where = cluster_of(doc, name)
        if where is None:
            raise RuntimeError(f"{name} is not placed")
        async with quiet:  # no parse of a status read here meanwhile
            commit = repo.commit({f"workloads/{team}/{name}.yaml": workload_doc(i, rev=n + 1)},
                                 f"bench: {name} rev {n + 1}")
            started = time.perf_counter()
            for url in ctls.urls:
                posted = time.perf_counter()
                await post_webhook(client, url)
                hooks.append(time.perf_counter() - posted)
            path = f"/apis/apps/v1/namespaces/{team}/deployments/{name}"
            while True:
                obj = await reader.get(where, path)
                ann = ((obj or {}).get("metadata") or {}).get("annotations") or {}
                if ann.get(SOURCE_COMMIT) == commit:
                    break
                if time.perf_counter() - started > limit:
                    break  # counted as `limit`, and said so
                await anyio.sleep(0.05)
            took = min(limit, time.perf_counter() - started)
        applied.append(took)
        print(f"  commit {n + 1}/{samples} ({name} on {where}): webhook answered in "
              f"{max(hooks[-len(ctls.urls):]):.2f} s, applied "
              + (f"in {took:.2f} s" if took < limit else f"NOT within {limit:.0f} s"),
              flush=True)
    return applied, hooks


async def run(args: argparse.Namespace) -> int:
    load_before = uptime()
    print(f"load average before: {load_before}", flush=True)
    with tempfile.TemporaryDirectory(prefix="aifleet-scale-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        files = fleet_files(args.clusters, args.workloads, args.nodes)
        repo = FleetRepo(root / "fleet")
        first = repo.commit(files, "Initial fleet")
        print(f"fleet repo: {len(files)} files committed in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        sims = Sims(root, files, args.sim_procs)
        try:
            sims.wait_ready()
            kubeconfig = sims.merged_kubeconfig()
            print(f"{args.clusters} simulated clusters x {args.nodes * 2} GPU nodes in "
                  f"{len(sims.procs)} `fleet sim up` processes (up in "
                  f"{time.perf_counter() - started:.1f} s; peak RSS "
                  f"{' / '.join(f'{m:.0f}' for m in sims.peak_rss())} MiB), "
                  f"{args.workloads} workloads, "
                  + (f"{args.replicas} replicas (--shards {args.replicas}, Lease "
                     f"{args.lease_duration:g} s)" if args.replicas > 1 else "1 controller")
                  + f"; {platform.python_implementation()} {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs", flush=True)
            return await measure(args, root, repo, first, kubeconfig, sims)
        finally:
            sims.stop()
            print(f"load average after: {uptime()}", flush=True)


async def measure(args: argparse.Namespace, root: Path, repo: FleetRepo, first: str,
                  kubeconfig: Path, sims: Sims) -> int:
    ctls = Controllers(args, root, repo.path, kubeconfig)
    reader = ClusterReader(kubeconfig)
    try:
        await ctls.start()
        watcher = Watcher(ctls.url, args.status_interval)
        # Long timeouts: how long the controller takes to answer is what is measured.
        async with httpx.AsyncClient(timeout=300) as client, anyio.create_task_group() as tg:
            tg.start_soon(watcher.run, client)
            sim_cpu = sims.cpu()
            wall_started = time.time()
            cold = await cold_start(ctls, sims, watcher, first, args.cold_limit,
                                    args.progress)
            ctl_cpu, sim_cpu = ctls.cpu(), sims.cpu() - sim_cpu
            assert watcher.doc is not None
            done, total = synced(watcher.doc, first)
            print(f"cold start: {cold:.1f} s to sync {done}/{total} placed workloads over "
                  f"{args.clusters} clusters (targets: 100 x 5,000 <= 60 s; 1,000 x 50,000 "
                  f"<= 5 min with 4 shards); CPU meanwhile: controller "
                  f"{' + '.join(f'{c:.1f}' for c in ctl_cpu)} s, simulators {sim_cpu:.1f} s; "
                  f"load {uptime()}", flush=True)
            print(watcher.summary() + " so far", flush=True)
            print(applied_by_logs(ctls, first, wall_started), flush=True)
            lat, hooks = await commit_latency(repo, ctls, client, reader, watcher.doc,
                                              args.samples, args.workloads, args.commit_limit,
                                              watcher.parsing)
            print(f"commit -> applied via webhook: p50 {statistics.median(lat):.2f} s, "
                  f"p90 {pct(lat, 0.9):.2f} s, max {max(lat):.2f} s over {len(lat)} "
                  "commits (targets p50: 100 x 5,000 <= 1 s; 1,000 x 50,000 <= 2 s)",
                  flush=True)
            tg.cancel_scope.cancel()
        print(f"{watcher.summary()}; webhook POST: max {max(hooks) * 1000:.0f} ms, p50 "
              f"{statistics.median(hooks) * 1000:.0f} ms (target < 200 ms)", flush=True)
        print(watcher.slowest(), flush=True)
        print(await server_view(ctls.url), flush=True)
        for _name, _proc, log in ctls.procs:
            print(blockers(log), flush=True)
        for n, (name, _, log) in enumerate(ctls.procs):
            print(f"{name}: {busy_report(log, watcher.doc if n == 0 else None)}", flush=True)
        for why, reads in watcher.unhealthy.most_common(5):
            print(f"  seen in /api/v1/status {reads} times (cluster x read): {why}",
                  flush=True)
        print("controller memory, peak RSS per process: "
              f"{' / '.join(f'{m:.0f}' for m in ctls.peak_rss())} MiB (targets: "
              "<= 512 MiB at 100 x 5,000; each replica <= 1 GiB at 1,000 x 50,000), "
              "its largest helper process (the placement worker) "
              f"{' / '.join(f'{m:.0f}' for m in ctls.helpers_rss())} MiB; CPU (with "
              f"helpers) {' + '.join(f'{c:.1f}' for c in ctls.cpu())} s in all; simulators: "
              f"peak RSS {' / '.join(f'{m:.0f}' for m in sims.peak_rss())} MiB, CPU "
              f"{sims.cpu():.1f} s", flush=True)
        for _name, proc, _log in ctls.procs:
            print(children_report(proc.pid), flush=True)
    finally:
        await reader.aclose()
        ctls.stop(args.keep_log)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--workloads", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=16, help="nodes per flavour per cluster")
    ap.add_argument("--sim-procs", type=int, default=4,
                    help="`fleet sim up` processes the clusters are spread over")
    ap.add_argument("--replicas", type=int, default=1,
                    help="N >= 2: N `fleet run --leader-elect --shards N` replicas and a "
                         "home cluster for their Leases (default: one `fleet run`)")
    ap.add_argument("--lease-duration", type=float, default=15.0,
                    help="the replicas' Lease duration (with --replicas)")
    ap.add_argument("--samples", type=int, default=10, help="commits measured")
    ap.add_argument("--status-interval", type=float, default=5.0,
                    help="seconds from one answer of /api/v1/status to the next read")
    ap.add_argument("--progress", type=float, default=30.0, metavar="SECONDS",
                    help="print a progress line every SECONDS during the cold start (0: none)")
    ap.add_argument("--commit-limit", type=float, default=90.0,
                    help="seconds a commit may take to be applied; a slower one is "
                         "counted as this and reported")
    ap.add_argument("--cold-limit", type=float, default=3600.0)
    ap.add_argument("--keep-log", type=Path, default=None,
                    help="copy the controller's log here at the end (replicas: "
                         "FILE.replica-<i>)")
    ap.add_argument("--log-level", choices=("warning", "info"), default="warning",
                    help="the controllers' log level: with info and --keep-log, "
                         "`python -m bench.committrace` splits each measured commit's "
                         "time into its stages")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.clusters, args.workloads, args.nodes, args.sim_procs = 4, 40, 4, 2
        args.samples, args.status_interval, args.cold_limit = 3, 0.5, 120.0
        args.progress = 0.0
    return anyio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
