"""Plan diff: what merging a change would do to the fleet, for the pull request. Pure.

From the base side (spec and plan of the base commit) and the head side (spec and plan
of what the merge would give, planned with the base plan as `previous`, as the
controller would after merge), `diff_plans` says per workload whether it is Added,
Moved (from -> to, and why), Resized, Removed or Unchanged; which workloads of *other*
teams the change displaces (pushed to Pending, moved or shrunk because capacity or
quota got used up: the loud part); per cluster, a unified diff of the rendered
manifests; GPUs per team against quota and per flavour against capacity, before and
after; the estimated cost per hour by flavour price; the head's validation errors,
guardrail violations and the protected-path flags.

Placement is compared, not manifests alone: Argo CD's and Flux's diffs show YAML, but
the question on a GPU fleet's PR is "where will it land, and who loses their GPUs".

Rendering is injected (`render(spec, workload_id, assignment, commit) -> str`,
deterministic YAML), and only workloads whose inputs differ are rendered, so a plan of a
10,000 workload fleet costs what the change touches. Each side renders with its own
commit (the base side shows the base's `source-commit`, as it runs), but a workload whose
manifests differ only by that commit is not shown as a change.

An Invalid head keeps what runs (the controller never prunes an invalid workload): its
base placement is still counted in GPUs and cost after the change, never as freed, and
it is labelled "Invalid (kept running)". A workload whose definition changed while its
placement did not (a dataClass or image change) is labelled "Changed", with the
dataClass move said, never "Unchanged".
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fleet.diagnostics import Diagnostic
from fleet.ids import ClusterName, Flavour, Team, WorkloadId, team_of
from fleet.owners import PathFlag
from fleet.placement.types import Assignment, PlacementStatus, Plan, WorkloadPlacement
from fleet.render import Manifest, render
from fleet.render.admission import recreate_needed
from fleet.spec import FleetSpec
from fleet.transitions import PlanChange, transition

ChangeKind = PlanChange
Renderer = Callable[[FleetSpec, WorkloadId, Assignment, "str | None"], str]
"""(spec, workload, assignment, commit) -> the workload's manifests there, as YAML."""


@dataclass(frozen=True, slots=True)
class WorkloadChange:
    id: WorkloadId
    team: Team
    change: ChangeKind
    before: WorkloadPlacement | None
    after: WorkloadPlacement | None
    spec_changed: bool
    """The workload's own definition changed (its file was edited, added or removed)."""
    displaced: bool = False
    """Another team's workload, untouched by the change, that got fewer GPUs or moved."""
    why: tuple[str, ...] = ()
    recreate: tuple[tuple[ClusterName, str], ...] = ()
    """Per cluster where its Job stays, why the change cannot be made to the running Job
    in place (`fleet.render.admission.recreate_needed`) and what its policy does."""

    @property
    def status(self) -> PlacementStatus | None:
        return self.after.status if self.after is not None else None

    @property
    def kept(self) -> bool:
        """Invalid in head but placed in base: the controller keeps it running as is."""
        return (self.after is not None and self.after.status == "Invalid"
                and self.before is not None and bool(self.before.assignments))

    @property
    def label(self) -> str:
        """What a reader is told: `change`, except that a kept Invalid workload and a
        definition change that moves nothing are said as such, never "Unchanged"."""
        if self.kept:
            return "Invalid (kept running)"
        if self.change == "Unchanged" and self.spec_changed:
            return "Changed"
        return self.change


@dataclass(frozen=True, slots=True)
class Usage:
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class TeamUsage:
    team: Team
    flavour: Flavour
    gpus: Usage
    nominal: int | None
    """The TeamQuota's nominal GPUs of this flavour (None: the team has no TeamQuota)."""
    borrowing: int | None = None
    """What it may borrow from its cohort: None none (no cohort), -1 no limit."""


@dataclass(frozen=True, slots=True)
class PlanDiff:
    base_commit: str | None
    head_commit: str | None
    head_plan: Plan
    head_spec: FleetSpec
    workloads: tuple[WorkloadChange, ...]
    manifests: Mapping[ClusterName, str]
    """Per cluster with a change, the unified diff of its rendered manifests."""
    teams: tuple[TeamUsage, ...]
    flavours: Mapping[Flavour, tuple[int, Usage]]
    """Per flavour: fleet capacity (head) and GPUs allocated before/after."""
    cost: Usage
    """Estimated cost per hour in hundredths (cents), before and after."""
    team_cost: Mapping[Team, Usage]
    unpriced: Usage
    """GPUs on flavours with no pricePerHour, before and after: unknown cost, not free."""
    errors: tuple[Diagnostic, ...]
    violations: tuple[Diagnostic, ...]
    flags: tuple[PathFlag, ...] = ()
    author_team: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def displaced(self) -> tuple[WorkloadChange, ...]:
        return tuple(w for w in self.workloads if w.displaced)

    @property
    def changed(self) -> tuple[WorkloadChange, ...]:
        return tuple(w for w in self.workloads if w.change != "Unchanged" or w.spec_changed)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("Added", "Moved", "Resized", "Removed", "Unchanged"), 0)
        for w in self.workloads:
            out[w.change] += 1
        return out

    @property
    def failed(self) -> bool:
        """Exit 1: the head has errors or guardrail violations."""
        return bool(self.errors or self.violations)


