"""Benchmark: the controller end to end, as `fleet run` in its own process.

Simulated clusters run in this process; the controller is a separate `fleet run`
process (so its memory is its own), talking to them over real HTTP, watching a real Git
repo made here with pygit2. Four figures, each against the issue's target:

1. cold start: process start -> every placed workload applied and synced, for
   `--workloads` workloads over `--clusters` clusters (target <= 60 s for 1,000 / 20);
2. commit -> applied: commit a change to one workload, POST the webhook, until its
   object in the cluster carries the new source commit (target p50 <= 2 s);
3. drift detected -> corrected: another field manager scales a Deployment, until the
   cluster holds our replica count again (target p99 <= 5 s);
4. memory: the controller's peak RSS (VmHWM) in a second fleet sized for
   `--memory-objects` managed objects (inference workloads: a Deployment and a Service
   each, clusters with room for all) (target <= 512 MiB for 10,000).

    python -m bench.e2e             # 1,000 workloads / 20 clusters; then 10,000 objects
    python -m bench.e2e --smoke     # 30 workloads / 3 clusters, a few samples (CI)

`--probe SECONDS`: meanwhile, every SECONDS, `GET /api/v1/status` and a signed webhook
POST, each timed from request to full answer (issue 22's target: < 200 ms throughout).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from controllers.demo.sandbox import Sandbox, synced
from fleet.render import MANAGED_BY, SOURCE_COMMIT

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
JURISDICTIONS = ["DE", "FR", "NL", "US", "CA", "JP", "BR", "SE"]
POLICY = """\
apiVersion: aifleet.dev/v1alpha1
kind: ResidencyPolicy
metadata: {name: default}
spec:
  dataClasses:
    public: {allowed: ["*"]}
    eu-personal: {allowed: [EU]}
  default: public
"""


def cluster_doc(name: str, jurisdiction: str, nodes: int) -> str:
    return f"""\
apiVersion: aifleet.dev/v1alpha1
kind: Cluster
metadata: {{name: {name}, labels: {{tier: prod}}}}
spec:
  region: r-{name}
  jurisdiction: {jurisdiction}
  gpus:
    - {{flavour: h100-80gb, product: NVIDIA-H100-80GB-HBM3, count: {nodes * 8}, perNode: 8}}
    - {{flavour: l40s-48gb, product: NVIDIA-L40S, count: {nodes * 8}, perNode: 8}}
"""


def workload_doc(i: int, *, rev: int = 0, training: bool | None = None) -> str:
    team = f"team-{i % 10:02d}"
    train = (i % 10 < 3) if training is None else training
    dc = "eu-personal" if i % 4 == 0 else "public"
    kind = "training" if train else "inference"
    extra = "" if train else "  inference: {port: 8000}\n"
    return f"""\
