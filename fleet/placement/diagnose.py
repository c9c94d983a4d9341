"""Why a workload is not placed: per cluster the first rule it fails, and one summary line.

Like kube-scheduler's `FitError`, a Pending workload gets one line that counts clusters
by the first rule that filtered them out, in filter order:

    0/12 clusters: 7 residency(eu-personal), 3 no h100-80gb,
    2 capacity (needs 8 on one node, largest free 4)

plus one Reason per cluster. A workload with several flavours fails a per-flavour rule on
a cluster only when every flavour fails it; the reason shown is the first flavour's.

The per-cluster Reasons are kept by cause (`Diagnosis`, `Refusal`): clusters that share a
message and rule are one Refusal, and equal Refusals and Diagnoses are one object per
planner (`Shared`). With every cluster Unknown or a full fleet, a Reason per cluster per
Pending workload had made the plan grow with clusters x workloads (issue 22).

`keep_failure` says why a running workload cannot stay where it runs (cluster gone,
residency changed, unreachable past the grace, NoExecute taint, shape changed, nodes
lost), which becomes the first reason of its new decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fleet.ids import ClusterName, Flavour
from fleet.placement.context import WorkloadContext
from fleet.placement.framework import Filter, FilterResult, RoomFilter, StaticFilter
from fleet.placement.snapshot import ClusterInfo, Snapshot
from fleet.placement.state import State
from fleet.placement.types import DROPPED, GONE, KEPT, SPREAD, Diagnosis, Reason, Refusal

if TYPE_CHECKING:
    from fleet.placement.registry import Plugins


class Planner(Protocol):
    """What a diagnosis reads of `fleet.placement.core.Planner`: its plugins and its
    cached static pass-sets. A protocol, so this module stays below the pass that calls
    it (the `layers` contract in pyproject.toml)."""

    @property
    def snap(self) -> Snapshot: ...
    @property
    def plugins(self) -> Plugins: ...
    @property
    def filters(self) -> tuple[Filter, ...]: ...
    @property
    def static_diagnosis(self) -> dict[tuple[Hashable, ...], object]: ...
    @property
    def shared(self) -> Shared: ...
    def passing(self, flt: StaticFilter, ctx: WorkloadContext, flavour: Flavour
                ) -> frozenset[ClusterName]: ...
    def static_verdict(self, flt: StaticFilter, ctx: WorkloadContext, flavour: Flavour,
                       c: ClusterInfo, key: Hashable = None) -> FilterResult: ...
    def static_passing(self, ctx: WorkloadContext, flavour: Flavour
                       ) -> frozenset[ClusterName]: ...


def cluster_verdicts(planner: Planner, ctx: WorkloadContext, c: ClusterInfo,
                     state: State | None, *, stop: bool = True
                     ) -> dict[Flavour, list[FilterResult]]:
    """Per flavour of the workload, the filter results on this cluster, in order.

    With `stop`, a flavour's list ends at its first failure (diagnosis); without, every
    filter is judged (explain). Cluster-wide filters are judged once and shared.
    """
    out: dict[Flavour, list[FilterResult]] = {f: [] for f in ctx.flavours}
    alive = set(ctx.flavours)
    for flt in planner.filters:
        if flt.kind != "static" and state is None:
            continue
        if flt.per_flavour:
            for f in ctx.flavours:
                if f in alive:
                    r = flt.filter(ctx, c, f, state)
                    out[f].append(r)
                    if not r.ok and stop:
                        alive.discard(f)
        else:
            r = flt.filter(ctx, c, None, state)
            for f in ctx.flavours:
                if f in alive:
                    out[f].append(r)
            if not r.ok and stop:
                alive.clear()
        if not alive:
            break
    return out


def first_failure(verdicts: dict[Flavour, list[FilterResult]]) -> FilterResult | None:
    """None if some flavour passes every filter, else the first flavour's failure."""
    failures = []
    for rs in verdicts.values():
        bad = next((r for r in rs if not r.ok), None)
        if bad is None:
            return None
        failures.append(bad)
    return failures[0] if failures else None


