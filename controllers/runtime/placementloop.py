"""The placement loop: when to re-plan, the plan, and what follows from it.

A Manager-owned part with two loops:

- `watch`: folds what the adapters learn (capacity version, health, listed or not) and
  leadership gained into triggers -- a cluster reconcile, a re-plan. A new cluster, one
  that listed, and leadership re-plan at once; a health change that placement can see
  (reachable or not) and capacity changes (every pod start moves it; they matter only
  while a workload is Pending) ask for one, and those asks are coalesced into at most one
  re-plan per window of five times the last placement's cost (`busy.Replans` counts
  them): a controller busy enough to see health flap does not also re-plan per flap.
- `run`: on each trigger, `replan`: snapshot -> `place` (in a worker process,
  `controllers.runtime.placerproc`: it is pure and CPU-bound, and a thread would hold the
  GIL the event loop needs) -> publish: ledger records of what the plan decides
  differently, the desired state's plan, the clusters whose desired set changed queued,
  the last plan saved, `plan_changed` notified.

The first plan of a process, and the first at each new leadership, is a rebuild: it
waits for every cluster's informers to list (bounded), then takes the previous plan from
what runs (`previous_from_live`), so it moves nothing, and each workload keeps the
source commit its live objects carry when the intent is unchanged: a restart applies
nothing twice. For a cluster that is down at that moment, the previous plan comes from
the last plan's placements, saved in the state directory after every plan
(`controllers.persist.lastplan`): its workloads wait out the failover grace as they would
have without the restart.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

import anyio
import structlog

from clusters.home import Home
from controllers.persist import lastplan
from controllers.persist.sharedplan import SharedPlan
from controllers.runtime import busy
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.desired import DesiredState
from controllers.runtime.fleetstate import ClusterView, capacity_snapshot, previous_from_live
from controllers.runtime.leadership import Leadership
from controllers.runtime.reconcile import live_intent
from controllers.runtime.records import Records
from controllers.runtime.workqueue import WorkQueue
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from controllers.status.metrics import ControllerMetrics
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.render import workload_id_of_label, workload_label
from fleet.safety import previous_with_returned, returned_clusters
from fleet.spec import FleetSpec

log = structlog.get_logger()

PlaceFn = Any
"""`fleet.placement.place(spec, capacity, previous, *, commit=) -> Plan`, a
`controllers.runtime.replanner.Replanner`, or a
`controllers.runtime.placerproc.ProcessPlacer` (the default)."""


def default_place(settings: Settings) -> PlaceFn:
    # a full plan, or an incremental one when only workloads changed; in a worker
    # process unless told otherwise, so a big plan never starves the event loop
    if settings.placement_process:
        from controllers.runtime.placerproc import ProcessPlacer
        return ProcessPlacer()
    from controllers.runtime.replanner import Replanner
    return Replanner()


class PlacementLoop:
    def __init__(self, settings: Settings, placer: PlaceFn, *, desired: DesiredState,
                 clusters: ClusterSet, queue: WorkQueue[str],
                 applied_signature: Mapping[str, object], records: Records,
                 leadership: Leadership, home: Home, feed: EventFeed,
                 metrics: ControllerMetrics, tick: float, startup_sync_timeout: float,
                 capacity_replan_every: float, on_rebuilt: Callable[[], None],
                 on_planned: Callable[[], None]) -> None:
        self.settings = settings
        self.placer = placer
        self.desired = desired
        self.clusters = clusters
        self.queue = queue
        self.applied_signature = applied_signature
        self.records = records
        self.leadership = leadership
        self.feed = feed
        self.metrics = metrics
        self.tick = tick
        self.startup_sync_timeout = startup_sync_timeout
        self.capacity_replan_every = capacity_replan_every
        self.on_rebuilt = on_rebuilt
        """Told after a rebuild: what runs is known now."""
        self.on_planned = on_planned
        """Told after each plan is published (a commit that changes nothing is applied)."""
        self.replans = busy.Replans()
        """Re-plans asked by capacity and health changes: planned, coalesced, skipped."""
        self.snapshot = CapacitySnapshot({})
        """The capacity the last plan saw."""
        self.placement_durations: list[float] = []
        self.placements_made = 0
        """Plans this replica placed itself (not borrowed from the leader's)."""
        self.last_placement_seconds = 0.0
        self.plan_changed = asyncio.Condition()
        """Notified after each plan."""
        self.last_plan = lastplan.LastPlan(settings.state_dir, SharedPlan(
            home.client, leadership.may_act, home.namespace))
        self._wake = asyncio.Event()
        self._from_live = True
        """The next plan rebuilds the previous plan from what runs."""
        self._ledger_reconciled = False
        """The ledger was compared with what runs once, as leader (`Records.reconcile`)."""
        self.follow: Callable[[Plan], Plan] = lambda plan: plan
        """With --shards: the plan this replica writes, the leader's placements over its
        own (`controllers.runtime.shards.Shards.follow`)."""
        self.other_views: Callable[[], Mapping[str, ClusterView]] = dict
        """With --shards: the clusters of shards held elsewhere, as their holders
        published them (`Shards.views`; a silent shard's are Unknown); this replica's
        own adapters' views win over them."""
        self.borrow: Callable[[FleetSpec, CapacitySnapshot, str | None], Plan | None] = \
            lambda _spec, _capacity, _commit: None
        """With --shards, a replica that does not lead places nothing: the plan it
        writes is made of the leader's published placements (`Shards.borrow`); None:
        place here."""
        self.borrowed_changes: Callable[[Plan | None, Plan], Collection[WorkloadId] | None] \
            = lambda _old, _new: None
        """The decisions a borrowed plan changed from the one before (`Shards.changes`),
        as the placer's `changes` says of a plan it placed."""
        self.following: Callable[[], bool] = lambda: True
        """With --shards: this replica's plan is its own or follows the leader's
        published plan of its commit (`Shards.following_leader`); False while it is a
        stand-in, whose decisions are not recorded (`_record`)."""
        self._recorded: Plan | None = None
        """The last plan whose decisions were recorded."""
        self._held_live: PreviousPlan | None = None
        """What ran at a rebuild whose plan was not recorded: the next recorded plan is
        diffed against it."""
        self.records_held = 0
        """Plans whose decisions were not recorded (stand-ins for the leader's)."""
        self.stale = StaleCopies(desired)
        """Each connected cluster's stale copies at the last plan (`_enqueue_changed`)."""
        self.unseen: Callable[[], list[str]] = list
        """With --shards: clusters a rebuild waits for (bounded) before it plans:
        of shards held here but not connected yet, or held elsewhere without news yet
        (`Shards.unseen`)."""
        self.readying: Callable[[str], bool] = lambda _name: False
        """With --shards: a cluster connected only because its shard is about to be
        taken here (`Shards.readying`). Placement goes on seeing it through its holder's
        news (`views`), so its connecting and listing re-plan nothing (issue 22: each
        was an urgent re-plan, and the take waited behind them); the take does, once."""
        self.deferred = 0
        """`readying` clusters whose connecting and listing re-planned nothing."""
        self._deferred: set[str] = set()

    def trigger(self) -> None:
        self._wake.set()

    def knows_what_runs(self) -> bool:
        """A plan was made since what runs was last rebuilt from the clusters."""
        return not self._from_live and self.desired.plan is not None

    # ------------------------------------------------------------------ triggers

    async def watch(self) -> None:
        """Adapter changes and leadership -> triggers (see the module's docstring)."""
        seen: dict[str, tuple[Any, ...]] = {}
        known: dict[str, weakref.ref[Any]] = {}
        """The adapter each `seen` entry is of: a reconnected cluster (its credentials
        Secret changed) is a new adapter, listed afresh, so it counts as new. Weakly:
        a disconnected adapter is not kept alive until the next tick."""
        last_plan = time.monotonic()
        capacity_dirty = False
        adapters = self.clusters.adapters
        while True:
            await anyio.sleep(self.tick)
            urgent, capacity_changed = self._fold(seen, known)
            capacity_dirty = capacity_dirty or capacity_changed
            if self.leadership.newly_leading():
                self._from_live = True
                urgent = True
                for name in adapters:
                    self.queue.add(name)
            unreachable = any(a.health_state == "Unreachable" for a in adapters.values()) \
                or any(v.health == "Unreachable" for v in self.other_views().values())
            since = time.monotonic() - last_plan
            # Capacity alone can only help workloads still Pending; and a re-plan costs
            # CPU that apply and the informers need, so space them by its own cost.
            pending = self.desired.anything_pending  # kept with the plan, not a scan
            if capacity_dirty and pending:
                capacity_dirty = False
                self.replans.ask()
            spacing = max(self.capacity_replan_every, 5 * self.last_placement_seconds)
            if urgent or since >= self.settings.resync_interval or (
                    (unreachable or self.replans.waiting) and since >= spacing):
                last_plan = time.monotonic()
                capacity_dirty = False
                self.replans.planned()
                self.trigger()

    def _fold(self, seen: dict[str, tuple[Any, ...]], known: dict[str, weakref.ref[Any]]
              ) -> tuple[bool, bool]:
        """One look at every adapter (see `watch`): whether one connected or listed
        (urgent), and whether a capacity changed. A function of its own, so that no
        local of `watch` (a loop variable) holds an adapter while it sleeps: one let go
        (a shard handed over) is freed at once, its informers and caches with it."""
        urgent = capacity_changed = False
        adapters = self.clusters.adapters
        skipped = 0
        for name, a in list(adapters.items()):
            if self.readying(name):
                # Not noted: once its shard is taken it is new here, and re-plans then
                # (all of a shard's in the same tick, so once).
                skipped += 1
                seen.pop(name, None)
                known.pop(name, None)
                if name not in self._deferred:
                    self._deferred.add(name)
                    self.deferred += 1
                continue
            state = (a.capacity_version, a.health_state, a.synced.is_set())
            was = known.get(name)
            before = seen.get(name) if was is not None and was() is a else None
            seen[name], known[name] = state, weakref.ref(a)
            if before == state:
                continue
            if before is None or before[1:] != state[1:]:
                self.queue.add(name)
            if before is None or before[2] != state[2]:
                urgent = True
            elif before[1] != state[1]:
                self._health_changed(name, str(before[1]), str(state[1]))
                if busy.matters_to_placement(str(before[1]), str(state[1])):
                    self.replans.ask()
                else:
                    self.replans.skip()
            if before is not None and before[0] != state[0]:
                capacity_changed = True
        self._deferred = {n for n in self._deferred if n in adapters and self.readying(n)}
        if len(known) > len(adapters) - skipped:
            # Disconnected (a shard let go, a cluster retired or refused): forgotten
            # (issue 22: a replica's memory followed every cluster it ever held).
            # Every connected one was just noted, so only gone ones are extra.
            for name in [n for n in known if n not in adapters]:
                del known[name], seen[name]
        return urgent, capacity_changed

    def _health_changed(self, name: str, was: str, now: str) -> None:
        """A cluster's health change, into the events feed (with the failover grace the
        page counts down when it went Unreachable)."""
        self.replans.health_changed(name, now)
        why = f"was {was}"
        if now == "Unreachable":
            grace = self.settings.failover_grace
            why += ("; no answer; its workloads fail over "
                    + (f"{grace:g} s after the first unanswered request" if grace is not None
                       else "after each one's unreachable toleration"))
        self.feed.note(f"Cluster{now}", cluster=name, reason=why,
                       acting=self.leadership.may_act())

    # ------------------------------------------------------------------ the plan

    def views(self) -> dict[str, ClusterView]:
        """Every cluster placement can see: the other shards' published views under
        this replica's own -- but those it is only `readying`, seen as before."""
        return {**self.other_views(), **{n: v for n, v in self.clusters.views().items()
                                         if not self.readying(n)}}

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.desired.spec is None:
                continue
            try:
                await self.replan()
                failures = 0
            except Exception as e:  # noqa: BLE001 - the loop driver: retry, never die
                failures += 1
                delay = min(30.0, 0.5 * 2 ** (failures - 1))
                log.error("placement_failed", error=f"{type(e).__name__}: {e}",
                          attempt=failures, retry_in=delay)
                await anyio.sleep(delay)
                self.trigger()
            await anyio.sleep(self.tick / 2)  # coalesce bursts of capacity events

    def _expected(self) -> list[str]:
        spec = self.desired.spec
        return [] if spec is None else [str(n) for n in spec.clusters]

    async def _wait_seen(self) -> None:
        """Until every connected cluster listed (or is Unreachable), and, for at most
        `startup_sync_timeout`, until no cluster is `unseen`: a plan on a partial view
        holds what it cannot see, but places nothing new there."""
        waited = 0.0
        while True:
            await self.clusters.wait_listed(tick=self.tick,
                                            say_every=self.startup_sync_timeout,
                                            expected=self._expected)
            unseen = self.unseen()
            if not unseen or waited >= self.startup_sync_timeout:
                if unseen:
                    log.warning("planning_without_news", clusters=unseen)
                return
            await anyio.sleep(self.tick)
            waited += self.tick

    async def _previous(self, rebuild: bool, snapshot: CapacitySnapshot) -> PreviousPlan:
        spec = self.desired.spec
        assert spec is not None
        if rebuild:
            live = self.clusters.live_workloads()
            # For a cluster that did not list (down), the last plan says what ran there.
            previous: PreviousPlan = await self.last_plan.restore(
                previous_from_live(spec.clusters, live), listed=set(live),
                clusters=set(spec.clusters))
            return prefer_last_plan(previous, self.desired.plan)
        old = self.desired.plan
        # the placer's own, when it keeps them (made from the plan before's): the same
        # object tells it the previous plan is its last plan's placements
        placements_of = getattr(self.placer, "placements", placements)
        previous = {} if old is None else placements_of(old)
        back = returned_clusters(self.desired.plan_saw or {}, {
            n: c.health for n, c in snapshot.clusters.items()})
        if old is not None and self.desired.plan_saw is not None and back:
            # Back from away: what still runs there counts as running (stickiness),
            # so this plan keeps it there where the rules allow, not a plan that
            # could not see it (its reconcile waits for this plan).
            live = self.clusters.live_workloads(lambda n: ClusterName(n) in back)
            previous = previous_with_returned(
                previous, old.workloads, previous_from_live(spec.clusters, live))
            log.info("clusters_returned", clusters=sorted(back))
        return previous

    async def replan(self) -> Plan:
        spec, head = self.desired.spec, self.desired.head
        assert spec is not None
        rebuild = self._from_live
        if rebuild:
            await self._wait_seen()
        snapshot = capacity_snapshot(spec.clusters, self.views(),
                                     self.settings.failover_grace)
        previous = await self._previous(rebuild, snapshot)
        started = time.perf_counter()
        plan = self.borrow(spec, snapshot, head)
        borrowed = plan is not None
        if plan is None:
            self.placements_made += 1
            plan = self.follow(await busy.place(self.placer, spec, snapshot, previous, head))
        elapsed = time.perf_counter() - started
        self.placement_durations.append(elapsed)
        self.metrics.placement.observe(elapsed)
        self.last_placement_seconds = elapsed
        del self.placement_durations[:-1000]
        self.snapshot = snapshot
        if (rebuild or not self._ledger_reconciled) and self.settings.ledger and \
                self.records.events is not None and self.leadership.may_act():
            # Before this plan's decisions: what a stopped process (or a leader that
            # lost its Lease while acting) left open is closed, or recorded, first, by
            # what the clusters show now. At start and at each new leadership.
            self._ledger_reconciled = await self.records.reconcile(previous)
        # The decisions `plan` changed from the plan it was laid over, when the placer
        # knows (a `PlanDelta`): what follows from the plan is updated for them alone.
        changes = self.borrowed_changes if borrowed else getattr(self.placer, "changes", None)
        base = self.desired.plan
        changed = changes(base, plan) if changes is not None else None
        # Else (a plan borrowed from the leader's, or its placements laid over this
        # replica's own: 3 replicas of 4 with --shards) the decisions that are not the
        # last plan's very objects: one pass of identity checks instead of the
        # fleet-sized passes below (issue 22).
        delta = changed if changed is not None else replaced(base, plan)
        self._record(plan, previous if rebuild else None, delta)
        self.desired.set_plan(plan, delta)
        self.desired.plan_saw = {n: c.health for n, c in snapshot.clusters.items()}
        if rebuild:
            self._from_live = False
            self.on_rebuilt()
            self._adopt_live_commits()
        self._enqueue_changed(base, delta)
        self.on_planned()
        counts = self.desired.status_counts()  # kept with the plan: no pass over it
        log.info("placement_reconciled", commit=head, seconds=round(elapsed, 3),
                 from_live=rebuild, **{k.lower(): v for k, v in sorted(counts.items())})
        async with self.plan_changed:
            self.plan_changed.notify_all()
        await self.last_plan.save(plan, head, changed=changed, base=base)
        return plan

    def _record(self, plan: Plan, live: PreviousPlan | None,
                changed: Collection[WorkloadId] | None = None) -> None:
        """The plan's decisions into the log, the events feed and the ledger, diffed
        against the last plan recorded. Not while this replica's plan is only a stand-in
        for a leader's not published yet (`following` False: all Pending, "not placed
        by the leader's plan"): at 50,000 workloads that was 50,000 `workload_pending`
        warnings and records per replica at every start, none of them a decision; the
        first plan that follows the leader's is diffed against what ran then."""
        if not self.following():
            if live is not None:
                self._held_live = live
            self.records_held += 1
            return
        if live is None:
            live, self._held_live = self._held_live, None
        if self._recorded is not self.desired.plan:
            changed = None  # `changed` is against the desired plan, not the one recorded
        self.records.plan_events(self._recorded, plan, live, changed)
        self._recorded = plan

    def _adopt_live_commits(self) -> None:
        found: dict[WorkloadId, tuple[str, str | None]] = {}
        for a in self.clusters.adapters.values():
            for label, lp in a.live_workloads().items():
                if lp.commit:
                    found.setdefault(workload_id_of_label(label),
                                     (lp.commit, live_intent(a, label)))
        kept = self.desired.adopt_live(found)
        log.info("state_rebuilt_from_clusters", workloads=len(found), commits_kept=kept)

    def _enqueue_changed(self, base: Plan | None = None,
                         changed: Collection[WorkloadId] | None = None) -> None:
        """Every connected cluster whose signature is not the one applied, or that holds
        a copy the plan now makes stale. A signature the plan did not change is the
        very object applied (`DesiredState.signature` keeps it), so it is compared by
        identity first, not element by element; the stale copies are worked out for
        the decisions `changed` from `base` alone where what runs there is as it was
        (`StaleCopies`)."""
        adapters = self.clusters.adapters
        self.stale.forget(adapters)
        for name, a in adapters.items():
            cluster = ClusterName(name)
            sig = self.desired.signature(cluster)
            applied = self.applied_signature.get(name)
            if (applied is not sig and applied != sig) or \
                    self.stale.on(cluster, a.live_workloads(), base, changed):
                self.queue.add(name)


class StaleCopies:
    """`DesiredState.stale_on(cluster, live)` of each cluster at each plan, kept with
    what it was made of (the plan, what ran there). A pure function of the decisions of
    the workloads that run there, so when only `changed` decisions differ from the plan
    it was made for and the same workloads run there, only those that run there are
    looked at again: O(changed) per cluster, not O(what runs there). Anything else
    (another plan, other workloads running, no changes known) is a whole pass."""

    def __init__(self, desired: DesiredState) -> None:
        self.desired = desired
        self._kept: dict[str, tuple[Plan, frozenset[str], frozenset[str]]] = {}
        self.passes = 0
        """Whole passes made (tests count them)."""

    def on(self, cluster: ClusterName, live: Mapping[str, Any], base: Plan | None,
           changed: Collection[WorkloadId] | None) -> frozenset[str]:
        """The stale copies here under the desired plan; `live`: what runs here, by
        label (its labels are kept, as they are now, to compare with the next)."""
        plan = self.desired.plan
        if plan is None:
            self._kept.pop(cluster, None)
            return frozenset()
        kept = self._kept.get(cluster)
        if kept is not None and changed is not None and kept[0] is base and \
                len(changed) < len(live) and kept[1] == live.keys():
            labels = {workload_label(w) for w in changed}
            again = [label for label in labels if label in live]
            out = (kept[2] - labels) | self.desired.stale_on(cluster, again)
        else:
            self.passes += 1
            out = frozenset(self.desired.stale_on(cluster, live))
        self._kept[cluster] = (plan, frozenset(live), frozenset(out))
        return frozenset(out)

    def forget(self, connected: Mapping[str, Any]) -> None:
        """Clusters no longer connected (a shard let go) are not kept."""
        if len(self._kept) > len(connected):
            for name in [n for n in self._kept if n not in connected]:
                del self._kept[name]


def replaced(old: Plan | None, new: Plan) -> frozenset[WorkloadId] | None:
    """The workloads whose decision in `new` is not `old`'s very object, when both plans
    hold the same workloads (else None: not known as a change of some decisions). What
    `DesiredState.set_plan` and `Records.plan_events` take as `changed`: each other
    decision is the same object, as their precondition asks. A plan that shares nothing
    with `old` gives every workload, which they handle as a whole pass would."""
    if old is None or len(old.workloads) != len(new.workloads):
        return None
    before = old.workloads
    get = before.get
    out: list[WorkloadId] = []
    for wid, wp in new.workloads.items():
        if get(wid) is not wp:
            if wid not in before:
                return None
            out.append(wid)
    return frozenset(out)


def prefer_last_plan(from_live: PreviousPlan, last: Plan | None) -> PreviousPlan:
    """What runs, as the previous plan of a rebuild (a new leadership), except where this
    process's last plan placed a workload on clusters that all run it while it also runs
    elsewhere: a failover made while its old cluster was away, before it returned. Then
    the failover's target is where it runs, and the copy on the returned cluster is the
    stale one (deleted first), never the other way round: a gang that failed over is not
    moved back and restarted a second time."""
    if last is None:
        return from_live
    out = dict(from_live)
    for wid, running in from_live.items():
        wp = last.workloads.get(wid)
        if wp is None or wp.status != "Placed" or not wp.assignments:
            continue
        there = {a.cluster for a in running}
        planned = {a.cluster for a in wp.assignments}
        if planned < there:  # runs where planned, and on more clusters besides
            out[wid] = wp.assignments
    return out
