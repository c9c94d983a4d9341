"""One cluster's reconcile: make what runs there what the plan says, and say what it did.

Level-triggered and idempotent: the key is a cluster name, and the reconcile reads the
current plan, not an event. Snapshot -> plan -> execute -> record: `_plan` gathers what
runs here and elsewhere and each `fleet.safety` decision about it, `fleet.sync.plan_cluster`
combines them into one `ClusterSync` (stale copies, holds, what to apply), the adapter
executes it (its objects through `fleet.sync.plan_sync`), `_record` writes status and
events from the `ApplyResult` alone. In order:

1. nothing while the cluster is not synced (its informers have not listed yet: we would
   not know what runs there), Unreachable, or while we are not the leader; and nothing
   while the current plan was made without it answering (it was away: that plan did
   not see what still runs there; `fleet.safety.hold_reconcile`), nor while it is the
   plan of an earlier commit than the adopted one (`fleet.safety.hold_for_head`);
2. residency first, then stale copies: copies whose data the policy in force does not
   allow here (`fleet.safety.residency_forbids`) are deleted, then workloads the plan
   now places only on other clusters (a failover while this cluster was away), before
   anything else is applied here, so no prune guard keeps data where it may not be
   and a gang job never runs twice;
3. apply the cluster's desired objects (server-side apply; unchanged objects cost zero
   API calls) and prune owned objects no longer desired -- except those of workloads
   invalid in this commit, which keep their last good state, and live copies
   `fleet.safety.keep_live_copy` keeps (a workload placed nowhere else, or only on
   clusters that do not answer): `protect`. A gang placed here while another cluster
   that answers still runs it (a move: its stale copy there not deleted yet, or its
   pods not terminated) is left out and the pass runs again shortly
   (`fleet.safety.gang_start_waits`): a moved gang never runs on two clusters;
4. record per workload Synced / Failed for the status document, one summary log line,
   events for the ledger (Applied, Pruned).

Suspended workloads (`fleet suspend`, or their cluster suspended) are left out of 2 and
3 -- not applied, not deleted, protected from prune and drain -- except a copy that
residency no longer allows here (`fleet.safety.suspension_shields`).

A failed apply raises `ReconcileError` after recording, so the work queue retries the
cluster with per-key exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from clusters.adapter import ClusterAdapter
from clusters.apply import ApplyResult, Fenced, content_hash
from clusters.errors import ClusterError, RecreateNeeded, TransientError
from clusters.health import workload_health
from clusters.inventory import WhereRuns
from controllers.runtime.desired import DesiredState
from controllers.runtime.fleetstate import decision_fields
from controllers.runtime.suspension import Suspensions
from controllers.status.eventfeed import EventFeed
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.render import (
    CONTENT_HASH,
    INTENT_HASH,
    SOURCE_COMMIT,
    workload_id_of_label,
    workload_of,
)
from fleet.safety import (
    ALLOW_MASS_DELETION,
    REACHABLE,
    copy_still_running,
    drainable,
    hold_for_head,
    hold_reconcile,
    stale_retry_after,
    suspension_shields,
)
from fleet.sync import SUSPENDED, ClusterSync, plan_cluster

log = structlog.get_logger()

RENDER_SLICE = 16
"""Workloads rendered between two yields to the event loop (a render is ~0.5-2 ms)."""


class EventSink(Protocol):
    """Where decisions go (the ledger's `Ledger.record` fits)."""

    def record(self, event: Any, workload: str, **fields: Any) -> None: ...


class ReconcileError(Exception):
    """Some objects of a cluster failed to apply or prune; the queue retries."""


@dataclass(slots=True)
class ReconcileTotals:
    runs: int = 0
    applied: int = 0
    pruned: int = 0
    stale_deleted: int = 0


@dataclass(frozen=True, slots=True)
class DrainLeft:
    """What a retiring cluster still holds of ours, by what its drain waits for (one
    reading for the drain and for status, so status says what the drain waits for)."""

    deleting: frozenset[str] = frozenset()
    """Workload labels whose objects are still there, to delete."""
    kept: frozenset[str] = frozenset()
    """Workload labels whose objects stay (Invalid in the applied commit, or suspended:
    `fleet.safety.drainable`): the cluster stays retiring until they may go."""
    terminating: frozenset[str] = frozenset()
    """Workload labels whose objects are gone but whose pods have not terminated yet
    (`fleet.safety.copy_still_running`: a gang waits for them elsewhere)."""


@dataclass(slots=True)
class ClusterReconciler:
    desired: DesiredState
    adapters: dict[str, ClusterAdapter]
    live: dict[tuple[ClusterName, WorkloadId], PlacementLive]
    events: EventSink | None = None
    may_act: Callable[[], bool] = lambda: True
    resync_interval: float = 60.0
    applied_signature: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    totals: ReconcileTotals = field(default_factory=ReconcileTotals)
    on_done: Callable[[str], None] = lambda _name: None
    on_failed: Callable[[str, str], None] = lambda _name, _why: None
    """Told (cluster, what failed) each time a pass leaves objects unapplied."""
    on_timed: Callable[[str, str, float], None] = lambda _name, _what, _seconds: None
    """Told (cluster, "apply" or "reconcile" or "failed", seconds) for the metrics."""
    retiring: Set[str] = frozenset()
    """Clusters removed from the repo: drained, not reconciled."""
    on_retired: Callable[[str], None] = lambda _name: None
    """Told a retiring cluster runs nothing of ours any more."""
    blocked: Callable[[], str | None] = lambda: None
    """Why nothing may change on any cluster now (the ledger cannot record it)."""
    suspended: Suspensions | None = None
    """Workloads and clusters left as they are: not applied, pruned, deleted as stale
    copies nor drained (`controllers.runtime.suspension`)."""
    prune_refused: dict[str, str] = field(default_factory=dict)
    """Clusters whose last pass refused to prune everything (the plan places nothing
    anywhere), with why: shown in status as `DeletionsHeld`, not only logged."""
    feed: EventFeed | None = None
    """The events feed (`controllers.status.eventfeed.EventFeed`): every event, ungated."""
    stale_failures: dict[str, int] = field(default_factory=dict)
    """Clusters whose stale-copy deletion failed transiently, and how often in a row."""
    where: WhereRuns | None = None
    """Which clusters hold an object or a pod of a workload (the Manager's, which every
    adapter joins): a gang about to start asks those, not every cluster. None: every
    cluster is asked (as some tests build the reconciler)."""

    async def __call__(self, name: str) -> float | None:
        """Snapshot -> plan -> execute -> record, once the gates let the pass run."""
        adapter = self.adapters.get(name)
        if adapter is None or self.desired.plan is None:
            return None
        gated = self._gate(name, adapter)
        if gated is not None:
            return gated
        stale_plan = hold_for_head(self.desired.plan.commit, self.desired.head)
        if stale_plan is not None:  # a drain, too, relies on the plan that removed it
            log.info("reconcile_held", cluster=name, reason=stale_plan)
            return 0.5
        if name in self.retiring:
            return await self._drain(name, adapter)
        cluster = ClusterName(name)
        if self.desired.plan_saw is not None:
            held_by = hold_reconcile(cluster, self.desired.plan_saw)
            if held_by is not None:  # the placement loop re-plans on the health change
                log.info("reconcile_held", cluster=name, reason=held_by)
                return 0.5
        started = time.perf_counter()
        for i, _ in enumerate(self.desired.render_missing(cluster), 1):
            if i % RENDER_SLICE == 0:
                await asyncio.sleep(0)  # a cold cluster renders in slices: the loop runs
        decided_by = self.desired.plan
        signature = self.desired.signature(cluster)
        sync = self._plan(name, adapter)
        deleted = 0
        if sync.forbidden:
            # Residency first: no failed apply, last good state or suspension keeps it.
            try:
                self.totals.pruned += await self._delete(
                    name, adapter, set(sync.forbidden), "residency forbids its data here")
            except TransientError as e:  # soon again: it may not stay, and may be waited for
                return self._stale_delete_failed(name, set(sync.forbidden), e)
            self.stale_failures.pop(name, None)
        if sync.stale:
            # Before anything else runs here: a failed-over gang must not run twice.
            try:
                deleted = await self._delete(name, adapter, set(sync.stale),
                                             "stale copy after failover")
            except TransientError as e:  # soon again, not backed off to a minute
                return self._stale_delete_failed(name, set(sync.stale), e)
            self.stale_failures.pop(name, None)
            self.totals.stale_deleted += deleted
        if (sync.forbidden or sync.stale) and self.desired.plan is not decided_by:
            # A new plan came while we deleted: one pass applies one plan, never the
            # deletions of one and the objects of the next (which may put back here
            # what was just deleted, while its new copy runs elsewhere). Again, now.
            return 0.0
        # The intent goes to the journal before anything is written: a process killed
        # during the apply leaves it for the next one to record (`reconcile_ledger`).
        begin = getattr(self.events, "begin", None)
        intent = begin(name, self.desired.head, tuple(sorted(sync.apply))) \
            if begin is not None and self.may_act() else None
        applying = time.perf_counter()
        try:
            result = await adapter.apply(sync.objects, prune=True,
                                         allow_empty=sync.allow_empty, protect=set(sync.hold))
        except Fenced:
            raise  # not the leader any more: nothing to report as this cluster's failure
        except ClusterError as e:  # the whole pass failed (retries spent): counts as one
            self.on_timed(name, "failed", time.perf_counter() - started)
            self.on_failed(name, f"{type(e).__name__}: {e}"[:100])
            raise
        self.on_timed(name, "apply", time.perf_counter() - applying)
        pruned_labels = self._record(name, adapter, sync, result)
        done = getattr(self.events, "done", None)
        if done is not None:
            done(intent)  # recorded: nothing left for a restart to reconcile
        elapsed = time.perf_counter() - started
        self.totals.runs += 1
        self.totals.applied += len(result.applied) + len(result.recreated)
        self.totals.pruned += len(result.pruned)
        self.on_timed(name, "failed" if result.failed else "reconcile", elapsed)
        log.info("cluster_reconciled", cluster=name, commit=self.desired.head,
                 workloads=len(sync.apply), objects=len(sync.objects),
                 applied=len(result.applied), recreated=len(result.recreated),
                 unchanged=len(result.unchanged), pruned=len(result.pruned),
                 stale_deleted=deleted, failed=len(result.failed),
                 prune_refused=result.prune_refused, api_calls=result.api_calls,
                 pruned_workloads=pruned_labels,
                 kept_unplanned=sorted(sync.kept),
                 suspended=sorted(lb for lb, why in sync.hold.items() if why == SUSPENDED),
                 seconds=round(elapsed, 3))
        if result.failed:
            first_key, first_err = result.failed[0]
            what = (f"{len(result.failed)} object{'' if len(result.failed) == 1 else 's'} "
                    f"failed; first: {first_key[1]} {first_key[2]}/{first_key[3]}: {first_err}")
            self.on_failed(name, what)
            raise ReconcileError(f"{what} (on {name})")
        if sync.waiting:
            log.info("waiting_to_start", cluster=name, workloads=sorted(sync.waiting),
                     why=sorted(set(sync.waiting.values())))
            return 0.5  # not done: the held workloads are still to start here
        self.applied_signature[name] = signature
        self.on_done(name)
        return self.resync_interval

    def _gate(self, name: str, adapter: ClusterAdapter) -> float | None:
        """When to look again if this pass may not act now (not the leader, the ledger
        cannot record, the cluster not listed yet or away), else None."""
        if not self.may_act():
            return 1.0
        why = self.blocked()
        if why is not None:  # fail closed: nothing acted on goes unrecorded
            log.warning("reconcile_blocked_by_ledger", cluster=name, reason=why)
            return 1.0
        if not adapter.synced.is_set():
            return 0.5
        if adapter.health_state == "Unreachable":
            return 1.0
        return None

    def _plan(self, name: str, adapter: ClusterAdapter) -> ClusterSync:
        """Snapshot what runs here and elsewhere, gather each `fleet.safety` decision
        about it, and combine them (`fleet.sync.plan_cluster`)."""
        cluster = ClusterName(name)
        live_labels = set(adapter.live_workloads())
        # asked only of the clusters a copy here is judged by, not built over the fleet
        reachable = Answering(self.adapters)
        # (who runs what elsewhere matters only for Invalid workloads' stale copies)
        running = self._running_elsewhere(name, live_labels) \
            if self.desired.protected() else {}
        stale = self.desired.stale_on(cluster, live_labels, reachable, running)
        objects, labels = self.desired.objects_for(cluster)
        gangs = self._gangs(labels)
        return plan_cluster(
            objects, {lb: str(wid) for lb, wid in labels.items()}, stale=stale,
            suspended=self._suspended_labels(name, live_labels | set(labels)),
            protected=self.desired.protected_on(cluster),
            kept=self.desired.kept_on(cluster, live_labels, reachable),
            live_here=live_labels, draining=self._draining(),
            forbidden=self.desired.forbidden_on(cluster, live_labels),
            anything_placed=self.desired.anything_placed,
            mass_deletion_allowed=ALLOW_MASS_DELETION in self.desired.allowed,
            gangs=gangs, held_elsewhere=self._held_elsewhere(name, gangs - live_labels))

    def _gangs(self, labels: Mapping[str, WorkloadId]) -> set[str]:
        """Of these workloads (label -> id), the gangs: their pods run together."""
        spec = self.desired.spec
        if spec is None:
            return set()
        return {lb for lb, wid in labels.items()
                if (w := spec.workloads.get(wid)) is not None and w.spec.gang}

    def _held_elsewhere(self, name: str, starting: Set[str]) -> dict[str, set[str]]:
        """For gangs about to start here: the other clusters, retiring ones included,
        that still run a copy -- its objects listed or its pods not terminated
        (`fleet.safety.copy_still_running`). A cluster that does not answer is left
        out (a failover does not wait for it), and so is one not listed yet (only a
        newly connected one: the first plan waits for every cluster to list, and a
        returning one keeps its last listing): one cluster whose lists fail must not
        stop every gang of the fleet from starting."""
        out: dict[str, set[str]] = {}
        if not starting:
            return out
        if self.where is not None:  # only the clusters that hold something of it
            for label in sorted(starting):
                for holder in self.where.holders(label):
                    other = str(holder.name)
                    here = self.adapters.get(other)
                    if other == name or here is None or here is not holder \
                            or here.health_state == "Unreachable" or not here.synced.is_set():
                        continue  # (an adapter replaced since is not asked)
                    if copy_still_running(here.applier.live.runs(label),
                                          [_phase(p) for p in here.pods(label)]):
                        out.setdefault(label, set()).add(other)
            return out
        for other, a in sorted(self.adapters.items()):
            if other == name or a.health_state == "Unreachable" or not a.synced.is_set():
                continue
            listed, pods = a.live_workloads(), a.pods_by_workload()
            for label in starting:
                if copy_still_running(label in listed,
                                      [_phase(p) for p in pods.get(label, ())]):
                    out.setdefault(label, set()).add(other)
        return out

    def _record(self, name: str, adapter: ClusterAdapter, sync: ClusterSync,
                result: ApplyResult) -> list[str]:
        """Status per workload (Synced / Failed), Applied and Pruned events, the refused
        prune; the labels of the workloads pruned."""
        cluster = ClusterName(name)
        if result.prune_refused:
            if self.feed is not None and self.prune_refused.get(name) != result.prune_refused:
                self.feed.note("DeletionsHeld", cluster=name, reason=result.prune_refused)
            self.prune_refused[name] = result.prune_refused
        else:
            self.prune_refused.pop(name, None)
        failed_labels: dict[str, str] = {}
        recreate_labels: set[str] = set()
        for key, err in result.failed:
            failed = result.workloads.get(key) or ""
            failed_labels.setdefault(failed, str(err)[:300])
            if isinstance(err, RecreateNeeded):
                recreate_labels.add(failed)
        changed_labels = {result.workloads.get(k) or ""
                          for k in (*result.applied, *result.recreated)}
        placed = self.desired.placed_on(cluster)
        desired_of: dict[str, list[dict[str, Any]]] = {}
        for obj in sync.objects:
            desired_of.setdefault(workload_of(obj) or "", []).append(obj)
        by_label = adapter.objects_by_workload()  # one pass, not one per workload
        for label, wid in sync.apply.items():
            objs = by_label.get(label, [])
            commit = _annotation(objs, SOURCE_COMMIT)
            self.live[(cluster, WorkloadId(wid))] = PlacementLive(
                "Failed" if label in failed_labels else "Synced",
                workload_health(objs), commit, failed_labels.get(label),
                recreate=label in recreate_labels)
            if label in changed_labels:
                a = placed.get(WorkloadId(wid))
                self._event("Applied", label, cluster=name,
                            flavour=a.flavour if a else None, gpus=a.gpus if a else 0,
                            manifest_digest=manifest_digest(desired_of.get(label, [])))
        for label, why in sync.waiting.items():
            self.live[(cluster, workload_id_of_label(label))] = PlacementLive(
                "Applying", "Unknown", None, waiting=why)
        here = {*sync.apply.values(), *sync.suspended.values(),
                *(str(workload_id_of_label(lb)) for lb in sync.waiting)}
        for (ckey, wid) in _rows_of(self.live, cluster):  # this cluster's rows, not all
            if wid not in here:
                del self.live[(ckey, wid)]
        pruned_labels = sorted({result.workloads.get(k) or "" for k in result.pruned} - {""})
        for label in pruned_labels:
            self._event("Pruned", label, cluster=name, reason="removed from the plan")
        return pruned_labels

    def _stale_delete_failed(self, name: str, stale: set[str], e: TransientError) -> float:
        """A stale copy that could not be deleted (the cluster answers, but refused or
        failed the delete): said, and tried again within a second
        (`fleet.safety.stale_retry_after`), since the gang runs twice meanwhile."""
        n = self.stale_failures[name] = self.stale_failures.get(name, 0) + 1
        again = stale_retry_after(n, e.retry_after)
        log.warning("stale_delete_failed", cluster=name, workloads=sorted(stale),
                    attempt=n, retry_in=again, error=str(e)[:300])
        self.on_failed(name, f"stale copy not deleted: {type(e).__name__}: {e}"[:100])
        return again

    def _suspended_labels(self, cluster: str, labels: Set[str]) -> set[str]:
        """Of these workload labels, those left as they are here: suspended (the
        workload, or this cluster), unless residency forbids them here now
        (`fleet.safety.suspension_shields`)."""
        s, spec = self.suspended, self.desired.spec
        if s is None or not (s.workloads or cluster in s.clusters):
            return set()
        c = spec.clusters.get(ClusterName(cluster)) if spec is not None else None
        out: set[str] = set()
        for lb in labels:
            wid = workload_id_of_label(lb)
            if not s.holds(cluster, str(wid)):
                continue
            w = spec.workloads.get(wid) if spec is not None else None
            allows = None if spec is None or w is None or c is None else \
                spec.residency.allows(w.spec.placement.data_class, c.spec.jurisdiction)
            if suspension_shields(allows):
                out.add(lb)
            else:
                log.warning("suspension_overridden_by_residency", cluster=cluster,
                            workload=str(wid))
        return out

    def _draining(self) -> set[str]:
        """Workload labels still running on a removed cluster being drained (and
        answering): those do not start here until they are deleted there, so that a
        moved gang never runs twice. A removed cluster that is Unreachable holds nothing
        back (it cannot be drained now; a failover does not wait either)."""
        out: set[str] = set()
        for r in self.retiring:
            a = self.adapters.get(r)
            if a is not None and a.health_state != "Unreachable":
                out |= set(a.live_workloads())
        return out

    def _running_elsewhere(self, name: str, live_here: Set[str]
                           ) -> dict[str, set[ClusterName]]:
        """For each copy here of an Invalid workload: the clusters of its last placement
        (`DesiredState.last_placed`) that answer, are not retiring, and run it. That is
        all `fleet.safety.invalid_copy_stale` looks at (the last placement's clusters
        among those running it); asking every other cluster what it runs was
        O(objects of the fleet) per pass while any workload was Invalid."""
        plan = self.desired.plan
        out: dict[str, set[ClusterName]] = {}
        listed: dict[str, Set[str]] = {}
        for label in live_here:
            wid = workload_id_of_label(label)
            wp = plan.workloads.get(wid) if plan is not None else None
            if wp is None or wp.status != "Invalid":
                continue
            for other in self.desired.last_placed.get(wid, ()):
                a = self.adapters.get(other)
                if other == name or other in self.retiring or a is None \
                        or a.health_state not in REACHABLE or not a.synced.is_set():
                    continue
                if other not in listed:
                    listed[other] = a.live_workloads().keys()
                if label in listed[other]:
                    out.setdefault(label, set()).add(ClusterName(other))
        return out

    async def _drain(self, name: str, adapter: ClusterAdapter) -> float | None:
        """A cluster whose Cluster file was removed: delete every workload we run there
        (its workloads are placed elsewhere by then), then, once their pods have
        terminated too (a gang waits for them elsewhere), let it be disconnected.
        Never an Invalid workload's copy (`fleet.safety.drainable`): the cluster stays
        retiring, and says so, until that workload is valid or gone."""
        left = self.drain_left(name, adapter)
        if left.deleting:
            try:
                self.totals.pruned += await self._delete(
                    name, adapter, set(left.deleting), "its cluster was removed from the repo")
            except TransientError as e:  # what waits for it elsewhere waits: soon again
                return self._stale_delete_failed(name, set(left.deleting), e)
            self.stale_failures.pop(name, None)
            left = self.drain_left(name, adapter)
        if left.deleting:
            return 1.0  # not all gone yet (a delete failed, or not yet seen): again
        if left.kept:
            log.warning("drain_waits_for_invalid_workloads", cluster=name,
                        workloads=sorted(left.kept))
            return self.resync_interval
        if left.terminating:  # deleted, its pods still run: a gang waits for them elsewhere
            log.info("drain_waits_for_pods", cluster=name, workloads=sorted(left.terminating))
            return 0.5
        self.on_retired(name)
        return None

    def drain_left(self, name: str, adapter: ClusterAdapter) -> DrainLeft:
        """What the drain of retiring cluster `name` waits for now: objects to delete,
        objects it keeps, pods still terminating (`DrainLeft`)."""
        live_here = set(adapter.live_workloads())
        protected = (self.desired.protected()
                     - self.desired.invalid_stale_on(ClusterName(name), live_here,
                                                     self._running_elsewhere(name, live_here))
                     ) | self._suspended_labels(name, live_here)
        deleting = drainable(live_here, protected)
        terminating = {lb for lb, pods in adapter.pods_by_workload().items()
                       if lb not in live_here
                       and copy_still_running(False, [_phase(p) for p in pods])}
        return DrainLeft(frozenset(deleting), frozenset(live_here - deleting),
                         frozenset(terminating))

    async def _delete(self, name: str, adapter: ClusterAdapter, labels: set[str],
                      reason: str) -> int:
        """Delete these workloads' objects here, forget them, and record each as Pruned;
        how many objects went."""
        deleted = await adapter.delete_workloads(labels)
        for label in sorted(labels):
            self.live.pop((ClusterName(name), workload_id_of_label(label)), None)
            self._event("Pruned", label, cluster=name, reason=reason)
        return deleted

    def _event(self, event: str, label: str, **fields: Any) -> None:
        acting = self.may_act()
        if self.feed is None and (self.events is None or not acting):
            return
        wid = workload_id_of_label(label)
        # The fleet commit this was decided at, never a workload's own source commit:
        # the audit judges the record by the policy and cluster labels of that commit.
        fields = {**decision_fields(self.desired.spec, str(wid), fields.get("cluster")),
                  **fields, "commit": self.desired.head}
        clean = {k: v for k, v in fields.items() if v is not None}
        if self.feed is not None:
            self.feed.record(event, str(wid), acting=acting, **clean)
        if self.events is not None and acting:  # a follower records nothing
            self.events.record(event, str(wid), **clean)


class Answering(Set[ClusterName]):
    """The clusters that answer (health in `fleet.safety.REACHABLE`), as a set asked one
    cluster at a time. Building the whole set in each cluster's pass was O(clusters)
    per pass, O(clusters^2) per round (issue 22, item 2); the judgement of a live copy
    (`fleet.safety.keep_live_copy`) only asks whether each cluster its workload is
    placed on answers. Each cluster is asked once and its answer kept for the pass, so
    one pass judges every copy by one reading, as a set built at its start did."""

    __slots__ = ("_adapters", "_seen")

    def __init__(self, adapters: Mapping[str, ClusterAdapter]) -> None:
        self._adapters = adapters
        self._seen: dict[object, bool] = {}

    def __contains__(self, name: object) -> bool:
        seen = self._seen.get(name)
        if seen is None:
            a = self._adapters.get(name) if isinstance(name, str) else None
            seen = self._seen[name] = a is not None and a.health_state in REACHABLE
        return seen

    def __iter__(self) -> Iterator[ClusterName]:  # the whole set: O(clusters), unused
        return iter([ClusterName(n) for n in self._adapters if n in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _rows_of(live: Mapping[tuple[ClusterName, WorkloadId], Any], cluster: str
             ) -> list[tuple[ClusterName, WorkloadId]]:
    """The keys of `cluster`'s rows: from the index of a
    `controllers.runtime.liverows.LiveRows` (the Manager's), else by a scan (a plain
    dict, as some tests hand the reconciler)."""
    keys_of = getattr(live, "keys_of", None)
    if keys_of is not None:
        found: list[tuple[ClusterName, WorkloadId]] = keys_of(cluster)
        return found
    return [k for k in live if k[0] == cluster]


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _annotation(objs: list[dict[str, Any]], key: str) -> str | None:
    for o in objs:
        if o.get("kind") in ("Job", "Deployment"):
            value = ((o.get("metadata") or {}).get("annotations") or {}).get(key)
            if value:
                return str(value)
    return None


def live_intent(adapter: ClusterAdapter, label: str) -> str | None:
    return _annotation(adapter.workload_objects(label), INTENT_HASH)


def manifest_digest(objects: list[dict[str, Any]]) -> str:
    """sha256 over the content hashes of one workload's rendered objects in a cluster:
    what the ledger records as "these exact manifests were applied"."""
    hashes = sorted(content_hash(o) for o in objects)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def live_manifest_digest(objects: list[dict[str, Any]]) -> str:
    """`manifest_digest` of what runs: from the content hash every applied object carries
    (the hash of the manifest as rendered), so it equals the digest recorded at apply."""
    hashes = sorted(str(((o.get("metadata") or {}).get("annotations") or {}).get(
        CONTENT_HASH, "")) for o in objects)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