Cause = tuple[str, str | None]
"""(message, rule) of a per-cluster Reason: what a Refusal groups clusters by."""


class Shared:
    """One object per distinct Refusal and Diagnosis of a planner's diagnoses.

    Workloads alike (same static key and shape) that are refused alike -- every one
    while the clusters are Unknown, and the Pending ones of a full fleet, where a
    Pending decision changes nothing the next one reads -- get the same objects, so
    the plan and its pickled copy (pickle writes a shared object once) hold each once."""

    __slots__ = ("_diagnoses", "_refusals")

    def __init__(self) -> None:
        self._refusals: dict[Refusal, Refusal] = {}
        self._diagnoses: dict[tuple[str, str, tuple[int, ...]], Diagnosis] = {}

    def refusals(self, groups: dict[Cause, list[ClusterName]]) -> tuple[Refusal, ...]:
        found = self._refusals
        out = []
        for (message, rule), names in groups.items():
            r = Refusal(message, rule, tuple(names))
            out.append(found.setdefault(r, r))
        return tuple(out)

    def diagnosis(self, line: str, rule: str, refusals: tuple[Refusal, ...]) -> Diagnosis:
        # refusals are shared, so their identities name them (kept alive by `_refusals`)
        key = (line, rule, tuple(map(id, refusals)))
        found = self._diagnoses.get(key)
        if found is None:
            found = self._diagnoses[key] = Diagnosis((Reason(line, None, rule),), refusals)
        return found


@dataclass(frozen=True, slots=True)
class _StaticPart:
    """What the static filters say for one static key: cached per planner."""

    counts: Counter[str]
    refusals: tuple[Refusal, ...]
    survivors: tuple[tuple[ClusterInfo, tuple[Flavour, ...]], ...]
    """Clusters with the flavours that passed every static filter."""
    rules: frozenset[str | None]


def _static_part(planner: Planner, ctx: WorkloadContext) -> _StaticPart:
    cache = planner.static_diagnosis
    key = ctx.static_key[:2]  # what the static filters read
    found = cache.get(key)
    if isinstance(found, _StaticPart):
        return found
    counts: Counter[str] = Counter()
    groups: dict[Cause, list[ClusterName]] = {}
    survivors: list[tuple[ClusterInfo, tuple[Flavour, ...]]] = []
    alive_in = [planner.static_passing(ctx, f) for f in ctx.flavours]
    # a cluster no flavour survives is counted under the first flavour's first failing
    # filter, as `first_failure` reads verdicts; pass-sets are cached by the planner
    first = ctx.flavours[0]
    statics = planner.plugins.static_filters
    sets = [planner.passing(flt, ctx, first) for flt in statics]
    keys = [flt.key(ctx) for flt in statics]  # once, not once per failing cluster
    for name, c in planner.snap.clusters.items():
        alive = tuple(f for f, s in zip(ctx.flavours, alive_in, strict=True) if name in s)
        if alive:
            survivors.append((c, alive))
            continue
        i = next(i for i, s in enumerate(sets) if name not in s)
        bad = planner.static_verdict(statics[i], ctx, first, c, keys[i])
        groups.setdefault((bad.message, bad.rule), []).append(name)
        counts[bad.summary] += 1
    part = _StaticPart(counts, planner.shared.refusals(groups), tuple(survivors),
                       frozenset(rule for _, rule in groups))
    cache[key] = part
    return part


