"""Benchmark: the controller's CPU per commit that edits one Workload (issue 22).

What a commit costs the controller process between its fetch and the plan it publishes,
in-process and without clusters: a real bare Git repo (pygit2, temp dir) with
`--clusters` Cluster files and `--workloads` Workload files; the controller's own
`GitSource` fetching and reading it, `whole_commit_problems`, `fleet_changed`,
`DesiredState.adopt_spec`, the `ProcessPlacer` (its worker process places; what this
process spends sending the change and taking the answer counts) and the plan's
publication into the desired state (`DesiredState.plan`, `placements` for the next
plan's previous). Capacity is what the Cluster files declare
(`fleet.capacity.declared_capacity`): no informers, no apply, no ledger writer.

After the plan is published (with the decisions it changed, `ProcessPlacer.changes`),
what the placement loop does with it is timed too, by stage: `record`
(`Records.plan_events`, the decisions into the events feed), `enqueue`
(every cluster's `DesiredState.signature`, what `_enqueue_changed` compares; no
adapters, so no live copies), `save` (`LastPlan.save`, the state dir's last plan).

CPU is `time.process_time()` of this process (all its threads, not the placement
worker's), per commit, median and max over `--commits` commits, each editing one
workload (its replicas), after `--warmup` commits. Each plan is checked against a full
plan of the same spec made here, after the clock stops.

    python -m bench.commitpath --clusters 200 --workloads 20000
    python -m bench.commitpath --smoke       # 20 x 400, 3 commits (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from controllers.persist.lastplan import LastPlan
from controllers.runtime.desired import DesiredState
from controllers.runtime.placerproc import ProcessPlacer
from controllers.runtime.records import Records
from controllers.runtime.sourceloop import edited_since, fleet_changed, whole_commit_problems
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from fleet.capacity import declared_capacity
from fleet.ids import ClusterName
from fleet.placement import place
from fleet.render import render
from tests.fleetdocs import POLICY, cluster
from tests.gitrepo import GitRepo
from workloads.gitsource import GitSource

JURISDICTIONS = ("DE", "FR", "NL", "US", "BR", "JP", "CA", "SE")
DATA_CLASSES = ("public", "public", "eu-personal", "br-personal")


def workload_yaml(i: int, replicas: int = 1) -> str:
    team = f"team-{i % 25:02d}"
    return (
        "apiVersion: aifleet.dev/v1alpha1\nkind: Workload\n"
        f"metadata:\n  name: w{i:05d}\n  namespace: {team}\n"
        "spec:\n  type: training\n  image: registry.internal/trainer:v1\n"
        f"  replicas: {replicas}\n"
        "  resources:\n    gpu:\n      count: 1\n"
        f"      flavours: [{'h100-80gb' if i % 2 else 'a100-80gb'}]\n"
        f"  placement:\n    dataClass: {DATA_CLASSES[i % len(DATA_CLASSES)]}\n")


def path_of(i: int) -> str:
    return f"workloads/team-{i % 25:02d}/w{i:05d}.yaml"


def build(path: Path, clusters: int, workloads: int) -> GitRepo:
    repo = GitRepo(path, bare=True)
    per = max(16, (workloads * 3 // clusters) // 8 * 8)  # room for every replica
    files: dict[str, str | bytes | None] = {"policies/residency.yaml": POLICY}
    for c in range(clusters):
        files[f"clusters/c{c:04d}.yaml"] = cluster(
            f"c{c:04d}", JURISDICTIONS[c % len(JURISDICTIONS)],
            (("h100-80gb", per, 8), ("a100-80gb", per, 8)))
    for i in range(workloads):
        files[path_of(i)] = workload_yaml(i)
    repo.commit(files, "seed")
    return repo


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo = build(Path(tmp) / "fleet.git", args.clusters, args.workloads)
        print(f"built repo: {args.clusters} clusters, {args.workloads} workloads in "
              f"{time.perf_counter() - t0:.1f}s")
        source = GitSource(str(repo.path), "main", Path(tmp) / "state")
        desired = DesiredState(render)
        placer = ProcessPlacer()
        state = Path(tmp) / "controller-state"
        state.mkdir()
        records = Records(Settings(repo=str(repo.path), state_dir=state), None, EventFeed(),
                          desired=desired, adapters={}, may_act=lambda: True,
                          task_group=lambda: None, on_started=lambda _sink: None)
        last_plan = LastPlan(state)
        prof = cProfile.Profile() if args.profile else None
        try:
            await placer.warm()
            cpu: list[float] = []
            diffed = 0
            stages: dict[str, list[float]] = {}
            total = args.warmup + args.commits + 1
            for n in range(total):
                if n:  # commit 0 is the seed: the controller's first read and plan
                    i = (n * 7919) % args.workloads
                    repo.commit({path_of(i): workload_yaml(i, replicas=1 + n % 3)},
                                f"edit w{i:05d}")
                if prof is not None and n > args.warmup:
                    prof.enable()
                marks = [time.process_time()]
                result = await source.poll()
                snap = result.snapshot
                assert snap is not None and snap.commit is not None, result.conditions
                assert not whole_commit_problems(snap)
                fleet_changed(desired.spec, snap.spec)
                marks.append(time.process_time())
                desired.adopt_spec(snap.spec, snap.commit, edited_since(snap, desired.head))
                marks.append(time.process_time())
                capacity = declared_capacity(snap.spec.clusters)
                previous = {} if desired.plan is None else placer.placements(desired.plan)
                plan = await placer.place_async(snap.spec, capacity, previous,
                                                commit=snap.commit)
                marks.append(time.process_time())
                old = desired.plan
                changed = placer.changes(old, plan)  # as `PlacementLoop.replan` does
                desired.set_plan(plan, changed)
                marks.append(time.process_time())
                records.plan_events(old, plan, None, changed)
                marks.append(time.process_time())
                for name in snap.spec.clusters:
                    desired.signature(ClusterName(name))
                marks.append(time.process_time())
                await last_plan.save(plan, snap.commit, changed=changed, base=old)
                marks.append(time.process_time())
                if prof is not None:
                    prof.disable()
                if n > args.warmup:
                    cpu.append(marks[-1] - marks[0])
                    for name, a, b in zip(("read", "adopt", "place", "publish",
                                           "record", "enqueue", "save"),
                                          marks, marks[1:], strict=False):
                        stages.setdefault(name, []).append(b - a)
                    if n == total - 1 or args.check_all:
                        full = place(snap.spec, capacity, previous, commit=snap.commit)
                        if full.workloads != plan.workloads:
                            print("ERROR: the plan differs from a full plan",
                                  file=sys.stderr)
                            return 1
                    assert len(snap.spec.workloads) == args.workloads, "all load"
                    diffed += snap.edited is not None
        finally:
            await placer.aclose()
    if prof is not None:
        prof.dump_stats(args.profile)
    load = os.getloadavg()
    print(f"controller CPU per one-workload commit, {args.clusters} clusters x "
          f"{args.workloads} workloads, {args.commits} commits ({diffed} read by a "
          f"tree diff): median "
          f"{statistics.median(cpu) * 1000:.0f} ms, max {max(cpu) * 1000:.0f} ms")
    print("  by stage (median ms): " + ", ".join(
        f"{k} {statistics.median(v) * 1000:.0f}" for k, v in stages.items()))
    print(f"  load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} cores; workloads placed "
          f"{sum(1 for wp in plan.workloads.values() if wp.status == 'Placed')}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--workloads", type=int, default=20000)
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--check-all", action="store_true",
                    help="check every plan against a full one (slow at scale)")
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the measured commits into FILE (pstats)")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.clusters, args.workloads, args.commits, args.warmup = 20, 400, 3, 1
        args.check_all = True
    # the source's per-commit info lines are not what is measured here
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