apiVersion: aifleet.dev/v1alpha1
kind: Workload
metadata: {{name: w{i:05d}, namespace: {team}}}
spec:
  type: {kind}
  image: registry.internal/bench/app:{rev}
  replicas: 1
  resources:
    gpu: {{count: 1, flavours: [{'h100-80gb' if train else 'l40s-48gb'}]}}
  placement: {{dataClass: {dc}}}
{extra}"""


def fleet_files(clusters: int, workloads: int, nodes: int, *, all_inference: bool = False
                ) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {"policies/residency.yaml": POLICY}
    for c in range(clusters):
        files[f"clusters/c{c:02d}.yaml"] = cluster_doc(
            f"c{c:02d}", JURISDICTIONS[c % len(JURISDICTIONS)], nodes)
    for i in range(workloads):
        files[f"workloads/team-{i % 10:02d}/w{i:05d}.yaml"] = workload_doc(
            i, training=False if all_inference else None)
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def descendants(pid: int) -> list[tuple[int, int]]:
    """(child, parent) of every process started by `pid` and by them, from /proc (the
    controller's placement worker is a grandchild, through multiprocessing's fork server)."""
    out: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            out += [(k, p) for k in kids]
            todo += kids
    return out


def children_report(pid: int) -> str:
    """The controller's child processes' memory (multiprocessing's resource tracker,
    the forkserver and the placement worker it forks, the front process serving the
    API unless --serve-in-process): not in the controller's own
    RSS, so said apart."""
    parts = []
    for child, parent in descendants(pid):
        try:
            rss, hwm = rss_mib(child)
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        what = ("resource tracker" if b"resource_tracker" in cmd else
                "front (the HTTP API)" if b"controllers.front" in cmd else
                "forkserver" if parent == pid else "placement worker")
        parts.append(f"{what}: RSS {rss:.0f} MiB, peak {hwm:.0f} MiB")
    return ("child processes (not in the controller's figure): " + "; ".join(parts)
            if parts else "no child processes")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every live descendant (with what the process's
    children that ended and were waited for used, as /proc counts it)."""
    total = 0.0
    for p in (pid, *(child for child, _ in descendants(pid))):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def post_webhook(client: httpx.AsyncClient, url: str) -> None:
    """The forge's push webhook (signed with `SECRET`) to a controller at `url`."""
    body = b'{"ref": "refs/heads/main"}'
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = await client.post(f"{url}/hooks/git", content=body,
                          headers={"X-Hub-Signature-256": f"sha256={sig}"})
    r.raise_for_status()


class Controller:
    """`fleet run` in a child process, with its HTTP port."""

    def __init__(self, repo: Path, kubeconfig: Path, root: Path,
                 log_level: str = "warning") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FLEET_WEBHOOK_SECRET": SECRET,
               "FLEET_KUBECONFIG": str(kubeconfig)}
        profile = os.environ.get("BENCH_PROFILE")  # a path: run the controller under cProfile
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        self.heap = os.environ.get("BENCH_TRACEMALLOC")  # a path: a tracemalloc snapshot
        if self.heap:  # taken at the end (`bench.heapdump`)
            prefix = ["-m", "bench.heapdump", self.heap]
        cmd = [sys.executable, *prefix, "-m", "controllers.cli", "run",
               "--repo", str(repo),
               "--kubeconfig", str(kubeconfig), "--state-dir", str(root / "state"),
               "--listen", f"127.0.0.1:{self.port}", "--poll-interval", "60",
               "--qps", "500", "--burst", "1000", "--cluster-concurrency", "8",
               "--log-level", log_level, "--log-json", "true"]
        self.log_path = root / "controller.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    async def status(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        try:
            r = await client.get(f"{self.url}/api/v1/status", timeout=30)
            return dict(r.json()) if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    async def hook(self, client: httpx.AsyncClient) -> None:
        await post_webhook(client, self.url)

    def dump_heap(self) -> None:
        """With BENCH_TRACEMALLOC: ask for the snapshot and wait until it is written."""
        if not self.heap or self.proc.poll() is not None:
            return
        path = Path(self.heap)
        before = path.stat().st_mtime if path.exists() else 0.0
        self.proc.send_signal(signal.SIGUSR2)
        for _ in range(1200):
            if path.exists() and path.stat().st_mtime > before:
                print(f"tracemalloc snapshot: {path} (python -m bench.heapdump --show "
                      f"{path})", flush=True)
                return
            time.sleep(0.1)

    def stop(self, keep: Path | None = None) -> None:
        self.dump_heap()
        if keep is not None:
            keep.write_bytes(self.log_path.read_bytes())
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def wait_synced(ctl: Controller, client: httpx.AsyncClient, commit: str,
                      within: float) -> float:
    started = time.perf_counter()
    last = (0, 0)
    while time.perf_counter() - started < within:
        if ctl.proc.poll() is not None:
            tail = ctl.log_path.read_text()[-2000:]
            raise RuntimeError(f"controller exited with {ctl.proc.returncode}:\n{tail}")
        # /readyz is cheap; the status document of a big fleet is not, and polling it
        # would slow down what is measured. Confirm with one status read at the end.
        try:
            r = await client.get(f"{ctl.url}/readyz", timeout=30)
            ready = r.status_code == 200 and commit[:12] in r.text
        except httpx.HTTPError:
            ready = False
        if ready:
            took = time.perf_counter() - started
            doc = await ctl.status(client)
            last = synced(doc, commit) if doc is not None else (0, 0)
            if last[1] and last[0] == last[1]:
                return took
        await anyio.sleep(0.25)
    raise TimeoutError(f"not synced within {within:.0f} s (last {last[0]}/{last[1]})")


