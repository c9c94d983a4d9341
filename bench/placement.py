"""Benchmark: the placement core on a large synthetic fleet (issue 3 targets).

Builds a FleetSpec in memory (models validated as the loader does; no Git, since only
placement is timed) of N clusters over 8 jurisdictions with two GPU flavours each, and
10,000 workloads of 25 teams: training gangs, batch and spread inference, four
dataClasses, 1-8 GPUs per replica, some selectors, tolerations and quotas. Reports:

- full plan of every workload over 100 and over 1,000 clusters (decisions per second);
- one-change re-plan: the plan of the previous cycle as `previous`, one workload's
  replicas changed, through `IncrementalPlanner.replan` (checked equal to a full plan).

With `--kueue` every cluster runs Kueue: each TeamQuota team has a ClusterQueue there
(in its cohort, a quarter of the cluster's GPUs of each flavour, borrowing limit 64,
some of it reserved by others) and its LocalQueue, so every training and batch
decision is also bounded by its team's queue (`fleet/placement/queues.py`).

Times are best of `--runs`, in CPU time of this process (what the targets are judged
on: the two cores are shared, and wall time then measures the neighbours too) and in
wall time.

Targets: >= 5,000 decisions/s at 100 clusters, >= 1,000/s at 1,000 clusters, the full
10k x 100 plan under 3 s, the one-change re-plan under 50 ms.

    python -m bench.placement            # 10,000 workloads, best of 3
    python -m bench.placement --smoke    # 500 workloads, 20 and 100 clusters, 1 run
    python -m bench.placement --kueue    # the same, every cluster a Kueue cluster
    python -m bench.placement --workloads 50000 --clusters 1000 --runs 1   # issue 22
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from dataclasses import replace
from typing import Any

from fleet.capacity import (
    CapacitySnapshot,
    ClusterQueueCapacity,
    KueueCapacity,
    QueueQuota,
    declared_capacity,
)
from fleet.diagnostics import SourceRef
from fleet.ids import Flavour
from fleet.models import Cluster, Document, ResidencyPolicy, TeamQuota, Workload
from fleet.placement.core import Planner
from fleet.placement.incremental import IncrementalPlanner
from fleet.placement.types import Plan, PreviousPlan
from fleet.spec import FleetSpec, assemble

JURISDICTIONS = ("DE", "FR", "NL", "SE", "US", "BR", "JP", "CA")
FLAVOURS = (("h100-80gb", 8, 2.9), ("a100-80gb", 8, 2.1), ("l40s-48gb", 4, 1.1))
DATA_CLASSES = ("public", "public", "eu-personal", "us-phi", "br-personal")


def _src(i: int) -> SourceRef:
    return SourceRef(f"gen/{i}.yaml", 1, {})


def synthetic_spec(clusters: int, workloads: int, seed: int = 7,
                   gpus_per_cluster: int = 0, kueue: bool = False) -> FleetSpec:
    """A deterministic fleet; capacity scales so that most (not all) workloads fit."""
    rnd = random.Random(seed)
    per_cluster = gpus_per_cluster or max(64, (workloads * 12) // clusters // 8 * 8)
    docs: list[tuple[Document, SourceRef]] = []
    docs.append((ResidencyPolicy.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "ResidencyPolicy",
        "metadata": {"name": "default"},
        "spec": {"dataClasses": {"public": {"allowed": ["*"]},
                                 "eu-personal": {"allowed": ["EU"]},
                                 "us-phi": {"allowed": ["US"]},
                                 "br-personal": {"allowed": ["BR"]}},
                 "default": "public"}}), _src(0)))
    for i in range(clusters):
        fl = [FLAVOURS[i % 3], FLAVOURS[(i + 1) % 3]]
        docs.append((Cluster.model_validate({
            "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": f"c{i:04d}",
                         "labels": {"tier": "prod" if i % 4 else "dev"}},
            "spec": {"region": f"r{i % 13}", "jurisdiction": JURISDICTIONS[i % 8],
                     "gpus": [{"flavour": f, "product": f"NVIDIA-{f.upper()}",
                               "count": per_cluster // per * per, "perNode": per,
                               "pricePerHour": round(price + (i % 7) * 0.05, 2)}
                              for f, per, price in fl],
                     "taints": ([{"key": "maintenance", "effect": "NoSchedule"}]
                                if i % 10 == 9 else []),
                     **({"stack": {"kueue": True}} if kueue else {})}}), _src(i + 1)))
    for t in range(25):
        if t % 5 == 0:
            continue  # some teams without a quota
        docs.append((TeamQuota.model_validate({
            "apiVersion": "aifleet.dev/v1alpha1", "kind": "TeamQuota",
            "metadata": {"name": f"team-{t:02d}"},
            "spec": {"cohort": f"cohort-{t % 3}",
                     "gpus": [{"flavour": f, "nominal": workloads * 2, "borrowingLimit": 64}
                              for f, _, _ in FLAVOURS]}}), _src(100_000 + t)))
    for i in range(workloads):
        docs.append((synthetic_workload(rnd, i), _src(200_000 + i)))
    return assemble(docs)


def synthetic_workload(rnd: random.Random, i: int, replicas: int | None = None) -> Workload:
    kind = rnd.choice(("training", "training", "batch", "inference"))
    count = rnd.choice((1, 2, 4, 8)) if kind != "inference" else rnd.choice((1, 1, 2))
    flavours = rnd.sample([f for f, per, _ in FLAVOURS if per >= count], k=1 if count > 4
                          else 2)
    placement: dict[str, Any] = {"dataClass": rnd.choice(DATA_CLASSES)}
    if kind == "inference":
        placement["spread"] = {"minClusters": 1, "maxClusters": 3}
    if i % 7 == 0:
        placement["clusterSelector"] = {"matchLabels": {"tier": "prod"}}
    if i % 5 == 0:
        placement["tolerations"] = [{"key": "maintenance", "operator": "Exists"}]
    reps = replicas if replicas is not None else rnd.choice((1, 1, 2, 4))
    return Workload.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Workload",
        "metadata": {"name": f"w{i:05d}", "namespace": f"team-{i % 25:02d}"},
        "spec": {"type": kind, "image": "registry.internal/x:1", "replicas": max(reps, 3)
                 if kind == "inference" else reps,
                 "resources": {"gpu": {"count": count, "flavours": flavours}},
                 "placement": placement, "priority": rnd.choice((0, 0, 50, 100, 200)),
                 **({"inference": {"port": 8000}} if kind == "inference" else {})}})


def kueue_capacity(spec: FleetSpec, cap: CapacitySnapshot) -> CapacitySnapshot:
    """Every cluster's team queues (see the module docstring), deterministic."""
    out = {}
    for i, (name, c) in enumerate(sorted(cap.clusters.items())):
        cqs = {}
        for j, (team, q) in enumerate(sorted(spec.quotas.items())):
            cqs[str(team)] = ClusterQueueCapacity(str(team), q.spec.cohort, {
                Flavour(o.flavour): QueueQuota(o.count // 4, 64, None,
                                               used_by_others=((i + j) % 3) * o.per_node)
                for o in spec.clusters[name].spec.gpus})
        out[name] = replace(c, kueue=KueueCapacity(cqs, {(t, t): t for t in cqs}))
    return CapacitySnapshot(out)


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


