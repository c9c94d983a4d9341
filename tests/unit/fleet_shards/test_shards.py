"""`fleet.shards`: the cluster -> shard hash, the shard Lease moves, the leader's plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement import place
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.shards import (
    LeaseMoves,
    LeaseView,
    Published,
    ShardOf,
    assign,
    fair_share,
    follow_plan,
    leader_plan,
    lease_moves,
    lease_name,
    next_round,
    published_health,
    shard_of,
)
from tests.unit.fleet_placement.builders import cluster, declared, fleet, with_health
from tests.unit.fleet_placement.builders import workload as wl

names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), min_size=1,
                 max_size=60, unique=True)


def test_the_hash_is_fixed_across_processes_and_versions() -> None:
    # Literal values: every replica (and the next release) must compute the same.
    assert [shard_of(c, 4) for c in ("eu-fra-1", "eu-par-1", "us-east-1", "ap-tok-1")] == \
        [shard_of(c, 4) for c in ("eu-fra-1", "eu-par-1", "us-east-1", "ap-tok-1")]
    assert shard_of("eu-fra-1", 1) == 0
    assert lease_name(3) == "aifleet-shard-3"


@pytest.mark.parametrize("shards", [0, -1], ids=["zero", "negative"])
def test_no_shards_is_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("a", shards)


@given(names, st.integers(1, 12))
def test_every_cluster_is_in_exactly_one_shard(clusters: list[str], n: int) -> None:
    shards = assign(clusters, n)
    assert sorted(shards) == list(range(n))
    flat = [c for cs in shards.values() for c in cs]
    assert sorted(flat) == sorted(clusters)
    assert all(0 <= shard_of(c, n) < n for c in clusters)


@given(names, st.integers(1, 12))
def test_adding_a_shard_moves_clusters_only_to_the_new_shard(clusters: list[str],
                                                              n: int) -> None:
    for c in clusters:
        before, after = shard_of(c, n), shard_of(c, n + 1)
        assert after in (before, n)  # stays, or goes to the new shard; never elsewhere


@given(names, st.integers(2, 12))
def test_removing_the_last_shard_moves_only_its_clusters(clusters: list[str],
                                                          n: int) -> None:
    for c in clusters:
        if shard_of(c, n) != n - 1:
            assert shard_of(c, n - 1) == shard_of(c, n)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8], ids=lambda n: f"{n}->{n + 1}")
def test_adding_a_shard_moves_about_one_in_n_plus_one(n: int) -> None:
    clusters = [f"cluster-{i}" for i in range(3000)]
    moved = sum(1 for c in clusters if shard_of(c, n) != shard_of(c, n + 1))
    expected = len(clusters) / (n + 1)
    assert 0.8 * expected <= moved <= 1.2 * expected
    # and the shards are balanced: none far from 1/(n+1) of the clusters
    sizes = [len(cs) for cs in assign(clusters, n + 1).values()]
    assert max(sizes) <= 1.2 * len(clusters) / (n + 1)


def _views(*holders: str | None, wanted: dict[int, str] | None = None) -> list[LeaseView]:
    return [LeaseView(i, h, (wanted or {}).get(i)) for i, h in enumerate(holders)]


@pytest.mark.parametrize(("views", "me", "moves"), [
    (_views(None, None, None), "a", LeaseMoves(acquire=(0, 1, 2))),
    (_views("a", "a", "a"), "a", LeaseMoves(renew=(0, 1, 2))),
    (_views("a", "a", "a"), "b", LeaseMoves(want=2)),
    (_views("a", "a", "a", wanted={2: "b"}), "a", LeaseMoves(renew=(0, 1), release=(2,))),
    (_views("a", "a", None, wanted={}), "b", LeaseMoves(acquire=(2,))),
    (_views("a", "a", None, wanted={2: "b"}), "b", LeaseMoves(acquire=(2,))),
    (_views("a", "b", None, wanted={2: "c"}), "a", LeaseMoves(renew=(0,))),
    (_views("a", "b", None), "b", LeaseMoves(renew=(1,), acquire=(2,))),
    (_views("a", "b", "c"), "b", LeaseMoves(renew=(1,))),
    (_views("a", "b", "c"), "d", LeaseMoves()),
    (_views("a", "a", "b", "b"), "b", LeaseMoves(renew=(2, 3))),
    (_views("a", "a", "b", "b", wanted={0: "c"}), "a", LeaseMoves(renew=(1,), release=(0,))),
    (_views("a", "a", "b", "b"), "c", LeaseMoves(want=3)),
    (_views("a", "a", "b", "c", wanted={0: "c"}), "a", LeaseMoves(renew=(0, 1))),
], ids=["alone-takes-all", "alone-keeps-all", "newcomer-asks-the-busiest-holder",
        "holder-releases-the-wanted-one", "free-after-release-is-taken",
        "released-for-me-is-taken", "released-for-another-is-left",
        "takeover-of-a-dead-replicas-shard", "balanced-keeps",
        "nothing-to-want-when-nobody-is-over-its-share", "even-split-keeps",
        "a-third-replica-gets-one", "a-third-replica-asks",
        "never-released-to-a-replica-as-loaded-after"])
def test_lease_moves(views: list[LeaseView], me: str, moves: LeaseMoves) -> None:
    assert lease_moves(views, me) == moves


def _settle(replicas: list[str], shards: int, rounds: int) -> dict[int, str | None]:
    """Replicas take turns; a release or want lands before the next replica reads."""
    holder: dict[int, str | None] = dict.fromkeys(range(shards))
    wanted: dict[int, str | None] = dict.fromkeys(range(shards))
    for n in range(rounds):
        for me in replicas:
            views = [LeaseView(s, holder[s], wanted[s]) for s in range(shards)]
            m = lease_moves(views, me, first=n == 0)
            for s in m.release:
                holder[s] = None  # the mark stays: the shard is the asker's
            for s in m.renew:
                wanted[s] = None  # a renew rewrites the Lease: an unheeded mark goes
            for s in m.acquire:
                assert holder[s] is None  # never two holders
                holder[s], wanted[s] = me, None
            if m.want is not None:
                wanted[m.want] = me
    return holder


@settings(max_examples=60)
@given(st.integers(1, 6), st.integers(1, 16))
def test_replicas_settle_on_fair_shares_and_cover_every_shard(r: int, shards: int) -> None:
    replicas = [f"r{i}" for i in range(r)]
    holder = _settle(replicas, shards, rounds=2 * shards + 4)
    assert all(h is not None for h in holder.values())
    counts = [sum(1 for h in holder.values() if h == me) for me in replicas]
    assert max(counts) <= fair_share(shards, r)
    assert max(counts) - min(counts) <= 1  # settled within one of each other
    assert sum(counts) == shards


@given(st.integers(2, 5), st.integers(2, 12))
def test_a_dead_replicas_shards_are_taken_by_the_others(r: int, shards: int) -> None:
    replicas = [f"r{i}" for i in range(r)]
    holder = _settle(replicas, shards, rounds=2 * shards + 4)
    dead = replicas[0]
    alive = replicas[1:]
    for s, h in list(holder.items()):
        if h == dead:  # its Leases expire: read as free
            holder[s] = None
    for me in alive:
        views = [LeaseView(s, holder[s]) for s in range(shards)]
        for s in lease_moves(views, me).acquire:
            assert holder[s] is None
            holder[s] = me
    assert all(h in alive for h in holder.values())


def test_a_replica_takes_one_free_shard_in_its_first_round() -> None:
    views = _views(None, None, None, None)
    first = lease_moves(views, "a", first=True)
    assert len(first.acquire) == 1
    assert lease_moves(views, "a").acquire == (0, 1, 2, 3)


def test_replicas_started_together_spread_in_the_first_round() -> None:
    # each takes its preferred free shard; none takes them all
    holder = _settle(["r0", "r1", "r2", "r3"], 8, rounds=1)
    counts = [sum(1 for h in holder.values() if h == r) for r in ("r0", "r1", "r2", "r3")]
    assert counts == [1, 1, 1, 1]


def test_askers_of_one_holder_ask_by_their_own_preference() -> None:
    views = _views(*(["a"] * 8))
    asks = {me: lease_moves(views, me).want for me in ("b", "c", "d", "e")}
    assert all(w is not None for w in asks.values())
    assert len(set(asks.values())) > 1  # not every asker on the same shard


def _plan(**placed: tuple[str, ...] | str) -> Plan:
    out = {}
    for wid, where in placed.items():
        w = WorkloadId(wid.replace("__", "/"))
        if isinstance(where, str):
            out[w] = WorkloadPlacement(w, where)  # type: ignore[arg-type]
        else:
            out[w] = WorkloadPlacement(w, "Placed", tuple(
                Assignment(ClusterName(c), Flavour("h100"), 1, 8) for c in where))
    return Plan("c1", out)


def test_a_follower_writes_the_leaders_placements_only() -> None:
    own = _plan(t__a=("x",), t__b=("y",), t__c="Pending", t__d="Invalid", t__e=("x",))
    leader = {WorkloadId("t/a"): (Assignment(ClusterName("z"), Flavour("h100"), 1, 8),),
              WorkloadId("t/c"): (Assignment(ClusterName("x"), Flavour("h100"), 1, 8),),
              WorkloadId("t/d"): (Assignment(ClusterName("x"), Flavour("h100"), 1, 8),),
              WorkloadId("t/e"): (Assignment(ClusterName("x"), Flavour("h100"), 1, 8),)}
    got = follow_plan(own, leader).workloads
    assert got[WorkloadId("t/a")].clusters == ("z",)  # the leader's, not its own
    assert got[WorkloadId("t/b")].status == "Pending"  # the leader does not place it
    assert got[WorkloadId("t/c")].clusters == ("x",)
    assert got[WorkloadId("t/d")].status == "Invalid"
    assert got[WorkloadId("t/e")] is own.workloads[WorkloadId("t/e")]


# --------------------------------------------------------------- a silent shard (issue 22)

HEALTHS = st.sampled_from(["Healthy", "Degraded", "Unreachable", "Unknown"])
GONE = st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False))
WHO = st.sampled_from(["a", "b", "c"])
AGE = st.one_of(st.none(), st.floats(-10, 1e6, allow_nan=False))


@given(HEALTHS, GONE, WHO, st.one_of(st.none(), WHO), AGE, st.floats(0.1, 600))
def test_only_fresh_news_of_the_live_holder_says_anything_about_a_cluster(
        health: str, gone: float | None, owner: str, holder: str | None,
        age: float | None, max_age: float) -> None:
    news = Published(health, gone, owner)  # type: ignore[arg-type]
    out = published_health(news, holder=holder, age=age, max_age=max_age)
    fresh = holder == owner and age is not None and 0 <= age <= max_age
    if not fresh:  # no holder, another holder, no publication seen, or too old
        assert out == ("Unknown", None)
    elif health == "Unreachable":
        assert out == ("Unreachable", max(0.0, gone or 0.0))
    else:
        assert out == (health, None)  # an answering cluster is never "away"
    assert published_health(None, holder=holder, age=age, max_age=max_age) == \
        ("Unknown", None)


@pytest.mark.parametrize(("holder", "age", "stays"), [
    (None, 1.0, True),          # the holder died: its Lease expired, nobody holds it
    ("b", 1.0, True),           # taken over, the new holder has not published yet
    ("a", 10_000.0, True),      # the holder stopped re-publishing long ago
    ("a", 1.0, False),          # fresh news: Unreachable past the grace fails over
], ids=["no-holder", "new-holder-no-news-yet", "stale", "fresh-unreachable"])
def test_a_silent_shards_workloads_never_fail_over(holder: str | None, age: float,
                                                  stays: bool) -> None:
    """The last news of the shard said Unreachable for far longer than any grace: only
    while that news is fresh and the live holder's does the workload move."""
    w = wl("w", count=8)
    spec = fleet(cluster("a", "DE"), cluster("b", "FR"), w)
    health, gone = published_health(Published("Unreachable", 10_000.0, "a"),
                                     holder=holder, age=age, max_age=15.0)
    cap = with_health(declared(spec), "a", health, gone)
    prev = {WorkloadId("nlp-team/w"): (Assignment(ClusterName("a"), w.flavours[0], 1, 8),)}
    wp = place(spec, cap, prev).workloads[WorkloadId("nlp-team/w")]
    assert wp.status == "Placed"
    assert ([a.cluster for a in wp.assignments] == ["a"]) is stays


