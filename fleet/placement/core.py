"""The fleet-wide placement pass: every workload, in a fixed order, against shared state.

`Planner(spec, capacity)` builds the frozen snapshot and its indexes once; `plan()`
places every workload of the spec and returns a `Plan`. `place(...)` is the one-call form.

The pass (decided semantics, see docs/placement.md):
1. *Keep*: workloads of `previous` are judged first, by priority (desc) then id, for
   keeping exactly what runs: every rule must still hold (residency first), with the
   running-pod semantics of Health, Cordon and Taint, their replicas must still fit the
   nodes, and the quota. Kept workloads consume capacity before anything new, so adding
   a workload never moves another, and a higher priority never preempts a running one.
2. *New*: every other workload (and each one that could not be kept, with why), by
   priority then id: filters narrow the options, scorers pick the best; a gang gets one
   cluster or nothing, a spread workload is divided over min..max clusters.
3. A workload that fits nowhere is Pending with a diagnosis in kube-scheduler's words;
   an invalid one is Invalid with its diagnostics. Nothing raises.

Each decision is a `Decision` (placement plus the node and quota writes it makes), so
the incremental planner can record and replay them.

The planner runs a profile's plugins (`fleet.placement.registry`) and never names one:
it asks each what the fast path needs (`fleet.placement.framework`).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, Team, WorkloadId
from fleet.models import Workload
from fleet.placement.context import Candidate, StaticKey, WorkloadContext, workload_context
from fleet.placement.diagnose import Shared, diagnose, keep_failure
from fleet.placement.framework import Filter, FilterResult, StaticFilter
from fleet.placement.queues import QueueKey
from fleet.placement.registry import DEFAULT_PROFILE, Plugins, Profile
from fleet.placement.snapshot import ClusterInfo, NodeKey, Snapshot, build_snapshot
from fleet.placement.spread import divide
from fleet.placement.state import Hist, Key, State, best_fit
from fleet.placement.types import (
    CHOSEN,
    DEGRADED,
    KEPT,
    SPREAD,
    Assignment,
    FlavourUsage,
    Plan,
    PreviousPlan,
    Reason,
    WorkloadPlacement,
    prepend,
)
from fleet.spec import FleetSpec

OrderKey = tuple[int, int, str]
"""(phase: 0 keep / 1 new, -priority, id): the order decisions are made in."""


@dataclass(frozen=True, slots=True)
class Group:
    """The clusters one flavour of a workload may use (static filters passed)."""

    rank: int
    flavour: Flavour
    statics: Mapping[ClusterName, int]
    """cluster -> weighted score of the static scorers."""
    extra: int
    """The most the static unranked scorers add on one of these clusters (the rest
    of a static score is in the walk's rank)."""


@dataclass(frozen=True, slots=True)
class Decision:
    placement: WorkloadPlacement
    nodes: tuple[tuple[NodeKey, Hist], ...] = ()
    """Per (cluster, flavour), the change to its histogram of nodes by free GPUs."""
    quota: tuple[tuple[tuple[Team, Flavour], int], ...] = ()
    queues: tuple[tuple[QueueKey, int], ...] = ()
    """GPUs charged per Kueue ClusterQueue (`fleet.placement.queues`)."""
    kept: bool = True
    """False when a keep attempt failed: the workload is decided again as new."""


Observer = Callable[[WorkloadContext, State], None]


class Recorder(Protocol):
    """Told every decision with the state keys it read (the incremental planner)."""

    def decided(self, key: OrderKey, wid: WorkloadId, reads: set[Key], d: Decision
                ) -> None: ...

    def kept_all(self, state: State) -> None:
        """The state after the keep phase, before any new placement."""


class Planner:
    """Placement over one (spec, capacity): snapshot, indexes and candidate caches."""

    def __init__(self, spec: FleetSpec, capacity: CapacitySnapshot,
                 profile: Profile = DEFAULT_PROFILE) -> None:
        self.spec = spec
        self.capacity = capacity
        self.snap: Snapshot = build_snapshot(spec, capacity)
        self.plugins: Plugins = profile.build(self.snap, spec)
        self.filters: tuple[Filter, ...] = self.plugins.filters
        self._keys: dict[StaticKey, StaticKey] = {}
        self._bounds: dict[tuple[Flavour, int], int] = {}
        self._candidates: dict[int, tuple[Group, ...]] = {}
        """By the identity of an interned static key."""
        self._groups: dict[tuple[Flavour, int, frozenset[ClusterName], Hashable],
                           Group] = {}
        self._passing: dict[tuple[str, Flavour | None, bool, Hashable],
                            frozenset[ClusterName]] = {}
        self._all_static: dict[tuple[Flavour, bool, Hashable],
                               frozenset[ClusterName]] = {}
        self._verdicts: dict[tuple[str, Flavour | None, bool, Hashable, ClusterName],
                             FilterResult] = {}
        self.static_diagnosis: dict[tuple[Hashable, ...], object] = {}
        self.shared = Shared()
        """Equal refusals and diagnoses as one object (`fleet.placement.diagnose`)."""
        self._contexts: dict[WorkloadId, tuple[Workload, WorkloadContext]] = {}
        self._digest: str | None = None

    # ------------------------------------------------------------------ the pass

    def plan(self, previous: PreviousPlan | None = None, *, commit: str | None = None,
             observe: tuple[WorkloadId, Observer] | None = None,
             record: Recorder | None = None) -> Plan:
        prev = previous or {}
        state = self.new_state()
        decisions: dict[WorkloadId, Decision] = {}
        decided_keep: dict[WorkloadId, Decision] = {}
        for key, wid in self.order(prev):
            ctx = self.context(wid, prev.get(wid, ()), keep=key[0] == 0)
            if observe is not None and observe[0] == wid:
                observe[1](ctx, state)
            if record is not None:
                state.reads = set()
            d = self.decide(ctx, state)
            decided_keep[wid] = d
            if record is not None:
                record.decided(key, wid, state.reads or set(), d)
                state.reads = None
            if not d.kept:
                # judged again as new, in its priority order among the new ones
                continue
            apply(state, d)
            decisions[wid] = d
        failed = {wid: d.placement.reasons for wid, d in decided_keep.items() if not d.kept}
        if record is not None:
            record.kept_all(state)
        for key, wid in self.order_new(prev, decisions):
            ctx = self.context(wid, prev.get(wid, ()), keep=False)
            if observe is not None and observe[0] == wid:
                observe[1](ctx, state)
            if record is not None:
                state.reads = set()
            d = with_reasons(self.decide(ctx, state), failed.get(wid, ()))
            if record is not None:
                record.decided(key, wid, state.reads or set(), d)
                state.reads = None
            apply(state, d)
            decisions[wid] = d
        return self.assemble(decisions, prev, commit)

    def order(self, prev: PreviousPlan) -> list[tuple[OrderKey, WorkloadId]]:
        """The keep phase: workloads that run now, by priority then id."""
        ws = self.spec.workloads
        return sorted(((0, -ws[w].spec.priority, w), w) for w in prev
                      if w in ws and prev[w])

    def order_new(self, prev: PreviousPlan, done: Mapping[WorkloadId, Decision]
                  ) -> list[tuple[OrderKey, WorkloadId]]:
        ws = self.spec.workloads
        return sorted(((1, -w.spec.priority, wid), wid) for wid, w in ws.items()
                      if wid not in done)

    def context(self, wid: WorkloadId, previous: tuple[Assignment, ...], *, keep: bool
                ) -> WorkloadContext:
        w = self.spec.workloads[wid]
        ordered = tuple(sorted(previous)) if len(previous) > 1 else tuple(previous)
        cached = self._contexts.get(wid)
        if cached is None or cached[0] is not w:
            ctx = workload_context(w, ordered, self._static_key)
            ctx = ctx.with_keep(True) if keep else ctx
        else:
            ctx = cached[1]
            if ctx.previous != ordered or ctx.keep != keep:
                ctx = ctx.rebound(ordered, keep)
            else:
                return ctx
        # The cache keeps the last one asked for: a keep pass asks for keep=True only.
        self._contexts[wid] = (w, ctx)
        return ctx

    def _static_key(self, ctx: WorkloadContext) -> StaticKey:
        key = self.plugins.static_key(ctx)
        # one instance per distinct key: cache lookups then compare by identity
        return self._keys.setdefault(key, key)

    @property
    def capacity_digest(self) -> str:
        """`CapacitySnapshot.digest()`, computed once (it serialises every node)."""
        if self._digest is None:
            self._digest = self.capacity.digest()
        return self._digest

    def same_fleet(self, spec: FleetSpec) -> bool:
        """Whether `spec` has this planner's clusters, quotas and residency policy (so
        `rebind(spec)` plans it exactly as a new planner would)."""
        old = self.spec
        return all(a is b or a == b for a, b in (
            (old.clusters, spec.clusters), (old.quotas, spec.quotas),
            (old.residency, spec.residency)))

    def rebind(self, spec: FleetSpec) -> Planner:
        """A planner for another spec of the same fleet (clusters, policy, quotas),
        sharing this one's snapshot and caches."""
        other = copy.copy(self)
        other.spec = spec
        other._contexts = dict(self._contexts)
        return other

    def decide(self, ctx: WorkloadContext, state: State) -> Decision:
        if ctx.keep:
            return self._keep(ctx, state)
        if ctx.spread:
            return self._spread(ctx, state)
        return self._single(ctx, state)

    # ------------------------------------------------------------------ keep

    def _keep(self, ctx: WorkloadContext, state: State) -> Decision:
        why = keep_failure(self, ctx, state)
        if why is not None:
            return Decision(WorkloadPlacement(ctx.id, "Pending", (), (why,)), kept=False)
        nodes: list[tuple[NodeKey, Hist]] = []
        charges: dict[tuple[Team, Flavour], int] = {}
        for a in ctx.previous:
            key = (a.cluster, a.flavour)
            if self.snap.clusters[a.cluster].seen:
                taken = best_fit(state.frees(key), ctx.count, a.replicas)
                assert taken is not None  # keep_failure checked the fit
                nodes.append((key, taken))
            q = (ctx.team, a.flavour)
            charges[q] = charges.get(q, 0) + a.gpus
        reasons = tuple(Reason(f"kept: runs here ({a.replicas} x {a.gpus_per_replica} "
                               f"{a.flavour})", a.cluster, KEPT) for a in ctx.previous)
        return Decision(WorkloadPlacement(ctx.id, "Placed", ctx.previous, reasons),
                        tuple(nodes), tuple(sorted(charges.items())),
                        self._queue_charges(ctx, ctx.previous))

    # ------------------------------------------------------------------ new

    def candidates(self, ctx: WorkloadContext) -> tuple[Group, ...]:
        """Per flavour of the workload, in its order: the clusters that pass every
        static filter for a new placement, each with its weighted static score."""
        # keys are interned (`_static_key`), and kept alive by `_keys`: the identity of
        # one is its value, and much cheaper to hash than the nested tuple
        k = id(ctx.static_key)
        found = self._candidates.get(k)
        if found is None:
            new = ctx if not ctx.keep else ctx.with_keep(False)
            found = self._candidates[k] = tuple(
                self._group(new, rank, f) for rank, f in enumerate(ctx.flavours))
        return found

    def _group(self, ctx: WorkloadContext, rank: int, flavour: Flavour) -> Group:
        """One flavour's candidates, shared by every key with the same pass-set and
        static scorer keys."""
        names = self.static_passing(ctx, flavour)
        k = (flavour, rank, names, ctx.static_key[2])
        found = self._groups.get(k)
        if found is not None:
            return found
        state = State({})
        unranked = tuple(s for s in self.plugins.static_scorers if not s[0].ranked)
        statics: dict[ClusterName, int] = {}
        extra = 0
        for name in sorted(names):
            option = Candidate(name, flavour, rank)
            part = 0
            for s, w in unranked:
                part += w * s.score(ctx, option, state)
            total = part
            for s, w in self.plugins.ranked_static:
                total += w * s.score(ctx, option, state)
            statics[name] = total
            extra = max(extra, part)
        found = self._groups[k] = Group(rank, flavour, statics, extra)
        return found

    def passing(self, flt: StaticFilter, ctx: WorkloadContext, flavour: Flavour
                ) -> frozenset[ClusterName]:
        """The clusters a static filter lets through for this key, over the fleet: its
        index, or its verdict on every cluster."""
        f = flavour if flt.per_flavour else None
        k = (flt.name, f, ctx.keep, flt.key(ctx))
        found = self._passing.get(k)
        if found is None:
            found = flt.index(ctx, f)
            if found is None:
                found = frozenset(name for name, c in self.snap.clusters.items()
                                  if flt.filter(ctx, c, f, None).ok)
            self._passing[k] = found
        return found

    def static_verdict(self, flt: StaticFilter, ctx: WorkloadContext, flavour: Flavour,
                       c: ClusterInfo, key: Hashable = None) -> FilterResult:
        """A static filter's verdict on one cluster, cached by its key (diagnoses);
        `key`: `flt.key(ctx)` when the caller has it (asking per cluster repeats it)."""
        f = flavour if flt.per_flavour else None
        k = (flt.name, f, ctx.keep, flt.key(ctx) if key is None else key, c.name)
        found = self._verdicts.get(k)
        if found is None:
            found = self._verdicts[k] = flt.filter(ctx, c, f, None)
        return found

    def static_passing(self, ctx: WorkloadContext, flavour: Flavour) -> frozenset[ClusterName]:
        """The clusters every static filter lets through for this context and flavour
        (their verdicts depend only on their keys, so this is cached by them)."""
        k = (flavour, ctx.keep, ctx.static_key[1])
        found = self._all_static.get(k)
        if found is None:
            sets = sorted((self.passing(flt, ctx, flavour) for flt in self.plugins.static_filters),
                          key=len)
            found = frozenset(self.snap.clusters) if not sets else sets[0]
            for more in sets[1:]:
                found &= more  # smallest first: each step costs the smaller set
            self._all_static[k] = found
        return found

    def new_state(self) -> State:
        return State(self.snap.nodes, rank=self.plugins.rank)

    def _score(self, ctx: WorkloadContext, option: Candidate, static: int, state: State
               ) -> int:
        total = static
        for s, w in self.plugins.dynamic_scorers:
            total += w * s.score(ctx, option, state)
        return total

    def _bound(self, flavour: Flavour, need: int) -> int:
        """The most the ranked and the dynamic scorers add above an option's rank by
        placing `need` GPUs on a cluster the workload does not run on."""
        found = self._bounds.get((flavour, need))
        if found is None:
            found = self._bounds[(flavour, need)] = sum(
                w * s.bound(flavour, need) for s, w in self.plugins.bounded)
        return found

    def _options(self, ctx: WorkloadContext, state: State, want: int, need_replicas: int
                 ) -> list[tuple[int, Candidate, int]]:
        """The best feasible option per cluster, best first, at least the top `want`.

        The same ranking as scoring every (cluster, flavour) option with every scorer,
        found with less work: the clusters the workload runs on are judged first, then
        each flavour in order; within a flavour the clusters are walked by their rank
        now (`State.ranked`, the ranked scorers' part of the score) and the walk stops
        at the first cluster that cannot beat the `want`-th best found even with the
        most the scorers can add above its rank (`Group.extra`, `_bound`).
        """
        groups = self.candidates(ctx)
        need = need_replicas * ctx.count
        plugins = self.plugins
        totals = plugins.total_filters
        room = plugins.room_filter.room(ctx, state)
        assert room is not None  # the first room filter bounds every workload (nodes)
        more_rooms = ([r for f in plugins.more_rooms if (r := f.room(ctx, state)) is not None]
                      if plugins.more_rooms else ())
        total_ok: dict[Flavour, bool] = {}

        def feasible(g: Group, name: ClusterName) -> tuple[int, Candidate, int] | None:
            ok = total_ok.get(g.flavour)
            if ok is None:
                ok = True
                for t in totals:
                    if not t.judge(ctx, g.flavour, need, state).ok:
                        ok = False
                        break
                total_ok[g.flavour] = ok
            if not ok:
                return None
            key = (name, g.flavour)
            fit = room(key)
            if more_rooms:  # a second room filter that bounds this workload (Kueue)
                for r in more_rooms:
                    fit = min(fit, r(key))
            if fit < need_replicas:
                return None
            option = Candidate(name, g.flavour, g.rank)
            return (self._score(ctx, option, g.statics[name], state), option, fit)

        best: dict[ClusterName, tuple[int, Candidate, int]] = {}
        for a in ctx.previous:
            for g in groups:
                if a.cluster in g.statics and a.cluster not in best:
                    found = feasible(g, a.cluster)
                    if found is not None:
                        best[a.cluster] = found
        for g in groups:
            if len(best) >= want:
                break
            bound = g.extra + self._bound(g.flavour, need)
            found_here: list[tuple[int, Candidate, int]] = []
            short = want - len(best)
            threshold: int | None = None
            # The `short` best scores found here, a min-heap: its root is the threshold
            # (the `short`-th best score). Sorting every option found so far at each new
            # one instead made this walk quadratic where many clusters rank alike (1,000
            # identical clusters: 86% of a 50,000-workload plan's CPU).
            top: list[int] = []
            for negbase, name in state.ranked(g.flavour):
                if name not in g.statics or name in best:
                    continue
                if threshold is not None and bound - negbase < threshold:
                    break
                found = feasible(g, name)
                if found is None:
                    continue
                found_here.append(found)
                if len(top) < short:
                    heapq.heappush(top, found[0])
                elif found[0] > top[0]:
                    heapq.heapreplace(top, found[0])
                if len(top) >= short:
                    threshold = top[0]
            for f in found_here:
                best[f[1].cluster] = f
        if not best and state.reads is not None:
            # Nothing was feasible: every candidate was judged, so the outcome does not
            # depend on the ranking, only on the candidates' own keys (already read).
            # Dropping the flavour-wide read keeps one change elsewhere in the flavour
            # from re-deciding every Pending workload in an incremental re-plan.
            for g in groups:
                state.reads.discard(("f", g.flavour, ""))
        return sorted(best.values(), key=lambda t: (-t[0], t[1].cluster))

    def _single(self, ctx: WorkloadContext, state: State) -> Decision:
        options = self._options(ctx, state, 1, ctx.replicas)
        if not options:
            return Decision(WorkloadPlacement(ctx.id, "Pending", (),
                                              diagnose(self, ctx, state)))
        score, option, _ = options[0]
        key = (option.cluster, option.flavour)
        taken = best_fit(state.frees(key), ctx.count, ctx.replicas)
        assert taken is not None
        gpus = ctx.replicas * ctx.count
        a = Assignment(option.cluster, option.flavour, ctx.replicas, ctx.count)
        reason = Reason(self._chosen(ctx, option, score), option.cluster, CHOSEN)
        return Decision(WorkloadPlacement(ctx.id, "Placed", (a,), (reason,)),
                        ((key, taken),), (((ctx.team, option.flavour), gpus),),
                        self._queue_charges(ctx, (a,)))

    def _spread(self, ctx: WorkloadContext, state: State) -> Decision:
        # Spread over up to maxClusters, but a cluster of a later flavour is added only
        # while minClusters or the replicas still need it (earlier flavours preferred).
        chosen: list[tuple[int, Candidate, int]] = []
        for found in self._options(ctx, state, ctx.max_clusters, 1):
            if len(chosen) >= ctx.max_clusters:
                break
            if (len(chosen) >= ctx.min_clusters
                    and sum(r for _, _, r in chosen) >= ctx.replicas
                    and found[1].rank > max(c.rank for _, c, _ in chosen)):
                break
            chosen.append(found)
        shares = divide(ctx.replicas, [room for _, _, room in chosen])
        degraded: Reason | None = None
        if len(chosen) < ctx.min_clusters or shares is None:
            if not ctx.previous_clusters & {c.cluster for _, c, _ in chosen}:
                return Decision(WorkloadPlacement(ctx.id, "Pending", (),
                                                  diagnose(self, ctx, state, chosen_room=sum(
                                                      r for _, _, r in chosen))))
            # It runs on some of these clusters: keep it there (and wherever else it
            # fits) with what room allows, rather than take its surviving replicas
            # down because a cluster it also ran on is away (a spread is for HA).
            rooms = [room for _, _, room in chosen]
            shares = divide(min(ctx.replicas, sum(rooms)), rooms)
            assert shares is not None  # one room each at least, no more clusters than replicas
            degraded = Reason(
                f"degraded: {sum(shares)} of {ctx.replicas} replicas on {len(chosen)} "
                f"cluster{'' if len(chosen) == 1 else 's'} (spread wants "
                f"{ctx.min_clusters}..{ctx.max_clusters}); kept where it still runs",
                None, DEGRADED)
        totals: dict[Flavour, int] = {}
        for (_, option, _), n in zip(chosen, shares, strict=True):
            totals[option.flavour] = totals.get(option.flavour, 0) + n * ctx.count
        for f, g in sorted(totals.items()):
            for flt in self.plugins.total_filters:
                r = flt.judge(ctx, f, g, state)
                if not r.ok:
                    return Decision(WorkloadPlacement(ctx.id, "Pending", (), (
                        Reason(f"0/{len(self.snap.clusters)} clusters: {r.summary}",
                               None, r.rule),)))
        assignments: list[Assignment] = []
        nodes: list[tuple[NodeKey, Hist]] = []
        reasons: list[Reason] = []
        for (score, option, _), n in zip(chosen, shares, strict=True):
            key = (option.cluster, option.flavour)
            taken = best_fit(state.frees(key), ctx.count, n)
            assert taken is not None
            nodes.append((key, taken))
            assignments.append(Assignment(option.cluster, option.flavour, n, ctx.count))
            reasons.append(Reason(f"{n} of {ctx.replicas} replicas; "
                                  + self._chosen(ctx, option, score), option.cluster, SPREAD))
        order = sorted(range(len(assignments)), key=lambda i: assignments[i])
        first = (degraded,) if degraded is not None else ()
        placed = tuple(assignments[i] for i in order)
        return Decision(
            WorkloadPlacement(ctx.id, "Placed", placed,
                              (*first, *(reasons[i] for i in order))),
            tuple(nodes[i] for i in order),
            tuple(((ctx.team, f), g) for f, g in sorted(totals.items())),
            self._queue_charges(ctx, placed))

    def _queue_charges(self, ctx: WorkloadContext, placed: tuple[Assignment, ...]
                       ) -> tuple[tuple[QueueKey, int], ...]:
        """The GPUs a queued workload's assignments charge to its team's Kueue
        ClusterQueue on each Kueue cluster (none elsewhere, none for a Deployment)."""
        queues = self.snap.queues
        if not ctx.queued or not queues:
            return ()
        out: dict[QueueKey, int] = {}
        for a in placed:
            key = queues.charge(a.cluster, ctx.team, a.flavour)
            if key is not None:
                out[key] = out.get(key, 0) + a.gpus
        return tuple(sorted(out.items()))

    def _chosen(self, ctx: WorkloadContext, option: Candidate, score: int) -> str:
        return (f"chosen: {option.flavour} (flavour {option.rank + 1} of "
                f"{len(ctx.flavours)}), score {score}")

    # ------------------------------------------------------------------ the result

    def assemble(self, decisions: Mapping[WorkloadId, Decision], prev: PreviousPlan,
                 commit: str | None) -> Plan:
        out: dict[WorkloadId, WorkloadPlacement] = {}
        for wid in self.spec.workloads:
            out[wid] = decisions[wid].placement
        for wid, diags in self.spec.invalid.items():
            out[wid] = WorkloadPlacement(wid, "Invalid", (), tuple(
                Reason(d.format(), None, "Invalid") for d in diags))
        allocated: dict[NodeKey, int] = {}
        for p in out.values():
            for a in p.assignments:
                k = (a.cluster, a.flavour)
                allocated[k] = allocated.get(k, 0) + a.gpus
        usage: dict[ClusterName, dict[Flavour, FlavourUsage]] = {}
        for (c, f), cap in sorted(self.snap.capacity.items()):
            usage.setdefault(c, {})[f] = FlavourUsage(cap, allocated.get((c, f), 0))
        return Plan(commit=commit, workloads=dict(sorted(out.items())), usage=usage,
                    capacity_digest=self.capacity_digest,
                    policy_version=self.spec.residency.version)


def with_reasons(d: Decision, first: Sequence[Reason]) -> Decision:
    """The decision with `first` (why it could not stay where it ran) before its own."""
    if not first:
        return d
    p = d.placement
    return dataclasses.replace(d, placement=dataclasses.replace(
        p, reasons=prepend(first, p.reasons)))


def apply(state: State, d: Decision) -> None:
    for key, taken in d.nodes:
        state.allocate(key, taken)
    for (team, flavour), gpus in d.quota:
        state.charge(team, flavour, gpus)
    for queue, gpus in d.queues:
        state.charge_queue(queue, gpus)


def place(spec: FleetSpec, capacity: CapacitySnapshot, previous: PreviousPlan | None = None,
          *, commit: str | None = None, profile: Profile = DEFAULT_PROFILE) -> Plan:
    """Where every workload of `spec` runs, given the fleet's capacity and what runs now."""
    return Planner(spec, capacity, profile).plan(previous, commit=commit)
