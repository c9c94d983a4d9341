"""Benchmark: `fleet run --shards N` from the outside, cold start and shard takeover.

Everything is a separate process: the simulated member clusters (`fleet sim up`), the
management home for the Leases (a second `fleet sim up`), and N controllers
(`fleet run --shards N --leader-elect`, one identity each). For each N in `--replicas`
(default 1, 2, 4), on fresh clusters:

1. cold start: the controllers start -> every placed workload is Synced at the first
   commit in the merged status of replica 0 (`GET /api/v1/status`, which includes the
   shards held by the others);
2. takeover (N >= 2): stop the replica whose shards have the most clusters with
   workloads (one that does not lead, if that ties), commit a change to one workload on
   each of those clusters, tell the survivors (webhook); the time until a survivor's
   status shows all of them Synced at that commit. The stop, `--stop` (default both,
   each on fresh clusters and controllers, so that the two start alike):
   - kill: SIGKILL, a crash. Its Leases must expire first, so the figure is at least
     the Lease duration (`--lease-duration`); the target is Lease duration + 5 s.
   - term: SIGTERM, how a rolling update stops a pod. The replica lets its Leases go
     after its last write (`Leadership.release`), so nothing waits for a Lease: the
     target is 5 s whatever the Lease duration, the 5 s the kill target allows beyond
     the Lease, which here covers the stop itself up to the release (its writers end
     first), the survivors' next look at the Leases (every 2 s) and taking,
     connecting and reconciling the shard. Checked from the outside too
     (`bench.shardstop`): the replica exited 0, and each Lease it held was let go
     (read from the home), none left to lapse; else the bench fails.

    python -m bench.shards --clusters 20 --workloads 400
    python -m bench.shards --smoke     # 6 clusters x 60 workloads, 1 and 2 replicas (both stops)
    python -m bench.shards --stop term --replicas 2   # only the SIGTERM takeover
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.e2e import cluster_doc, cpu_seconds, fleet_files, free_port, rss_mib, workload_doc
from bench.shardstop import Stopped, held_by, read_failures, watch_stop
from clusters.client import KubeClient
from clusters.kubeconfig import ConnectionSpec, connection_config
from clusters.namespace import DEFAULT as NAMESPACE
from fleet.shards import shard_of
from workloads.scratch import FleetRepo

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"

STOPS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}
WHY = {"kill": "a crash: its Leases lapse", "term": "a rolling update's stop: its Leases let go"}
TERM_TARGET = 5.0
"""Seconds, commit to Synced, after a SIGTERM (the module's docstring says why)."""
GRACE = 30.0
"""Seconds a stopped replica has to end: a pod's default terminationGracePeriodSeconds
(then the kubelet kills it)."""


@dataclass(frozen=True)
class Takeover:
    """One takeover's figures, for the summary."""

    replicas: int
    stop: str
    took: float
    """Seconds from the commit (just after the stop) to Synced in a survivor's status."""
    since_stop: float
    target: float
    note: str = ""

    def line(self, lease: float) -> str:
        why = f"Lease {lease:g} s + 5 s" if self.stop == "kill" else "no Lease waited for"
        return (f"  {self.replicas} replicas, SIG{self.stop.upper()} ({WHY[self.stop]}): "
                f"{self.took:.1f} s ({self.since_stop:.1f} s since the stop), target <= "
                f"{self.target:g} s ({why}): {'met' if self.took <= self.target else 'NOT met'}"
                + (f"; {self.note}" if self.note else ""))


def sim_up(repo: Path, kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    """`fleet sim up` for a repo's Cluster files, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "controllers.cli", "sim", "up", str(repo), "--kubeconfig",
         str(kubeconfig), "--overwrite", "--job-seconds", "36000",
         "--pod-start-seconds", "0.05"],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop_sims(*procs: subprocess.Popen[Any], within: float = 30) -> None:
    """SIGINT each simulator process still running (they close their servers), then
    kill any that has not ended within `within` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=within)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def wait_file(path: Path, proc: subprocess.Popen[bytes], within: float) -> None:
    started = time.perf_counter()
    while not await anyio.Path(path).exists():
        if proc.poll() is not None or time.perf_counter() - started > within:
            raise RuntimeError(f"{path.name} not written (exit {proc.poll()})")
        await anyio.sleep(0.2)
    await anyio.sleep(0.5)  # written before the servers accept: a moment more


class Replica:
    """`fleet run --shards N` in a child process."""

    def __init__(self, root: Path, repo: Path, kubeconfig: Path, home: Path, shards: int,
                 index: int, lease: float, log_level: str) -> None:
        self.identity = f"replica-{index}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{self.identity}.log"
        env = {**os.environ, "FLEET_WEBHOOK_SECRET": SECRET}
        heap = os.environ.get("BENCH_TRACEMALLOC")  # `bench.heapdump`, one file per replica
        only = os.environ.get("BENCH_TRACEMALLOC_ONLY")  # e.g. "replica-0": that one traced
        if only and self.identity not in only.split(","):
            heap = None
        self.heap = Path(f"{heap}.{self.identity}") if heap else None
        prefix = ["-m", "bench.heapdump", str(self.heap)] if self.heap else []
        cmd = [sys.executable, *prefix, "-m", "controllers.cli", "run", "--repo", str(repo),
               "--kubeconfig", str(kubeconfig), "--state-dir", str(root / self.identity),
               "--listen", f"127.0.0.1:{self.port}", "--poll-interval", "60",
               "--qps", "500", "--burst", "1000", "--cluster-concurrency", "8",
               "--leader-elect", "--home-kubeconfig", str(home), "--home-context", "home",
               "--identity", self.identity, "--shards", str(shards),
               "--lease-duration", str(lease), "--log-level", log_level,
               "--log-json", "true"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)

    async def status(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text()[-1500:]
            raise RuntimeError(f"{self.identity} exited with {self.proc.returncode}:\n{tail}")
        try:
            r = await client.get(f"{self.url}/api/v1/status", timeout=30)
            return dict(r.json()) if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    async def hook(self, client: httpx.AsyncClient) -> None:
        body = b'{"ref": "refs/heads/main"}'
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        with contextlib.suppress(httpx.HTTPError):
            await client.post(f"{self.url}/hooks/git", content=body, timeout=10,
                              headers={"X-Hub-Signature-256": f"sha256={sig}"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.heap is not None:  # the snapshot first (`bench.heapdump`)
                before = self.heap.stat().st_mtime if self.heap.exists() else 0.0
                self.proc.send_signal(signal.SIGUSR2)
                for _ in range(1200):
                    if self.heap.exists() and self.heap.stat().st_mtime > before:
                        break
                    time.sleep(0.1)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def all_synced(doc: dict[str, Any] | None, commit: str, only: set[str] | None = None
               ) -> tuple[int, int]:
    """(Synced at `commit`, placed) over the workloads of `only` (all when None)."""
    if doc is None:
        return 0, -1
    rows = [w for w in doc["workloads"] if w["status"] == "Placed"
            and (only is None or w["id"] in only)]
    return sum(1 for w in rows if w["sync"] == "Synced" and w.get("commit") == commit), \
        len(rows)


async def until_synced(r: Replica, client: httpx.AsyncClient, commit: str, within: float,
                       only: set[str] | None = None) -> float:
    started = time.perf_counter()
    last = (0, 0)
    while time.perf_counter() - started < within:
        doc = await r.status(client)
        last = all_synced(doc, commit, only)
        if last[1] > 0 and last[0] == last[1]:
            return time.perf_counter() - started
        await anyio.sleep(0.5)
    raise TimeoutError(f"not synced within {within:.0f} s (last {last[0]}/{last[1]})")


async def one_run(args: argparse.Namespace, n: int, stop: str | None) -> Takeover | None:
    """Fresh clusters and N replicas: the cold start, then (`stop` not None) the
    takeover after that stop."""
    with tempfile.TemporaryDirectory(prefix="aifleet-shards-") as tmp:
        root = Path(tmp)
        repo = FleetRepo(root / "fleet")
        first = repo.commit(fleet_files(args.clusters, args.workloads, args.nodes),
                            "Initial fleet")
        home_repo = FleetRepo(root / "home")
        home_repo.commit({"clusters/home.yaml": cluster_doc("home", "DE", 1)}, "home")
        kube, home = root / "kubeconfig", root / "home-kubeconfig"
        sims = sim_up(repo.path, kube, root / "sims.log")
        home_sim = sim_up(home_repo.path, home, root / "home.log")
        replicas: list[Replica] = []
        home_kube: KubeClient | None = None
        try:
            await wait_file(kube, sims, 120)
            await wait_file(home, home_sim, 60)
            home_kube = KubeClient("home", await connection_config(
                ConnectionSpec("home", str(home), "home")))
            load = os.getloadavg()[0]
            started = time.perf_counter()
            replicas = [Replica(root, repo.path, kube, home, n, i, args.lease_duration,
                                args.log_level)
                        for i in range(n)]
            async with httpx.AsyncClient() as client:
                await until_synced(replicas[0], client, first, args.cold_limit)
                cold = time.perf_counter() - started
                cpu = [cpu_seconds(r.proc.pid) for r in replicas]
                rss = [rss_mib(r.proc.pid)[1] for r in replicas]
                print(f"{n} replica(s): cold start {cold:.1f} s for {args.workloads} workloads "
                      f"over {args.clusters} clusters; controller CPU "
                      f"{' + '.join(f'{c:.1f}' for c in cpu)} s, peak RSS "
                      f"{' / '.join(f'{m:.0f}' for m in rss)} MiB; load average "
                      f"{load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
                if stop is not None:
                    return await takeover(args, replicas, repo, client, stop, home_kube)
                return None
        finally:
            if home_kube is not None:
                await home_kube.close()
            for r in replicas:
                r.stop()
                if args.keep_logs is not None:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    (args.keep_logs / f"{n}-{r.log_path.name}").write_bytes(
                        r.log_path.read_bytes())
            stop_sims(sims, home_sim)


async def takeover(args: argparse.Namespace, replicas: list[Replica], repo: FleetRepo,
                   client: httpx.AsyncClient, stop: str, home: KubeClient) -> Takeover:
    """Stop a replica (SIGKILL or SIGTERM: `stop`); time until its clusters apply a
    commit. After a SIGTERM, also what the home shows of its Leases (`bench.shardstop`)."""
    balanced = time.perf_counter()
    while True:  # the first replica up took every shard; the others ask for theirs
        docs = {r.identity: await r.status(client) for r in replicas}
        held = {who: (d or {}).get("shards", {}).get("held") for who, d in docs.items()}
        if all(held.values()):
            break
        if time.perf_counter() - balanced > args.cold_limit:
            raise TimeoutError(f"shards not spread over the replicas: {held}")
        await anyio.sleep(0.5)
    print(f"  shards spread over the {len(replicas)} replicas "
          f"{time.perf_counter() - balanced:.1f} s after the cold start: {held}", flush=True)
    n = len(replicas)
    doc = next(d for d in docs.values() if d) or {}
    where = {w["id"]: {p["cluster"] for p in w.get("placements", [])}
             for w in doc["workloads"] if w["status"] == "Placed"}

    def only_on(r: Replica) -> dict[str, str]:
        """An inference workload per cluster of r's shards, of those that run only
        there (`bench.e2e.workload_doc`: i % 10 >= 3 are Deployments)."""
        mine = set(held[r.identity] or ())
        out: dict[str, str] = {}
        for wid, on in sorted(where.items()):
            inference = int(wid.rsplit("/w", 1)[1]) % 10 >= 3  # a Job's template is fixed
            if inference and on and all(shard_of(c, n) in mine for c in on):
                out.setdefault(min(on), wid)
        return out
    def leads(r: Replica) -> bool:
        return bool((docs[r.identity] or {}).get("leader", {}).get("leading"))
    # The replica whose shards have the most clusters with work, a follower first:
    # killing the leader also waits for a new leader (its Lease expires too).
    victim = max(replicas, key=lambda r: (len(only_on(r)), not leads(r)))
    lost = set(held[victim.identity] or ())
    changed = only_on(victim)
    clusters = set(changed)
    spread = Counter(c for on in where.values() for c in on)
    print(f"  workloads per cluster: {dict(sorted(spread.items()))}", flush=True)
    signame = f"SIG{stop.upper()}"
    print(f"  {signame} to {victim.identity}: shards {sorted(lost)}, clusters "
          f"{sorted(clusters)}, changing {sorted(changed.values())}", flush=True)
    leases = await held_by(home, NAMESPACE, victim.identity) if stop == "term" else {}
    victim.proc.send_signal(STOPS[stop])
    killed = time.perf_counter()
    killed_at = datetime.now(UTC)
    seen: list[Stopped] = []

    async def watch() -> None:
        seen.append(await watch_stop(home, NAMESPACE, victim.identity, leases, victim.proc,
                                     killed, within=max(GRACE, args.lease_duration + 10)))
    files = {}
    for wid in changed.values():
        team, name = wid.split("/")
        i = int(name[1:])
        files[f"workloads/{team}/{name}.yaml"] = workload_doc(i, rev=1)
    commit = repo.commit(files, "bench: one workload per cluster of the stopped shards")
    survivors = [r for r in replicas if r is not victim]
    async with anyio.create_task_group() as tg:
        if stop == "term":
            tg.start_soon(watch)
        for r in survivors:
            await r.hook(client)
        print(f"  commit {commit[:12]}", flush=True)
        took = await until_synced(survivors[0], client, commit, args.cold_limit,
                                  only=set(changed.values()))
        since = time.perf_counter() - killed
    target = args.lease_duration + 5 if stop == "kill" else TERM_TARGET
    print(f"  takeover: {signame} {victim.identity} ({'the leader, ' if leads(victim) else ''}"
          f"shards {sorted(lost)}, "
          f"{len(clusters)} clusters) -> a commit on each of them Synced by the others "
          f"in {took:.1f} s (Lease {args.lease_duration:g} s; target <= "
          f"{target:g} s); since the {signame} {since:.1f} s", flush=True)
    lapsed = await print_phases(survivors, client, victim.identity, killed_at, signame,
                                tries=20 if stop == "kill" else 1)
    note = ""
    if seen:
        [out] = seen
        out.failures = read_failures(victim.log_path)
        note = (f"exited {out.exit_code} after {out.exited_after:.1f} s; "
                if out.exited_after is not None else "") + \
            f"Leases: {', '.join(g.describe() for g in out.leases) or 'none held'}"
        print(f"  {signame} {victim.identity}: {note}", flush=True)
        problems = out.problems() + ([f"{lapsed} takeover(s) of a lapsed Lease recorded"]
                                     if lapsed else [])
        if problems:
            raise RuntimeError(f"{victim.identity} did not stop cleanly after {signame}: "
                               f"{'; '.join(problems)}\n"
                               f"{victim.log_path.read_text()[-1500:]}")
    return Takeover(len(replicas), stop, took, since, target, note)


PHASES = (("readiedAt", "connecting before the lapse"), ("expiredAt", "its Lease lapsed"),
          ("acquiredAt", "taken"),
          ("connectedAt", "connected"), ("listedAt", "listed"),
          ("firstReconciledAt", "first reconciled"), ("reconciledAt", "all reconciled"),
          ("lostAt", "lost again"))


async def print_phases(survivors: list[Replica], client: httpx.AsyncClient, victim: str,
                       killed_at: datetime, signame: str, tries: int) -> int:
    """The takeover's phases as the replicas that took the victim's shards recorded
    them (`shards.takeovers` in their status), in seconds since the stop; how many.
    Only a Lease that lapsed is recorded so (`ShardSet._took`): after a SIGTERM none
    should be, so one look (`tries`) is enough."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for _ in range(tries):  # the last phase may be recorded a moment after status showed it
        rows = []
        for r in survivors:
            doc = await r.status(client) or {}
            rows += [(r.identity, t) for t in doc.get("shards", {}).get("takeovers", [])
                     if t.get("previous") == victim and t.get("acquiredAt") and
                     datetime.fromisoformat(t["acquiredAt"]) >= killed_at]
        if rows and all(t.get("reconciledAt") or t.get("lostAt") for _who, t in rows):
            break
        await anyio.sleep(0.5)
    for who, t in rows:
        def since(key: str, t: dict[str, Any] = t) -> str:
            at = t.get(key)
            return "-" if not at else \
                f"{(datetime.fromisoformat(at) - killed_at).total_seconds():.2f}"
        print(f"  phases (s after {signame}), shard {t['shard']} ({t['clusters']} clusters) "
              f"taken by {who}: " + ", ".join(f"{name} {since(key)}" for key, name in PHASES),
              flush=True)
    if not rows:
        print("  phases: no takeover of a lapsed Lease recorded by the survivors", flush=True)
    return len(rows)


async def run(args: argparse.Namespace) -> int:
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: list[Takeover] = []
    for n in args.replicas:
        stops: list[str | None] = [s for s in STOPS if args.stop in (s, "both")] \
            if n >= 2 else [None]
        for stop in stops:
            if stop is not None and len(stops) > 1:
                print(f"{n} replicas, fresh clusters for the SIG{stop.upper()} takeover",
                      flush=True)
            result = await one_run(args, n, stop)
            if result is not None:
                results.append(result)
    if results:
        print("summary: a commit on each of the stopped replica's clusters, until Synced "
              "in a survivor's status (from the commit)", flush=True)
        for result in results:
            print(result.line(args.lease_duration), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--workloads", type=int, default=400)
    ap.add_argument("--nodes", type=int, default=4, help="nodes per flavour per cluster")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--lease-duration", type=float, default=5.0)
    ap.add_argument("--stop", choices=["kill", "term", "both"], default="both",
                    help="how the takeover's replica is stopped: SIGKILL, SIGTERM, or each "
                         "on fresh clusters")
    ap.add_argument("--cold-limit", type=float, default=300.0)
    ap.add_argument("--keep-logs", type=Path, default=None,
                    help="copy each controller's log into this folder")
    ap.add_argument("--log-level", default="warning")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.clusters, args.workloads, args.nodes, args.replicas = 6, 60, 2, [1, 2]
        args.cold_limit = 120.0
    return anyio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