def changed_spec(spec: FleetSpec, wid: str, replicas: int) -> FleetSpec:
    w = spec.workloads[wid]  # type: ignore[index]
    new = w.model_copy(update={"spec": w.spec.model_copy(update={"replicas": replicas})})
    workloads = dict(spec.workloads)
    workloads[new.id] = new
    return FleetSpec(spec.clusters, spec.residency, spec.quotas, workloads, spec.invalid,
                     spec.errors, spec.sources, spec.guardrails, spec.owners, spec.violations)


def best_of(runs: int, fn: Any) -> tuple[float, float, Any]:
    """Best wall time and best CPU time (this process) of `runs` calls, and the result.

    Both, because the machine is shared: with other jobs on the two cores the wall
    clock measures them too, while CPU time measures the placement code.
    """
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def bench(clusters: int, workloads: int, runs: int, kueue: bool = False) -> dict[str, float]:
    spec = synthetic_spec(clusters, workloads, kueue=kueue)
    cap: CapacitySnapshot = declared_capacity(spec.clusters)
    if kueue:
        cap = kueue_capacity(spec, cap)
    full_wall, full, plan = best_of(runs, lambda: Planner(spec, cap).plan())
    placed = sum(1 for p in plan.workloads.values() if p.status == "Placed")
    prev = previous_of(plan)
    # steady state: the controller re-plans with the last plan as `previous`
    inc = IncrementalPlanner(spec, cap, prev)
    wid = sorted(w for w, p in plan.workloads.items() if p.status == "Placed")[workloads // 2]
    w = spec.workloads[wid]
    head = changed_spec(spec, wid, w.spec.replicas + 1)
    replan_wall, replan, fast = best_of(runs, lambda: inc.replan(head, prev))
    check = Planner(head, cap).plan(prev)
    if fast.workloads != check.workloads:
        print("  ERROR: incremental re-plan differs from the full plan", file=sys.stderr)
        raise SystemExit(1)
    return {"full_s": full, "full_wall_s": full_wall, "decisions_per_s": workloads / full,
            "placed": placed, "replan_ms": replan * 1000, "replan_wall_ms": replan_wall * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", type=int, default=10_000)
    ap.add_argument("--clusters", type=int, nargs="+", default=[100, 1000],
                    help="fleet sizes planned (issue 22: --workloads 50000 --clusters 1000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a tiny run that checks it works")
    ap.add_argument("--kueue", action="store_true",
                    help="every cluster runs Kueue with per-team queues")
    args = ap.parse_args()
    sizes = (20, 100) if args.smoke else tuple(args.clusters)
    workloads = 500 if args.smoke else args.workloads
    runs = 1 if args.smoke else args.runs
    print(f"placement benchmark: {workloads} workloads{' (Kueue clusters)' if args.kueue else ''}"
          f"; python {platform.python_version()}, {os.cpu_count()} cpus")
    ok = True
    for n in sizes:
        r = bench(n, workloads, runs, args.kueue)
        target = 5000 if n <= 100 else 1000
        print(f"  {n:5d} clusters: full plan {r['full_s']:.3f} s CPU "
              f"({r['full_wall_s']:.3f} s wall), {r['decisions_per_s']:,.0f} decisions/s "
              f"(target >= {target:,}), {r['placed']:.0f}/{workloads} placed; one-change "
              f"re-plan {r['replan_ms']:.1f} ms CPU ({r['replan_wall_ms']:.1f} ms wall, "
              f"target < 50)")
        if not args.smoke:
            ok &= r["decisions_per_s"] >= target and r["replan_ms"] < 50
            if n == 100 and workloads <= 10_000:
                ok &= r["full_s"] < 3
            if n >= 1000 and workloads >= 50_000:  # issue 22: the full plan <= 30 s
                ok &= r["full_s"] <= 30
    print("targets met (CPU time)" if ok else "TARGETS MISSED (CPU time)")
    return 0 if ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
