"""The parted last plan in the home cluster (`controllers.persist.sharedplan`): what
the leader writes per plan, what a follower fetches and decodes, and what it refuses.
Against an in-memory ConfigMap store that counts requests (no wall clock)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from clusters.configmap import put_configmap
from clusters.errors import ClusterError, Conflict, NotFound
from controllers.persist import sharedplan
from controllers.persist.sharedplan import NAME, Reader, SharedPlan, part_name
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, WorkloadPlacement

NS = "aifleet-system"


class Store:
    """ConfigMaps by name, with resourceVersions; `fail` names the next PUTs to fail."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.calls: Counter[tuple[str, str]] = Counter()
        self.fail: set[str] = set()
        self.writes = 0

    async def request(self, method: str, path: str, *, verb: str, body: Any = None,
                      retry: bool = True, accept: str = "application/json",
                      **_: Any) -> dict[str, Any]:
        name = path.rstrip("/").split("/")[-1]
        self.calls[(method, name)] += 1
        if method == "GET":
            if name not in self.objects:
                raise NotFound("not found")
            return self.objects[name]
        if method == "DELETE":
            self.objects.pop(name, None)
            return {}
        if method == "PUT" and name in self.fail:
            self.fail.discard(name)
            raise ClusterError("refused")
        if method == "PUT" and name not in self.objects:
            raise NotFound("not found")
        asked = (body or {}).get("metadata", {}).get("resourceVersion")
        if method == "PUT" and asked and asked != self.objects[name]["metadata"][
                "resourceVersion"]:
            raise Conflict("changed since")
        if method == "POST" and name == "namespaces":
            return {}
        obj = dict(body)
        name = obj["metadata"]["name"]
        self.version += 1
        self.writes += 1
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self.version)}
        self.objects[name] = obj
        return obj

    def puts(self) -> int:
        """ConfigMaps written (a first write is a PUT refused, then a POST)."""
        return self.writes


def placed(n: int, cluster: str = "a") -> dict[WorkloadId, tuple[Assignment, ...]]:
    return {WorkloadId(f"team/w{i:05}"): (
        Assignment(ClusterName(cluster), Flavour("h100-80gb"), 1, 8),) for i in range(n)}


def plan_of(p: dict[WorkloadId, tuple[Assignment, ...]], commit: str) -> Plan:
    return Plan(commit, {wid: WorkloadPlacement(wid, "Placed", a, ()) for wid, a in p.items()})


def shared(store: Store, may: list[bool] | None = None) -> SharedPlan:
    flag = may if may is not None else [True]
    return SharedPlan(lambda: store, lambda: flag[0], NS)  # type: ignore[arg-type,return-value]


async def test_the_parts_round_trip_and_a_one_workload_plan_writes_one_part() -> None:
    store = Store()
    leader = shared(store)
    first = placed(5_000)
    plan = plan_of(first, "c1")
    assert await leader.write_plan(plan, "c1")
    parts = sharedplan.parts_for(5_000)
    assert parts == 4 and store.puts() == parts + 1  # whole: every part, then the index
    assert await sharedplan.read(store, NS) == first  # type: ignore[arg-type]
    reader = Reader()
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == first and update.changed is None
    assert reader.parts_decoded == parts

    moved = WorkloadId("team/w00042")
    second = dict(first)
    second[moved] = (Assignment(ClusterName("b"), Flavour("h100-80gb"), 1, 8),)
    plan2 = plan_of(second, "c2")
    before = store.puts()
    assert await leader.write_plan(plan2, "c2", changed={moved}, base=plan)
    assert store.puts() - before == 2  # its part, then the index
    assert leader.publisher.encoded == parts + 1
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == second and update.commit == "c2"
    assert update.changed == {moved} and reader.parts_decoded == parts + 1
    unchanged = next(w for w in first if w != moved)
    assert update.placed[unchanged] is reader.placed[unchanged]

    # a new commit that moves nothing: the index alone, no part fetched or decoded
    before, fetched = store.puts(), reader.part_fetches
    assert await leader.write_plan(plan2, "c3", changed=set(), base=plan2)
    assert store.puts() - before == 1
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.commit == "c3" and update.changed == frozenset()
    assert reader.part_fetches == fetched and reader.parts_decoded == parts + 1
    assert await reader.poll(store, NS) is None  # type: ignore[arg-type]  # nothing new