def diff_plans(
    base_spec: FleetSpec, base_plan: Plan, head_spec: FleetSpec, head_plan: Plan, *,
    render: Renderer, flags: Iterable[PathFlag] = (), author_team: str | None = None,
    notes: Iterable[str] = (),
) -> PlanDiff:
    """Compare the base and head sides of a change."""
    ids = sorted(set(base_plan.workloads) | set(head_plan.workloads))
    edited = {w for w in ids if _spec_changed(base_spec, head_spec, w)}
    changed_teams = {team_of(w) for w in edited}
    author = Team(author_team) if author_team else None
    changes = []
    for wid in ids:
        before, after = base_plan.workloads.get(wid), head_plan.workloads.get(wid)
        spec_changed = wid in edited
        kind = _classify(before, after)
        worse = _worse(before, after)
        team = team_of(wid)
        others = team != author if author is not None else team not in changed_teams
        displaced = worse and not spec_changed and others
        why = _why(after, kind, worse)
        if spec_changed:
            why = (*_definition_changes(base_spec, head_spec, wid), *why)
        recreate = _recreate(base_spec, head_spec, wid, before, after) \
            if spec_changed or kind == "Resized" else ()
        why = (*(f"re-create needed on {c}: {r}" for c, r in recreate), *why)
        changes.append(WorkloadChange(wid, team, kind, before, after, spec_changed,
                                      displaced, why, recreate))
    kept = {w.id: w.before.assignments for w in changes if w.kept and w.before is not None}
    bt, ht = _tally(base_spec, base_plan), _tally(head_spec, head_plan, kept)
    return PlanDiff(
        base_commit=base_plan.commit, head_commit=head_plan.commit, head_plan=head_plan,
        head_spec=head_spec, workloads=tuple(changes),
        manifests=_manifest_diffs(base_spec, base_plan, head_spec, head_plan, render, edited),
        teams=_team_usage(bt.alloc, ht.alloc, head_spec),
        flavours=_flavour_usage(base_plan, head_plan, kept),
        cost=Usage(bt.cost, ht.cost),
        team_cost=_team_cost(bt.team_cost, ht.team_cost),
        unpriced=Usage(bt.unpriced, ht.unpriced),
        errors=head_spec.errors, violations=head_spec.violations,
        flags=tuple(sorted(flags)), author_team=author_team, notes=tuple(notes),
    )


def _spec_changed(base: FleetSpec, head: FleetSpec, wid: WorkloadId) -> bool:
    b, h = base.workloads.get(wid), head.workloads.get(wid)
    if b is h and b is not None:  # the same parsed file on both sides (the parse cache)
        return False
    if b is None and h is None:  # invalid on both sides: compare their diagnostics
        return base.invalid.get(wid) != head.invalid.get(wid)
    return b != h


def _definition_changes(base: FleetSpec, head: FleetSpec, wid: WorkloadId
                        ) -> tuple[str, ...]:
    """What changed in a workload's definition that a reviewer must see even when its
    placement does not move: its data class (where its data may go)."""
    b, h = base.workloads.get(wid), head.workloads.get(wid)
    if b is None or h is None:
        return ()
    bd, hd = b.spec.placement.data_class, h.spec.placement.data_class
    return (f"dataClass {bd} -> {hd}",) if bd != hd else ()