def object_of(box: Sandbox, i: int) -> tuple[str, dict[str, Any]] | None:
    assert box.sim is not None
    name, team = f"w{i:05d}", f"team-{i % 10:02d}"
    for cname, sc in box.sim.clusters.items():
        for o in sc.objects("Deployment", team):
            if o["metadata"]["name"] == name:
                return cname, o
    return None


async def commit_latency(box: Sandbox, ctl: Controller, client: httpx.AsyncClient,
                         samples: int, inference: list[int]) -> list[float]:
    out: list[float] = []
    for n in range(samples):
        i = inference[n % len(inference)]
        commit = box.repo.commit({f"workloads/team-{i % 10:02d}/w{i:05d}.yaml":
                                  workload_doc(i, rev=n + 1)}, f"bench: w{i:05d} rev {n + 1}")
        started = time.perf_counter()
        await ctl.hook(client)
        while True:
            found = object_of(box, i)
            ann = (found[1]["metadata"].get("annotations") or {}) if found else {}
            if ann.get(SOURCE_COMMIT) == commit:
                break
            if time.perf_counter() - started > 30:
                raise TimeoutError(f"commit {commit[:12]} not applied within 30 s")
            await anyio.sleep(0.01)
        out.append(time.perf_counter() - started)
    return out


async def drift_latency(box: Sandbox, samples: int, inference: list[int]) -> list[float]:
    assert box.sim is not None
    out: list[float] = []
    for n in range(samples):
        i = inference[(n * 7 + 3) % len(inference)]
        found = object_of(box, i)
        assert found is not None, f"w{i:05d} has no Deployment"
        cname, obj = found
        meta = obj["metadata"]
        want = int(obj["spec"]["replicas"])
        started = time.perf_counter()
        await box.sim.clusters[cname].edit("Deployment", meta["namespace"], meta["name"],
                                           {"spec": {"replicas": want + 2}})
        while True:
            again = object_of(box, i)
            if again is not None and int(again[1]["spec"]["replicas"]) == want:
                break
            if time.perf_counter() - started > 30:
                raise TimeoutError(f"drift on w{i:05d} not corrected within 30 s")
            await anyio.sleep(0.01)
        out.append(time.perf_counter() - started)
    return out


def managed_objects(box: Sandbox) -> int:
    assert box.sim is not None
    total = 0
    for sc in box.sim.clusters.values():
        for kind in ("Namespace", "Deployment", "Service", "Job"):
            total += sum(1 for o in sc.objects(kind)
                         if (o["metadata"].get("labels") or {}).get(MANAGED_BY))
    return total


class Prober:
    """`GET /api/v1/status` and the webhook, asked every `every` seconds while the
    benchmark runs, each answer timed (no client timeout: a late answer is counted)."""

    def __init__(self, ctl: Controller, every: float) -> None:
        self.ctl, self.every = ctl, every
        self.times: dict[str, list[float]] = {"status": [], "webhook": []}
        self.failed = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=None) as client:
            while True:
                for kind in ("status", "webhook"):
                    started = time.perf_counter()
                    try:
                        if kind == "status":
                            r = await client.get(f"{self.ctl.url}/api/v1/status")
                            r.raise_for_status()
                            _ = r.content
                        else:
                            await self.ctl.hook(client)
                    except httpx.HTTPError:
                        # (before its first answer the controller is not listening yet)
                        self.failed += any(self.times.values())
                        continue
                    self.times[kind].append(time.perf_counter() - started)
                await anyio.sleep(self.every)

    def report(self) -> str:
        parts = []
        for kind, ts in self.times.items():
            if ts:
                parts.append(f"{kind} p50 {statistics.median(ts) * 1000:.0f} ms, p90 "
                             f"{pct(ts, 0.9) * 1000:.0f} ms, max {max(ts) * 1000:.0f} ms, "
                             f"{sum(t >= 0.2 for t in ts)} of {len(ts)} at 200 ms or more")
        return ("answers while measured: " + "; ".join(parts)
                + f"; failed {self.failed} (target < 200 ms throughout)")


