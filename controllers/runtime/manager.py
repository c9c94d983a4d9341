"""The Manager: Git -> placement -> apply, for every cluster of the fleet, kept there.

The Manager wires parts that each own their state, and owns only their lifecycle: one
anyio task group runs every loop, so a crash of one is a crash of all (nothing runs
half-alive) and cancellation stops everything cleanly. The parts:

- `SourceLoop` (`controllers.runtime.sourceloop`): fetch the repo every `poll_interval`
  or at once on `POST /hooks/git`, refuse a commit broken as a whole or a rollback,
  hold one whose deletions exceed the allowance, adopt an accepted one;
- `ClusterSet` (`controllers.runtime.clusterset`): one `ClusterAdapter` per Cluster file
  (informers, heartbeat), connected as Cluster files come, a removed one drained then
  disconnected; what placement sees of each cluster (`views`);
- `PlacementLoop` (`controllers.runtime.placementloop`): folds adapter changes and
  leadership into triggers (coalesced re-plans), plans (in a worker process) and
  publishes the plan: ledger records, desired state, the clusters to reconcile;
- `Leadership` (`controllers.runtime.leadership`): whether this replica may write, and
  the fence on every adapter write (`--leader-elect`, its Lease in `clusters.home`);
- `Records` (`controllers.runtime.records`): the ledger, its anchor, the events feed;
- `Rollout` (`controllers.runtime.rollout`): when a commit is applied, commit statuses;
- `DriftLog` (`controllers.runtime.driftlog`): drift reports, for status and the ledger;
- with `--shards`, `Shards` (`controllers.runtime.shards`): the shard Leases this replica
  holds; it gates the queue, fences each cluster by its shard and follows the leader's plan;
- the cluster work queue: `ClusterReconciler` per cluster key, `cluster_concurrency` at
  a time, per-key backoff; and optionally the HTTP server (`manager_io`).

Parts talk through the callables the Manager hands them (`plan`, `on_applied`, ...) and
each other's public methods; none writes another's attributes. Only a replica that may
act writes: to clusters (every Applier's `may_write`), to the ledger (`record`), commit
statuses and shared state in the home cluster (last plan, source guard). A follower
plans and serves status, nothing more.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.client import KubeClient
from clusters.home import Home
from clusters.inventory import WhereRuns
from clusters.leader import LeaderElector
from controllers.forge import CommitStatusPoster
from controllers.persist import lastplan
from controllers.runtime import busy, handover, manager_io
from controllers.runtime.clusterset import ClusterSet, connection_of
from controllers.runtime.credwatch import CredentialsWatch
from controllers.runtime.deletions import DeletionGuard
from controllers.runtime.desired import DesiredState, RenderFn
from controllers.runtime.driftlog import DriftLog
from controllers.runtime.fleetstate import ClusterView
from controllers.runtime.gctune import Settler
from controllers.runtime.leadership import Leadership
from controllers.runtime.liverows import LiveRows
from controllers.runtime.looplag import LoopLag
from controllers.runtime.placementloop import PlaceFn, PlacementLoop, default_place
from controllers.runtime.reconcile import ClusterReconciler, EventSink
from controllers.runtime.records import JOURNAL_FILE, Records
from controllers.runtime.retirement import Retirement
from controllers.runtime.rollout import Rollout
from controllers.runtime.shards import Shards
from controllers.runtime.sourceguard import SourceGuard
from controllers.runtime.sourceloop import SourceLoop
from controllers.runtime.suspension import Suspensions
from controllers.runtime.workqueue import WorkQueue
from controllers.settings import Settings, home_problem
from controllers.status.bodies import KeyedBodies
from controllers.status.cache import StatusCache, Versioned
from controllers.status.eventfeed import EventFeed
from controllers.status.metrics import ControllerMetrics
from controllers.status.observe import manager_collector
from controllers.status.statusdoc import DriftItem, PlacementLive
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan
from workloads.gitsource import Condition, GitSource

if TYPE_CHECKING:
    from controllers.persist.anchor import LedgerAnchor

__all__ = ["JOURNAL_FILE", "Manager", "PlaceFn"]  # JOURNAL_FILE: where tests look for it


def _default_render() -> RenderFn:
    from fleet.render import render
    fn: RenderFn = render
    return fn


class Manager:
    def __init__(self, settings: Settings, *, events: EventSink | None = None,
                 adapter_options: AdapterOptions | None = None,
                 place: PlaceFn | None = None, render: RenderFn | None = None,
                 startup_sync_timeout: float = 10.0, tick: float = 0.2,
                 lease_duration: float | None = None,
                 capacity_replan_every: float = 1.0,
                 settler: Settler | None = None) -> None:
        problem = home_problem(settings)
        if problem:
            raise ValueError(problem)
        self.settings = settings
        self.tick = tick
        self.lease_duration = lease_duration or settings.lease_duration
        """Seconds the leader's and the shard Leases stay valid without a renew."""
        self.metrics = ControllerMetrics()
        """Histograms and counters of `/metrics`; gauges are read at each scrape."""
        self.loop_lag = LoopLag(on_sample=self.metrics.loop_lag.observe)
        """How late this process's event loop wakes; health discounts it."""
        self.settler = settler
        """Freezes the heap after plans (`controllers.runtime.gctune`; `fleet run` gives
        one: the collector's settings are the process's, not one Manager's)."""
        self.adapter_options = busy.with_loop_lag(adapter_options or AdapterOptions(
            qps=settings.qps, burst=settings.burst, allow_exec=settings.allow_exec_plugins,
            self_heal=settings.self_heal, unreachable_after=settings.unreachable_after),
            self.loop_lag)
        self.desired = DesiredState(render or _default_render())
        self.adapters: dict[str, ClusterAdapter] = Versioned()
        """One per connected cluster; its writes are counted (`Rollout` keeps which
        clusters are done until the set changes)."""
        self.live: dict[tuple[ClusterName, WorkloadId], PlacementLive] = LiveRows()
        """What each reconcile (and, with --shards, the other shards' status) recorded;
        its writes are counted (the status cache's dirty flag), its keys indexed by
        cluster (a pass forgets its own cluster's rows without scanning the fleet's)."""
        self.home = Home(settings, self.adapters, self.adapter_options)
        """Where the Lease and shared state live (a management cluster, or a member)."""
        self.suspensions = Suspensions.load(settings.state_dir)
        """Workloads and clusters an operator suspended (`controllers.runtime.suspension`)."""
        self.feed = EventFeed()
        """What this replica saw happen, for the page and `GET /api/v1/events`."""
        self.retirement = Retirement(settings.state_dir)
        self.home_wait = startup_sync_timeout
        """How long a sync waits for the management cluster's first connection before
        a credentials Secret counts as unreadable (retried on the next poll)."""
        self.port: int | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.acting = 0
        """Operator actions under way (`manager_io._acted`, run on this loop but outside
        its task group): a stop lets its Leases go only once none is left."""
        signatures: dict[str, tuple[Any, ...]] = {}
        """Per cluster, the desired set its last pass applied (the reconciler writes it)."""

        self.records = Records(settings, events, self.feed, desired=self.desired,
                               adapters=self.adapters, may_act=self.may_act,
                               task_group=self._task_group, on_started=self._ledger_started)
        self.drift_log = DriftLog(desired=self.desired, suspensions=self.suspensions,
                                  record=self.records.record, blocked=self.records.blocked)
        self.rollout = Rollout(settings, desired=self.desired, adapters=self.adapters,
                               suspensions=self.suspensions, applied_signature=signatures,
                               metrics=self.metrics, may_act=self.may_act,
                               task_group=self._task_group, on_applied=self._applied)
        self.where_runs = WhereRuns()
        """Which clusters hold an object or a pod of each workload (every adapter
        joins it before it runs): a gang start asks only those."""
        self.reconciler = ClusterReconciler(
            self.desired, self.adapters, self.live, events, self.may_act,
            settings.resync_interval, applied_signature=signatures,
            on_done=self.rollout.cluster_done, on_failed=self.rollout.cluster_failed,
            retiring=self.retirement.names, on_retired=self._retired,
            on_timed=self.rollout.timed, blocked=self.records.blocked,
            suspended=self.suspensions, feed=self.feed, where=self.where_runs)
        self.queue: WorkQueue[str] = WorkQueue(
            "clusters", self.reconciler, concurrency=settings.cluster_concurrency)
        self.clusters = ClusterSet(
            adapters=self.adapters, options=self.adapter_options,
            allow_exec=settings.allow_exec_plugins, retirement=self.retirement,
            queue=self.queue, feed=self.feed, live=self.live, may_act=self.may_act,
            connection_of=lambda c: connection_of(settings, c),
            on_drift=self.drift_log.handler, prepare=self._prepare_adapter,
            task_group=self._task_group, home_client=self._management_client,
            namespace=self.home.namespace)
        """One adapter per Cluster file (`controllers.runtime.clusterset`)."""
        # a cluster whose connection failed (a refused twin too) is not waited for
        self.rollout.unconnectable = self.clusters.connect_errors.__contains__
        self.credentials = CredentialsWatch(
            self.clusters, home_client=self._management_client,
            spec=lambda: self.desired.spec, connection_of=self.clusters.connection_of,
            resync=lambda: self.sources.retry_connections(), every=settings.poll_interval)
        """Changed and deleted credentials Secrets (`controllers.runtime.credwatch`)."""
        self.leadership = Leadership(
            elect=settings.leader_elect, identity=settings.identity, home=self.home,
            adapters=self.adapters, holding=self._holding, blocked=self.records.blocked,
            tick=tick, lease_duration=self.lease_duration,
            prepare=lambda: handover.take_over(self), lease_liveness=settings.lease_liveness)
        """May this replica write (`controllers.runtime.leadership`)."""
        self.placement = PlacementLoop(
            settings, place or default_place(settings), desired=self.desired,
            clusters=self.clusters, queue=self.queue, applied_signature=signatures,
            records=self.records, leadership=self.leadership, home=self.home,
            feed=self.feed, metrics=self.metrics, tick=tick,
            startup_sync_timeout=startup_sync_timeout,
            capacity_replan_every=capacity_replan_every,
            on_rebuilt=self._what_runs_known, on_planned=self._planned)
        self.sources = SourceLoop(
            settings, desired=self.desired, clusters=self.clusters, records=self.records,
            home=self.home, feed=self.feed, metrics=self.metrics, may_act=self.may_act,
            post_status=self.rollout.post_status, plan=self.placement.trigger,
            knows_what_runs=self.placement.knows_what_runs, task_group=self._task_group,
            tick=tick, startup_sync_timeout=startup_sync_timeout,
            before_fetch=lambda: handover.before_fetch(self))
        self.startup_sync_timeout = startup_sync_timeout
        self.shared = handover.make(self)
        """Suspensions, holds, retirements in the home (`controllers.runtime.handover`)."""
        self.metrics.scrape_with(manager_collector(self))
        # --shards: the hooks marked "shards" are all of it (controllers.runtime.shards)
        self.shards = Shards.install(self)
        """With --shards: the shard Leases this replica holds, and what they gate."""
        # issue 22: /api/v1/status pre-serialised, rebuilt on change, in slices
        self.status_cache = StatusCache(self)
        """What `GET /api/v1/status` serves (`controllers.status.cache`)."""
        self.capacity_bodies = KeyedBodies(size=1)
        """What `GET /api/v1/capacity` serves, built once per change
        (`manager_io.capacity_body`)."""

    # ------------------------------------------------------------------ wiring

    def _task_group(self) -> anyio.abc.TaskGroup | None:
        return self._tg

    def _holding(self) -> bool:
        """The source serves a refused rollback: nothing is written from it."""
        return self.sources.source.holding

    def _ledger_started(self, ledger: EventSink) -> None:
        self.reconciler.events = ledger  # the reconciler records applies and prunes too

    def _applied(self, head: str | None) -> None:
        self.sources.applied(head)

    def _what_runs_known(self) -> None:
        self.sources.what_runs_known()

    def _planned(self) -> None:
        self.rollout.cluster_done("")  # a commit that changes nothing anywhere is applied

    def _retired(self, name: str) -> None:
        """A removed cluster runs nothing of ours any more: disconnect it."""
        if self.clusters.retired(name):
            self.rollout.cluster_done("")

    def _prepare_adapter(self, name: str, adapter: ClusterAdapter) -> None:
        """A newly connected adapter, before it runs: fenced, and told what not to heal."""
        self.leadership.wire(adapter)
        if self.shards is not None:  # shards: fenced by its shard's Lease instead
            self.shards.wire(name, adapter)
        adapter.applier.hold_heal = self.drift_log.held(name)
        adapter.join(self.where_runs)

    async def _management_client(self) -> KubeClient | None:
        """The management cluster's client for credentials Secrets, waiting a while
        for its first connection (None: not connected, or no management cluster)."""
        if not self.home.is_management:
            return None
        with anyio.move_on_after(self.home_wait):
            await self.home.connected.wait()
        return self.home.client()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, serve: bool = True, front: bool = False,
                  task_status: anyio.abc.TaskStatus[Manager] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """With `serve`, the API: from a front process (`front`, what `fleet run` does
        unless --serve-in-process: `controllers.frontproc`), else from a thread.

        Whatever started is stopped on every way out, a cancel (SIGTERM) or a failure
        while it starts included: the API is started inside the `try` (a part that
        fails halfway stops what of it started: `manager_io.start_front`)."""
        runner = None
        front_proc = None
        try:
            if serve:
                self.status_cache.prime()  # a document before the server listens: none waits
                if front:
                    front_proc = await manager_io.start_front(self)
                    self.port = front_proc.port
                else:
                    runner, self.port = await manager_io.start_server(self)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if front_proc is not None:
                    tg.start_soon(front_proc.run)  # raises FrontExited when it is gone
                tg.start_soon(self.loop_lag.run)
                tg.start_soon(busy.warm, self.placer)
                if self.settler is not None:
                    tg.start_soon(busy.settle_after_plans, self.plan_changed, self.settler)
                tg.start_soon(self.status_cache.run)  # builds /api/v1/status off requests
                tg.start_soon(self.home.connect)
                tg.start_soon(handover.keep_shared, self)
                tg.start_soon(self.sources.run)
                tg.start_soon(self.placement.run)
                tg.start_soon(self.placement.watch)
                tg.start_soon(self.queue.run)
                if self.settings.leader_elect:
                    tg.start_soon(self.leadership.run)
                if self.settings.cluster_secrets:
                    tg.start_soon(self.credentials.run)
                if self.shards is not None:  # shards
                    tg.start_soon(self.shards.run)
                run_events = getattr(self.events, "run", None)
                if run_events is not None:
                    tg.start_soon(run_events)
                task_status.started(self)
        finally:
            with anyio.CancelScope(shield=True):
                # Every task of the group has ended; then each adapter's drift heals,
                # then the API (an operator action under way is cancelled with its
                # request): only after the last write are the Leases let go, before
                # the placement worker is (it writes nothing; its end takes a second
                # or two, which the others need not wait for).
                for adapter in list(self.adapters.values()):
                    await adapter.aclose()
                if runner is not None:
                    await anyio.to_thread.run_sync(runner.stop)
                if front_proc is not None:
                    await front_proc.aclose()
                await self.leadership.release(writing=lambda: self.acting > 0)
                await self.home.aclose()
                await busy.aclose(self.placer)  # no worker process left behind

    # ------------------------------------------------------------------ the face

    def status(self) -> dict[str, Any]:
        """The document built now (with --shards, annotated: `fleetdoc.head`)."""
        return manager_io.status(self)

    def capacity_json(self) -> dict[str, Any]:
        return manager_io.capacity_json(self)

    def metrics_text(self) -> str:
        return manager_io.metrics_text(self)

    def ready(self) -> tuple[bool, str]:
        return manager_io.ready(self)

    def trigger_fetch(self) -> None:
        self.sources.trigger()

    def trigger_plan(self) -> None:
        self.placement.trigger()

    async def fetch_once(self) -> None:
        await self.sources.fetch_once()

    async def replan(self) -> Plan:
        return await self.placement.replan()

    async def keep_guard(self) -> None:
        await self.sources.keep_guard()

    def views(self) -> dict[str, ClusterView]:
        return self.placement.views()

    def may_act(self) -> bool:
        return self.leadership.may_act()

    def record(self, event: Any, workload: str, **fields: Any) -> None:
        self.records.record(event, workload, **fields)

    def ledger_problem(self) -> tuple[str, str] | None:
        return self.records.problem()

    def blocked(self) -> str | None:
        return self.records.blocked()

    # read-only views of the parts' state, for status, metrics and tests

    @property
    def events(self) -> EventSink | None:
        return self.records.events

    @property
    def anchor(self) -> LedgerAnchor | None:
        return self.records.anchor

    @property
    def source(self) -> GitSource:
        return self.sources.source

    @property
    def guard(self) -> SourceGuard:
        return self.sources.guard

    @property
    def deletions(self) -> DeletionGuard:
        return self.sources.deletions

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return self.sources.conditions

    @property
    def commits_accepted(self) -> int:
        return self.sources.commits_accepted

    @property
    def placer(self) -> PlaceFn:
        return self.placement.placer

    @property
    def replans(self) -> busy.Replans:
        return self.placement.replans

    @property
    def snapshot(self) -> CapacitySnapshot:
        return self.placement.snapshot

    @property
    def placement_durations(self) -> list[float]:
        return self.placement.placement_durations

    @property
    def last_placement_seconds(self) -> float:
        return self.placement.last_placement_seconds

    @property
    def plan_changed(self) -> asyncio.Condition:
        return self.placement.plan_changed

    @property
    def last_plan(self) -> lastplan.LastPlan:
        return self.placement.last_plan

    @property
    def applied_commit(self) -> str | None:
        return self.rollout.applied_commit

    @property
    def forge_status(self) -> CommitStatusPoster | None:
        return self.rollout.forge_status

    @property
    def drift(self) -> list[DriftItem]:
        return self.drift_log.items

    @property
    def retiring(self) -> set[str]:
        """Clusters removed from the repo whose objects are being deleted."""
        return self.retirement.names

    @property
    def connect_errors(self) -> dict[str, str]:
        return self.clusters.connect_errors

    @property
    def twins(self) -> dict[str, tuple[str, ...]]:
        return self.clusters.twins

    @property
    def elector(self) -> LeaderElector | None:
        return self.leadership.elector
