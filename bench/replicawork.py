"""Benchmark: what each replica does for the whole fleet (issue 22, `--shards`).

In one process, at `--clusters` x `--workloads` (default 1,000 x 50,000) with 4 shards,
with the controller's GC thresholds (`controllers.runtime.gctune`), the CPU time and
the work counted of:

- `running`: what runs on every cluster this replica did not list (with --shards, the
  other shards' 750 of 1,000), at each fetch (`ClusterSet.running`): with the plan's
  index as `DesiredState` keeps it, and with one made for the call;
- `replan`: a follower's bookkeeping per plan it borrows (`PlacementLoop.replan` after
  the plan: `DesiredState.set_plan`, `_enqueue_changed`, the status counts) for a
  change of one workload, as it was (no changes known: whole passes) and as it is
  (`replaced`, `StaleCopies`); the decisions recorded (`Records.plan_events`) likewise;
  and `capacity_snapshot` with its digest;
- `status`: a second of publishing the held shard's status rows and merging the three
  others' while nothing changed (`ShardRows`);
- `decode`: a follower decoding the leader's next published plan, a change of one
  workload from the last (`sharedplan.PublishedParts`), and the same text decoded
  whole.

    python -m bench.replicawork
    python -m bench.replicawork --clusters 100 --workloads 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

from structlog.testing import capture_logs

from clusters.adapter import AdapterOptions
from clusters.capacity import NodeState
from controllers.persist import sharedplan
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.desired import DesiredState
from controllers.runtime.fleetstate import ClusterView, capacity_snapshot
from controllers.runtime.gctune import tune
from controllers.runtime.liverows import LiveRows
from controllers.runtime.placementloop import PlacementLoop, StaleCopies, replaced
from controllers.runtime.records import Records
from controllers.runtime.retirement import Retirement
from controllers.runtime.shardrows import ShardRows
from controllers.runtime.workqueue import WorkQueue
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.models import Cluster
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.render import placed_by_cluster, render, workload_label
from fleet.residency import Residency
from fleet.shards import ShardOf
from fleet.spec import FleetSpec

T = TypeVar("T")
H100 = Flavour("h100-80gb")


def timed(f: Callable[[], T], n: int = 1) -> tuple[float, T]:
    """(CPU milliseconds per call, the last result)."""
    start = time.process_time()
    for _ in range(n):
        out = f()
    return (time.process_time() - start) * 1000 / n, out


def placements(names: list[str], workloads: int) -> dict[WorkloadId, tuple[Assignment, ...]]:
    return {WorkloadId(f"team-{i % 7}/w{i:05d}"): (
        Assignment(ClusterName(names[i % len(names)]), H100, 1, 1),) for i in range(workloads)}


def fleet(names: list[str]) -> FleetSpec:
    return FleetSpec({ClusterName(n): Cluster.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": n},
        "spec": {"region": "r", "jurisdiction": "DE", "gpus": [
            {"flavour": "h100-80gb", "product": "NVIDIA-H100", "count": 64, "perNode": 8}]}})
        for n in names}, Residency({}, {}, None), {}, {}, {}, ())


async def noop(_name: str) -> float | None:
    return None


def running(names: list[str], workloads: int) -> None:
    spec = fleet(names)
    plan = Plan("c1", {wid: WorkloadPlacement(wid, "Placed", a)
                       for wid, a in placements(names, workloads).items()})
    desired = DesiredState(render)
    desired.plan = plan
    cs = ClusterSet(
        adapters={}, options=AdapterOptions(), allow_exec=False,
        retirement=Retirement(Path(tempfile.mkdtemp())), queue=WorkQueue("c", noop),
        feed=EventFeed(), live={}, may_act=lambda: True,
        connection_of=lambda c: None,  # type: ignore[arg-type,return-value]
        on_drift=lambda _n: lambda _r: None, prepare=lambda _n, _a: None,
        task_group=lambda: None, namespace="aifleet-system")
    index = desired.placed_index()
    kept, out = timed(lambda: cs.running(spec, plan, index), 5)
    made, _ = timed(lambda: cs.running(spec, plan), 5)
    print(f"running: {kept:.1f} ms with the plan's index, {made:.1f} ms making one "
          f"({len(out)} clusters from the plan)")


def replan(names: list[str], workloads: int) -> None:
    """A follower's bookkeeping per plan borrowed from the leader's, a change of one
    workload from the last (the plan reuses every other decision's object, as
    `fleet.shards.leader_plan` does), holding a quarter of the clusters: before, with
    no changes known (the whole passes `PlacementLoop.replan` made), and now, with
    those `replaced` finds by identity. Plus `capacity_snapshot` and its digest."""
    spec = fleet(names)
    first = Plan("c1", {wid: WorkloadPlacement(wid, "Placed", a)
                        for wid, a in placements(names, workloads).items()})
    moved = WorkloadId("team-0/w00007")
    second = Plan("c2", {**first.workloads, moved: WorkloadPlacement(
        moved, "Placed", (Assignment(ClusterName(names[3]), H100, 1, 1),))})
    held = names[::4]
    index = placed_by_cluster(first)
    live = {n: {workload_label(w): None for w in index.get(ClusterName(n), {})}
            for n in held}
    adapters = {n: SimpleNamespace(live_workloads=lambda n=n: dict(live[n])) for n in held}
    queue = WorkQueue("c", noop)
    stale: dict[int, SimpleNamespace] = {}

    def state() -> tuple[DesiredState, dict[str, object]]:
        d = DesiredState(render)
        d.adopt_spec(spec, "c0")
        d.plan = first
        return d, {n: d.signature(ClusterName(n)) for n in held}

    def before(d: DesiredState, applied: dict[str, object], plan: Plan) -> None:
        d.set_plan(plan, None)
        for name, a in adapters.items():
            sig = d.signature(ClusterName(name))
            if applied.get(name) != sig or d.stale_on(ClusterName(name),
                                                      set(a.live_workloads())):
                queue.add(name)
        counts: dict[str, int] = {}
        for wp in plan.workloads.values():
            counts[wp.status] = counts.get(wp.status, 0) + 1

    def now(d: DesiredState, applied: dict[str, object], plan: Plan) -> None:
        base = d.plan
        delta = replaced(base, plan)
        d.set_plan(plan, delta)
        loop = stale.setdefault(id(d), SimpleNamespace(
            clusters=SimpleNamespace(adapters=adapters), desired=d,
            applied_signature=applied, queue=queue, stale=StaleCopies(d)))
        PlacementLoop._enqueue_changed(loop, base, delta)  # type: ignore[arg-type]
        d.status_counts()

    def measure(step: Callable[[DesiredState, dict[str, object], Plan], None]) -> float:
        d, applied = state()
        d.placed_index()
        step(d, applied, first)  # what is kept is made once, as the first plan does
        flip = iter([second, first] * 5)
        ms, _ = timed(lambda: step(d, applied, next(flip)), 10)
        return ms

    for label, step in (("before", before), ("now", now)):
        ms = measure(step)
        print(f"replan bookkeeping ({label}): {ms:.1f} ms per plan "
              f"(set_plan, {len(held)} clusters' signature and stale copies, counts)")
    d, _ = state()
    rec = Records(Settings(repo=tempfile.mkdtemp()), None, EventFeed(), desired=d,
                  adapters={}, may_act=lambda: True, task_group=lambda: None,
                  on_started=lambda _sink: None)
    with capture_logs():  # the one decision's log lines, not into the figures
        whole, _ = timed(lambda: rec.plan_events(first, second, None), 3)
        by_delta, _ = timed(lambda: rec.plan_events(first, second, None,
                                                    replaced(first, second)), 3)
    print(f"record: {whole:.1f} ms a whole pass (before), {by_delta:.1f} ms with the "
          f"decisions replaced (now)")
    views = {n: ClusterView("Healthy", None, tuple(
        NodeState(f"{n}-n{i}", "NVIDIA-H100", 8, True, False, ()) for i in range(8)))
        for n in names}
    made, snap = timed(lambda: capacity_snapshot(spec.clusters, views), 5)
    digest, _ = timed(snap.digest, 5)
    print(f"capacity: {made:.1f} ms capacity_snapshot, {digest:.1f} ms its digest")


def status(names: list[str], workloads: int) -> None:
    live = LiveRows({(ClusterName(names[i % len(names)]), WorkloadId(f"t/w{i:05d}")):
                     PlacementLive("Synced", "Healthy", "c1") for i in range(workloads)})
    shard_of = ShardOf(4)
    rows = ShardRows(live, shard_of)
    theirs = {s: {k: v for k, v in live.items() if shard_of(k[0]) == s} for s in (1, 2, 3)}
    docs = {s: object() for s in theirs}
    stamp, _ = rows.of(0)
    for s, results in theirs.items():
        rows.merge(s, results, docs[s])
    gathered = rows.gathered

    def second() -> None:
        assert rows.stamp(0) == stamp  # publish: nothing of shard 0 changed
        for s, results in theirs.items():  # merge: the same publications
            assert not rows.merge(s, results, docs[s])
    ms, _ = timed(second, 50)
    print(f"status: {ms:.2f} ms per second of nothing changing, "
          f"{rows.gathered - gathered} rows gathered in 50 seconds")


def decode(names: list[str], workloads: int) -> None:
    placed = placements(names, workloads)
    a = sharedplan.encode(placed, "c1")
    placed[WorkloadId("team-0/w00007")] = (Assignment(ClusterName(names[3]), H100, 2, 1),)
    b = sharedplan.encode(placed, "c2")
    whole, _ = timed(lambda: sharedplan.decode_published(b), 3)
    parts = sharedplan.PublishedParts()
    sharedplan.decode_published(a, parts)
    built = parts.built

    def next_two() -> None:  # b after a, a after b: a change of one each
        sharedplan.decode_published(b, parts)
        sharedplan.decode_published(a, parts)
    reuse, _ = timed(next_two, 3)
    print(f"decode: {whole:.0f} ms whole, {reuse / 2:.0f} ms reusing the last "
          f"({(parts.built - built) / 6:.0f} workload built per decode)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=1_000)
    ap.add_argument("--workloads", type=int, default=50_000)
    args = ap.parse_args()
    tune()  # as `fleet run` does
    names = [f"c{i:04d}" for i in range(args.clusters)]
    print(f"{args.clusters} clusters x {args.workloads} workloads, 4 shards")
    running(names, args.workloads)
    replan(names, args.workloads)
    status(names, args.workloads)
    decode(names, args.workloads)


if __name__ == "__main__":
    main()
