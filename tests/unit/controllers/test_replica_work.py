"""Work each replica does for the whole fleet, counted at 1,000 clusters x 50,000
workloads (issue 22: with `--shards 4`, commits were not applied within 90 s).

Counts, never clocks: how often the plan is walked per fetch (`ClusterSet.running`,
`fleet.safety.held_deletions`); how many status rows a replica gathers each second to
publish its shards' and merge the others' (`ShardRows`); how many workloads a
follower decodes of a new published plan (`sharedplan.PublishedParts`) and rebuilds of
its plan (`fleet.shards.leader_plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import replace
from pathlib import Path
from typing import Any

from controllers.persist import shardstatus, sharedplan
from controllers.runtime.desired import DesiredState
from controllers.runtime.liverows import Key, LiveRows
from controllers.runtime.shardrows import ShardRows
from controllers.status.statusdoc import PlacementLive
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, Reason, WorkloadPlacement
from fleet.render import render
from fleet.safety import held_deletions
from fleet.shards import ShardOf, leader_plan
from tests.support.clustersets import bare_cluster_set
from tests.unit.fleet_placement.builders import cluster, fleet, workload

CLUSTERS = 1_000
WORKLOADS = 50_000


class CountingWorkloads(dict[WorkloadId, WorkloadPlacement]):
    """A plan's workloads that count the passes over them."""

    passes = 0

    def items(self) -> Any:
        self.passes += 1
        return super().items()

    def values(self) -> Any:
        self.passes += 1
        return super().values()

    def __iter__(self) -> Iterator[WorkloadId]:
        self.passes += 1
        return super().__iter__()


