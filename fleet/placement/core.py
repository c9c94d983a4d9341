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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, Team, WorkloadId
from fleet.placement.context import Candidate, WorkloadContext, workload_context
from fleet.placement.diagnose import diagnose, keep_failure
from fleet.placement.filters import default_filters
from fleet.placement.framework import WEIGHTS, Filter
from fleet.placement.quota import quota_check
from fleet.placement.scorers import default_scorers
from fleet.placement.snapshot import NodeKey, Snapshot, build_snapshot
from fleet.placement.spread import divide
from fleet.placement.state import State, best_fit, replicas_that_fit
from fleet.placement.types import (
    Assignment,
    FlavourUsage,
    Plan,
    PreviousPlan,
    Reason,
    WorkloadPlacement,
)
from fleet.spec import FleetSpec

OrderKey = tuple[int, int, str]
"""(phase: 0 keep / 1 new, -priority, id): the order decisions are made in."""


@dataclass(frozen=True, slots=True)
class Decision:
    placement: WorkloadPlacement
    nodes: tuple[tuple[NodeKey, tuple[int, ...]], ...] = ()
    """Per (cluster, flavour), the GPUs taken on each node."""
    quota: tuple[tuple[tuple[Team, Flavour], int], ...] = ()
    kept: bool = True
    """False when a keep attempt failed: the workload is decided again as new."""


Observer = Callable[[WorkloadContext, State], None]


