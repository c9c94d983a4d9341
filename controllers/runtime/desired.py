"""The desired objects of each cluster: the plan rendered, with per-workload commits.

Every object we apply carries `aifleet.dev/source-commit`, and that annotation is part
of the content hash the applier compares. Stamping every object with the head commit
would make every commit rewrite every object of the fleet. So each workload carries
the commit at which *its* intent last changed (its Workload document differed from the
previous accepted commit's); a commit that changes one workload re-renders and
re-applies that workload's objects only, and every other object costs zero API calls.

After a restart the commit of a workload is read back from its live objects, kept if
the live intent hash is still the repo's (nothing changed while we were away), else the
head commit.

Rendered objects are cached per (cluster, workload, assignment, commit): a re-plan that
moves nothing renders nothing.

Work proportional to change (issue 22, items 0 and 2): each plan is indexed by cluster
once (`placed_on`), and the labels prune must leave alone once per (spec, plan)
(`protected`, `protected_on`). Before, every finished reconcile asked each cluster's
signature, and each signature scanned the whole plan: O(clusters x workloads) of pure
Python in the event loop per reconcile (100 x 5,000: ~0.2 s each, seconds per round).
Likewise whether the plan places anything at all (`anything_placed`, prune's guard) is
kept with the plan: each reconcile asked `any(... Placed ...)` over the whole plan, and
while everything is Pending (every cluster still Unknown at 1,000 x 50,000) that scan
never stops early: 50,000 steps per cluster pass, 50 million per round of 1,000.
`version` counts the changes of what each cluster's `signature` is made of, so that a
caller may keep per-cluster answers until it moves (`controllers.runtime.rollout`), and
`kept` keeps any other answer derived from the (spec, plan) pair with them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Set
from typing import Any, TypeVar

from fleet.ids import ClusterName, WorkloadId
from fleet.models import Cluster, Workload
from fleet.placement.types import Assignment, Plan
from fleet.render import (
    INTENT_HASH,
    Manifest,
    RenderFn,
    cluster_objects,
    placed_by_cluster,
    workload_id_of_label,
    workload_label,
)
from fleet.safety import (
    invalid_copy_kept,
    invalid_copy_stale,
    keep_live_copy,
    residency_forbids,
)
from fleet.spec import FleetSpec

__all__ = ["DesiredState", "Manifest", "RenderFn"]

T = TypeVar("T")


class DesiredState:
    def __init__(self, render: RenderFn) -> None:
        self._render = render
        self.spec: FleetSpec | None = None
        self._plan: Plan | None = None
        self.last_placed: dict[WorkloadId, tuple[ClusterName, ...]] = {}
        """Each workload's clusters in the last plan that placed it (kept while it is
        Invalid): its last good state, against which stale copies are judged."""
        self.plan_saw: Mapping[ClusterName, str] | None = None
        """Each cluster's health in the snapshot `plan` was made from (None: not known,
        as in tests that set a plan by hand): a cluster is reconciled only against a
        plan that saw it answer (`fleet.safety.hold_reconcile`)."""
        self.head: str | None = None
        self.allowed: frozenset[str] = frozenset()
        """The `Fleet-Allow:` values of the adopted head commit's message."""
        self.workload_commit: dict[WorkloadId, str] = {}
        self.last_valid: dict[WorkloadId, Workload] = {}
        """Each workload as it last read valid (kept while it is Invalid): what residency
        judges an Invalid workload's live copies by."""
        self.data_class: dict[WorkloadId, str | None] = {}
        """Each workload's dataClass as it last read valid, kept after it left the repo
        (a short string per id this process saw): what residency judges a copy by that
        is still to be pruned (`forbidden_on`)."""
        self._cache: dict[tuple[ClusterName, WorkloadId, Assignment, str],
                          tuple[Manifest, ...]] = {}
        self.anything_placed = False
        """Whether the plan places any workload anywhere (prune's mass-deletion guard,
        `fleet.sync.plan_cluster`): kept with the plan, in the pass its setter makes
        anyway, so a cluster's reconcile does not scan the whole plan for it."""
        self.anything_pending = False
        """Whether the plan leaves any workload Pending (capacity can only help those:
        the placement loop asks it at every tick), kept with the plan likewise."""
        self._pending = self._placed = 0
        """How many workloads the plan leaves Pending, and places: counted, so that a
        plan that changes a few decisions updates them (`set_plan`)."""
        self._invalid: set[WorkloadId] = set()
        """The workloads the plan says are Invalid (`protected`), kept likewise."""
        self._sigs: dict[ClusterName, tuple[Any, tuple[str, ...], tuple[Any, ...]]] = {}
        """Each cluster's `signature`, with the index entry and protected labels it was
        made of: kept while they are the same (an index entry a plan's changes did not
        touch is the same object, `_plan_changed`) and no workload placed there changed
        its commit (`_commit_changed`), so a plan that changes k decisions costs the
        signatures of the clusters they touch, not of the fleet."""
        self._by_cluster: dict[ClusterName, dict[WorkloadId, Assignment]] | None = None
        """The plan's Placed assignments by cluster, then workload id (sorted): built
        on first use after each new plan."""
        self._memo_of: tuple[FleetSpec | None, Plan | None] = (None, None)
        self._memo: dict[Any, Any] = {}
        """`protected()`, `protected_on()` and `kept()` answers for the (spec, plan) in
        `_memo_of`."""
        self.version = 0
        """Counts the changes of what `signature` is made of besides the spec and plan
        objects themselves (a new plan, an adopted commit, a workload's commit)."""

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @plan.setter
    def plan(self, plan: Plan | None) -> None:
        self.set_plan(plan)

    def set_plan(self, plan: Plan | None,
                 changed: Collection[WorkloadId] | None = None) -> None:
        """The new plan. `changed`: the plan is the current one with only these
        workloads' decisions changed (every other decision the same object, the same ids
        in the same order: a `controllers.runtime.placerproc.PlanDelta` laid over it,
        `ProcessPlacer.changes`): what is kept with the plan is updated for them alone,
        O(changed), not O(workloads). Either way the same as a whole pass."""
        old = self._plan
        self._plan = plan
        self.version += 1
        if changed is not None and old is not None and plan is not None:
            self._plan_changed(old, plan, changed)
            return
        self._by_cluster = None
        self._pending = self._placed = 0
        self._invalid = set()
        if plan is None:
            self.anything_placed = self.anything_pending = False
            return
        for wid, wp in plan.workloads.items():
            if wp.status == "Invalid":
                self._invalid.add(wid)
            elif wp.status == "Pending":
                self._pending += 1
            elif wp.status == "Placed":
                self._placed += 1
                if wp.clusters:
                    self.last_placed[wid] = tuple(wp.clusters)
        for wid in set(self.last_placed) - set(plan.workloads):
            del self.last_placed[wid]
        self.anything_pending, self.anything_placed = self._pending > 0, self._placed > 0

    def status_counts(self) -> dict[str, int]:
        """How many workloads the plan leaves in each status (those with any), as a
        count over the plan would say: kept with the plan (`set_plan`), so the
        placement loop's log line costs nothing per plan."""
        counts = {"Invalid": len(self._invalid), "Pending": self._pending,
                  "Placed": self._placed}
        return {k: v for k, v in counts.items() if v}

    def _plan_changed(self, old: Plan, plan: Plan, changed: Collection[WorkloadId]) -> None:
        index = self._by_cluster
        touched: dict[ClusterName, dict[WorkloadId, Assignment]] = {}
        for wid in changed:
            was, now = old.workloads.get(wid), plan.workloads[wid]
            if was is not None:
                self._pending -= was.status == "Pending"
                self._placed -= was.status == "Placed"
            self._pending += now.status == "Pending"
            self._placed += now.status == "Placed"
            if now.status == "Invalid":
                self._invalid.add(wid)
            else:
                self._invalid.discard(wid)
            if now.status == "Placed" and now.clusters:
                self.last_placed[wid] = tuple(now.clusters)
            if index is None:
                continue
            for wp, add in ((was, False), (now, True)):
                if wp is None or wp.status != "Placed":
                    continue
                for a in wp.assignments:
                    on = touched.get(a.cluster)
                    if on is None:
                        on = touched[a.cluster] = dict(index.get(a.cluster, {}))
                    if add:
                        on[wid] = a
                    else:
                        on.pop(wid, None)
        if index is not None and touched:
            # a new index (the old one may be held by a caller), sharing the clusters
            # no changed decision touches
            index = dict(index)
            for cluster, on in touched.items():
                if on:
                    index[cluster] = dict(sorted(on.items()))
                else:
                    index.pop(cluster, None)
            self._by_cluster = index
        self.anything_pending, self.anything_placed = self._pending > 0, self._placed > 0

    def invalid_stale_on(self, cluster: ClusterName, live_labels: Collection[str],
                         running: Mapping[str, Set[ClusterName]]) -> set[str]:
        """Copies here of Invalid workloads whose last placement is elsewhere and runs
        there (`running`: label -> the answering clusters running it), per
        `fleet.safety.invalid_copy_stale`."""
        if self._plan is None:
            return set()
        out: set[str] = set()
        for label in live_labels:
            wid = workload_id_of_label(label)
            wp = self._plan.workloads.get(wid)
            if wp is not None and wp.status == "Invalid" and wid in self.last_placed and \
                    invalid_copy_stale(cluster, self.last_placed[wid],
                                       running.get(label, set())):
                out.add(label)
        return out

    def adopt_spec(self, spec: FleetSpec, head: str,
                   edited: Collection[WorkloadId] | None = None) -> set[WorkloadId]:
        """A new accepted commit: the workloads whose intent changed (or are new).

        `edited`: `spec` is the adopted spec with only these workloads' documents
        edited or added, none gone and none Invalid in either (a commit read through a
        tree diff, `workloads.loader.load_changed`): only they are looked at, so
        adopting a commit costs what it changed, not the fleet."""
        if edited is not None and self.spec is not None and not spec.invalid and \
                not self.spec.invalid and all(w in spec.workloads for w in edited) and \
                len(spec.workloads) == len(self.spec.workloads) + sum(
                    w not in self.spec.workloads for w in edited):
            return self._adopt_edited(spec, head, edited)
        old = self.spec.workloads if self.spec is not None else {}
        changed: set[WorkloadId] = set()
        for wid, wl in spec.workloads.items():
            before = old.get(wid)
            if before is None or (before is not wl and before != wl):
                changed.add(wid)
                self.workload_commit[wid] = head
        for wid in set(self.workload_commit) - set(spec.workloads):
            del self.workload_commit[wid]
        if changed and self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[1] not in changed}
        self._sigs = {}
        self.last_valid.update(spec.workloads)
        self.data_class.update((wid, w.spec.placement.data_class)
                               for wid, w in spec.workloads.items())
        for wid in set(self.last_valid) - set(spec.workloads) - set(spec.invalid):
            del self.last_valid[wid]
        self.spec = spec
        self.head = head
        self.version += 1
        return changed

    def _adopt_edited(self, spec: FleetSpec, head: str, edited: Collection[WorkloadId]
                      ) -> set[WorkloadId]:
        """`adopt_spec` of a spec that differs from the adopted one only in `edited`
        (whose ids were all valid and stay so: nothing leaves `workload_commit` or
        `last_valid`)."""
        assert self.spec is not None
        old = self.spec.workloads
        changed: set[WorkloadId] = set()
        for wid in sorted(edited):  # new ids in the order a whole pass adds them
            wl = spec.workloads[wid]
            before = old.get(wid)
            if before is None or (before is not wl and before != wl):
                changed.add(wid)
                self.workload_commit[wid] = head
                self._commit_changed(wid)
            self.last_valid[wid] = wl
            self.data_class[wid] = wl.spec.placement.data_class
        if changed and self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[1] not in changed}
        self.spec = spec
        self.head = head
        self.version += 1
        return changed

    def adopt_live(self, live: Mapping[WorkloadId, tuple[str, str | None]]) -> int:
        """After a restart: keep each workload's live commit (wid -> (commit, intent
        hash) of its live objects) where the live intent is still the repo's."""
        kept = 0
        for wid, (commit, intent) in sorted(live.items()):
            if intent is None or self._intent_of(wid, commit) != intent:
                continue
            kept += 1
            if self.workload_commit.get(wid) != commit:
                self.workload_commit[wid] = commit
                self._commit_changed(wid)
                self.version += 1
                self._cache = {k: v for k, v in self._cache.items() if k[1] != wid}
        return kept

    def _intent_of(self, wid: WorkloadId, commit: str) -> str | None:
        assert self.spec is not None and self.plan is not None
        wp = self.plan.workloads.get(wid)
        wl = self.spec.workloads.get(wid)
        if wp is None or wl is None or not wp.assignments:
            return None
        a = wp.assignments[0]
        cluster = self.spec.clusters.get(a.cluster)
        if cluster is None:
            return None
        for obj in self._render(wl, a, cluster, commit):
            value = ((obj.get("metadata") or {}).get("annotations") or {}).get(INTENT_HASH)
            if value:
                return str(value)
        return None

    def placed_on(self, cluster: ClusterName) -> dict[WorkloadId, Assignment]:
        """`fleet.render.placed_on(plan, cluster)`, from an index of the plan made once:
        O(workloads on `cluster`), not O(workloads of the fleet)."""
        return dict(self.placed_index().get(cluster, {}))

    def placed_index(self) -> Mapping[ClusterName, Mapping[WorkloadId, Assignment]]:
        """`fleet.render.placed_by_cluster(plan)`, made once per plan (shared: not to be
        changed); {} without a plan."""
        plan = self.plan
        if plan is None:
            return {}
        if self._by_cluster is None:
            self._by_cluster = placed_by_cluster(plan)
        return self._by_cluster

    def kept(self, key: Any, compute: Callable[[], T]) -> T:
        """`compute()`, kept while the spec and the plan are the same objects: an answer
        derived from them alone is made once per plan, not once per asker (a shared
        object: the caller does not change it)."""
        if self._memo_of[0] is not self.spec or self._memo_of[1] is not self._plan:
            self._memo_of, self._memo = (self.spec, self._plan), {}
        if key not in self._memo:
            self._memo[key] = compute()
        found: T = self._memo[key]
        return found

    def _memoised(self, key: Any, compute: Callable[[], set[str]]) -> set[str]:
        """`kept`, as a copy the caller may change."""
        return set(self.kept(key, compute))

    def protected(self) -> set[str]:
        """Workload labels prune must leave alone: invalid in this commit."""
        return self._memoised("*", self._protected)

    def _protected(self) -> set[str]:
        if self.spec is None:
            return set()
        ids = set(self.spec.invalid) | self._invalid
        return {workload_label(w) for w in ids}

    def protected_on(self, cluster: ClusterName) -> set[str]:
        """`protected()`, less the Invalid workloads whose last valid data class the
        policy in force does not allow in this cluster's jurisdiction
        (`fleet.safety.invalid_copy_kept`: residency comes first)."""
        return self._memoised(cluster, lambda: self._protected_on(cluster))

    def _protected_on(self, cluster: ClusterName) -> set[str]:
        labels = self.protected()
        spec = self.spec
        c = spec.clusters.get(cluster) if spec is not None else None
        if spec is None or c is None or not labels:
            return labels
        out = set()
        for label in labels:
            wl = self.last_valid.get(workload_id_of_label(label))
            allowed = None if wl is None else spec.residency.allows(
                wl.spec.placement.data_class, c.jurisdiction)
            if invalid_copy_kept(allowed):
                out.add(label)
        return out

    def forbidden_on(self, cluster: ClusterName, live_labels: Set[str]) -> set[str]:
        """Live copies here whose dataClass (as the workload last read valid, in the repo
        or not) the policy in force does not allow in this cluster's jurisdiction
        (`fleet.safety.residency_forbids`): deleted first, whatever else holds."""
        spec = self.spec
        c = spec.clusters.get(cluster) if spec is not None else None
        if spec is None or c is None:
            return set()
        out: set[str] = set()
        for label in live_labels:
            wid = workload_id_of_label(label)
            if wid not in self.data_class:
                continue  # never seen valid by this process: not known, not judged
            if residency_forbids(spec.residency.allows(self.data_class[wid], c.jurisdiction)):
                out.add(label)
        return out

    def stale_on(self, cluster: ClusterName, live_labels: Collection[str],
                 reachable: Set[ClusterName] | None = None,
                 running: Mapping[str, Set[ClusterName]] | None = None) -> set[str]:
        """Copies here of workloads the plan now places on other clusters only, which
        answer (`reachable`; None: every cluster of the plan): `fleet.safety`."""
        if self.plan is None:
            return set()
        out: set[str] = set()
        for label in live_labels:
            wp = self.plan.workloads.get(workload_id_of_label(label))
            if wp is None or wp.status != "Placed" or cluster in wp.clusters:
                continue
            answers = set(wp.clusters) if reachable is None else reachable
            if keep_live_copy(cluster, wp, answers) is None:
                out.add(label)
        if running is not None:
            out |= self.invalid_stale_on(cluster, live_labels, running)
        return out

    def kept_on(self, cluster: ClusterName, live_labels: set[str],
                reachable: Set[ClusterName]) -> dict[str, str]:
        """Live copies here the plan does not place here that must stay anyway, with
        why (`fleet.safety.keep_live_copy`: Pending because a cluster is away or its
        spread cannot be met, placed only on clusters that do not answer, Invalid):
        prune leaves them alone."""
        if self.plan is None:
            return {}
        out: dict[str, str] = {}
        protected = self.protected_on(cluster)
        for label in sorted(live_labels):
            wp = self.plan.workloads.get(workload_id_of_label(label))
            if wp is None or cluster in wp.clusters:
                continue
            if wp.status == "Invalid" and label not in protected:
                continue  # residency forbids its last valid version here
            why = keep_live_copy(cluster, wp, reachable)
            if why is not None:
                out[label] = why
        return out

    def signature(self, cluster: ClusterName) -> tuple[Any, ...]:
        """Changes when what this cluster should run changes (an enqueue filter); kept
        (`_sigs`) while what it is made of is the same."""
        placed = self.placed_index().get(cluster)
        protected = tuple(sorted(self.protected_on(cluster)))
        kept = self._sigs.get(cluster)
        if kept is not None and kept[0] is placed and kept[1] == protected:
            return kept[2]
        sig = (*((wid, a, self.workload_commit.get(wid)) for wid, a in (placed or {}).items()),
               ("protected", protected))
        self._sigs[cluster] = (placed, protected, sig)
        return sig

    def _commit_changed(self, wid: WorkloadId) -> None:
        """`wid`'s commit changed: the signatures of the clusters the plan places it on
        are made again."""
        wp = self._plan.workloads.get(wid) if self._plan is not None else None
        if wp is not None and wp.status == "Placed":
            for a in wp.assignments:
                self._sigs.pop(a.cluster, None)

    def render_missing(self, cluster: ClusterName) -> Iterator[None]:
        """Render what `objects_for(cluster)` would render anew (not in the cache), one
        workload at a time, yielding after each: a caller in the event loop lets the
        loop run between them (a cold cluster of hundreds of workloads is seconds of
        rendering). `objects_for` then finds them all in the cache."""
        spec, head = self.spec, self.head
        c = spec.clusters.get(cluster) if spec is not None else None
        if spec is None or head is None or c is None:
            return
        for wid, a in self.placed_on(cluster).items():
            wl = spec.workloads.get(wid)
            if wl is None:
                continue
            commit = self.workload_commit.get(wid, head)  # what `commit_of` will say
            key = (cluster, wl.id, a, commit)
            if key not in self._cache:
                self._cache[key] = self._render(wl, a, c, commit)
                yield

    def objects_for(self, cluster: ClusterName) -> tuple[list[Manifest], dict[str, WorkloadId]]:
        """Every object this cluster should have, and label -> workload id of them
        (`fleet.render.cluster_objects`, each workload at its own commit, cached)."""
        spec, head = self.spec, self.head
        if spec is None or head is None:
            return [], {}

        def commit_of(wid: WorkloadId) -> str:
            commit = self.workload_commit.get(wid)
            if commit is None:
                commit = self.workload_commit[wid] = head
                self._commit_changed(wid)
                self.version += 1  # a signature made of it changes
            return commit

        def cached(wl: Workload, a: Assignment, c: Cluster, commit: str
                   ) -> tuple[Manifest, ...]:
            key = (cluster, wl.id, a, commit)
            rendered = self._cache.get(key)
            if rendered is None:
                rendered = self._cache[key] = self._render(wl, a, c, commit)
            return rendered

        return cluster_objects(spec, self.placed_on(cluster), cluster, commit_of, cached)