def _recreate(base: FleetSpec, head: FleetSpec, wid: WorkloadId,
              before: WorkloadPlacement | None, after: WorkloadPlacement | None
              ) -> tuple[tuple[ClusterName, str], ...]:
    """Per cluster where the workload's Job runs before and after, why the change needs
    a re-create (the API server refuses it in place), with what its policy does."""
    b, h = base.workloads.get(wid), head.workloads.get(wid)
    if b is None or h is None or before is None or after is None or \
            after.status != "Placed" or h.spec.type == "inference":
        return ()
    old = {a.cluster: a for a in before.assignments}
    out: list[tuple[ClusterName, str]] = []
    for a in sorted(after.assignments):
        was = old.get(a.cluster)
        bc, hc = base.clusters.get(a.cluster), head.clusters.get(a.cluster)
        if was is None or bc is None or hc is None or bc.offer(was.flavour) is None \
                or hc.offer(a.flavour) is None:
            continue
        job_b = _job(render(b, was, bc, ""))
        job_h = _job(render(h, a, hc, ""))
        why = recreate_needed(job_b, job_h)
        if why is None:
            continue
        if h.spec.recreate == "onChange":
            out.append((a.cluster, f"{why}; recreate: onChange deletes the running Job and "
                                   "creates it again, losing its progress"))
        else:
            out.append((a.cluster, f"{why}; recreate: never keeps the running Job as it "
                                   "is (set spec.recreate: onChange to replace it)"))
    return tuple(out)


def _job(objs: tuple[Manifest, ...]) -> Manifest:
    """The Job among a workload's rendered objects (beside its Service or claim
    template); an empty dict when there is none (a JobSet)."""
    return next((o for o in objs if o.get("kind") == "Job"), {})


def _shape(p: WorkloadPlacement | None) -> tuple[Assignment, ...]:
    return tuple(sorted(p.assignments)) if p is not None else ()


def _classify(before: WorkloadPlacement | None, after: WorkloadPlacement | None) -> ChangeKind:
    """The plan schema's `change` of `fleet.transitions.transition` (an Invalid head is
    kept as it runs: Unchanged)."""
    return transition(before.assignments if before is not None else None,
                      after).plan_change


def _gpus(p: WorkloadPlacement | None) -> int:
    return sum(a.gpus for a in p.assignments) if p is not None else 0


def _worse(before: WorkloadPlacement | None, after: WorkloadPlacement | None) -> bool:
    """Lost GPUs, or moved off a cluster it ran on: what displacement means."""
    if before is None or after is None or after.status == "Invalid":
        return False
    if _gpus(after) < _gpus(before):
        return True
    return bool({a.cluster for a in before.assignments} - {a.cluster for a in after.assignments})


def _why(after: WorkloadPlacement | None, kind: ChangeKind, worse: bool) -> tuple[str, ...]:
    if after is None or (kind == "Unchanged" and after.status not in ("Pending", "Invalid")
                         and not worse):
        return ()
    chosen = {a.cluster for a in after.assignments}
    out = []
    for r in after.reasons:
        if r.cluster is None or r.cluster in chosen or after.status == "Pending":
            rule = f"{r.rule}: " if r.rule else ""
            where = f"{r.cluster}: " if r.cluster else ""
            out.append(f"{where}{rule}{r.message}")
            if len(out) == 6:
                break  # a Pending workload has a reason per cluster: read no more
    return tuple(out)


def _manifest_diffs(base_spec: FleetSpec, base_plan: Plan, head_spec: FleetSpec,
                    head_plan: Plan, render: Renderer, edited: set[WorkloadId]
                    ) -> dict[ClusterName, str]:
    """Per cluster, a unified diff of the manifests of the workloads whose inputs differ."""
    def by_cluster(plan: Plan) -> dict[ClusterName, dict[WorkloadId, Assignment]]:
        out: dict[ClusterName, dict[WorkloadId, Assignment]] = defaultdict(dict)
        for wid, p in plan.workloads.items():
            if p.status == "Placed":
                for a in p.assignments:
                    out[a.cluster][wid] = a
        return out

    before, after = by_cluster(base_plan), by_cluster(head_plan)
    out: dict[ClusterName, str] = {}
    for cluster in sorted(set(before) | set(after)):
        b, a = before.get(cluster, {}), after.get(cluster, {})
        cluster_changed = base_spec.clusters.get(cluster) != head_spec.clusters.get(cluster)
        touched = sorted(w for w in set(b) | set(a)
                         if cluster_changed or b.get(w) != a.get(w) or w in edited)
        parts: list[str] = []
        bc, hc = base_plan.commit, head_plan.commit
        for wid in touched:  # one diff per workload, so a hunk never mixes two of them
            old = _lines(render(base_spec, wid, b[wid], bc)) if wid in b else []
            new = _lines(render(head_spec, wid, a[wid], hc)) if wid in a else []
            # Only the source-commit annotation differs: the same objects, not a change.
            same = bool(bc and hc) and [x.replace(bc or "", hc or "") for x in old] == new
            if old != new and not same:
                parts.extend(difflib.unified_diff(
                    old, new, fromfile=f"base/{cluster}/{wid}" if old else "/dev/null",
                    tofile=f"head/{cluster}/{wid}" if new else "/dev/null", n=3))
        if parts:
            out[cluster] = "".join(parts)
    return out


