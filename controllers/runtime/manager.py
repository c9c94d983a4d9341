"""The Manager: Git -> placement -> apply, for every cluster of the fleet, kept there.

One anyio task group owns every loop, so a crash of one is a crash of all (nothing runs
half-alive) and cancellation stops everything cleanly:

- source: fetch the repo every `poll_interval` or at once on `POST /hooks/git`; a new
  accepted commit updates the desired state (only workloads whose document changed get
  a new source commit) and connects cluster adapters as Cluster files come; a removed
  Cluster file's cluster is drained (what we run there deleted), then disconnected;
- adapters: one `ClusterAdapter.run()` per cluster (informers, heartbeat);
- watch: folds adapter changes (capacity version, health, sync) into triggers: a
  re-plan, a cluster reconcile;
- placement: on a new commit, a capacity or health change, while a cluster is
  Unreachable (its failover grace runs out) and on every resync: snapshot -> `place` (in a
  worker process, `controllers.runtime.placerproc`: it is pure and CPU-bound, and a
  thread would hold the GIL the event loop needs) -> enqueue the clusters whose desired set
  changed;
- the cluster work queue: `ClusterReconciler` per cluster key, `cluster_concurrency` at
  a time, per-key backoff;
- optionally the leader elector (`--leader-elect`, its Lease in the home cluster:
  `clusters.home`) and the HTTP server.

Only a replica that may act writes: to clusters (every Applier's `may_write`), to the
ledger (`record`), commit statuses (`_post_status`) and shared state in the home
cluster (last plan, source guard). A follower plans and serves status, nothing more.

Restart safety: the first plan of a process waits for every cluster's informers to list
(bounded), then takes the previous plan from what runs (`previous_from_live`), so it
moves nothing, and each workload keeps the source commit its live objects carry when
the intent is unchanged: a restart applies nothing twice. For a cluster that is down
at that moment, the previous plan comes from the last plan's placements, saved in the
state directory after every plan (`controllers.persist.lastplan`): its workloads wait out the
failover grace as they would have without the restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.apply import DriftReport
from clusters.client import KubeClient
from clusters.home import Home
from clusters.leader import LeaderElector
from controllers.forge import CommitStatusPoster, StatusState
from controllers.gitcreds import git_auth
from controllers.persist import lastplan
from controllers.persist.sharedplan import SharedPlan
from controllers.runtime import busy, manager_io, sourceguard, triggers
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.deletions import DeletionGuard
from controllers.runtime.desired import DesiredState, RenderFn
from controllers.runtime.fleetstate import (
    ClusterView,
    capacity_snapshot,
    previous_from_live,
)
from controllers.runtime.gctune import Settler
from controllers.runtime.leadership import Leadership
from controllers.runtime.looplag import LoopLag
from controllers.runtime.reconcile import ClusterReconciler, EventSink, live_intent
from controllers.runtime.retirement import Retirement
from controllers.runtime.sourceguard import Guard, SourceGuard
from controllers.runtime.suspension import Suspensions
from controllers.runtime.workqueue import WorkQueue
from controllers.settings import Settings, home_problem
from controllers.status.cache import StatusCache, Versioned
from controllers.status.eventfeed import EventFeed
from controllers.status.metrics import ControllerMetrics
from controllers.status.observe import manager_collector
from controllers.status.statusdoc import DriftItem, PlacementLive
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.render import workload_id_of_label
from fleet.safety import (
    DeletionLimits,
    allowances,
    previous_with_returned,
    returned_clusters,
)
from fleet.spec import FleetSpec
from workloads.gitsource import Condition, GitSource
from workloads.loader import Snapshot
from workloads.signatures import SignatureVerifier

if TYPE_CHECKING:
    from controllers.persist.anchor import LedgerAnchor

log = structlog.get_logger()

JOURNAL_FILE = "ledger-journal.jsonl"
"""In the state dir: ledger entries and apply intents not yet known to be written."""

PlaceFn = Any
"""`fleet.placement.place(spec, capacity, previous, *, commit=) -> Plan`, a
`controllers.runtime.replanner.Replanner`, or a
`controllers.runtime.placerproc.ProcessPlacer` (the default)."""


def _default_place(settings: Settings) -> PlaceFn:
    # a full plan, or an incremental one when only workloads changed; in a worker
    # process unless told otherwise, so a big plan never starves the event loop
    if settings.placement_process:
        from controllers.runtime.placerproc import ProcessPlacer
        return ProcessPlacer()
    from controllers.runtime.replanner import Replanner
    return Replanner()


def _default_render() -> RenderFn:
    from fleet.render import render
    fn: RenderFn = render
    return fn


class Manager:
    def __init__(self, settings: Settings, *, events: EventSink | None = None,
                 adapter_options: AdapterOptions | None = None,
                 place: PlaceFn | None = None, render: RenderFn | None = None,
                 startup_sync_timeout: float = 10.0, tick: float = 0.2,
                 lease_duration: float = 15.0, capacity_replan_every: float = 1.0,
                 settler: Settler | None = None) -> None:
        problem = home_problem(settings)
        if problem:
            raise ValueError(problem)
        self.settings = settings
        self.events = events
        self.anchor: LedgerAnchor | None = None
        """With --ledger-anchor: what pushes the ledger's head to the anchor."""
        self.metrics = ControllerMetrics()
        """Histograms and counters of `/metrics`; gauges are read at each scrape."""
        self.replans = busy.Replans()
        """Re-plans asked by capacity and health changes: planned, coalesced, skipped."""
        self.loop_lag = LoopLag(on_sample=self.metrics.loop_lag.observe)
        """How late this process's event loop wakes; health discounts it."""
        self.settler = settler
        """Freezes the heap after plans (`controllers.runtime.gctune`; `fleet run` gives
        one: the collector's settings are the process's, not one Manager's)."""
        self.adapter_options = busy.with_loop_lag(adapter_options or AdapterOptions(
            qps=settings.qps, burst=settings.burst, allow_exec=settings.allow_exec_plugins,
            self_heal=settings.self_heal, unreachable_after=settings.unreachable_after),
            self.loop_lag)
        self.placer = place or _default_place(settings)
        self.source = GitSource(settings.repo, settings.branch, settings.state_dir,
                                subdir=settings.subdir,
                                allow_non_fast_forward=settings.allow_non_fast_forward,
                                verifier=_verifier(settings),
                                credentials=git_auth(settings))
        self.desired = DesiredState(render or _default_render())
        self.adapters: dict[str, ClusterAdapter] = {}
        self.retirement = Retirement(settings.state_dir)
        self.deletions = DeletionGuard(settings.state_dir, DeletionLimits(
            max_retire_per_commit=settings.max_retire_per_commit,
            max_deletion_fraction=settings.max_deletion_fraction))
        """Commits whose deletions wait for an allowance (`fleet.safety`)."""
        self.retiring = self.retirement.names
        """Clusters removed from the repo whose objects are being deleted."""
        self.live: dict[tuple[ClusterName, WorkloadId], PlacementLive] = Versioned()
        """What each reconcile recorded; its writes are counted (the status cache's
        dirty flag)."""
        self.drift: list[DriftItem] = []
        self.home = Home(settings, self.adapters, self.adapter_options)
        self.suspensions = Suspensions.load(settings.state_dir)
        """Workloads and clusters an operator suspended (`controllers.runtime.suspension`)."""
        """Where the Lease and shared state live (a management cluster, or a member)."""
        self.reconciler = ClusterReconciler(
            self.desired, self.adapters, self.live, events, self.may_act,
            settings.resync_interval, on_done=self._cluster_done,
            on_failed=self._cluster_failed, retiring=self.retiring, on_retired=self._retired,
            on_timed=self._timed, blocked=self.blocked,
            suspended=self.suspensions)
        self.feed = EventFeed()
        """What this replica saw happen, for the page and `GET /api/v1/events`."""
        self.reconciler.feed = self.feed
        self.queue: WorkQueue[str] = WorkQueue(
            "clusters", self.reconciler, concurrency=settings.cluster_concurrency)
        self.snapshot = CapacitySnapshot({})
        self.conditions: tuple[Condition, ...] = ()
        self.applied_commit: str | None = None
        self.forge_status = _forge_status(settings)
        """Commit statuses per cluster on the forge (`--forge`), or None."""
        self._apply_failures: dict[tuple[str, str], int] = {}
        """(head, cluster) -> failed applies in a row, for the commit status."""
        self._unverified_reported: str | None = None
        """The head refused for its signature last reported (ledger, forge, metric)."""
        self.commits_accepted = 0
        self.placement_durations: list[float] = []
        self.metrics.scrape_with(manager_collector(self))
        # issue 22: /api/v1/status pre-serialised, rebuilt on change, in slices
        self.status_cache = StatusCache(self)
        self.clusters = ClusterSet(
            adapters=self.adapters, options=self.adapter_options,
            allow_exec=settings.allow_exec_plugins, retirement=self.retirement,
            queue=self.queue, feed=self.feed, live=self.live, may_act=self.may_act,
            connection_of=lambda c: manager_io.connection_of(self, c),
            on_drift=self._drift_handler, prepare=self._prepare_adapter,
            task_group=lambda: self._tg, home_client=self._management_client,
            namespace=self.home.namespace)
        """One adapter per Cluster file (`controllers.runtime.clusterset`)."""
        self.leadership = Leadership(
            elect=settings.leader_elect, identity=settings.identity, home=self.home,
            adapters=self.adapters, holding=lambda: self.source.holding,
            blocked=self.blocked, tick=tick, lease_duration=lease_duration)
        """May this replica write (`controllers.runtime.leadership`)."""
        self.startup_sync_timeout = startup_sync_timeout
        self.home_wait = startup_sync_timeout
        """How long a sync waits for the management cluster's first connection before
        a credentials Secret counts as unreadable (retried on the next poll)."""
        self.tick = tick
        self.lease_duration = lease_duration
        self.capacity_replan_every = capacity_replan_every
        self.last_placement_seconds = 0.0
        self._rebuild_previous = True
        self.last_plan = lastplan.LastPlan(settings.state_dir, SharedPlan(
            self.home.client, self.may_act, self.home.namespace))
        self.guard = SourceGuard(settings.state_dir, self.home.client, self.may_act,
                                 self.home.namespace)
        kept = self.guard.load()
        self.source.applied, self.source.refused = kept.applied, kept.refused
        self._guard_lock = asyncio.Lock()
        self.late_guard_read = False
        """With a member as home: the shared guard was read once that member connected."""
        self._tg: anyio.abc.TaskGroup | None = None
        self._fetch_wake = asyncio.Event()
        self._plan_wake = asyncio.Event()
        self._invalid_head: tuple[str, Condition] | None = None
        self.plan_changed = asyncio.Condition()
        self.port: int | None = None
        self._ledger_reconciled = False
        """The ledger was compared with what runs once, as leader (`reconcile_ledger`)."""

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, serve: bool = True,
                  task_status: anyio.abc.TaskStatus[Manager] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        runner = await manager_io.start_server(self) if serve else None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self.loop_lag.run)
                tg.start_soon(busy.warm, self.placer)
                if self.settler is not None:
                    tg.start_soon(busy.settle_after_plans, self, self.settler)
                tg.start_soon(self.status_cache.run)  # builds /api/v1/status off requests
                tg.start_soon(self.home.connect)
                tg.start_soon(self._source_loop)
                tg.start_soon(self._placement_loop)
                tg.start_soon(self._watch_loop)
                tg.start_soon(self.queue.run)
                if self.settings.leader_elect:
                    tg.start_soon(self.leadership.run)
                run_events = getattr(self.events, "run", None)
                if run_events is not None:
                    tg.start_soon(run_events)
                task_status.started(self)
        finally:
            busy.close(self.placer)
            with anyio.CancelScope(shield=True):
                for adapter in list(self.adapters.values()):
                    await adapter.aclose()
                await self.home.aclose()
                if runner is not None:
                    await runner.cleanup()

    def status(self) -> dict[str, Any]:
        return manager_io.status(self)

    def capacity_json(self) -> dict[str, Any]:
        return manager_io.capacity_json(self)

    def metrics_text(self) -> str:
        return manager_io.metrics_text(self)

    def ready(self) -> tuple[bool, str]:
        return manager_io.ready(self)

    def trigger_fetch(self) -> None:
        self._fetch_wake.set()

    def trigger_plan(self) -> None:
        self._plan_wake.set()

    # ------------------------------------------------------------------ source

    async def _source_loop(self) -> None:
        while True:
            self._fetch_wake.clear()
            await self.fetch_once()
            with anyio.move_on_after(self.settings.poll_interval):
                await self._fetch_wake.wait()

    async def fetch_once(self) -> None:
        await sourceguard.read_shared_base(self)
        result = await self.source.poll()
        await self.keep_guard()
        conditions = result.conditions
        snap = result.snapshot
        if snap is not None:
            broken = triggers.whole_commit_problems(snap)
            if broken:
                cond = Condition("SourceUnavailable", "True", "InvalidCommit",
                                 f"commit {(snap.commit or '')[:12]} is invalid as a whole "
                                 f"({broken}); serving the last good commit")
                log.error("source_commit_invalid", commit=snap.commit, problem=broken)
                self._invalid_head = (snap.commit or "", cond)
                snap = None
                conditions = (cond,)
        elif not conditions and self._invalid_head and result.observed == self._invalid_head[0]:
            conditions = (self._invalid_head[1],)
        if snap is not None:
            self._invalid_head = None
            snap = await self._guarded(snap)
        elif self.deletions.candidate is not None and not self.deletions.judged and \
                result.observed == self.deletions.candidate.commit:
            snap = await self._guarded(self.deletions.candidate)  # what runs may be known now
        held = self.deletions.condition()
        before = self.conditions
        self.conditions = conditions + ((held,) if held is not None else ())
        self._feed_conditions(before, self.conditions)
        if self.settings.ledger and self.events is None and self.source.mirror_path.exists():
            self._start_ledger()
        self._report_unverified()
        if snap is not None:
            await self._adopt(snap)
        elif self.connect_errors and self.desired.spec is not None:
            await self._retry_connections()

    def _report_unverified(self) -> None:
        """A head refused for its signature (`--verify-signatures`): said once per head
        in the ledger (a Refused record for the whole fleet; the refused commit is named
        in the reason, never as the record's commit, so no audit reads a fleet that was
        never applied), on the forge (each cluster's status on that commit: failure)
        and in the metrics; status carries the SourceUnverified condition."""
        refused = self.source.unverified
        if refused is None or refused[0] == self._unverified_reported:
            return
        if not self.may_act() or (self.settings.ledger and self.events is None):
            return  # said by the leader, once its ledger runs (status says it meanwhile)
        head, verdict = refused
        self._unverified_reported = head
        self.metrics.refused.labels("SourceUnverified").inc()
        self.record("Refused", "*", result="refused",
                    reason=f"source unverified: commit {head}: {verdict.reason}: "
                           f"{verdict.message}"[:300])
        spec = self.desired.spec
        for name in sorted(spec.clusters) if spec is not None else ():
            self._post_status(head, name, "failure",
                              f"not applied: {verdict.reason}: {verdict.message}")

    async def keep_guard(self) -> None:
        """Persist the source guard (state dir; home cluster if we may act) if changed."""
        async with self._guard_lock:
            await self.guard.keep(Guard(self.source.applied, self.source.refused))

    def ledger_problem(self) -> tuple[str, str] | None:
        """(condition type, why) while the ledger cannot take records, else None."""
        problem = getattr(self.events, "problem", None)
        return problem() if self.settings.ledger and problem is not None else None

    def blocked(self) -> str | None:
        """Why no cluster may be changed now (fail closed on the ledger), else None."""
        if not self.settings.ledger_fail_closed:
            return None
        problem = self.ledger_problem()
        return None if problem is None else f"{problem[0]}: {problem[1]}"

    def record(self, event: Any, workload: str, **fields: Any) -> None:
        """A decision for the ledger, recorded only while this replica may act: a
        follower never writes a ledger record (the reconciler gates its own the same
        way, `ClusterReconciler._event`). The events feed keeps it either way, marked
        with whether this replica acted."""
        acting = self.may_act()
        self.feed.record(event, workload, acting=acting, **fields)
        if self.events is not None and acting:
            self.events.record(event, workload, **fields)

    def _feed_conditions(self, before: tuple[Condition, ...],
                         after: tuple[Condition, ...]) -> None:
        """Source conditions raised or cleared since the last fetch, into the feed."""
        was = {c.type: c for c in before if c.status == "True"}
        now = {c.type: c for c in after if c.status == "True"}
        acting = self.may_act()
        for ctype, c in sorted(now.items()):
            if ctype not in was or was[ctype].message != c.message:
                self.feed.note(ctype, reason=c.message, acting=acting)
        for ctype in sorted(set(was) - set(now)):
            self.feed.note("ConditionCleared", reason=ctype, acting=acting)

    async def _guarded(self, snap: Snapshot) -> Snapshot | None:
        """The commit to adopt now: `snap`, or None while its deletions are held
        (`controllers.runtime.deletions`), or after a restart the applied commit a previous
        process held `snap` against."""
        if self.desired.spec is None:
            base = self.deletions.restored_base(snap.commit)
            last = self.deletions.last_adopted or self.source.applied
            applied = self.source.applied
            if last is not None and last != applied and applied is not None and \
                    await anyio.to_thread.run_sync(self.source._is_descendant, applied, last):
                last = applied  # another replica took a newer commit since: start there
            if base is None and last not in (None, snap.commit):
                # A head that came while no controller ran: what it deletes is judged
                # like any other commit's, once what runs is known; meanwhile the last
                # adopted commit (else the applied one the source guard keeps) is served.
                base = last
            if base is not None:
                served = await self.source.read(base)
                if served is not None:
                    self.deletions.wait(snap)
                    return served
            self.deletions.release()  # nothing held any more: a later restart must not
            return snap           # serve that old base first
        if self._rebuild_previous or self.desired.plan is None:
            self.deletions.wait(snap)  # what runs is not known yet: judged at the next fetch
            return None
        running = self._running()
        kept = None
        if _fleet_changed(self.desired.spec, snap.spec):
            try:
                kept = await self._kept_by(snap, running)
            except Exception as e:  # noqa: BLE001 - never stop the source loop; the
                # placement loop meets the same error and retries, moving nothing
                log.error("candidate_plan_failed", commit=snap.commit,
                          error=f"{type(e).__name__}: {e}")
        if self.deletions.judge(snap, running, self.desired.head, kept=kept):
            return snap
        return None

    async def _kept_by(self, snap: Snapshot, running: dict[str, set[str]]
                       ) -> dict[str, set[str]]:
        """Per cluster, what `snap`'s plan keeps there, as far as this commit decides:
        its plan's placements, plus what runs there that the applied plan already takes
        away (a failover's stale copy is not this commit's doing). A full plan (pure,
        in a worker thread), made only for a commit that changes more than workloads."""
        from fleet.placement import place

        plan, spec = self.desired.plan, snap.spec
        assert plan is not None
        snapshot = capacity_snapshot(spec.clusters, self.views(), self.settings.failover_grace)
        previous: PreviousPlan = placements(plan)
        candidate: Plan = await anyio.to_thread.run_sync(
            lambda: place(spec, snapshot, previous, commit=snap.commit),
            abandon_on_cancel=True)
        out: dict[str, set[str]] = {}
        for name, ids in running.items():
            before = {str(w) for w, wp in plan.workloads.items()
                      if wp.status == "Placed" and name in wp.clusters}
            after = {str(w) for w, wp in candidate.workloads.items()
                     if wp.status == "Placed" and name in wp.clusters}
            out[name] = after | (ids - before)
        return out

    def _running(self) -> dict[str, set[str]]:
        """Every cluster of the applied commit -> the workload ids running there: what
        its informers list, or for a cluster not listed (down) the plan's placements."""
        spec, plan = self.desired.spec, self.desired.plan
        assert spec is not None and plan is not None
        out: dict[str, set[str]] = {}
        for name in sorted(spec.clusters):
            a = self.adapters.get(name)
            if a is not None and a.synced.is_set():
                out[name] = {str(workload_id_of_label(lbl)) for lbl in a.live_workloads()}
            else:
                out[name] = {str(wid) for wid, wp in plan.workloads.items()
                             if wp.status == "Placed" and name in wp.clusters}
        return out

    def _start_ledger(self) -> None:
        """`--ledger`: decisions go to the repo's ledger branch, pushed from our mirror."""
        from controllers.persist.ledger import Journal, Ledger
        from workloads.ledger_store import LedgerWriter

        ledger = Ledger(LedgerWriter(self.source.mirror_path, remote="origin",
                                     credentials=self.source.credentials,
                                     signing_key=self.settings.ledger_signing_key),
                        journal=Journal(self.settings.state_dir / JOURNAL_FILE),
                        max_backlog=self.settings.ledger_max_backlog)
        self.events = self.reconciler.events = ledger
        assert self._tg is not None
        self._tg.start_soon(ledger.run)
        log.info("ledger_started", branch=ledger.writer.ref,
                 signed=self.settings.ledger_signing_key is not None)
        if self.settings.ledger_anchor:
            from controllers.persist.anchor import LedgerAnchor
            from workloads.ledger_trust import AnchorWriter

            # the fleet repo's credentials are never sent to the anchor's server
            self.anchor = LedgerAnchor(ledger, AnchorWriter(
                self.source.mirror_path, self.settings.ledger_anchor,
                key_path=self.settings.ledger_signing_key),
                interval=self.settings.ledger_anchor_interval)
            self._tg.start_soon(self.anchor.run)

    async def _adopt(self, snap: Snapshot) -> None:
        assert snap.commit is not None
        changed = self.desired.adopt_spec(snap.spec, snap.commit)
        self.desired.allowed = allowances(snap.message)
        self.deletions.adopted(snap.commit)
        self.commits_accepted += 1
        self.metrics.commit_accepted(snap.commit)
        log.info("commit_accepted", commit=snap.commit, changed_workloads=len(changed),
                 workloads=len(snap.spec.workloads), invalid=sorted(snap.spec.invalid))
        await self._sync_clusters()
        if await sourceguard.refused_late(self):
            return
        for name in sorted(snap.spec.clusters):
            self._post_status(snap.commit, name, "pending", "rolling out")
        self.trigger_plan()

    # ------------------------------------------------------------------ clusters

    async def _retry_connections(self) -> None:
        """Clusters that could not connect are tried again on every poll, not only on
        a new commit: a credentials Secret made after the start, a kubeconfig mounted
        late, a cluster that came up."""
        before = set(self.adapters)
        await self._sync_clusters()
        if set(self.adapters) - before:
            self.trigger_plan()

    async def _management_client(self) -> KubeClient | None:
        """The management cluster's client for credentials Secrets, waiting a while
        for its first connection (None: not connected, or no management cluster)."""
        if not self.home.is_management:
            return None
        with anyio.move_on_after(self.home_wait):
            await self.home.connected.wait()
        return self.home.client()

    async def _sync_clusters(self) -> None:
        spec = self.desired.spec
        assert spec is not None
        await self.clusters.sync(spec)

    def _drift_handler(self, cluster: str) -> Any:
        def on_drift(report: DriftReport) -> None:
            wid = workload_id_of_label(report.workload or "")
            managers = sorted({f.manager for f in report.fields if f.manager})
            self.drift.append(DriftItem(cluster, wid, tuple(f.path for f in report.fields),
                                        managers[0] if managers else None, report.corrected,
                                        report.key))
            del self.drift[:-200]
            log.warning("drift_detected", cluster=cluster, workload=wid,
                        object=f"{report.key[1]} {report.key[2]}/{report.key[3]}",
                        paths=[f.path for f in report.fields][:10], managers=managers,
                        corrected=report.corrected)
            if report.corrected:
                # Recorded before the correction runs; held while the ledger is blocked.
                held = self.blocked()
                self.record("DriftCorrected", str(wid), cluster=cluster,
                            commit=self.desired.head, result="ok" if held is None else "held",
                            reason=", ".join(f.path for f in report.fields)[:200])
        return on_drift

    def _heal_held(self, cluster: str) -> Callable[[str | None], bool]:
        """Whether drift of a workload (its label) on `cluster` is left uncorrected:
        while it, or the cluster, is suspended."""
        def held(label: str | None) -> bool:
            return label is not None and self.suspensions.holds(
                cluster, str(workload_id_of_label(label)))
        return held

    def _cluster_done(self, name: str) -> None:
        plan = self.desired.plan
        if plan is None or plan.commit != self.desired.head:
            return  # a new commit is adopted but not planned yet
        if name and self.desired.head:
            self._apply_failures.pop((self.desired.head, name), None)
            placed = sum(1 for wp in plan.workloads.values()
                         if any(a.cluster == name for a in wp.assignments))
            self._post_status(self.desired.head, name, "success",
                              f"applied: {placed} workload{'' if placed == 1 else 's'}")
        for cname, adapter in self.adapters.items():
            if adapter.health_state == "Unreachable" or cname in self.suspensions.clusters:
                continue  # a suspended cluster is left as it is on purpose
            if self.reconciler.applied_signature.get(cname) != self.desired.signature(
                    ClusterName(cname)):
                return
        if self.applied_commit != self.desired.head:
            log.info("commit_applied", commit=self.desired.head)
            if self.desired.head:
                self.metrics.commit_done(self.desired.head)
        self.applied_commit = self.desired.head
        if self.source.applied != self.desired.head:
            self.source.applied = self.desired.head
            if self._tg is not None:
                self._tg.start_soon(self.keep_guard)

    def _retired(self, name: str) -> None:
        """A removed cluster runs nothing of ours any more: disconnect it."""
        if self._tg is None or not self.retirement.done(name):
            return
        self.clusters.disconnect(name)
        for other in self.adapters:  # what waited for the drain starts now
            self.queue.add(other)
        self._cluster_done("")

    def _timed(self, name: str, what: str, seconds: float) -> None:
        if what == "apply":
            self.metrics.apply.labels(name).observe(seconds)
            return
        self.metrics.reconcile.labels(name).observe(seconds)
        self.metrics.reconciles.labels(name, "failed" if what == "failed" else "ok").inc()

    def _cluster_failed(self, name: str, why: str) -> None:
        """A pass left objects of the head commit unapplied on `name`: after
        `status_failure_after` such passes in a row (a transient error is not a failed
        rollout), the cluster's commit status turns from pending to failure with the
        error (and to success when a retry gets them in)."""
        plan = self.desired.plan
        if plan is None or plan.commit != self.desired.head or not self.desired.head:
            return
        key = (self.desired.head, name)
        self._apply_failures = {k: n for k, n in self._apply_failures.items()
                                if k[0] == key[0]}  # an older head's count is moot
        failures = self._apply_failures[key] = self._apply_failures.get(key, 0) + 1
        if failures >= self.settings.status_failure_after:
            self._post_status(self.desired.head, name, "failure",
                              f"apply failed: {why}")

    def _post_status(self, sha: str, cluster: str, state: StatusState,
                     description: str) -> None:
        """Report a cluster's rollout of `sha` on the forge, without blocking the loop.

        Only the leader reports; the poster posts a status only when it changes and
        logs (never raises) a failed post, so the forge can never stop a rollout."""
        if self.forge_status is None or self._tg is None or not self.may_act():
            return
        self._tg.start_soon(self.forge_status.post_async, sha, cluster, state, description)

    # ------------------------------------------------------------------ watch

    async def _watch_loop(self) -> None:
        await triggers.watch_loop(self)

    # ------------------------------------------------------------------ placement

    async def _placement_loop(self) -> None:
        failures = 0
        while True:
            await self._plan_wake.wait()
            self._plan_wake.clear()
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
                self.trigger_plan()
            await anyio.sleep(self.tick / 2)  # coalesce bursts of capacity events

    def views(self) -> dict[str, ClusterView]:
        out: dict[str, ClusterView] = {}
        for name, a in self.adapters.items():
            health = a.health_state if a.synced.is_set() or a.health_state == \
                "Unreachable" else "Unknown"
            # loop-available seconds: a stalled controller does not age a failover grace
            out[name] = ClusterView(health, a.health.unreachable_for(), tuple(a.nodes()))
        return out

    async def _wait_synced(self) -> None:
        """Until every cluster has listed what runs there, or is Unreachable: a plan on a
        partial view would take a slow-listing cluster's workloads for missing and move
        them. Says every `startup_sync_timeout` seconds which clusters it waits for."""
        waited = 0.0
        while True:
            waiting = sorted(n for n, a in self.adapters.items()
                             if not a.synced.is_set() and a.health_state != "Unreachable")
            if not waiting:
                return
            if waited >= self.startup_sync_timeout:
                log.warning("waiting_for_clusters_to_list", clusters=waiting)
                waited = 0.0
            await anyio.sleep(self.tick)
            waited += self.tick

    async def replan(self) -> Plan:
        spec, head = self.desired.spec, self.desired.head
        assert spec is not None
        rebuild = self._rebuild_previous
        if rebuild:
            await self._wait_synced()
        snapshot = capacity_snapshot(spec.clusters, self.views(), self.settings.failover_grace)
        if rebuild:
            live = {n: a.live_workloads() for n, a in self.adapters.items() if a.synced.is_set()}
            # For a cluster that did not list (down), the last plan says what ran there.
            previous: PreviousPlan = await self.last_plan.restore(
                previous_from_live(spec.clusters, live), listed=set(live),
                clusters=set(spec.clusters))
            previous = _prefer_last_plan(previous, self.desired.plan)
        else:
            old = self.desired.plan
            previous = {} if old is None else placements(old)
            back = returned_clusters(self.desired.plan_saw or {}, {
                n: c.health for n, c in snapshot.clusters.items()})
            if old is not None and self.desired.plan_saw is not None and back:
                # Back from away: what still runs there counts as running (stickiness),
                # so this plan keeps it there where the rules allow, not a plan that
                # could not see it (its reconcile waits for this plan).
                live = {n: a.live_workloads() for n, a in self.adapters.items()
                        if ClusterName(n) in back and a.synced.is_set()}
                previous = previous_with_returned(
                    previous, old.workloads, previous_from_live(spec.clusters, live))
                log.info("clusters_returned", clusters=sorted(back))
        started = time.perf_counter()
        plan = await busy.place(self.placer, spec, snapshot, previous, head)
        elapsed = time.perf_counter() - started
        self.placement_durations.append(elapsed)
        self.metrics.placement.observe(elapsed)
        self.last_placement_seconds = elapsed
        del self.placement_durations[:-1000]
        self.snapshot = snapshot
        if (rebuild or not self._ledger_reconciled) and self.settings.ledger and \
                self.events is not None and self.may_act():
            # Before this plan's decisions: what a stopped process (or a leader that
            # lost its Lease while acting) left open is closed, or recorded, first, by
            # what the clusters show now. At start and at each new leadership.
            self._ledger_reconciled = await manager_io.reconcile_ledger(self, previous)
        manager_io.record_plan_events(self, self.desired.plan, plan, previous if rebuild else None)
        self.desired.plan = plan
        self.desired.plan_saw = {n: c.health for n, c in snapshot.clusters.items()}
        if rebuild:
            self._rebuild_previous = False
            if self.deletions.candidate is not None and not self.deletions.judged:
                self.trigger_fetch()  # what runs is known now: judge the waiting head
            self._adopt_live_commits()
        self._enqueue_changed()
        self._cluster_done("")  # a commit that changes nothing anywhere is applied now
        counts: dict[str, int] = {}
        for wp in plan.workloads.values():
            counts[wp.status] = counts.get(wp.status, 0) + 1
        log.info("placement_reconciled", commit=head, seconds=round(elapsed, 3),
                 from_live=rebuild, **{k.lower(): v for k, v in sorted(counts.items())})
        async with self.plan_changed:
            self.plan_changed.notify_all()
        await self.last_plan.save(plan, head)
        return plan

    def _adopt_live_commits(self) -> None:
        found: dict[WorkloadId, tuple[str, str | None]] = {}
        for a in self.adapters.values():
            for label, lp in a.live_workloads().items():
                if lp.commit:
                    found.setdefault(workload_id_of_label(label),
                                     (lp.commit, live_intent(a, label)))
        kept = self.desired.adopt_live(found)
        log.info("state_rebuilt_from_clusters", workloads=len(found), commits_kept=kept)

    def _enqueue_changed(self) -> None:
        for name, a in self.adapters.items():
            cluster = ClusterName(name)
            sig = self.desired.signature(cluster)
            if self.reconciler.applied_signature.get(name) != sig or \
                    self.desired.stale_on(cluster, set(a.live_workloads())):
                self.queue.add(name)

    def _prepare_adapter(self, name: str, adapter: ClusterAdapter) -> None:
        """A newly connected adapter, before it runs: fenced, and told what not to heal."""
        self.leadership.wire(adapter)
        adapter.applier.hold_heal = self._heal_held(name)

    @property
    def connect_errors(self) -> dict[str, str]:
        return self.clusters.connect_errors

    @property
    def twins(self) -> dict[str, tuple[str, ...]]:
        return self.clusters.twins

    # ------------------------------------------------------------------ leadership

    @property
    def elector(self) -> LeaderElector | None:
        return self.leadership.elector

    def may_act(self) -> bool:
        return self.leadership.may_act()



