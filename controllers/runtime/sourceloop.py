"""The source loop: fetch the fleet repo, read the commit, guard it, adopt it.

A Manager-owned part. Every `poll_interval`, or at once on `trigger()` (`POST
/hooks/git`, `fleet sync`), `fetch_once`:

- reads the leader's applied commit from the home cluster first (the source guard,
  `controllers.runtime.sourceguard`), so a rolled-back head is refused by every replica;
- fetches; a commit whose Cluster or policy files are broken is refused as a whole
  (`whole_commit_problems`) and the last good one served;
- holds a commit whose deletions exceed the allowance (`controllers.runtime.deletions`)
  until what runs is known and it is judged;
- adopts an accepted commit: the desired state (only workloads whose document changed get
  a new source commit), the cluster set (connect new Cluster files, drain removed ones),
  pending commit statuses, then a re-plan.

It owns the source's conditions, the guard's persistence and the deletion guard; it is
told by the rollout when a commit is applied everywhere (`applied`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import structlog

from clusters.home import Home
from controllers.forge import StatusState
from controllers.gitcreds import git_auth
from controllers.runtime.clusterset import ClusterSet
from controllers.runtime.deletions import DeletionGuard
from controllers.runtime.desired import DesiredState
from controllers.runtime.fleetstate import capacity_snapshot
from controllers.runtime.records import Records
from controllers.runtime.sourceguard import Guard, SourceGuard
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from controllers.status.metrics import ControllerMetrics
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.render import placed_by_cluster
from fleet.safety import DeletionLimits, allowances
from fleet.spec import FleetSpec
from workloads.gitsource import Condition, GitSource
from workloads.loader import Snapshot
from workloads.signatures import SignatureVerifier

log = structlog.get_logger()

PostStatus = Callable[[str, str, StatusState, str], None]


class SourceLoop:
    def __init__(self, settings: Settings, *, desired: DesiredState, clusters: ClusterSet,
                 records: Records, home: Home, feed: EventFeed, metrics: ControllerMetrics,
                 may_act: Callable[[], bool], post_status: PostStatus,
                 plan: Callable[[], None], knows_what_runs: Callable[[], bool],
                 task_group: Callable[[], anyio.abc.TaskGroup | None],
                 tick: float, startup_sync_timeout: float,
                 before_fetch: Callable[[], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.desired = desired
        self.clusters = clusters
        self.records = records
        self.home = home
        self.feed = feed
        self.metrics = metrics
        self.may_act = may_act
        self.post_status = post_status
        self.plan = plan
        """Ask the placement loop for a plan."""
        self.knows_what_runs = knows_what_runs
        """A plan was made from what runs since this process (or leadership) started."""
        self.task_group = task_group
        self.tick = tick
        self.startup_sync_timeout = startup_sync_timeout
        self.before_fetch = before_fetch
        """After the leader's applied commit is read, before each fetch: the rest of
        the shared state (`controllers.runtime.handover.before_fetch`)."""
        self.source = GitSource(settings.repo, settings.branch, settings.state_dir,
                                subdir=settings.subdir,
                                allow_non_fast_forward=settings.allow_non_fast_forward,
                                verifier=_verifier(settings),
                                credentials=git_auth(settings),
                                controller_namespace=home.namespace)
        self.deletions = DeletionGuard(settings.state_dir, DeletionLimits(
            max_retire_per_commit=settings.max_retire_per_commit,
            max_deletion_fraction=settings.max_deletion_fraction))
        """Commits whose deletions wait for an allowance (`fleet.safety`)."""
        self.guard = SourceGuard(settings.state_dir, home.client, may_act, home.namespace)
        kept = self.guard.load()
        self.source.applied, self.source.refused = kept.applied, kept.refused
        self.conditions: tuple[Condition, ...] = ()
        self.commits_accepted = 0
        self.late_guard_read = False
        """With a member as home: the shared guard was read once that member connected."""
        self._guard_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._invalid_head: tuple[str, Condition] | None = None
        self._unverified_reported: str | None = None
        """The head refused for its signature last reported (ledger, forge, metric)."""

    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.fetch_once()
            with anyio.move_on_after(self.settings.poll_interval):
                await self._wake.wait()

    def applied(self, head: str | None) -> None:
        """`head` runs everywhere: the base every new head must descend from, kept."""
        if self.source.applied == head:
            return
        self.source.applied = head
        tg = self.task_group()
        if tg is not None:
            tg.start_soon(self.keep_guard)

    def what_runs_known(self) -> None:
        """What runs is known now: judge a head whose deletions wait for it."""
        if self.deletions.candidate is not None and not self.deletions.judged:
            self.trigger()

    async def keep_guard(self) -> None:
        """Persist the source guard (state dir; home cluster if we may act) if changed."""
        async with self._guard_lock:
            await self.guard.keep(Guard(self.source.applied, self.source.refused))

    # ------------------------------------------------------------------ one fetch

    async def fetch_once(self) -> None:
        await self._read_shared_base()
        if self.before_fetch is not None:
            await self.before_fetch()
        result = await self.source.poll()
        await self.keep_guard()
        conditions = result.conditions
        snap = result.snapshot
        if snap is not None:
            broken = whole_commit_problems(snap)
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
        if self.records.waiting_for(self.source.mirror_path):
            self.records.start(self.source.mirror_path, self.source.credentials)
        self._report_unverified()
        if snap is not None:
            await self._adopt(snap)
        elif self.clusters.connect_errors and self.desired.spec is not None:
            await self.retry_connections()

    def _report_unverified(self) -> None:
        """A head refused for its signature (`--verify-signatures`): said once per head
        in the ledger (a Refused record for the whole fleet; the refused commit is named
        in the reason, never as the record's commit, so no audit reads a fleet that was
        never applied), on the forge (each cluster's status on that commit: failure)
        and in the metrics; status carries the SourceUnverified condition."""
        refused = self.source.unverified
        if refused is None or refused[0] == self._unverified_reported:
            return
        if not self.may_act() or (self.settings.ledger and self.records.events is None):
            return  # said by the leader, once its ledger runs (status says it meanwhile)
        head, verdict = refused
        self._unverified_reported = head
        self.metrics.refused.labels("SourceUnverified").inc()
        self.records.record("Refused", "*", result="refused",
                            reason=f"source unverified: commit {head}: {verdict.reason}: "
                                   f"{verdict.message}"[:300])
        spec = self.desired.spec
        for name in sorted(spec.clusters) if spec is not None else ():
            self.post_status(head, name, "failure",
                             f"not applied: {verdict.reason}: {verdict.message}")

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

    # ------------------------------------------------------------------ the guard

    async def _read_shared_base(self) -> None:
        """The leader's applied commit from the home cluster into the source, before
        each fetch: a new replica (empty state dir) and a follower refuse what the
        leader would. The first fetch of a replica that knows no applied commit waits
        (bounded) for the management cluster to connect."""
        if not self.home.configured:
            return
        if self.home.is_management and self.source.applied is None and \
                self.source.last_good is None:
            with anyio.move_on_after(self.startup_sync_timeout):
                await self.home.connected.wait()
        shared = await self.guard.shared()
        if shared is not None and shared.applied is not None:
            self.source.shared_applied = shared.applied

    async def _refused_late(self) -> bool:
        """With a member as home and no applied commit known, the shared guard can first
        be read once that member is connected, i.e. after the first commit is adopted
        (its Cluster file says how to reach it): read it then, once, before anything is
        planned, and check the head again. True when the commit just adopted must not be
        rolled out (refused; the base is adopted instead when the mirror has it)."""
        if self.late_guard_read or self.source.applied is not None or \
                self.home.is_management or not self.home.configured:
            return False
        self.late_guard_read = True
        with anyio.move_on_after(self.startup_sync_timeout):
            while True:
                if self.home.client() is not None:
                    break
                await anyio.sleep(self.tick)
        await self._read_shared_base()
        if self.source.shared_applied is None:
            return False
        result = await self.source.poll()
        if result.conditions:
            self.conditions = result.conditions
        await self.keep_guard()
        if result.snapshot is not None and result.snapshot.commit != self.desired.head:
            await self._adopt(result.snapshot)  # the base, served instead of the rollback
            return True
        return self.source.holding

    async def _guarded(self, snap: Snapshot) -> Snapshot | None:
        """The commit to adopt now: `snap`, or None while its deletions are held
        (`controllers.runtime.deletions`), or after a restart the applied commit a
        previous process held `snap` against."""
        if self.desired.spec is None:
            return await self._guarded_at_start(snap)
        if not self.knows_what_runs():
            self.deletions.wait(snap)  # what runs is not known yet: judged at the next fetch
            return None
        spec, plan = self.desired.spec, self.desired.plan
        assert plan is not None
        running = self.clusters.running(spec, plan, self.desired.placed_index())
        kept = None
        if fleet_changed(spec, snap.spec):
            try:
                kept = await self._kept_by(snap, running)
            except Exception as e:  # noqa: BLE001 - never stop the source loop; the
                # placement loop meets the same error and retries, moving nothing
                log.error("candidate_plan_failed", commit=snap.commit,
                          error=f"{type(e).__name__}: {e}")
        if self.deletions.judge(snap, running, self.desired.head, kept=kept):
            return snap
        return None

    async def _guarded_at_start(self, snap: Snapshot) -> Snapshot | None:
        base = self.deletions.restored_base(snap.commit)
        last = self.deletions.last_adopted or self.source.applied
        applied = self.source.applied
        if last is not None and last != applied and applied is not None and \
                await self.source.descends(applied, last):
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
        return snap               # serve that old base first

    async def _kept_by(self, snap: Snapshot, running: dict[str, set[str]]
                       ) -> dict[str, set[str]]:
        """Per cluster, what `snap`'s plan keeps there, as far as this commit decides:
        its plan's placements, plus what runs there that the applied plan already takes
        away (a failover's stale copy is not this commit's doing). A full plan (pure,
        in a worker thread), made only for a commit that changes more than workloads."""
        from fleet.placement import place

        plan, spec = self.desired.plan, snap.spec
        assert plan is not None
        snapshot = capacity_snapshot(spec.clusters, self.clusters.views(),
                                     self.settings.failover_grace)
        previous: PreviousPlan = placements(plan)
        candidate: Plan = await anyio.to_thread.run_sync(
            lambda: place(spec, snapshot, previous, commit=snap.commit),
            abandon_on_cancel=True)
        # one pass over each plan, not two per cluster (O(clusters x workloads))
        before, after = self.desired.placed_index(), placed_by_cluster(candidate)
        out: dict[str, set[str]] = {}
        for name, ids in running.items():
            cluster = ClusterName(name)
            out[name] = {str(w) for w in after.get(cluster, ())} | \
                (ids - {str(w) for w in before.get(cluster, ())})
        return out

    # ------------------------------------------------------------------ adopt

    async def adopt(self, snap: Snapshot) -> None:
        """Adopt `snap` now (a held commit's base served again on a take-over)."""
        await self._adopt(snap)

    async def _adopt(self, snap: Snapshot) -> None:
        assert snap.commit is not None
        changed = self.desired.adopt_spec(snap.spec, snap.commit,
                                          edited_since(snap, self.desired.head))
        self.desired.allowed = allowances(snap.message)
        self.deletions.adopted(snap.commit)
        self.commits_accepted += 1
        self.metrics.commit_accepted(snap.commit)
        log.info("commit_accepted", commit=snap.commit, changed_workloads=len(changed),
                 workloads=len(snap.spec.workloads), invalid=sorted(snap.spec.invalid))
        await self.clusters.sync(snap.spec)
        if await self._refused_late():
            return
        for name in sorted(snap.spec.clusters):
            self.post_status(snap.commit, name, "pending", "rolling out")
        self.plan()

    async def retry_connections(self) -> None:
        """Clusters that could not connect are tried again on every poll, not only on
        a new commit: a credentials Secret made after the start, a kubeconfig mounted
        late, a cluster that came up."""
        spec = self.desired.spec
        assert spec is not None
        before = set(self.clusters.adapters)
        await self.clusters.sync(spec)
        if set(self.clusters.adapters) - before:
            self.plan()


def whole_commit_problems(snap: Snapshot) -> str:
    """Errors that make a commit unusable as a whole, or "" (see docs/controller.md).

    A broken Cluster or policy file would drop a cluster or fail residency closed for
    everything: applying that would move or prune workloads on the strength of a typo.
    A broken Workload file only makes that workload invalid (protected, not pruned).
    """
    fleet_kinds = {"Cluster", "ResidencyPolicy", "TeamQuota", "Guardrails", "Owners"}
    for d in snap.spec.errors:
        path = "/" + d.file
        in_fleet_folder = ("/clusters/" in path or "/policies/" in path) \
            and "/workloads/" not in path
        if d.kind != "Workload" and (d.kind in fleet_kinds or in_fleet_folder):
            return str(d)
    return ""


def edited_since(snap: Snapshot, head: str | None) -> frozenset[WorkloadId] | None:
    """The workloads `snap` edits against the commit `head`, when it was read through
    a tree diff from that very commit (`workloads.loader.load_changed`); else None (a
    held commit's base served again, or a commit read whole)."""
    if snap.edited is None or head is None or snap.edited[0] != head:
        return None
    return snap.edited[1]


def fleet_changed(old: FleetSpec | None, new: FleetSpec) -> bool:
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
