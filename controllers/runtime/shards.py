"""`fleet run --shards N`: this replica's shards, and the hooks that keep it to them.

The clusters are split into N shards (`fleet.shards.shard_of`, rendezvous hashing of
the cluster name). Every replica, the leader included:

- holds a Lease per shard it owns in the home cluster (`clusters.shardlease`); one
  round every third of the Lease's duration reads every shard Lease and does what
  `fleet.shards.lease_moves` says (renew, take a free or expired one, let one go to a
  replica that asked, ask for one);
- reconciles only the clusters of the shards it holds (`ShardGate` in front of the
  cluster queue), and every write to a cluster is fenced by that cluster's shard Lease
  exactly as a leader's writes are by the leader Lease (`wire`: the Applier's
  `may_write`, generation and `lease_check`). A replica that lost a shard's Lease (paused
  past its deadline, or the Lease taken) writes nothing more there;
- writes the leader's placements only: the leader (`--leader-elect`'s Lease) plans and
  publishes its plan's placements in the home cluster (`controllers.persist.sharedplan`,
  once per commit and whenever they change); another replica places nothing, its plan
  is those placements (`borrow`, `fleet.shards.leader_plan`), read every second and at
  once when their index changes (`controllers.runtime.planwatch`), and it reconciles
  only while the published plan is of the commit it serves;
- publishes its shards' reconcile results (`controllers.persist.shardstatus`) and reads
  the others', so its `/api/v1/status` covers the whole fleet; every cluster row says
  its `shard` and `shardOwner`.

A replica connects (adapters, informers, heartbeats) only to the clusters of the shards
it holds (`ClusterSet.wanted`): gaining a shard connects its clusters at once, losing
one disconnects them once it has not been held for a Lease duration (its writes fenced
off by the lost Lease from the start; a late renew re-taken in time is not listed
again). A dead holder's shard is taken just after its Lease lapses, and the replica
that will take it connects to its clusters (and lists them) a renew period before,
once the holder has missed a renew (`fleet.shardwatch`; nothing is written there
before the take). Each takeover's phases are kept for status (`Takeover`). What the others
need of those clusters -- health, how long Unreachable, the nodes -- goes into the same
publication, re-published at least every third of the Lease duration; the placement
loop sees the other shards' clusters through `views`, where a shard whose news is
missing or stale (no live holder, or a holder that stopped re-publishing) leaves its
clusters `Unknown` (`fleet.shards.published_health`): their placements are held,
nothing fails over because a replica went quiet.

The ledger has one writer, so `--shards` with `--ledger` is refused at start
(`controllers.settings.home_problem`), as is `--shards` without `--leader-elect`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from clusters.adapter import ClusterAdapter
from clusters.client import KubeClient
from clusters.errors import ClusterError
from clusters.leader import EXPIRY_SLACK, LOOK_EVERY, default_identity
from clusters.leasekeeper import LeaseKeeper
from clusters.shardlease import ShardLease, ShardLeases, read_views, want
from controllers.persist import shardstatus, sharedplan
from controllers.runtime.fleetstate import ClusterView
from controllers.runtime.liverows import LiveRows
from controllers.runtime.planwatch import PlanWatch
from controllers.runtime.shardrows import ShardRows
from fleet.capacity import HEALTH_STATES, CapacitySnapshot, ClusterHealth
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Assignment, Plan
from fleet.shards import (
    LeaderPlans,
    Published,
    ShardOf,
    follow_plan,
    lease_moves,
    news_counts,
    published_health,
)
from fleet.shardwatch import next_look, to_ready
from fleet.spec import FleetSpec

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


TAKEOVERS_KEPT = 8
"""The last takeovers shown in status (`shards.takeovers`)."""


@dataclass
class Takeover:
    """A shard taken from a holder whose Lease lapsed (a dead or hung replica), and
    when each phase of getting its clusters reconciled again ended, on this
    replica's wall clock (the Lease's end on its holder's): `fleet run` shows them
    in status and logs them once done, `bench.shards` prints them."""

    shard: int
    previous: str
    expired: datetime
    """When the previous holder's Lease lapsed: its renewTime + leaseDurationSeconds."""
    acquired: datetime
    """When this replica's take of the Lease was written."""
    readied: datetime | None = None
    """When this replica began connecting to its clusters before the take (its holder
    had missed a renew: `fleet.shardwatch`), if it did."""
    clusters: tuple[str, ...] = ()
    connected: datetime | None = None
    """Every cluster of the shard connected (adapter made) or failed to connect."""
    listed: datetime | None = None
    """Every connected one listed (informers synced)."""
    reconciled: datetime | None = None
    """The first of them reconciled here (a pass done)."""
    done: datetime | None = None
    """All of them reconciled here."""
    lost: datetime | None = None
    """Not held any more before `done` (its Lease lapsed or taken): no phase follows."""
    passed: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        def at(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat(timespec="milliseconds")

        def since(t: datetime | None) -> float | None:
            return None if t is None else round((t - self.expired).total_seconds(), 3)
        return {"shard": self.shard, "previous": self.previous, "clusters": len(self.clusters),
                "expiredAt": at(self.expired), "readiedAt": at(self.readied),
                "acquiredAt": at(self.acquired),
                "connectedAt": at(self.connected), "listedAt": at(self.listed),
                "firstReconciledAt": at(self.reconciled), "reconciledAt": at(self.done),
                "lostAt": at(self.lost),
                "secondsAfterExpiry": {
                    "readied": since(self.readied), "acquired": since(self.acquired),
                    "connected": since(self.connected),
                    "listed": since(self.listed), "firstReconciled": since(self.reconciled),
                    "reconciled": since(self.done)}}


class ShardGate:
    """The cluster queue's handler with --shards: a cluster of a shard this replica does
    not hold is not reconciled here (dropped; re-queued when the shard is gained), and a
    replica that does not lead reconciles only once it follows the leader's plan of the
    commit it serves."""

    def __init__(self, shards: Shards, inner: Callable[[str], Awaitable[float | None]]
                 ) -> None:
        self.shards = shards
        self.inner = inner

    async def __call__(self, name: str) -> float | None:
        if not self.shards.owns(name):
            return None
        if not self.shards.following_leader():
            return 0.5
        return await self.inner(name)


class Shards:
    def __init__(self, m: Manager) -> None:
        self.m = m
        self.count = m.settings.shards
        self._shard_of = ShardOf(self.count)
        """Each cluster's shard, hashed once (asked for every row, every second)."""
        self.identity = m.settings.identity or default_identity()
        self.duration = m.lease_duration
        self.every = m.lease_duration / 3
        self.poll_every = min(1.0, self.every)
        """Seconds between reads of the leader's plan and the other shards' status (a
        new publication is read at once besides: `plan_watch`)."""
        self.keeper: LeaseKeeper = m.leadership.keeper
        """Renews the held shard Leases (and the leader's) from its own thread while the
        loop beats (`clusters.leasekeeper`; started, beaten and stopped by
        `Leadership.run`: --shards needs --leader-elect); the rounds here take, let go
        and ask."""
        self.leases: dict[int, ShardLease] = {}
        self._wired: dict[int, int] = {}
        """Shard -> the generation its clusters' adapters were last wired to."""
        self.leader_plan: tuple[str | None, dict[WorkloadId, tuple[Assignment, ...]]] | None \
            = None
        self.followed: str | None = None
        self._plan_reader = sharedplan.Reader()
        """The leader's published placements as last taken in, per part: a new
        publication fetches and decodes the parts that changed only."""
        self._plan_woken = anyio.Event()
        """Set by `plan_watch` when the index changed: the share loop reads the leader's
        plan now, not at its next poll."""
        self.plan_watch = PlanWatch(m.home.namespace, seen=lambda: self._plan_reader.version,
                                    wake=self._wake_plan)
        """A watch on the leader's plan index while this replica follows
        (`controllers.runtime.planwatch`)."""
        self.polls = 0
        self.woken_reads = 0
        """Polls of the share loop (the leader's plan, this replica's publication, the
        others'), and reads of the leader's plan between them, woken by `plan_watch`."""
        self._plan_changed: set[WorkloadId] | None = None
        """The workloads whose published placements changed since `borrow` last ran
        (None: not known, `borrow` looks at every one)."""
        self._borrowed: Plan | None = None
        """The last plan `borrow` made: the next keeps its unchanged placements."""
        self._borrowing = LeaderPlans()
        self.plan_reads = 0
        self.plan_fetches = 0
        self.plan_decodes = 0
        """Looks at the leader's published plan (metadata-only reads), how many fetched
        its index (its resourceVersion changed), and how many publications were taken
        in (`_plan_reader` counts the parts fetched and decoded)."""
        """The commit whose plan this replica follows the leader's for (not leading)."""
        self.owners: dict[int, str] = {}
        """Shard -> its holder as last read."""
        live = m.live
        assert isinstance(live, LiveRows)  # the Manager's: it stamps each cluster's rows
        self.rows = ShardRows(live, self.shard)
        """Each shard's rows of `live`, gathered only when a row of it changed."""
        self._published: dict[int, tuple[int, dict[str, shardstatus.ClusterNews], float]] \
            = {}
        """Shard -> what this replica last published of it: its rows' stamp
        (`ShardRows.stamp`), its clusters' news, and when (monotonic)."""
        self._read: dict[int, tuple[str, shardstatus.ShardDoc, float]] = {}
        """Shard -> another replica's publication as last read, decoded, and when
        (monotonic) it was last seen to change: the holder re-publishes at least every
        third of a Lease duration, so news unchanged for a whole duration is stale."""
        self._status_io = _StatusIO()
        """The other shards' publications' resourceVersions and decoded parts, this
        replica's own publications' encoded parts, and what they cost."""
        self.remote: dict[str, ClusterView] = {}
        """The clusters of shards held elsewhere, as placement and status see them."""
        self.news: dict[str, tuple[str | None, bool]] = {}
        """Per cluster of another shard: when its holder observed it, and whether that
        news counts (fresh, from the live holder)."""
        self.clock: Callable[[], float] = time.monotonic
        self.version = 0
        """Counts changes of `remote` and of the news' freshness (the status cache's
        fingerprint: not every re-publication, which only moves `at`)."""
        self._connected_for: tuple[tuple[int, int], ...] | None = None
        """The shards (and generations) this replica's clusters were last connected
        for."""
        self.foreign: list[str] = []
        """Live shard Leases of another shard count: while any, this replica holds none."""
        self.rounds = 0
        self.looks_taken = 0
        """Rounds begun early because a look saw a shard Lease to take (one let go)."""
        self._decided = False
        """A round's moves were made once (the first takes at most one free shard)."""
        self.wall: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.takeovers: list[Takeover] = []
        """The last `TAKEOVERS_KEPT` shards taken from a lapsed holder, with their
        phases."""
        self._next_round = self.every
        """Seconds until the next Lease round (`fleet.shardwatch.next_look`)."""
        self._ready: dict[int, tuple[float, datetime]] = {}
        """Shards held elsewhere whose Lease is about to lapse and which this replica
        would take (`fleet.shardwatch.to_ready`) -> when (monotonic, wall) it began
        connecting to their clusters: read only (nothing is written to a cluster before
        its shard's Lease is held), for a Lease duration at most unless taken."""
        self._ready_for: tuple[int, ...] = ()
        """The shards made ready when the clusters were last connected."""
        self._last_held: dict[int, float] = {}
        """Shard -> when (monotonic) the connect loop last saw it held: its clusters
        stay connected a Lease duration after (`wants`)."""
        self._gained = anyio.Event()
        """Set when a shard is gained: its clusters are connected now, not at the next
        tick."""

    # ------------------------------------------------------------------ hooks

    @staticmethod
    def install(m: Manager) -> Shards | None:
        """With --shards, put the gate in front of the queue and take cluster fencing
        away from the leader's Lease; None without."""
        if not m.settings.shards:
            return None
        shards = Shards(m)
        m.queue.handler = ShardGate(shards, m.queue.handler)
        m.leadership.adapters = {}  # the leader Lease fences no cluster write: shards do
        m.reconciler.may_act = lambda: not m.source.holding
        m.placement.follow = shards.follow
        m.placement.borrow = shards.borrow
        m.placement.borrowed_changes = shards.changes
        m.placement.other_views = shards.views
        m.placement.unseen = shards.unseen
        m.placement.readying = shards.readying
        m.placement.following = shards.following_leader
        m.clusters.wanted = shards.wants
        m.rollout.owns = shards.owns
        m.rollout.applies = lambda: bool(shards.held())  # none held: nothing applied
        m.metrics.scrape_with(shards.collect)
        # Without the leader's plan of its commit a replica that does not lead has no
        # plan to judge a workload Pending by: it says nothing of them until it has.
        done = m.reconciler.on_done

        def reconciled(name: str) -> None:
            shards.reconciled(name)
            done(name)
        m.reconciler.on_done = reconciled
        return shards

    def shard(self, cluster: str) -> int:
        return self._shard_of(cluster)

    def owns(self, cluster: str) -> bool:
        lease = self.leases.get(self.shard(cluster))
        return lease is not None and lease.is_leader

    def wants(self, cluster: str) -> bool:
        """Connect to `cluster` here: it is of a held shard (or it is the home); stay
        connected to it for a Lease duration after its shard was last held. A renew
        that comes late (a loop stalled by many clusters connecting at once) loses the
        shard until the next round re-takes it at the same generation: disconnecting
        and listing its clusters all over again cost seconds each time. Its writes are
        fenced off meanwhile all the same (`wire`: `owns`, and the Lease's generation).
        So are those of a shard about to be taken here (`_ready`): connected early,
        written only once taken."""
        if self.owns(cluster) or cluster == self.m.settings.leader_cluster:
            return True
        if self.shard(cluster) in self._ready_for:
            return True  # about to be taken: connected and listed, not written
        held = self._last_held.get(self.shard(cluster))
        return cluster in self.m.adapters and held is not None and \
            self.clock() - held < self.duration

    def readying(self, cluster: str) -> bool:
        """`cluster` is connected only because its shard is about to be taken here
        (`_ready`): not held, not the home. Its connecting and listing re-plan nothing
        (`PlacementLoop.readying`); the take does."""
        return self.shard(cluster) in self._ready_for and not self.owns(cluster) and \
            cluster != self.m.settings.leader_cluster

    def views(self) -> dict[str, ClusterView]:
        return self.remote

    def unseen(self) -> list[str]:
        """Clusters a first plan would rather wait for (bounded by the caller): every
        one before the first Lease round; then each cluster without a view that has
        listed -- its own adapter's, or fresh news of another shard's holder -- but
        those of held shards that could not connect (said in status)."""
        spec = self.m.desired.spec
        if spec is None:
            return []
        if self.rounds == 0:
            return sorted(str(n) for n in spec.clusters)
        views = self.m.placement.views()
        out: list[str] = []
        for name in sorted(spec.clusters):
            view = views.get(name)
            if view is not None and view.health != "Unknown":
                continue
            if self.owns(name) and name in self.m.connect_errors:
                continue
            out.append(name)
        return out

    def held(self) -> list[int]:
        return sorted(s for s, lease in self.leases.items() if lease.is_leader)

    def leading(self) -> bool:
        return self.m.leadership.may_act()

    def following_leader(self) -> bool:
        return self.leading() or (self.followed is not None
                                  and self.followed == self.m.desired.head)

    def wire(self, name: str, adapter: ClusterAdapter) -> None:
        """Fence the adapter's writes by its shard's Lease."""
        shard = self.shard(name)
        applier = adapter.applier
        applier.may_write = lambda: (not self.m.source.holding and self.m.blocked() is None
                                     and self.owns(name))
        applier.owns = lambda: self.owns(name)  # a shard let go: its holder's writes
        lease = self.leases.get(shard)
        applier.generation = lease.generation if lease is not None else 0

        async def confirm() -> str | None:
            held = self.leases.get(shard)
            if held is None:
                return "no shard Lease held yet"
            return await held.confirm()
        applier.lease_check = confirm

    def follow(self, plan: Plan) -> Plan:
        """The plan this replica writes: its own while it leads, else its own with the
        leader's published placements, once they are of the same commit."""
        if self.leading():
            self.followed, self.leader_plan, self._plan_changed = None, None, None
            self._plan_reader.clear()
            return plan
        published = self.leader_plan
        if published is None or published[0] != plan.commit:
            self.followed = None
            return plan
        self.followed = plan.commit
        return follow_plan(plan, published[1])

    def borrow(self, spec: FleetSpec, capacity: CapacitySnapshot, commit: str | None
               ) -> Plan | None:
        """A replica that does not lead places nothing: its plan is the leader's
        published placements (`fleet.shards.leader_plan`; all Pending before any is
        published), followed -- reconciled -- only once they are of `commit`. None
        while it leads: it places."""
        if self.leading():
            self._borrowed = None
            self._borrowing = LeaderPlans()
            return None
        published = self.leader_plan
        self.followed = commit if published is not None and published[0] == commit \
            else None
        changed, self._plan_changed = self._plan_changed, set()
        self._borrowed = self._borrowing.plan(
            spec, published[1] if published is not None else {}, commit, capacity,
            changed)
        return self._borrowed

    def changes(self, old: Plan | None, new: Plan) -> frozenset[WorkloadId] | None:
        """The decisions `borrow`'s plan `new` changed from `old` (`LeaderPlans.changes`)."""
        return self._borrowing.changes(old, new)

    def collect(self) -> Iterator[Metric]:
        """`aifleet_shard_held{shard}` (1 where this replica holds the shard's Lease) and
        `aifleet_shard_clusters{shard}`: summed over the replicas, every shard is held
        once; reconcile and apply metrics are per replica and per cluster, so they add up
        across replicas as they are."""
        held = GaugeMetricFamily("aifleet_shard_held", "1 while this replica holds the "
                                 "shard's Lease (--shards).", labels=["shard"])
        sizes = GaugeMetricFamily("aifleet_shard_clusters", "Clusters hashed to the shard.",
                                  labels=["shard"])
        mine = set(self.held())
        spec = self.m.desired.spec
        counts = Counter(self.shard(name) for name in (spec.clusters if spec else ()))
        for shard in range(self.count):
            held.add_metric([str(shard)], 1.0 if shard in mine else 0.0)
            sizes.add_metric([str(shard)], float(counts.get(shard, 0)))
        yield held
        yield sizes

    def annotate(self, doc: dict[str, Any]) -> None:
        """Each cluster row: its shard and who holds it (extra fields, allowed)."""
        for row in doc.get("clusters", []):
            name = str(row.get("name"))
            shard = self.shard(name)
            row["shard"] = shard
            row["shardOwner"] = self.owners.get(shard)
            news = self.news.get(name)
            if news is not None:  # another shard's: health and capacity as published
                row["shardNewsAt"], row["shardNewsFresh"] = news
        io = self._status_io
        doc["shards"] = {"count": self.count, "identity": self.identity, "held": self.held(),
                         # another shard's rows: of its publication at `at`; `behind`
                         # when a later one is left unread for now (`_read_others`),
                         # `nodesBehind` when its nodes changed in it (not leading)
                         "otherRows": {str(shard): {
                             "at": self.rows_at(shard), "behind": shard in io.behind,
                             "nodesBehind": shard in io.nodes_behind}
                             for shard in sorted(self._read)
                             if shard not in self.held()},
                         "followsLeaderPlan": self.following_leader(),
                         "otherShardCounts": self.foreign,
                         "takeovers": [t.as_json() for t in self.takeovers],
                         "renewals": {self.identity: {
                             str(shard): counts
                             for shard, counts in self.keeper.counts().items()}}}

    # ------------------------------------------------------------------ takeovers

    def _took(self, shard: int, leases: ShardLeases) -> None:
        """A shard just acquired: a takeover when its Lease named another holder whose
        hold had ended (not one let go for us, nor a first take)."""
        hold = leases.holds.get(shard)
        if hold is None or hold[0] == self.identity or leases.read_at is None or \
                hold[1] > leases.read_at:
            return
        ready = self._ready.get(shard)
        taken = Takeover(shard, hold[0], hold[1], self.wall(),
                         readied=None if ready is None else ready[1])
        self.takeovers = [*self.takeovers, taken][-TAKEOVERS_KEPT:]
        self.version += 1
        log.info("shard_taken_over", shard=shard, previous=hold[0],
                 seconds_after_expiry=taken.as_json()["secondsAfterExpiry"]["acquired"])

    def _phases(self) -> None:
        """Each open takeover's connect and list phases, as they end."""
        spec = self.m.desired.spec
        held = set(self.held())
        for t in self.takeovers:
            if t.done is not None or t.lost is not None or spec is None:
                continue
            if t.shard not in held:
                t.lost = self.wall()
                self.version += 1
                continue
            if not t.clusters:
                t.clusters = tuple(n for n in sorted(spec.clusters)
                                   if self.shard(n) == t.shard)
            adapters = self.m.adapters
            if t.connected is None and all(n in adapters or n in self.m.connect_errors
                                           for n in t.clusters):
                t.connected = self.wall()
                self.version += 1
            if t.connected is not None and t.listed is None and all(
                    adapters[n].synced.is_set() for n in t.clusters if n in adapters):
                t.listed = self.wall()
                self.version += 1
            if not t.clusters:
                t.done = t.connected

    def reconciled(self, name: str) -> None:
        """A pass on `name` done here: a phase of the takeover of its shard, if open
        (connected and listed first: a pass runs only on a listed cluster)."""
        self._phases()
        shard = self.shard(name)
        for t in self.takeovers:
            if t.shard != shard or t.done is not None or t.lost is not None or \
                    not self.owns(name):
                continue
            t.passed.add(name)
            now = self.wall()
            if t.reconciled is None:
                t.reconciled = now
            if t.clusters and t.passed >= set(t.clusters):
                t.done = now
                log.info("shard_takeover_done", **t.as_json())
            self.version += 1

    # ------------------------------------------------------------------ loops

    async def run(self) -> None:
        while True:
            if self.m.home.client() is not None:
                break
            await anyio.sleep(self.m.tick)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._lease_loop)
            tg.start_soon(self._share_loop)
            tg.start_soon(self._connect_loop)
            tg.start_soon(self.plan_watch.run, self.m.home.client,
                          lambda: not self.leading(), self.poll_every)

    async def _lease_loop(self) -> None:
        while True:
            client = self.m.home.client()
            self._next_round = self.every
            if client is not None:
                try:
                    await self.round(client)
                except (ClusterError, TimeoutError) as e:
                    log.warning("shard_round_failed", error=str(e))
            await self._until_next_round()

    async def _until_next_round(self) -> None:
        """Sleep until the next round, looking at the shard Leases every `LOOK_EVERY`
        seconds meanwhile (one list, nothing written): a Lease let go that this
        replica would take (a peer's clean stop: `Leadership.release`) starts the
        round at once, not up to a renew period later; a shard that changed holder
        is seen as such (`owners`: whose news of its clusters counts)."""
        deadline = anyio.current_time() + self._next_round
        while deadline - anyio.current_time() > LOOK_EVERY:
            await anyio.sleep(LOOK_EVERY)
            client = self.m.home.client()
            if client is None or self.foreign:
                continue
            leases = await read_views(client, self.m.home.namespace, self.count,
                                      self.duration, quiet=True)
            if leases is None or leases.foreign:
                continue
            if lease_moves(leases.views, self.identity).acquire:
                self.looks_taken += 1
                return
            owners = {v.shard: v.holder for v in leases.views if v.holder}
            if owners != self.owners:
                self.owners = owners
                self.refresh_views()
        await anyio.sleep(max(0.0, deadline - anyio.current_time()))

    async def round(self, client: KubeClient) -> None:
        """One read of every shard Lease, and this replica's moves."""
        self.rounds += 1
        leases = await read_views(client, self.m.home.namespace, self.count, self.duration)
        if leases is None:
            return
        if leases.foreign != self.foreign:
            if leases.foreign:
                log.warning("shard_count_mismatch", shards=self.count, live=leases.foreign)
            self.foreign = leases.foreign
        views = leases.views
        self.owners = {v.shard: v.holder for v in views if v.holder}
        ends_in = {} if leases.read_at is None else {
            s: (who, (end - leases.read_at).total_seconds())
            for s, (who, end) in leases.holds.items()}
        # a dead holder's Lease: its clusters connected a renew period before it lapses,
        # taken as it lapses
        self._next_round = next_look(self.every, ends_in, self.identity,
                                     within=self.every, slack=EXPIRY_SLACK)
        if self.foreign:  # another split of the clusters is live: hold nothing
            for shard in [s for s, lease in self.leases.items() if lease.is_leader]:
                await self._lease(client, shard).release()
            self._rewire()
            return
        moves = lease_moves(views, self.identity, first=not self._decided)
        self._decided = True
        for shard in moves.release:
            await self._lease(client, shard).release()
        for shard in (*moves.renew, *moves.acquire):
            lease = self._lease(client, shard)
            if shard in moves.renew and lease.is_leader and self.keeper.alive:
                continue  # held: the keeper renews it, off this loop
            if not await lease.try_acquire_or_renew() and shard in moves.renew:
                # a want mark written between our read and our renew: read again
                await lease.try_acquire_or_renew()
            if lease.is_leader:
                self.owners[shard] = self.identity
                if shard in moves.acquire:
                    self._took(shard, leases)
        if moves.want is not None:
            await want(client, self.m.home.namespace, moves.want, self.identity)
        self._get_ready(to_ready(views, ends_in, self.identity, within=self.every))
        self._rewire()
        self.refresh_views()

    def _get_ready(self, shards: set[int]) -> None:
        """Connect to the clusters of `shards` now (`fleet.shardwatch`): the connect
        loop is woken; their writes stay fenced off (`wire`) until the take."""
        held = set(self.held())
        for shard in sorted(shards - held - set(self._ready)):
            self._ready[shard] = (self.clock(), self.wall())
            self._gained.set()
            log.info("shard_readying", shard=shard, identity=self.identity,
                     holder=self.owners.get(shard))

    def _lease(self, client: KubeClient, shard: int) -> ShardLease:
        lease = self.leases.get(shard)
        if lease is None:
            lease = self.leases[shard] = ShardLease(
                client, self.identity, shard, count=self.count,
                namespace=self.m.home.namespace, duration=self.duration,
                margin=min(2.0, self.duration / 4))
            self.keeper.keep(lease)
        lease.client = client
        return lease

    def _rewire(self) -> None:
        """Shards gained (or re-taken at a new generation): their clusters' adapters
        carry the new generation, and each is reconciled now."""
        for shard, lease in self.leases.items():
            if not lease.is_leader:
                if self._wired.pop(shard, None) is not None:
                    log.info("shard_lost", shard=shard, identity=self.identity)
                continue
            if self._wired.get(shard) == lease.generation:
                continue
            self._wired[shard] = lease.generation
            self._gained.set()
            log.info("shard_held", shard=shard, identity=self.identity,
                     generation=lease.generation)
            for name, adapter in list(self.m.adapters.items()):
                if self.shard(name) == shard:
                    self.wire(name, adapter)
                    self.m.queue.add(name)

    async def _connect_loop(self) -> None:
        """Connect the clusters of shards gained, disconnect those of shards lost
        (outside the Lease rounds: connecting many clusters must not delay a renew)."""
        while True:
            held = tuple((s, self.leases[s].generation) for s in self.held())
            now = self.clock()
            for shard, _generation in held:
                self._last_held[shard] = now
            lapsed = [s for s, at in self._last_held.items() if now - at >= self.duration]
            for shard in lapsed:  # let go for good: disconnect its clusters now
                del self._last_held[shard]
                self._connected_for = None
            for shard in [s for s, (at, _wall) in self._ready.items()
                          if s in self._last_held or now - at >= self.duration]:
                del self._ready[shard]  # taken (held now), or its holder lived on
            ready = tuple(sorted(self._ready))
            spec = self.m.desired.spec
            if spec is not None and (held != self._connected_for or ready != self._ready_for):
                readied = {n for n in self.m.adapters if self.readying(n)}
                self._connected_for, self._ready_for = held, ready
                gone = await self.m.clusters.release()
                if gone:
                    log.info("shard_clusters_disconnected", clusters=gone)
                before = set(self.m.adapters)
                if self.m.clusters.unconnected(spec):
                    await self.m.clusters.sync(spec)
                # none for a readied shard's clusters, never seen by placement
                # (`readying`): its take re-plans, once; its holder living on, none
                if set(gone) - readied or any(not self.readying(n)
                                              for n in set(self.m.adapters) - before):
                    self.m.trigger_plan()
            self._phases()
            with anyio.move_on_after(self.m.tick):
                await self._gained.wait()  # a shard gained: connect it now
            if self._gained.is_set():
                self._gained = anyio.Event()

    async def _share_loop(self) -> None:
        while True:
            client = self.m.home.client()
            if client is not None:
                try:
                    await self._read_leader_plan(client)
                    await self._publish(client)
                    await self._read_others(client)
                except (ClusterError, TimeoutError) as e:
                    log.warning("shard_status_failed", error=f"{type(e).__name__}: {e}")
            self.polls += 1
            await self._until_next_poll()

    async def _until_next_poll(self) -> None:
        """Sleep `poll_every`, reading the leader's plan (that alone) each time
        `plan_watch` says its index changed meanwhile: one task reads it, never two at
        once (`sharedplan.Reader` is not made for that)."""
        deadline = anyio.current_time() + self.poll_every
        while True:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await self._plan_woken.wait()
            if not self._plan_woken.is_set():
                return  # the poll's time
            self._plan_woken = anyio.Event()
            client = self.m.home.client()
            if client is None:
                continue
            self.woken_reads += 1
            try:
                await self._read_leader_plan(client)
            except (ClusterError, TimeoutError) as e:
                log.warning("shard_status_failed", error=f"{type(e).__name__}: {e}")

    def _wake_plan(self) -> None:
        self._plan_woken.set()

    async def _read_leader_plan(self, client: KubeClient) -> None:
        if self.leading():
            # Its own plan is the one; a copy read while following may be stale by the
            # time it follows again (read afresh then, before anything is followed).
            self.leader_plan, self._plan_changed = None, None
            self._plan_reader.clear()
            self.plan_watch.stop()  # none watched while leading (`PlanWatch.run`)
            return
        # The index's metadata first (a few hundred bytes); then the index and only the
        # parts whose digest changed (`sharedplan.Reader`).
        reader = self._plan_reader
        update = await reader.poll(client, self.m.home.namespace)
        self.plan_reads, self.plan_fetches = reader.looks, reader.fetches
        if update is None:
            return
        self.plan_decodes += 1
        self.leader_plan = (update.commit, update.placed)
        if update.changed is None or self._plan_changed is None:
            self._plan_changed = None
        else:
            self._plan_changed |= update.changed
        if update.commit != self.m.desired.head:
            self.m.trigger_fetch()  # the leader planned a commit we have not fetched
        self.m.trigger_plan()  # re-plan, to follow it

    async def _publish(self, client: KubeClient) -> None:
        """Each held shard's results and its clusters' health and nodes: written when
        they change, and at least every `REFRESH` of a Lease duration (the others' sign
        that this shard is alive). While only rows or nodes churn, at most every
        `COALESCE` seconds: a health change goes out at the next poll."""
        views = self.m.clusters.views()
        io = self._status_io
        held = self.held()
        io.forget(lambda s: s not in held, io.encoders)
        for shard in held:
            # The rows are looked at only when one of them changed (`ShardRows`): they
            # were gathered out of the fleet's and compared whole every second.
            stamp = self.rows.stamp(shard)
            news = {name: shardstatus.ClusterNews(v.health, v.unreachable_for, v.nodes)
                    for name, v in views.items() if self.shard(name) == shard}
            last = self._published.get(shard)
            now = self.clock()
            if last is not None:
                age = now - last[2]
                if age < self.duration * shardstatus.REFRESH and (
                        (last[0] == stamp and last[1] == news) or (
                        age < shardstatus.COALESCE and _healths(last[1]) == _healths(news))):
                    continue
            stamp, mine = self.rows.of(shard)
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            if shard in io.behind:  # just taken: the last holder's rows first
                stamp, mine = await self._catch_up(client, shard)
            encoder = io.encoders.setdefault(shard, shardstatus.Encoder())
            data = encoder.encode(self.identity, mine, news, at)
            await shardstatus.write(client, self.m.home.namespace, shard, data,
                                    encoder.news)
            self._published[shard] = (stamp, news, now)

    async def _catch_up(self, client: KubeClient, shard: int
                        ) -> tuple[int, Any]:
        """A shard taken while its last holder's rows were left unread (`_read_others`):
        its publication read whole and merged before this replica's first one
        replaces it, unless a row of it was written here since the last merge (this
        replica's reconciles: newer). The shard's stamp and rows then."""
        io = self._status_io
        io.behind.discard(shard)
        self.version += 1  # the status said its rows were behind
        decoder = io.decoders.get(shard)
        if decoder is not None and self.rows.untouched(shard):
            _version, data = await shardstatus.read_published(
                client, self.m.home.namespace, shard)
            io.fetches += 1
            if data is not None and self.rows.untouched(shard):  # after the await
                since = decoder.last
                try:
                    doc = shardstatus.decode_doc(data, decoder,
                                                 keep=_in_shard(self.shard, shard))
                except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
                    log.warning("shard_status_unusable", shard=shard, error=str(e))
                else:
                    io.decodes += 1
                    if doc.owner != self.identity:
                        self.rows.merge(shard, doc.live, doc, since, decoder.changed)
        return self.rows.of(shard)

    async def _read_others(self, client: KubeClient) -> None:
        """The results of the shards held elsewhere, into this replica's `live` (whose
        own reconciles never touch those clusters), and their clusters' news. `live`
        is written only where it differs: every write counts as a change to the status
        cache (`controllers.status.cache`), and an unchanged merge each poll had the
        document rebuilt every second. A publication merged already is not looked at
        again (`ShardRows.merge`). Each peer's ConfigMap is looked at by its metadata
        first (with its `shardstatus.NEWS`), and a new publication is read:

        - not at all for now when its news (owner, health, nodes) are those held and
          its rows were read less than `shardstatus.rows_late` ago: its holder is alive
          (its news stay fresh), its rows are read once that much has passed
          (`behind`). While this replica does not lead, the same when only nodes
          changed (owner, health and unreachable times held: `News.health`): its
          nodes of the others feed its status alone (placement is the leader's), so
          they are read with the rows (`nodes_behind`); once it leads, at once;
        - by its news alone (`shardstatus.parse_news`: no row parsed) when they
          changed and its rows were read less than that ago;
        - whole otherwise (an older writer's, without `NEWS`: every time), building
          only the rows that changed (`shardstatus.Decoder`).

        One that cannot be decoded (torn, or a `VERSION` this replica does not know)
        leaves what was read before: its news goes stale, its clusters Unknown,
        nothing fails over."""
        held = set(self.held())
        io = self._status_io
        behind, nodes_behind = set(io.behind), set(io.nodes_behind)
        for parts in (io.decoders, io.versions, io.digests, io.rows_read):
            # a shard taken with its rows behind keeps its parts: `_publish` reads it
            # whole first (`_catch_up`)
            io.forget(lambda s: s in held and s not in behind, parts)
        io.nodes_behind -= held
        for shard in range(self.count):
            if shard in held:
                continue
            version, news = await shardstatus.published_news(
                client, self.m.home.namespace, shard)
            io.looks += 1
            if version is None:
                continue  # none published yet
            await self._read_one(client, shard, version, news)
            last = self._read.get(shard)
            if last is not None:  # only what differs, when new
                decoder = io.decoders.get(shard)
                source = decoder.last if decoder is not None and \
                    decoder.last is not None and last[1].live is decoder.last.live \
                    else last[1]
                self.rows.merge(shard, last[1].live, source)
        if io.behind != behind or io.nodes_behind != nodes_behind:
            self.version += 1  # the status says which shards' rows are behind
        self.refresh_views()

    async def _read_one(self, client: KubeClient, shard: int, version: str,
                        news: shardstatus.News | None) -> None:
        """`shard`'s publication of `version` (its metadata said `news`), as
        `_read_others` says."""
        io = self._status_io
        last = self._read.get(shard)
        read_at = io.rows_read.get(shard)
        rows_age = None if read_at is None else self.clock() - read_at
        rows_due = last is None or rows_age is None or \
            rows_age >= shardstatus.rows_late(len(last[1].live))
        nodes_now = self.leading()  # placement's capacity: the leader's alone
        held = io.digests.get(shard)
        if version == io.versions.get(shard):
            if not (nodes_now and shard in io.nodes_behind) and (
                    shard not in io.behind or not rows_due):
                return  # nothing new, or its rows (and nodes) not due yet
        elif last is not None and not shardstatus.read_now(
                news, held, rows_age, len(last[1].live), nodes_now):
            assert news is not None and held is not None  # read_now says so
            io.versions[shard] = version
            io.behind.add(shard)
            io.deferred += 1
            if news.digest != held.digest:  # nodes alone: health and owner as held
                io.nodes_behind.add(shard)
                io.nodes_deferred += 1
            # the holder is alive, its owner and health those held: fresh, observed at
            # its `at` (its nodes, when behind, up to `rows_late` older)
            self._read[shard] = (last[0], replace(last[1], at=news.at), self.clock())
            return
        got, data, news = await shardstatus.read_with_news(
            client, self.m.home.namespace, shard)
        io.fetches += 1
        io.nodes_behind.discard(shard)  # read now (or refused: not again until written)
        if got is None or data is None:  # deleted since: as when there is none
            io.versions.pop(shard, None)
            return
        io.versions[shard] = got
        last = self._read.get(shard)  # after the await: as fresh as can be
        decoder = io.decoders.setdefault(shard, shardstatus.Decoder())
        since = decoder.last
        now = self.clock()
        if last is not None and last[0] == data:
            io.behind.discard(shard)  # the very text whose rows are held
            io.rows_read[shard] = now
            return
        by_news = not rows_due and last is not None and news is not None and \
            since is not None
        try:
            if by_news:
                assert news is not None and since is not None
                doc = decoder.decode_news(shardstatus.parse_news(data, news),
                                          _in_shard(self.shard, shard), since)
            else:  # whole, parsing only the clusters whose text changed
                doc = shardstatus.decode_published(data, news, decoder,
                                                   keep=_in_shard(self.shard, shard))
        except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
            log.warning("shard_status_unusable", shard=shard, error=str(e))
            io.rows_read[shard] = now  # not fetched again before it is written again,
            return  # nor before its rows are due again
        if news is None:
            io.digests.pop(shard, None)
        else:
            io.digests[shard] = news
        if by_news:  # the rows held stay those of the text read last
            assert last is not None
            io.news_reads += 1
            io.behind.add(shard)
            self._read[shard] = (last[0], doc, now)
            return
        io.decodes += 1
        io.rows_read[shard] = now
        io.behind.discard(shard)
        self._read[shard] = (data, doc, now)
        # only the clusters that differ from the document merged before
        self.rows.merge(shard, doc.live, doc, since, decoder.changed)

    def rows_at(self, shard: int) -> str | None:
        """When another shard's holder observed the rows held of it (its publication's
        `at`; that of a later one left unread when `behind`)."""
        decoder = self._status_io.decoders.get(shard)
        if decoder is not None and decoder.last is not None:
            return decoder.last.at
        read = self._read.get(shard)
        return read[1].at if read is not None else None

    def refresh_views(self) -> None:
        """The other shards' clusters as placement and status see them, from their
        publications as last read and the Leases' holders as last read
        (`fleet.shards.published_health`: only fresh news of the live holder counts).
        A change of what placement can see re-plans (coalesced for capacity alone)."""
        spec = self.m.desired.spec
        if spec is None:
            return
        now = self.clock()
        held = set(self.held())
        remote: dict[str, ClusterView] = {}
        news: dict[str, tuple[str | None, bool]] = {}
        for name in sorted(spec.clusters):
            shard = self.shard(name)
            if shard in held:
                continue
            read = self._read.get(shard)
            seen = read[1].views.get(ClusterName(name)) if read is not None else None
            published = None if seen is None or read is None else Published(
                _health(seen.health), seen.unreachable_for, read[1].owner)
            health, gone = published_health(
                published, holder=self.owners.get(shard),
                age=now - read[2] if read is not None else None, max_age=self.duration)
            if read is not None and seen is not None:
                news[name] = (read[1].at, news_counts(
                    read[1].owner, holder=self.owners.get(shard), age=now - read[2],
                    max_age=self.duration))
            if health == "Unknown" and seen is None:
                continue  # no view: Unknown to placement as it is
            nodes = seen.nodes if seen is not None and health in ("Healthy", "Degraded") \
                else ()
            remote[name] = ClusterView(health, gone, nodes)
        before, self.remote = self.remote, remote
        if remote != before or {n: f for n, (_at, f) in news.items()} != \
                {n: f for n, (_at, f) in self.news.items()}:
            self.version += 1
        self.news = news
        if _seen(before) != _seen(remote):
            self.m.trigger_plan()
        elif any(before[n].nodes != v.nodes for n, v in remote.items() if n in before) \
                and self._pending():
            # as for its own clusters' capacity: it can only help a Pending workload
            self.m.placement.replans.ask()

    def _pending(self) -> bool:
        return self.m.desired.anything_pending  # kept with the plan, not a scan