def _lines(text: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines()]


@dataclass(slots=True)
class _Tally:
    """One pass over a plan: GPUs per team and flavour, cost per team (cents per hour),
    and GPUs with no price."""

    alloc: dict[tuple[Team, Flavour], int]
    team_cost: dict[Team, int]
    unpriced: int

    @property
    def cost(self) -> int:
        return sum(self.team_cost.values())


def _tally(spec: FleetSpec, plan: Plan,
           kept: Mapping[WorkloadId, tuple[Assignment, ...]] | None = None) -> _Tally:
    """`kept`: the base placements of Invalid workloads, which still run (and cost)."""
    prices: dict[tuple[ClusterName, Flavour], int | None] = {}
    alloc: dict[tuple[Team, Flavour], int] = defaultdict(int)
    team_cost: dict[Team, int] = defaultdict(int)
    unpriced = 0
    for wid, p in plan.workloads.items():
        assignments = p.assignments or (kept or {}).get(wid, ())
        if not assignments:
            continue
        team = team_of(wid)
        for a in assignments:
            gpus = a.gpus
            alloc[(team, a.flavour)] += gpus
            key = (a.cluster, a.flavour)
            price = prices[key] if key in prices else prices.setdefault(key, _price(spec, a))
            if price is None:
                unpriced += gpus
            else:
                team_cost[team] += price * gpus
    return _Tally(alloc, team_cost, unpriced)


def _team_usage(b: dict[tuple[Team, Flavour], int], h: dict[tuple[Team, Flavour], int],
                spec: FleetSpec) -> tuple[TeamUsage, ...]:
    out = []
    for team, flavour in sorted(set(b) | set(h)):
        nominal: int | None = None
        borrow: int | None = None
        tq = spec.quotas.get(team)
        if tq is not None:
            q = next((q for q in tq.spec.gpus if q.flavour == flavour), None)
            nominal = q.nominal if q is not None else 0
            if q is not None and tq.spec.cohort is not None:
                borrow = q.borrowing_limit if q.borrowing_limit is not None else -1
        out.append(TeamUsage(team, flavour, Usage(b.get((team, flavour), 0),
                                                  h.get((team, flavour), 0)), nominal, borrow))
    return tuple(out)


def _flavour_usage(base: Plan, head: Plan,
                   kept: Mapping[WorkloadId, tuple[Assignment, ...]]
                   ) -> dict[Flavour, tuple[int, Usage]]:
    def totals(plan: Plan) -> tuple[dict[Flavour, int], dict[Flavour, int]]:
        cap: dict[Flavour, int] = defaultdict(int)
        used: dict[Flavour, int] = defaultdict(int)
        for per in plan.usage.values():
            for f, u in per.items():
                cap[f] += u.capacity
                used[f] += u.allocated
        return cap, used

    _, bu = totals(base)
    hc, hu = totals(head)
    for assignments in kept.values():  # placement does not count what it keeps as is
        for a in assignments:
            hu[a.flavour] += a.gpus
    return {f: (hc.get(f, 0), Usage(bu.get(f, 0), hu.get(f, 0)))
            for f in sorted(set(bu) | set(hc) | set(hu))}


def _price(spec: FleetSpec, a: Assignment) -> int | None:
    """Cents per GPU-hour on this cluster and flavour; None when it has no price."""
    c = spec.clusters.get(a.cluster)
    offer = c.offer(a.flavour) if c is not None else None
    if offer is None or offer.price_per_hour is None:
        return None
    return round(offer.price_per_hour * 100)


def _team_cost(b: dict[Team, int], h: dict[Team, int]) -> dict[Team, Usage]:
    return {t: Usage(b.get(t, 0), h.get(t, 0)) for t in sorted(set(b) | set(h))
            if b.get(t, 0) != h.get(t, 0)}


def moves(w: WorkloadChange) -> tuple[str, str]:
    """`from` and `to` of a workload as text: `eu-fra-1 (2x h100-80gb)` or `Pending`."""
    if w.kept:
        return _where(w.before), f"Invalid, kept running on {_where(w.before)}"
    return _where(w.before), _where(w.after)


def _where(p: WorkloadPlacement | None) -> str:
    if p is None:
        return "-"
    if not p.assignments:
        return p.status
    return ", ".join(f"{a.cluster} ({a.replicas}x{a.gpus_per_replica} {a.flavour})"
                     for a in sorted(p.assignments))


def by_id(items: Iterable[WorkloadChange]) -> Mapping[WorkloadId, WorkloadChange]:
    return {w.id: w for w in items}