def diagnose(planner: Planner, ctx: WorkloadContext, state: State,
             chosen_room: int | None = None) -> Diagnosis:
    static = _static_part(planner, ctx)
    counts = Counter(static.counts)
    rooms = planner.plugins.room_filters
    short: dict[RoomFilter, list[FilterResult]] = {r: [] for r in rooms}
    found: dict[Cause, list[ClusterName]] = {}
    passing = 0
    for c, alive in static.survivors:
        bad: tuple[Filter, FilterResult] | None = None
        ok = False
        for f in alive:
            first = _first_dynamic_failure(planner, ctx, c, f, state)
            if first is None:
                ok = True
                break
            bad = bad or first
        if ok:
            passing += 1
            continue
        assert bad is not None
        flt, r = bad
        found.setdefault((r.message, r.rule), []).append(c.name)
        if flt in short:
            short[flt].append(r)  # summarized by its plugin, after the counts
        else:
            counts[r.summary] += 1
    parts = [f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    parts.extend(r.summarize(ctx, rs) for r, rs in short.items() if rs)
    n = len(planner.snap.clusters)
    rule: str | None
    if passing and ctx.spread:
        room = chosen_room or 0
        parts.append(f"{passing} fit but spread needs {ctx.replicas} replicas over "
                     f"{ctx.min_clusters}..{ctx.max_clusters} clusters, room for {room}")
        rule = SPREAD
    elif passing:
        parts.append(f"{passing} fit one by one")
        rule = rooms[0].name
    else:
        rules = static.rules | {rule for _, rule in found}
        rule = next(iter(rules)) if len(rules) == 1 else None
    line = f"0/{n} clusters: " + ", ".join(parts) if parts else f"0/{n} clusters"
    refusals = static.refusals + planner.shared.refusals(found) if found else static.refusals
    return planner.shared.diagnosis(line, rule or "Unschedulable", refusals)


def _first_dynamic_failure(planner: Planner, ctx: WorkloadContext, c: ClusterInfo,
                           f: Flavour, state: State) -> tuple[Filter, FilterResult] | None:
    for flt in planner.plugins.dynamic_filters:
        r = flt.filter(ctx, c, f, state)
        if not r.ok:
            return flt, r
    return None


def keep_failure(planner: Planner, ctx: WorkloadContext, state: State) -> Reason | None:
    """None when the workload may keep exactly what runs, else why not."""
    prev = ctx.previous
    clusters = [a.cluster for a in prev]
    if sum(a.replicas for a in prev) != ctx.replicas:
        return Reason(f"resized: runs {sum(a.replicas for a in prev)} replicas, wants "
                      f"{ctx.replicas}", None, KEPT)
    if any(a.gpus_per_replica != ctx.count for a in prev):
        return Reason(f"GPUs per replica changed to {ctx.count}", None, KEPT)
    if len(set(clusters)) != len(clusters) or not (
            ctx.min_clusters <= len(clusters) <= max(ctx.max_clusters, 1)):
        return Reason(f"runs on {len(clusters)} clusters, wants {ctx.min_clusters}.."
                      f"{ctx.max_clusters}", None, SPREAD)
    totals: dict[Flavour, int] = {}
    for a in prev:
        c = planner.snap.clusters.get(a.cluster)
        if c is None:
            return Reason("cluster is gone from the repo", a.cluster, GONE)
        if a.flavour not in ctx.flavours:
            return Reason(f"flavour {a.flavour} is no longer in its list", a.cluster, DROPPED)
        # The common case, every static filter letting it stay, is one lookup;
        # otherwise each filter is asked, in order, for the first one that refuses.
        # Total filters (quota) are judged below, on all it runs of a flavour.
        statics_ok = a.cluster in planner.static_passing(ctx, a.flavour)
        plugins = planner.plugins
        for flt in plugins.dynamic_filters if statics_ok else plugins.filters:
            if flt.kind == "total":
                continue
            r = flt.filter(ctx, c, a.flavour if flt.per_flavour else None, state)
            if not r.ok:
                return Reason(f"cannot stay: {r.message}", a.cluster, r.rule)
        totals[a.flavour] = totals.get(a.flavour, 0) + a.gpus
    for f, g in sorted(totals.items()):
        for t in planner.plugins.total_filters:
            r = t.judge(ctx, f, g, state)
            if not r.ok:
                return Reason(f"cannot stay: {r.message}", None, r.rule)
    return None