class _StatusIO:
    """What reading the other shards' publications and writing this replica's keep
    between polls (`Shards._read_others`, `Shards._publish`), and counts."""

    def __init__(self) -> None:
        self.versions: dict[int, str] = {}
        """Shard -> the resourceVersion of its ConfigMap as last fetched."""
        self.decoders: dict[int, shardstatus.Decoder] = {}
        self.encoders: dict[int, shardstatus.Encoder] = {}
        self.digests: dict[int, shardstatus.News] = {}
        """Shard -> the `shardstatus.News` of the news held (absent: not known, an
        older writer's)."""
        self.rows_read: dict[int, float] = {}
        """Shard -> when (monotonic) its rows held were read."""
        self.behind: set[int] = set()
        """Shards published since their rows held were read (their news are read)."""
        self.nodes_behind: set[int] = set()
        """Shards whose nodes changed since they were read, left for later while this
        replica does not lead (their owner and health are those held)."""
        self.looks = 0
        self.fetches = 0
        self.decodes = 0
        self.news_reads = 0
        self.deferred = 0
        self.nodes_deferred = 0
        """Metadata-only GETs of the other shards' ConfigMaps, full GETs (the
        resourceVersion moved), documents decoded whole (the text changed), read by
        their news alone, publications left unread for now (news unchanged, or nodes
        alone changed while not leading), and of those the ones whose nodes changed."""

    @property
    def built(self) -> int:
        """Rows built from the other shards' documents (not reused)."""
        return sum(d.built for d in self.decoders.values())

    @staticmethod
    def forget(gone: Callable[[int], bool], parts: dict[int, Any]) -> None:
        for shard in [s for s in parts if gone(s)]:
            del parts[shard]


def _in_shard(shard_of: Callable[[str], int], shard: int) -> Callable[[str], bool]:
    return lambda cluster: shard_of(cluster) == shard


def _healths(news: dict[str, shardstatus.ClusterNews]) -> dict[str, str]:
    """What of a shard's news is published at once: each cluster's health."""
    return {name: v.health for name, v in news.items()}


def _health(value: str) -> ClusterHealth:
    for h in HEALTH_STATES:
        if h == value:
            return h
    return "Unknown"


def _seen(views: dict[str, ClusterView]) -> dict[str, tuple[str, bool]]:
    """What placement distinguishes of each cluster: its health, and away or not."""
    return {n: (v.health, v.unreachable_for is not None) for n, v in views.items()}