def _fleet_changed(old: FleetSpec | None, new: FleetSpec) -> bool:
    """Does `new` change more than Workload documents (clusters, residency, quotas,
    guardrails, owners)? Then placement may move workloads it did not name."""
    return old is None or any(a != b for a, b in (
        (old.clusters, new.clusters), (old.residency, new.residency),
        (old.quotas, new.quotas), (old.guardrails, new.guardrails),
        (old.owners, new.owners)))


def _verifier(settings: Settings) -> SignatureVerifier | None:
    if not settings.verify_signatures:
        return None
    return SignatureVerifier(settings.allowed_signers, settings.gpg_keyring)


def _prefer_last_plan(from_live: PreviousPlan, last: Plan | None) -> PreviousPlan:
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


def _forge_status(settings: Settings) -> CommitStatusPoster | None:
    """The `--forge` poster; a misconfiguration is said at start, and posting is off."""
    if settings.forge is None:
        return None
    from controllers.forge import ForgeError, client_from_env

    if not settings.forge_repo:
        log.error("forge_status_disabled", forge=settings.forge,
                  error="--forge needs --forge-repo")
        return None
    try:
        client = client_from_env(settings.forge, settings.forge_repo, settings.forge_url)
    except ForgeError as e:
        log.error("forge_status_disabled", forge=settings.forge, error=str(e))
        return None
    log.info("forge_status_enabled", forge=settings.forge, repo=settings.forge_repo)
    return CommitStatusPoster(client)