async def test_a_whole_write_of_the_same_placements_rewrites_only_what_differs() -> None:
    store = Store()
    leader = shared(store)
    p = placed(3_000)
    assert await leader.write(p, "c1")
    before = store.puts()
    assert await leader.write(p, "c1")
    assert store.puts() == before  # nothing
    assert await leader.write(p, "c2")
    assert store.puts() == before + 1  # the index


async def test_a_part_that_does_not_match_the_index_changes_nothing() -> None:
    store = Store()
    leader = shared(store)
    first = placed(3_000)
    plan1 = plan_of(first, "c1")
    await leader.write_plan(plan1, "c1")
    reader = Reader()
    assert await reader.poll(store, NS) is not None  # type: ignore[arg-type]

    w1, w2 = WorkloadId("team/w00001"), sorted(first)[1]
    k = sharedplan.part_of(w1, sharedplan.parts_for(3_000))
    w2 = next(w for w in sorted(first) if w != w1 and
              sharedplan.part_of(w, sharedplan.parts_for(3_000)) == k)
    elsewhere = (Assignment(ClusterName("b"), Flavour("h100-80gb"), 1, 8),)
    second = {**first, w1: elsewhere}
    plan2 = plan_of(second, "c2")
    await leader.write_plan(plan2, "c2", changed={w1}, base=plan1)
    # the next plan's part is written, its index is not (refused): the stored index
    # names the part's previous text
    third = {**second, w2: elsewhere}
    plan3 = plan_of(third, "c3")
    store.fail.add(NAME)
    assert not await leader.write_plan(plan3, "c3", changed={w2}, base=plan2)
    held = dict(reader.placed)
    assert await reader.poll(store, NS) is None  # type: ignore[arg-type]
    assert reader.torn == 1 and reader.placed == held and reader.commit == "c1"
    assert await reader.poll(store, NS) is None  # type: ignore[arg-type]  # tries again
    assert reader.torn == 2 and reader.placed == held
    # the leader's next save writes the index: the reader takes the whole of it
    assert await leader.write_plan(plan3, "c3", changed=set(), base=plan3)
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == third and update.changed == {w1, w2}

    # a torn part (text that is not the digest's) is refused the same way
    store.objects[part_name(k)]["binaryData"][sharedplan.KEY] = "H4sI" + "A" * 40
    store.objects[NAME]["metadata"]["resourceVersion"] = "changed"
    reader2 = Reader()
    assert await reader2.poll(store, NS) is None  # type: ignore[arg-type]
    assert reader2.placed == {} and reader2.version is None
    assert await sharedplan.read(store, NS) is None  # type: ignore[arg-type]


async def test_the_previous_versions_single_document_is_read_then_written_whole() -> None:
    store = Store()
    old = placed(2_500)
    await put_configmap(store, NAME, {  # type: ignore[arg-type]  # as the previous version
        "binaryData": {sharedplan.KEY: sharedplan.encode(old, "c0")}}, namespace=NS)
    assert await sharedplan.read(store, NS) == old  # type: ignore[arg-type]
    reader = Reader()
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == old and update.commit == "c0"
    assert update.changed is None

    leader = shared(store)  # upgraded: holds nothing, so writes every part and the index
    now = {**old, WorkloadId("team/new"): old[WorkloadId("team/w00000")]}
    before = store.puts()
    await leader.write_plan(plan_of(now, "c1"), "c1", changed={WorkloadId("team/new")},
                            base=plan_of(old, "c0"))
    parts = sharedplan.parts_for(len(now))
    assert store.puts() - before == parts + 1
    assert "binaryData" not in store.objects[NAME]
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == now and update.changed is None


async def test_a_replica_that_may_not_write_writes_nothing_and_then_writes_whole() -> None:
    store = Store()
    may = [False]
    replica = shared(store, may)
    p = placed(3_000)
    plan = plan_of(p, "c1")
    assert not await replica.write_plan(plan, "c1")
    assert store.puts() == 0
    may[0] = True
    assert await replica.write_plan(plan, "c1")
    assert store.puts() == sharedplan.parts_for(3_000) + 1
    may[0] = False  # lost the Lease: forgets what it held; then whole again
    assert not await replica.write_plan(plan, "c2", changed=set(), base=plan)
    may[0] = True
    before = store.puts()
    assert await replica.write_plan(plan, "c2", changed=set(), base=plan)
    assert store.puts() - before == sharedplan.parts_for(3_000) + 1