def request_times(metrics: str) -> str:
    """The controller's own view of its HTTP answers, by route, from `/metrics`: CPU on
    the server's thread (load-independent) and seconds from handler to answer written
    (what the server took, not the client's wait for a core): mean, and how many took
    over 10 ms of CPU / 200 ms of wall."""
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], float] = {}
    under: dict[tuple[str, str], float] = {}
    limits = {"cpu": 'le="0.01"', "wall": 'le="0.25"'}
    for line in metrics.splitlines():
        for kind, prefix in (("cpu", "aifleet_http_request_cpu_seconds"),
                             ("wall", "aifleet_http_request_seconds")):
            if not line.startswith(prefix + "_"):
                continue
            name, _, value = line.rpartition(" ")
            key = (kind, name.split('route="', 1)[-1].split('"', 1)[0])
            if name.startswith(prefix + "_sum"):
                sums[key] = float(value)
            elif name.startswith(prefix + "_count"):
                counts[key] = float(value)
            elif limits[kind] in name:
                under[key] = float(value)
    parts = []
    for route in ("/api/v1/status", "/hooks/git"):
        n = counts.get(("cpu", route), 0.0)
        if not n:
            continue
        parts.append(
            f"{route}: CPU {sums[('cpu', route)] / n * 1000:.2f} ms mean "
            f"({n - under.get(('cpu', route), n):.0f} over 10 ms), handler to answer "
            f"{sums.get(('wall', route), 0.0) / n * 1000:.1f} ms mean "
            f"({n - under.get(('wall', route), n):.0f} over 250 ms), {n:.0f} requests")
    return "the controller's answers (its /metrics): " + ("; ".join(parts) or "none")