class Planner:
    """Placement over one (spec, capacity): snapshot, indexes and candidate caches."""

    def __init__(self, spec: FleetSpec, capacity: CapacitySnapshot) -> None:
        self.spec = spec
        self.capacity = capacity
        self.snap: Snapshot = build_snapshot(spec, capacity)
        self.filters: tuple[Filter, ...] = default_filters(self.snap, spec.residency.allows)
        self.scorers = default_scorers(self.snap)
        self._static = tuple(f for f in self.filters if f.static and f.name != "Residency")
        self._candidates: dict[str, tuple[Candidate, ...]] = {}
        self._contexts: dict[WorkloadId, WorkloadContext] = {}

    # ------------------------------------------------------------------ the pass

    def plan(self, previous: PreviousPlan | None = None, *, commit: str | None = None,
             observe: tuple[WorkloadId, Observer] | None = None) -> Plan:
        prev = previous or {}
        state = State(self.snap.nodes)
        decisions: dict[WorkloadId, Decision] = {}
        for key, wid in self.order(prev):
            ctx = self.context(wid, prev.get(wid, ()), keep=key[0] == 0)
            if observe is not None and observe[0] == wid:
                observe[1](ctx, state)
            d = self.decide(ctx, state)
            if not d.kept:
                # judged again as new, in its priority order among the new ones
                continue
            apply(state, d)
            decisions[wid] = d
        for _key, wid in self.order_new(prev, decisions):
            ctx = self.context(wid, prev.get(wid, ()), keep=False)
            if observe is not None and observe[0] == wid:
                observe[1](ctx, state)
            d = self.decide(ctx, state)
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
        base = self._contexts.get(wid)
        if base is None or base.previous != previous:
            base = self._contexts[wid] = workload_context(self.spec.workloads[wid],
                                                          tuple(sorted(previous)))
        return base.with_keep(True) if keep else base

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
        nodes: list[tuple[NodeKey, tuple[int, ...]]] = []
        charges: dict[tuple[Team, Flavour], int] = {}
        for a in ctx.previous:
            key = (a.cluster, a.flavour)
            if self.snap.clusters[a.cluster].health in ("Healthy", "Degraded"):
                taken = best_fit(state.frees(key), ctx.count, a.replicas)
                assert taken is not None  # keep_failure checked the fit
                nodes.append((key, tuple(taken)))
            q = (ctx.team, a.flavour)
            charges[q] = charges.get(q, 0) + a.gpus
        reasons = tuple(Reason(f"kept: runs here ({a.replicas} x {a.gpus_per_replica} "
                               f"{a.flavour})", a.cluster, "Sticky") for a in ctx.previous)
        return Decision(WorkloadPlacement(ctx.id, "Placed", ctx.previous, reasons),
                        tuple(nodes), tuple(sorted(charges.items())))

    # ------------------------------------------------------------------ new

    def candidates(self, ctx: WorkloadContext) -> tuple[Candidate, ...]:
        """Options that pass every static filter for a new placement, by (rank, cluster)."""
        found = self._candidates.get(ctx.static_key)
        if found is not None:
            return found
        new = ctx if not ctx.keep else ctx.with_keep(False)
        allowed = self.snap.allowed_clusters(self.spec, ctx.data_class)
        out: list[Candidate] = []
        for rank, f in enumerate(ctx.flavours):
            for name in sorted(self.snap.by_flavour.get(f, frozenset()) & allowed):
                c = self.snap.clusters[name]
                if all(flt.filter(new, c, f, None).ok for flt in self._static):
                    out.append(Candidate(name, f, rank))
        found = self._candidates[ctx.static_key] = tuple(out)
        return found

    def _score(self, ctx: WorkloadContext, option: Candidate, state: State) -> int:
        return sum(WEIGHTS[s.name] * s.score(ctx, option, state) for s in self.scorers)

    def _single(self, ctx: WorkloadContext, state: State) -> Decision:
        gpus = ctx.replicas * ctx.count
        quota_ok: dict[Flavour, bool] = {}
        best: tuple[int, Candidate] | None = None
        sticky = ctx.previous_clusters
        # Weights make the score lexicographic (sticky, flavour rank, rest): the first
        # flavour rank with a feasible option wins unless a sticky option exists.
        best_rank = None
        for option in self.candidates(ctx):
            if best_rank is not None and option.rank > best_rank and not sticky:
                break
            ok = quota_ok.get(option.flavour)
            if ok is None:
                ok = quota_ok[option.flavour] = quota_check(
                    self.snap, state, ctx.team, option.flavour, gpus) is None
            if not ok:
                continue
            frees = state.frees((option.cluster, option.flavour))
            if replicas_that_fit(frees, ctx.count) < ctx.replicas:
                continue
            score = self._score(ctx, option, state)
            if best is None or score > best[0]:
                best = (score, option)
                best_rank = option.rank
        if best is None:
            return Decision(WorkloadPlacement(ctx.id, "Pending", (),
                                              diagnose(self, ctx, state)))
        option = best[1]
        key = (option.cluster, option.flavour)
        taken = best_fit(state.frees(key), ctx.count, ctx.replicas)
        assert taken is not None
        a = Assignment(option.cluster, option.flavour, ctx.replicas, ctx.count)
        reason = Reason(self._chosen(ctx, option, best[0]), option.cluster, "Score")
        return Decision(WorkloadPlacement(ctx.id, "Placed", (a,), (reason,)),
                        ((key, tuple(taken)),), (((ctx.team, option.flavour), gpus),))

    def _spread(self, ctx: WorkloadContext, state: State) -> Decision:
        per_cluster: dict[ClusterName, tuple[int, Candidate, int]] = {}
        quota_ok: dict[Flavour, bool] = {}
        for option in self.candidates(ctx):
            ok = quota_ok.get(option.flavour)
            if ok is None:
                ok = quota_ok[option.flavour] = quota_check(
                    self.snap, state, ctx.team, option.flavour, ctx.count) is None
            if not ok:
                continue
            room = replicas_that_fit(state.frees((option.cluster, option.flavour)), ctx.count)
            if room < 1:
                continue
            score = self._score(ctx, option, state)
            held = per_cluster.get(option.cluster)
            if held is None or score > held[0]:
                per_cluster[option.cluster] = (score, option, room)
        ranked = sorted(per_cluster.values(), key=lambda t: (-t[0], t[1].cluster))
        chosen = ranked[:ctx.max_clusters]
        shares = divide(ctx.replicas, [room for _, _, room in chosen])
        if len(chosen) < ctx.min_clusters or shares is None:
            return Decision(WorkloadPlacement(ctx.id, "Pending", (),
                                              diagnose(self, ctx, state, chosen_room=sum(
                                                  r for _, _, r in chosen))))
        totals: dict[Flavour, int] = {}
        for (_, option, _), n in zip(chosen, shares, strict=True):
            totals[option.flavour] = totals.get(option.flavour, 0) + n * ctx.count
        for f, g in sorted(totals.items()):
            why = quota_check(self.snap, state, ctx.team, f, g)
            if why is not None:
                return Decision(WorkloadPlacement(ctx.id, "Pending", (), (
                    Reason(f"0/{len(self.snap.clusters)} clusters: quota ({why})",
                           None, "Quota"),)))
        assignments: list[Assignment] = []
        nodes: list[tuple[NodeKey, tuple[int, ...]]] = []
        reasons: list[Reason] = []
        for (score, option, _), n in zip(chosen, shares, strict=True):
            key = (option.cluster, option.flavour)
            taken = best_fit(state.frees(key), ctx.count, n)
            assert taken is not None
            nodes.append((key, tuple(taken)))
            assignments.append(Assignment(option.cluster, option.flavour, n, ctx.count))
            reasons.append(Reason(f"{n} of {ctx.replicas} replicas; "
                                  + self._chosen(ctx, option, score), option.cluster, "Spread"))
        order = sorted(range(len(assignments)), key=lambda i: assignments[i])
        return Decision(
            WorkloadPlacement(ctx.id, "Placed", tuple(assignments[i] for i in order),
                              tuple(reasons[i] for i in order)),
            tuple(nodes[i] for i in order),
            tuple(((ctx.team, f), g) for f, g in sorted(totals.items())))

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
                    capacity_digest=self.capacity.digest(),
                    policy_version=self.spec.residency.version)


def apply(state: State, d: Decision) -> None:
    for key, taken in d.nodes:
        state.allocate(key, taken)
    for (team, flavour), gpus in d.quota:
        state.charge(team, flavour, gpus)


def place(spec: FleetSpec, capacity: CapacitySnapshot, previous: PreviousPlan | None = None,
          *, commit: str | None = None) -> Plan:
    """Where every workload of `spec` runs, given the fleet's capacity and what runs now."""
    return Planner(spec, capacity).plan(previous, commit=commit)