class CountingSet(AbstractSet[str]):
    """A set that counts the passes over it (each `set(...)` of it is one)."""

    passes = 0

    def __init__(self, items: Iterable[str]) -> None:
        self._items = frozenset(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        CountingSet.passes += 1
        return iter(self._items)


def _names() -> list[str]:
    return [f"c{i:04d}" for i in range(CLUSTERS)]


def _plan(names: list[str]) -> Plan:
    """WORKLOADS workloads, each placed on one cluster (round robin); every tenth
    Pending."""
    workloads = CountingWorkloads()
    h100 = Flavour("h100-80gb")
    pending = (Reason("0/1000 clusters fit", None, "Fit"),)
    for i in range(WORKLOADS):
        wid = WorkloadId(f"team-{i % 7}/w{i:05d}")
        workloads[wid] = WorkloadPlacement(wid, "Pending", (), pending) if i % 10 == 9 \
            else WorkloadPlacement(wid, "Placed", (
                Assignment(ClusterName(names[i % len(names)]), h100, 1, 1),))
    return Plan("c1", workloads)




def test_what_runs_on_unlisted_clusters_walks_the_plan_once_per_fetch(
        tmp_path: Path) -> None:
    """With --shards a replica lists only its shards' clusters; every other cluster's
    running set comes from the plan. It walked the 50,000 workloads once per such
    cluster (1,000 passes, ~15 s at 1k x 50k); now once in all."""
    names = _names()
    spec = fleet(*(cluster(n) for n in names))
    plan = _plan(names)
    workloads = plan.workloads
    assert isinstance(workloads, CountingWorkloads)
    cs = bare_cluster_set(tmp_path)
    workloads.passes = 0
    running = cs.running(spec, plan)
    assert workloads.passes == 1  # was CLUSTERS
    assert len(running) == CLUSTERS
    expected: dict[str, set[str]] = {n: set() for n in names}
    for wid, wp in dict.items(workloads):
        if wp.status == "Placed":
            for a in wp.assignments:
                expected[a.cluster].add(str(wid))
    assert running == expected
    # 50 workloads each: c0009's are all Pending (every tenth), so none runs there
    assert (len(running["c0000"]), running["c0009"]) == (50, set())
    desired = DesiredState(render)
    desired.plan = plan
    index = desired.placed_index()  # made once per plan (the reconciles use it too)
    assert desired.placed_index() is index
    workloads.passes = 0
    assert cs.running(spec, plan, index) == running
    assert workloads.passes == 0  # the source loop's fetch walks the plan no more


def test_held_deletions_makes_its_sets_once_not_once_per_cluster() -> None:
    """A workload-only commit (no candidate plan): `set(workloads_after)` was made for
    every cluster, 1,000 copies of 50,000 ids per fetch."""
    names = _names()
    live = {n: {f"team-0/w{i:05d}" for i in range(j, WORKLOADS, CLUSTERS)}
            for j, n in enumerate(names)}
    after = CountingSet(str(w) for ws in live.values() for w in ws)
    protected = CountingSet({"team-0/w00000"})
    CountingSet.passes = 0
    holds = held_deletions(live, clusters_after=set(names), workloads_after=after,
                           protected=protected)
    assert holds == ()
    assert CountingSet.passes <= 2  # was 2 x CLUSTERS
    gone = CountingSet(w for w in after if not w.endswith("1"))  # ~10% deleted
    CountingSet.passes = 0
    holds = held_deletions(live, clusters_after=set(names), workloads_after=gone,
                           protected=protected)
    assert [h.reason for h in holds] == ["MassDeletion"]
    assert CountingSet.passes <= 2


def _live(names: list[str]) -> LiveRows:
    """WORKLOADS rows, 50 per cluster, as the reconciles record them."""
    return LiveRows({(ClusterName(names[i % len(names)]), WorkloadId(f"team-0/w{i:05d}")):
                     PlacementLive("Synced", "Healthy", "c1") for i in range(WORKLOADS)})


def test_a_shards_rows_are_gathered_only_when_one_of_them_changed() -> None:
    """`_publish` gathered each held shard's rows out of the fleet's 50,000 every second
    (and `_read_others` each other shard's): 200,000 rows a second at 4 shards. Now a
    shard's rows are gathered when a row of it changed, from its clusters' index."""
    names = _names()
    live = _live(names)
    shard_of = ShardOf(4)
    rows = ShardRows(live, shard_of)
    first = {s: rows.of(s) for s in range(4)}
    assert rows.gathered == WORKLOADS  # once, each row in one shard
    assert {k for s in range(4) for k in first[s][1]} == set(live)
    for _second in range(60):  # a minute of nothing changing
        for s in range(4):
            assert rows.of(s) == first[s]
    for key in live.keys_of(names[0]):  # a pass that records the same rows again
        live[key] = PlacementLive("Synced", "Healthy", "c1")
    assert rows.gathered == WORKLOADS
    assert [rows.stamp(s) for s in range(4)] == [first[s][0] for s in range(4)]
    key = live.keys_of(names[0])[0]
    live[key] = PlacementLive("Failed", "Healthy", "c1", message="422")  # a real change
    mine = shard_of(names[0])
    assert [rows.stamp(s) != first[s][0] for s in range(4)] == \
        [s == mine for s in range(4)]
    stamp, again = rows.of(mine)
    assert again[key].sync == "Failed" and len(again) == len(first[mine][1])
    assert rows.gathered == WORKLOADS + len(again)  # only that shard, once
    del live[key]
    assert rows.stamp(mine) > stamp and key not in rows.of(mine)[1]


def test_another_shards_publication_is_merged_once_and_only_where_it_differs() -> None:
    names = _names()
    live = _live(names)
    shard_of = ShardOf(4)
    rows = ShardRows(live, shard_of)
    theirs = {k: v for k, v in live.items() if shard_of(k[0]) == 1}
    doc = object()  # the decoded publication, kept while its text is the same
    assert rows.merge(1, dict(theirs), doc) is False  # the same rows: nothing written
    gathered, version = rows.gathered, live.version
    for _second in range(60):
        assert rows.merge(1, theirs, doc) is False
    assert (rows.gathered, live.version) == (gathered, version)  # not even looked at
    changed = dict(theirs)
    one, two = sorted(changed)[:2]
    changed[one] = PlacementLive("Failed", "Unknown", "c2", message="quota")
    del changed[two]
    assert rows.merge(1, changed, object()) is True
    assert live[one] == changed[one] and two not in live
    assert live.version == version + 2  # one delete, one update: not 12,500 rows
    assert {k: v for k, v in live.items() if shard_of(k[0]) == 1} == changed


def test_a_merge_that_wrote_keeps_the_shards_rows_without_gathering_them_again() -> None:
    """Every publication of a churning shard wrote a row or two, and the next merge
    gathered the shard's 12,500 rows again to compare: now the merge keeps them as it
    wrote them, the same as a gathering would find."""
    names = _names()
    live = _live(names)
    shard_of = ShardOf(4)
    rows = ShardRows(live, shard_of)
    theirs = {k: v for k, v in live.items() if shard_of(k[0]) == 1}
    rows.merge(1, theirs, object())
    one, two = sorted(theirs)[:2]
    for second in range(5):
        theirs = dict(theirs)
        theirs[one] = PlacementLive("Synced", "Healthy", f"c{second + 2}")
        theirs.pop(two, None)
        gathered = rows.gathered
        assert rows.merge(1, theirs, object()) is True
        assert rows.of(1)[1] == theirs and rows.gathered == gathered
        assert rows.of(1) == ShardRows(live, shard_of).of(1)


def test_a_decoded_publication_is_merged_by_the_clusters_that_changed_only() -> None:
    """A peer's next document decoded over its last (`shardstatus.Decoder`) says which
    clusters differ: the merge looks at those alone (no gathering of the shard's
    12,500 rows, no comparing them), and leaves `live` as a whole merge would. A row
    of the shard written here since (a reconcile of a shard held for a while) makes
    it compare everything again."""
    names = _names()
    live = _live(names)
    shard_of = ShardOf(4)
    theirs = {k: v for k, v in live.items() if shard_of(k[0]) == 1}
    for k in theirs:
        del live[k]  # the others' rows come from their publications
    rows = ShardRows(live, shard_of)
    decoder = shardstatus.Decoder()

    def publish(published: dict[Key, PlacementLive], at: str) -> bool:
        since = decoder.last
        doc = shardstatus.decode_doc(shardstatus.encode("b", published, {}, at), decoder,
                                     keep=lambda c: shard_of(c) == 1)
        return rows.merge(1, doc.live, doc, since, decoder.changed)
    assert publish(theirs, "t0") is True
    one, two = sorted(theirs)[:2]
    gathered = rows.gathered
    for second in range(5):
        theirs = dict(theirs)
        theirs[one] = PlacementLive("Synced", "Healthy", f"c{second + 2}")
        theirs.pop(two, None)
        assert publish(theirs, f"t{second + 1}") is True
        assert {k: v for k, v in live.items() if shard_of(k[0]) == 1} == theirs
        assert rows.gathered == gathered  # looked at one cluster, not the shard's rows
        assert set(decoder.changed) <= {one[0], two[0]}
    assert publish(theirs, "t9") is False  # only `at` moved
    live[two] = PlacementLive("Synced", "Healthy", "written-here")
    assert publish(theirs, "t10") is True and two not in live  # compared whole again
    assert {k: v for k, v in live.items() if shard_of(k[0]) == 1} == theirs


def test_a_new_published_plan_builds_only_the_workloads_that_changed() -> None:
    """A follower decoded each new publication of the leader's placements whole:
    50,000 workloads' assignments built at every commit, for a change of a few."""
    names = _names()
    h100 = Flavour("h100-80gb")
    placed: dict[WorkloadId, tuple[Assignment, ...]] = {
        WorkloadId(f"team-0/w{i:05d}"): (Assignment(ClusterName(names[i % CLUSTERS]), h100, 1, 1),)
        for i in range(WORKLOADS)}
    parts = sharedplan.PublishedParts()
    first = sharedplan.decode_published(sharedplan.encode(placed, "c1"), parts)
    assert first is not None and first == ("c1", placed)
    assert parts.built == WORKLOADS
    moved, gone, new = (WorkloadId("team-0/w00007"), WorkloadId("team-0/w00008"),
                        WorkloadId("team-9/new"))
    changed = dict(placed)
    changed[moved] = (Assignment(ClusterName(names[1]), h100, 2, 1),
                      Assignment(ClusterName(names[0]), h100, 1, 1))
    del changed[gone]
    changed[new] = (Assignment(ClusterName(names[5]), h100, 1, 8),)
    data = sharedplan.encode(changed, "c2")
    second = sharedplan.decode_published(data, parts)
    assert second is not None
    assert parts.built == WORKLOADS + 2  # the moved one and the new one
    assert second == sharedplan.decode_published(data)  # as a whole decode has it
    assert second[1][moved][0].cluster == names[0]  # sorted, as a whole decode does
    unchanged = WorkloadId("team-0/w00009")
    assert second[1][unchanged] is first[1][unchanged]  # reused, not rebuilt
    assert sharedplan.decode_published("not base64!", parts) is None
    third = sharedplan.decode_published(data, parts)
    assert third == second and parts.built == WORKLOADS + 2  # a bad one changed nothing


def test_a_followers_plan_rebuilds_only_the_placements_the_leader_changed() -> None:
    """Each new publication re-plans every follower (`Shards.borrow`,
    `fleet.shards.leader_plan`): 50,000 placements and as many reasons built each time.
    Now the reasons are shared and a placement the leader did not change is kept."""
    names = _names()
    one = workload("w")
    ids = [WorkloadId(f"team-0/w{i:05d}") for i in range(WORKLOADS)]
    spec = replace(fleet(cluster(names[0])), workloads=dict.fromkeys(ids, one))
    h100 = Flavour("h100-80gb")
    placed = {wid: (Assignment(ClusterName(names[i % CLUSTERS]), h100, 1, 1),)
              for i, wid in enumerate(ids) if i % 10 != 9}  # every tenth Pending
    parts = sharedplan.PublishedParts()
    decoded = sharedplan.decode_published(sharedplan.encode(placed, "c1"), parts)
    assert decoded is not None
    first = leader_plan(spec, decoded[1], "c1", CapacitySnapshot({}))
    assert len({id(wp.reasons) for wp in first.workloads.values()}) == 2  # shared
    moved, placed_now = ids[7], ids[9]
    placed[moved] = (Assignment(ClusterName(names[1]), h100, 2, 1),)
    placed[placed_now] = (Assignment(ClusterName(names[2]), h100, 1, 1),)
    decoded = sharedplan.decode_published(sharedplan.encode(placed, "c2"), parts)
    assert decoded is not None
    second = leader_plan(spec, decoded[1], "c2", CapacitySnapshot({}), first)
    rebuilt = [wid for wid in ids if second.workloads[wid] is not first.workloads[wid]]
    assert rebuilt == [moved, placed_now]
    assert second == leader_plan(spec, decoded[1], "c2", CapacitySnapshot({}))
    assert second.workloads[placed_now].status == "Placed"