async def server_view(url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            return request_times((await client.get(f"{url}/metrics")).text)
    except httpx.HTTPError as e:
        return f"the controller's answers: /metrics not read ({e})"


def busy_report(log: Path, doc: dict[str, Any] | None) -> str:
    """Did the busy controller mistake itself for broken clusters (issue 22, item 0)?
    Health changes from the controller's log (`cluster_health_changed`, logged at
    warning; the first, from Unknown, is not one), and its own loop lag and re-plan
    counts from `/api/v1/status`."""
    changes = unreachable = 0
    for line in log.read_text(errors="replace").splitlines():
        if '"cluster_health_changed"' in line and '"previous": "Unknown"' not in line:
            changes += 1
            unreachable += '"health": "Unreachable"' in line
    out = (f"cluster health changes: {changes} ({unreachable} to Unreachable) "
           "(target 0 on healthy clusters)")
    ctl = (doc or {}).get("controller")
    if ctl:
        loop, replans = ctl["eventLoop"], ctl["replans"]
        out += (f"; event loop lag: max {loop['maxLagSeconds']:.2f} s in the last minute, "
                f"{loop['stalledSeconds']:.1f} s stalled in all; timeouts discounted "
                f"{ctl['timeoutsDiscounted']}; re-plans asked {replans['asked']}, planned "
                f"{replans['planned']}, coalesced {replans['coalesced']}, skipped "
                f"{replans['skipped']}")
        gcs = loop.get("gc")
        if gcs:
            out += (f"; garbage collector: {gcs['collections']} collections by generation, "
                    f"paused {gcs['pauseSeconds']} s, longest {gcs['maxPauseSeconds']:.2f} s")
    return out


async def run(args: argparse.Namespace) -> int:
    if not args.memory_only:
        await phase(args, args.workloads, args.nodes, args.samples, memory_only=False)
    if args.memory_objects:
        # Enough inference workloads (a Deployment and a Service each) for the object
        # count, on clusters with room for all of them.
        workloads = args.memory_objects // 2
        nodes = -(-workloads // (args.clusters * 8)) + 2
        await phase(args, workloads, nodes, 0, memory_only=True)
    return 0


async def phase(args: argparse.Namespace, workloads: int, nodes: int, samples: int, *,
                memory_only: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="aifleet-bench-") as tmp:
        root = Path(tmp)
        files = fleet_files(args.clusters, workloads, nodes, all_inference=memory_only)
        box = Sandbox(root, files)
        sim = await box.start_clusters(job_seconds=36000.0, pod_start_seconds=0.05)
        print(f"{len(sim.clusters)} simulated clusters x {nodes * 2} GPU nodes, {workloads} "
              f"workloads; {platform.python_implementation()} {platform.python_version()}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
        ctl = Controller(box.repo.path, box.kubeconfig, root)
        prober = Prober(ctl, args.probe) if args.probe else None
        try:
            async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
                if prober is not None:
                    tg.start_soon(prober.run)
                limit = args.cold_limit * (4 if memory_only else 1)
                sim_cpu = time.process_time()
                cold = await wait_synced(ctl, client, box.first_commit, limit)
                ctl_cpu, sim_cpu = cpu_seconds(ctl.proc.pid), time.process_time() - sim_cpu
                objects = managed_objects(box)
                print(f"cold start: {cold:.1f} s to apply {workloads} workloads "
                      f"({objects} objects) over {args.clusters} clusters "
                      "(target <= 60 s for 1,000 / 20); CPU meanwhile: controller "
                      f"{ctl_cpu:.1f} s, simulated clusters {sim_cpu:.1f} s, load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
                if samples:
                    inference = [i for i in range(workloads) if i % 10 >= 3]
                    lat = await commit_latency(box, ctl, client, samples, inference)
                    print(f"commit -> applied via webhook: p50 {statistics.median(lat):.2f} "
                          f"s, p90 {pct(lat, 0.9):.2f} s, max {max(lat):.2f} s over "
                          f"{len(lat)} commits (target p50 <= 2 s)", flush=True)
                    drift = await drift_latency(box, samples, inference)
                    print(f"drift -> corrected: p50 {statistics.median(drift):.2f} s, "
                          f"p99 {pct(drift, 0.99):.2f} s over {len(drift)} edits "
                          "(target p99 <= 5 s)", flush=True)
                doc = await ctl.status(client)
                print(busy_report(ctl.log_path, doc), flush=True)
                rss, hwm = rss_mib(ctl.proc.pid)
                print(f"controller memory: RSS {rss:.0f} MiB, peak {hwm:.0f} MiB with "
                      f"{objects} managed objects (target <= 512 MiB for 10,000)", flush=True)
                print(children_report(ctl.proc.pid), flush=True)
                if prober is not None:
                    print(prober.report(), flush=True)
                    print(await server_view(ctl.url), flush=True)
                tg.cancel_scope.cancel()
        finally:
            ctl.stop(args.keep_log)
            await box.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=16, help="nodes per flavour per cluster")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--memory-objects", type=int, default=10_000)
    ap.add_argument("--cold-limit", type=float, default=120.0)
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory fleet (sized by --memory-objects)")
    ap.add_argument("--keep-log", type=Path, default=None,
                    help="copy the controller's log here at the end")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    ap.add_argument("--probe", type=float, default=0.0, metavar="SECONDS",
                    help="time GET /api/v1/status and the webhook every SECONDS meanwhile")
    args = ap.parse_args()
    if args.smoke:
        args.clusters, args.workloads, args.nodes = 3, 30, 4
        args.samples, args.memory_objects, args.cold_limit = 3, 0, 60.0
    return anyio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
