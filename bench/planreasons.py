"""Benchmark: what a plan's Pending diagnoses weigh (issue 22, clusters x workloads).

A Pending workload's plan says why every cluster refused it (`fleet.placement.diagnose`).
With every cluster Unknown (a cold start, before capacity is known) or a fleet that is
full, that is a reason per cluster per workload. This measures, in one process, on
`bench.placement.synthetic_spec`:

- the plan's bytes: tracemalloc's traced memory still held once the planner that made
  the plan is dropped (the plan alone), and the number of per-cluster reasons it lists;
- its pickled size and the CPU time to pickle and unpickle it (the placement worker
  sends it to the controller, whose event loop thread unpickles it);
- the CPU time of the plan itself (without tracemalloc, which slows allocation).

Cases: `unknown` (an empty capacity snapshot: every cluster Unknown, all Pending) and
`full` (every cluster declared with 8 GPUs: most workloads Pending for capacity).

    python -m bench.planreasons                                  # 200 x 2,000, 1,000 x 5,000
    python -m bench.planreasons --sizes 1000x50000 --cases unknown
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
import tracemalloc

from bench.placement import synthetic_spec
from fleet.capacity import CapacitySnapshot, declared_capacity
from fleet.placement.core import Planner
from fleet.placement.types import Plan


def capacity(case: str, clusters: int, workloads: int) -> tuple[object, CapacitySnapshot]:
    if case == "unknown":
        spec = synthetic_spec(clusters, workloads)
        return spec, CapacitySnapshot({})
    spec = synthetic_spec(clusters, workloads, gpus_per_cluster=8)
    return spec, declared_capacity(spec.clusters)


def measure(case: str, clusters: int, workloads: int) -> dict[str, float]:
    spec, cap = capacity(case, clusters, workloads)
    gc.collect()
    c0 = time.process_time()
    plan: Plan = Planner(spec, cap).plan()  # type: ignore[arg-type]
    plan_cpu = time.process_time() - c0
    pending = sum(1 for p in plan.workloads.values() if p.status == "Pending")
    reasons = sum(len(p.reasons) for p in plan.workloads.values())
    c0 = time.process_time()
    blob = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    dump_cpu = time.process_time() - c0
    c0 = time.process_time()
    back = pickle.loads(blob)
    load_cpu = time.process_time() - c0
    assert back == plan
    del back, plan
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    planner = Planner(spec, cap)  # type: ignore[arg-type]
    plan = planner.plan()
    del planner
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(plan.workloads) == workloads
    return {"pending": pending, "reasons": reasons, "plan_bytes": held,
            "pickle_bytes": len(blob), "plan_cpu": plan_cpu, "dump_cpu": dump_cpu,
            "load_cpu": load_cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["200x2000", "1000x5000"],
                    help="CLUSTERSxWORKLOADS")
    ap.add_argument("--cases", nargs="+", default=["unknown", "full"],
                    choices=["unknown", "full"])
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"plan reasons benchmark; load average {load}")
    for size in args.sizes:
        clusters, workloads = (int(x) for x in size.split("x"))
        for case in args.cases:
            r = measure(case, clusters, workloads)
            print(f"  {clusters:5d} x {workloads:6d} {case:7s}: {r['pending']:.0f} Pending, "
                  f"{r['reasons']:,.0f} reasons; plan {r['plan_bytes'] / 2**20:.1f} MiB "
                  f"(tracemalloc), pickle {r['pickle_bytes'] / 2**20:.1f} MiB "
                  f"(dumps {r['dump_cpu']:.2f} s, loads {r['load_cpu']:.2f} s CPU); "
                  f"plan {r['plan_cpu']:.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
