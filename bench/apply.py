"""Benchmark: server-side apply to one simulated cluster (issue 5 targets).

The simulated cluster runs in a child process (an API server is another process in
production too; sharing one event loop would charge its work to the adapter). This
process runs the real `ClusterAdapter` with its informers, connected from a written
kubeconfig over HTTPS, and applies a fleet of W workloads of four objects each, shaped
like rendered ones: a Deployment (1 replica), its Service, a metrics Service and a
warm-up Job, in 25 team namespaces. No client-side rate limit (`--qps 0`), so the
figures are the adapter's and the API server's, not the bucket's (at the default 50 QPS
a changed object costs 20 ms of waiting, whatever this measures).

Figures, each over the whole desired set of the cluster:
1. first apply (every object created): objects per second, API calls per object;
2. no-op re-apply (nothing changed): its time and API calls (target 0 per object);
3. re-apply with 10% of the Deployments changed (a new image): API calls per changed
   object (target <= 1.2) and the time;
4. re-apply with 2% of the Jobs' templates changed: re-created by delete and create
   (calls per re-created Job, reported apart: a Job template is immutable);
5. the same first apply by `kubectl apply --server-side` (.cache/bin/kubectl) on the
   same simulated server, into other namespaces and without our managed-by label (so
   the adapter neither lists nor prunes them), once the adapter has closed: objects per
   second of both, in the same run (issue 22's target: ours >= kubectl's). kubectl's
   time is its whole command, discovery (an empty cache directory) included, as a user
   runs it; `--validate=false` (the simulator lacks what kubectl's validation asks
   for; without it kubectl does less, so the comparison is not in our favour).

    python -m bench.apply                 # 500 workloads, 2,000 objects
    python -m bench.apply --smoke         # 20 workloads (CI keeps it from rotting)
    python -m bench.apply --no-pods       # no scheduler/kubelet work in the server
    python -m bench.apply --profile 25    # cProfile of the first apply, top 25

Prints one line per figure; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.apply import ApplyResult
from clusters.kubeconfig import ConnectionSpec
from fleet.render import MANAGED_BY, SOURCE_COMMIT, WORKLOAD_LABEL, workload_label

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = ROOT / ".cache" / "bin" / "kubectl"
TEAMS = 25
CLUSTER = "bench-apply"

_SERVER = """
import asyncio, sys
from pathlib import Path
from clusters.sim import SimClusterSpec, SimNode, start_sim
async def main():
    spec = SimClusterSpec("bench-apply", tuple(
        SimNode(f"bench-apply-h100-{i}", "NVIDIA-H100-80GB-HBM3", 8) for i in range(16)))
    async with await start_sim([spec], job_seconds=3600, pod_start_seconds=0.05) as sim:
        sim.clusters["bench-apply"].store.history_size = 100_000
        sim.write_kubeconfig(Path(sys.argv[1]))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def _labels(wl: str) -> dict[str, str]:
    return {WORKLOAD_LABEL: wl, MANAGED_BY: "aifleet"}


def workload_objects(i: int, image: str = "v1", warmup: str = "v1", *,
                     pods: bool = True) -> list[dict[str, Any]]:
    team, name = f"team-{i % TEAMS:02d}", f"w{i:04d}"
    wl = workload_label(f"{team}/{name}")
    meta = {"namespace": team, "labels": _labels(wl),
            "annotations": {SOURCE_COMMIT: "c0ffee"}}
    pod = {"metadata": {"labels": _labels(wl)},
           "spec": {"containers": [{"name": "main",
                                    "image": f"registry.internal/{name}:{image}",
                                    "resources": {"requests": {"cpu": "100m"}}}]}}
    job_pod = {"metadata": {"labels": _labels(wl)},
               "spec": {"restartPolicy": "Never", "containers": [
                   {"name": "warmup", "image": f"registry.internal/warmup:{warmup}"}]}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, **meta},
         "spec": {"replicas": 1 if pods else 0, "selector": {"matchLabels": {WORKLOAD_LABEL: wl}},
                  "template": pod}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, **meta},
         "spec": {"selector": {WORKLOAD_LABEL: wl},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-metrics", **meta},
         "spec": {"selector": {WORKLOAD_LABEL: wl},
                  "ports": [{"name": "metrics", "port": 9090}]}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-warmup", **meta},
         "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 0,
                  "suspend": not pods, "template": job_pod}},
    ]


def desired(workloads: int, changed: frozenset[int] = frozenset(),
            rejobbed: frozenset[int] = frozenset(), *, pods: bool = True
            ) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": f"team-{t:02d}", "labels": {MANAGED_BY: "aifleet"}}}
        for t in range(min(TEAMS, workloads))]
    for i in range(workloads):
        objs += workload_objects(i, "v2" if i in changed else "v1",
                                 "v2" if i in rejobbed else "v1", pods=pods)
    return objs


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the simulated cluster's process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def for_kubectl(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same objects in namespaces `kubectl-NN` and without our managed-by label."""
    out: list[dict[str, Any]] = json.loads(json.dumps(objs))
    for obj in out:
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            meta["name"] = meta["name"].replace("team-", "kubectl-")
        else:
            meta["namespace"] = meta["namespace"].replace("team-", "kubectl-")
        meta.get("labels", {}).pop(MANAGED_BY, None)
        for pod in (obj.get("spec", {}).get("template", {}),):
            pod.get("metadata", {}).get("labels", {}).pop(MANAGED_BY, None)
    return out


def kubectl_apply(kubeconfig: Path, objs: list[dict[str, Any]], tmp: Path) -> float:
    """Wall seconds of one `kubectl apply --server-side` of `objs` (one List file)."""
    manifest = tmp / "kubectl.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    start = time.perf_counter()
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "--context", CLUSTER,
         "--cache-dir", str(tmp / "kubectl-cache"), "apply", "--server-side", "--validate=false",
         "--field-manager", "kubectl-bench", "-f", str(manifest)],
        capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"kubectl apply failed: {done.stderr[-500:]}")
    return took


