"""Benchmark: the leader's published plan per one-workload commit, whole vs in parts.

At `--workloads` (default 50,000) over `--clusters` (300), in one process against an
in-memory ConfigMap store (no network): for a commit that moves one workload,

- the leader: bytes written to the home cluster, ConfigMaps written, parts encoded,
  and CPU (`sharedplan.SharedPlan.write_plan`; before: `sharedplan.encode` of the
  whole document, as the previous version wrote it every commit);
- a follower: bytes fetched, parts decoded, and CPU of taking the publication in
  (`sharedplan.Reader.poll`; before: `decode_published` reusing the last decode),
  then of its plan (`fleet.shards.LeaderPlans.plan` told what changed; before: the
  whole `leader_plan`).

    python -m bench.planparts
    python -m bench.planparts --workloads 15000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import anyio

from clusters.errors import NotFound
from controllers.persist import sharedplan
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.residency import Residency
from fleet.shards import LeaderPlans, leader_plan
from fleet.spec import FleetSpec

T = TypeVar("T")
H100 = Flavour("h100-80gb")


class Store:
    """ConfigMaps by name (what a kube-apiserver keeps of them), counting bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.sent = 0
        self.got = 0

    async def request(self, method: str, path: str, *, verb: str, body: Any = None,
                      **_: Any) -> dict[str, Any]:
        name = path.rstrip("/").split("/")[-1]
        if method == "GET":
            if name not in self.objects:
                raise NotFound("not found")
            obj = self.objects[name]
            if _.get("accept", "").find("PartialObjectMetadata") < 0:
                self.got += _size(obj)
            return obj
        if method == "DELETE":
            self.objects.pop(name, None)
            return {}
        if name == "namespaces":
            return {}
        if method == "PUT" and name not in self.objects:
            raise NotFound("not found")
        self.version += 1
        obj = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.objects[obj["metadata"]["name"]] = obj
        self.sent += _size(obj)
        return obj


def _size(obj: dict[str, Any]) -> int:
    return sum(len(k) + len(v) for part in ("data", "binaryData")
               for k, v in (obj.get(part) or {}).items())


async def timed(f: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    start = time.process_time()
    out = await f()
    return (time.process_time() - start) * 1000, out


async def run(clusters: int, workloads: int) -> None:
    names = [ClusterName(f"c{i:04d}") for i in range(clusters)]
    placed = {WorkloadId(f"team-{i % 7}/w{i:05d}"): (
        Assignment(names[i % clusters], H100, 1, 1),) for i in range(workloads)}
    plan = Plan("c1", {w: WorkloadPlacement(w, "Placed", a) for w, a in placed.items()})
    moved = WorkloadId("team-0/w00007")
    after = (Assignment(names[3], H100, 2, 1),)
    plan2 = Plan("c2", {**plan.workloads, moved: WorkloadPlacement(moved, "Placed", after)})
    placed2 = {**placed, moved: after}
    spec = FleetSpec({}, Residency({}, {}, None), {}, dict.fromkeys(placed), {}, ())
    spec2 = replace(spec)  # the next commit's spec: another object, the same workloads
    cap = CapacitySnapshot({})

    # before: the whole document, every commit (each the least CPU of three runs)
    encode_ms = decode_ms = plan_ms = float("inf")
    old_text = sharedplan.encode(placed, "c1")
    for _ in range(3):
        start = time.process_time()
        text = sharedplan.encode(placed2, "c2")
        encode_ms = min(encode_ms, (time.process_time() - start) * 1000)
        parts = sharedplan.PublishedParts()  # the follower's last decode, reused
        last = sharedplan.decode_published(old_text, parts)
        start = time.process_time()
        decoded = sharedplan.decode_published(text, parts)
        decode_ms = min(decode_ms, (time.process_time() - start) * 1000)
        assert decoded is not None and last is not None
        first = leader_plan(spec, last[1], "c1", cap)
        start = time.process_time()
        leader_plan(spec2, decoded[1], "c2", cap, first)
        plan_ms = min(plan_ms, (time.process_time() - start) * 1000)
    print(f"{workloads} workloads, one moved by a commit")
    print(f"before: leader writes 1 ConfigMap, {len(text):,} bytes, encode {encode_ms:.0f} "
          f"ms CPU; follower fetches {len(text):,} bytes, decodes the whole document "
          f"({decode_ms:.0f} ms CPU), leader_plan {plan_ms:.0f} ms CPU")

    # after: the parts the changed workloads are in, then the index
    store = Store()
    shared = sharedplan.SharedPlan(lambda: store, lambda: True,  # type: ignore[arg-type,return-value]
                                   "aifleet-system")
    await shared.write_plan(plan, "c1")
    reader = sharedplan.Reader()
    await reader.poll(store, "aifleet-system")  # type: ignore[arg-type]
    plans = LeaderPlans()
    plans.plan(spec, reader.placed, "c1", cap, None)
    sent, got, puts = store.sent, store.got, shared.publisher.puts
    encoded, decoded_parts = shared.publisher.encoded, reader.parts_decoded
    write_ms, _ = await timed(lambda: shared.write_plan(plan2, "c2", changed={moved},
                                                        base=plan))
    read_ms, update = await timed(lambda: reader.poll(store, "aifleet-system"))  # type: ignore[arg-type]
    assert update is not None and update.placed == placed2 and update.changed == {moved}
    start = time.process_time()
    mine = plans.plan(spec2, update.placed, "c2", cap, update.changed)
    plan_ms = (time.process_time() - start) * 1000
    assert mine == leader_plan(spec2, placed2, "c2", cap)
    count = sharedplan.parts_for(workloads)
    biggest = max(_size(o) for n, o in store.objects.items() if n != sharedplan.NAME)
    print(f"after ({count} parts, largest {biggest:,} bytes, index "
          f"{_size(store.objects[sharedplan.NAME]):,} bytes): leader writes "
          f"{shared.publisher.puts - puts} ConfigMaps, {store.sent - sent:,} bytes, "
          f"{shared.publisher.encoded - encoded} part encoded, {write_ms:.1f} ms CPU; "
          f"follower fetches {store.got - got:,} bytes, decodes "
          f"{reader.parts_decoded - decoded_parts} part ({read_ms:.1f} ms CPU), "
          f"plan from what changed {plan_ms:.1f} ms CPU ({plans.built} workload looked at)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=300)
    ap.add_argument("--workloads", type=int, default=50_000)
    args = ap.parse_args()
    anyio.run(run, args.clusters, args.workloads)


if __name__ == "__main__":
    main()