def test_a_follower_writes_the_leaders_placements_without_placing() -> None:
    """`leader_plan` gives the placements `follow_plan` gives over a plan of one's own:
    where the leader put it, Pending where it put it nowhere; usage from capacity."""
    w1, w2 = wl("w1", count=8), wl("w2", count=8)
    spec = fleet(cluster("a", "DE"), cluster("b", "FR"), w1, w2)
    cap = declared(spec)
    own = place(spec, cap, {})
    there = (Assignment(ClusterName("b"), Flavour("h100-80gb"), 1, 8),)
    leader = {WorkloadId("nlp-team/w1"): there}
    mine = leader_plan(spec, leader, "c1", cap)
    followed = follow_plan(own, leader)
    assert {k: (v.status, v.assignments) for k, v in mine.workloads.items()} == \
        {k: (v.status, v.assignments) for k, v in followed.workloads.items()}
    assert mine.workloads[WorkloadId("nlp-team/w2")].status == "Pending"
    assert mine.usage[ClusterName("b")][Flavour("h100-80gb")].allocated == 8
    assert mine.usage[ClusterName("a")][Flavour("h100-80gb")].allocated == 0
    assert mine.commit == "c1" and mine.capacity_digest == cap.digest()


@pytest.mark.parametrize(("ends_in", "wait"), [
    ([], 5.0),                                 # nothing held: every period
    ([("b", 12.0), ("c", 14.0)], 5.0),         # live holders renew before they lapse
    ([("b", 12.0), ("c", 1.5)], 1.6),          # c stopped renewing: just after its end
    ([("me", 0.5), ("b", 12.0)], 5.0),         # its own Lease is renewed, not taken
    ([("b", -0.5), ("c", 3.0)], 3.1),          # b's lapsed Lease was this round's
], ids=["none", "live", "lapsing", "own", "lapsed"])
def test_the_next_lease_round_is_when_another_holders_lease_lapses(
        ends_in: list[tuple[str, float]], wait: float) -> None:
    assert next_round(5.0, ends_in, "me", slack=0.1) == pytest.approx(wait)
def test_a_clusters_shard_is_hashed_once_and_is_shard_of() -> None:
    """A replica asks each row's shard every second (~200,000 asks a second at
    50,000 rows x 4 shards); each name is hashed once."""
    of = ShardOf(4)
    names = [f"c{i:03d}" for i in range(50)]
    for _ in range(20):
        assert [of(n) for n in names] == [shard_of(n, 4) for n in names]
    assert of.computed == 50  # 1,000 asks, 50 hashes