class Phase:
    """Wall time, this process's CPU time and the server's CPU time of one apply."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    async def apply(self, adapter: ClusterAdapter, objs: list[dict[str, Any]]
                    ) -> tuple[dict[str, float], ApplyResult]:
        wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu(self.pid)
        result = await adapter.apply(objs)
        took = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                "server_cpu": _server_cpu(self.pid) - server}
        if not result.ok:
            raise SystemExit(f"apply failed: {result.failed[:3]} {result.prune_refused}")
        return took, result


async def run(workloads: int, kubeconfig: Path, qps: float, server_pid: int,
              pods: bool, profile: cProfile.Profile | None = None,
              concurrency: int = 8) -> dict[str, Any]:
    options = AdapterOptions(qps=qps, burst=max(1, int(qps * 2)), heartbeat_interval=5.0,
                             apply_concurrency=concurrency)
    adapter = await ClusterAdapter.connect(
        ConnectionSpec(CLUSTER, str(kubeconfig), CLUSTER), options)
    phase = Phase(server_pid)
    out: dict[str, Any] = {}
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(adapter.run)
            await adapter.wait_synced(60)
            objs = desired(workloads, pods=pods)

            if profile is not None:
                profile.enable()
            out["create"], r = await phase.apply(adapter, objs)
            if profile is not None:
                profile.disable()
            out["objects"] = len(objs)
            out["create_calls"] = r.api_calls

            # Let the informers see our writes (and the controllers' status updates).
            await anyio.sleep(1.0 if workloads > 50 else 0.3)
            out["noop"], r = await phase.apply(adapter, objs)
            out["noop_calls"], out["noop_unchanged"] = r.api_calls, len(r.unchanged)

            changed = frozenset(range(0, workloads, 10))
            out["changed"], r = await phase.apply(adapter, desired(workloads, changed,
                                                                   pods=pods))
            out["changed_objects"], out["changed_calls"] = len(r.applied), r.api_calls

            rejobbed = frozenset(range(5, workloads, 50))
            out["recreate"], r = await phase.apply(
                adapter, desired(workloads, changed, rejobbed, pods=pods))
            out["recreated_jobs"], out["recreate_calls"] = len(r.recreated), r.api_calls
            out["drift_reports"] = len(adapter.drift_log)
            tg.cancel_scope.cancel()
    finally:
        await adapter.aclose()
    return out


def _per(phase: dict[str, float], count: int) -> str:
    return (f"{phase['cpu'] / max(1, count) * 1000:.2f} ms adapter CPU, "
            f"{phase['server_cpu'] / max(1, count) * 1000:.2f} ms server CPU per object")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", type=int, default=500)
    ap.add_argument("--qps", type=float, default=0.0,
                    help="client-side rate limit (0: none, the default here)")
    ap.add_argument("--no-pods", action="store_true",
                    help="Deployments at 0 replicas and Jobs suspended: no pods, so the "
                    "simulator's scheduler and kubelet cost nothing")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="workloads applied at once (AdapterOptions.apply_concurrency)")
    ap.add_argument("--no-kubectl", action="store_true",
                    help="skip the kubectl apply --server-side comparison")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="cProfile the first apply and print its top N functions")
    args = ap.parse_args()
    if args.smoke:
        args.workloads = 20
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-c", _SERVER, str(kubeconfig)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                  text=True)
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise SystemExit("simulated cluster did not start")
            profile = cProfile.Profile() if args.profile else None
            r = asyncio.run(run(args.workloads, kubeconfig, args.qps, server.pid,
                                not args.no_pods, profile, args.concurrency))
            if not args.no_kubectl and KUBECTL.exists():
                r["kubectl"] = kubectl_apply(
                    kubeconfig, for_kubectl(desired(args.workloads, pods=not args.no_pods)),
                    Path(tmp))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(10)
    n = r["objects"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; simulated cluster in a child process; "
          f"{'no pods' if args.no_pods else 'pods running'}")
    c = r["create"]
    print(f"first apply: {n:,} objects ({args.workloads} workloads) in {c['wall']:.2f} s = "
          f"{n / c['wall']:,.0f} objects/s, {r['create_calls'] / n:.2f} API calls per "
          f"object; {_per(c, n)}")
    print(f"no-op re-apply: {r['noop']['wall'] * 1000:.0f} ms, {r['noop_calls']} API "
          f"calls for {r['noop_unchanged']:,} unchanged objects (target 0)")
    ch, k = r["changed"], r["changed_objects"]
    print(f"re-apply with {k} changed Deployments: {ch['wall']:.2f} s, "
          f"{r['changed_calls'] / max(1, k):.2f} API calls per changed object "
          f"(target <= 1.2); {_per(ch, k)}")
    j = r["recreated_jobs"]
    print(f"re-apply with {j} Job templates changed: {r['recreate']['wall']:.2f} s, "
          f"{r['recreate_calls'] / max(1, j):.2f} API calls per re-created Job "
          "(422, delete, create)")
    print(f"drift reports during the run: {r['drift_reports']}")
    if "kubectl" in r:
        ours, theirs = n / c["wall"], n / r["kubectl"]
        print(f"kubectl apply --server-side, same {n:,} objects, same server: "
              f"{r['kubectl']:.2f} s = {theirs:,.0f} objects/s; aifleet {ours:,.0f} "
              f"objects/s = {ours / theirs:.2f}x kubectl's")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    ok = r["noop_calls"] == 0 and r["changed_calls"] <= 1.2 * k and k > 0
    if not ok:
        print("TARGET MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