async def test_a_smaller_part_count_deletes_the_parts_past_it_and_readers_ignore_them(
        ) -> None:
    store = Store()
    leader = shared(store)
    big = placed(20_000)
    await leader.write(big, "c1")
    assert sharedplan.parts_for(20_000) == 16 and part_name(15) in store.objects
    reader = Reader()
    await reader.poll(store, NS)  # type: ignore[arg-type]
    small = placed(100)
    await leader.write(small, "c2")
    assert sharedplan.decode_index(store.objects[NAME]["data"][sharedplan.INDEX_KEY]).parts == 1
    assert part_name(1) not in store.objects and part_name(15) not in store.objects
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == small and update.changed is None


@pytest.mark.parametrize("n", [50_000])
async def test_every_configmap_is_far_under_the_object_limit(n: int) -> None:
    store = Store()
    await sharedplan.write(store, NS, placed(n), "c" * 40)  # type: ignore[arg-type]
    sizes = {name: len(str(obj.get("binaryData", ""))) + len(str(obj.get("data", "")))
             for name, obj in store.objects.items()}
    assert sharedplan.parts_for(n) == 32 and len(sizes) == 33
    assert max(sizes.values()) < 64 * 1024  # the limit is 1 MiB
    assert sizes[NAME] < 4 * 1024


async def test_a_leader_that_finds_another_index_writes_every_part_again() -> None:
    """A replica that led, lost the Lease and took it back without a plan in between
    holds parts another leader has rewritten since: its next index write is refused
    (written at the version it last wrote), and it writes every part, then the index."""
    store = Store()
    a, b = shared(store), shared(store)
    first = placed(5_000)
    plan1 = plan_of(first, "c1")
    await a.write_plan(plan1, "c1")
    other = placed(5_000, cluster="b")
    await b.write(other, "c2")  # the other leader, meanwhile
    moved = WorkloadId("team/w00042")
    second = {**first, moved: other[moved]}
    plan2 = plan_of(second, "c3")
    before = store.puts()
    assert await a.write_plan(plan2, "c3", changed={moved}, base=plan1)
    parts = sharedplan.parts_for(5_000)
    assert store.puts() - before == 1 + parts + 1  # its part, refused index, all, index
    assert await sharedplan.read(store, NS) == second  # type: ignore[arg-type]


class Slow(Store):
    """A store whose part PUTs stay in flight for a few turns of the event loop: how
    many are in flight at once is counted, and what was written when the index was."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.parts_at_index: list[int] = []
        self.parts_written = 0

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body = kw.get("body") or {}
        name = (body.get("metadata") or {}).get("name", "") if method in ("PUT", "POST") \
            else ""
        if name == NAME:
            self.parts_at_index.append(self.parts_written)
        if not name.startswith(sharedplan.PARTS_PREFIX):
            return await super().request(method, path, **kw)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            got = await super().request(method, path, **kw)
            self.parts_written += 1
            return got
        finally:
            self.in_flight -= 1


async def test_the_parts_are_written_a_few_at_once_and_the_index_after_all() -> None:
    """A whole write of 8 parts has `PARALLEL_PARTS` of them in flight at once, never
    more, and the index is written only once every part is; a part that fails leaves
    the index unwritten and only the parts not written to write again."""
    store = Slow()
    leader = shared(store)
    p = placed(9_000)
    parts = sharedplan.parts_for(9_000)
    assert parts == 8
    assert await leader.write(p, "c1")
    assert store.peak == sharedplan.PARALLEL_PARTS
    assert set(store.parts_at_index) == {parts}  # every part written before the index
    reader = Reader()
    update = await reader.poll(store, NS)  # type: ignore[arg-type]
    assert update is not None and update.placed == p

    other = placed(9_000, cluster="b")
    store.fail.add(part_name(5))
    written, index_writes = store.parts_written, len(store.parts_at_index)
    assert not await leader.write(other, "c2")
    assert len(store.parts_at_index) == index_writes  # no index: a part is missing
    assert 5 in leader.publisher.dirty and leader.publisher.index_dirty
    done = store.parts_written - written
    assert len(leader.publisher.dirty) == parts - done
    # parts written under the old index: a reader keeps what it had, never a mix
    assert await reader.poll(store, NS) is None  # type: ignore[arg-type]
    assert reader.placed == p and reader.commit == "c1"
    assert await leader.write(other, "c2")  # the rest, then the index
    assert store.parts_written - written == parts
    assert await sharedplan.read(store, NS) == other  # type: ignore[arg-type]
