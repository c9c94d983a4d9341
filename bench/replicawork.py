"""Benchmark: what each replica does for the whole fleet (issue 22, `--shards`).

In one process, at `--clusters` x `--workloads` (default 1,000 x 50,000) with 4 shards,
with the controller's GC thresholds (`controllers.runtime.gctune`), the CPU time and
the work counted of:

- `running`: what runs on every cluster this replica did not list (with --shards, the
  other shards' 750 of 1,000), at each fetch (`ClusterSet.running`): with the plan's
  index as `DesiredState` keeps it, and with one made for the call;
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
from typing import TypeVar

from clusters.adapter import AdapterOptions
from controllers.persist import sharedplan
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.desired import DesiredState
from controllers.runtime.gctune import tune
from controllers.runtime.liverows import LiveRows
from controllers.runtime.retirement import Retirement
from controllers.runtime.shardrows import ShardRows
from controllers.runtime.workqueue import WorkQueue
from controllers.status.eventfeed import EventFeed
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.models import Cluster
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.render import render
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


def running(names: list[str], workloads: int) -> None:
    spec = FleetSpec({ClusterName(n): Cluster.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": n},
        "spec": {"region": "r", "jurisdiction": "DE", "gpus": [
            {"flavour": "h100-80gb", "product": "NVIDIA-H100", "count": 8, "perNode": 8}]}})
        for n in names}, Residency({}, {}, None), {}, {}, {}, ())
    plan = Plan("c1", {wid: WorkloadPlacement(wid, "Placed", a)
                       for wid, a in placements(names, workloads).items()})
    desired = DesiredState(render)
    desired.plan = plan

    async def noop(_name: str) -> float | None:
        return None
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
    status(names, args.workloads)
    decode(names, args.workloads)


if __name__ == "__main__":
    main()
