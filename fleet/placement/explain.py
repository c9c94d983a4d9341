"""`explain`: for one workload, every cluster's verdict per filter and score per scorer.

The plan says why each workload went where it went; explain shows the whole table behind
that choice (placement rule 7). It runs the same pass as `place` and looks at the state
*at the moment the workload is decided* -- after everything of higher priority (and
everything kept) took its capacity -- so what it shows is exactly what the decision saw,
not the empty fleet. A running workload that was kept is shown as judged for keeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.context import Candidate, WorkloadContext
from fleet.placement.core import Planner
from fleet.placement.diagnose import cluster_verdicts
from fleet.placement.framework import FilterResult
from fleet.placement.registry import DEFAULT_PROFILE, Profile
from fleet.placement.state import State
from fleet.placement.types import PreviousPlan, WorkloadPlacement
from fleet.spec import FleetSpec


@dataclass(frozen=True, slots=True)
class FlavourVerdict:
    flavour: Flavour
    filters: tuple[FilterResult, ...]
    """Every filter's result, in filter order (none skipped)."""
    scores: tuple[tuple[str, int], ...]
    """(scorer, 0..100) when every filter passed; empty otherwise."""
    total: int | None

    @property
    def feasible(self) -> bool:
        return all(r.ok for r in self.filters)


@dataclass(frozen=True, slots=True)
class ClusterVerdict:
    cluster: ClusterName
    flavours: tuple[FlavourVerdict, ...]
    chosen: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    workload: WorkloadId
    placement: WorkloadPlacement
    keep: bool
    """Judged for keeping what runs (sticky) rather than as a new placement."""
    clusters: tuple[ClusterVerdict, ...]
    weights: tuple[tuple[str, int], ...]


class UnknownWorkload(KeyError):
    """The workload id is not in the spec (nor among its invalid workloads)."""


def explain(spec: FleetSpec, capacity: CapacitySnapshot, workload_id: str,
            previous: PreviousPlan | None = None, profile: Profile = DEFAULT_PROFILE
            ) -> Explanation:
    wid = WorkloadId(workload_id)
    planner = Planner(spec, capacity, profile)
    weights = planner.plugins.weights
    seen: list[tuple[WorkloadContext, dict[ClusterName, list[FlavourVerdict]]]] = []

    def observe(ctx: WorkloadContext, state: State) -> None:
        table: dict[ClusterName, list[FlavourVerdict]] = {}
        for name, c in planner.snap.clusters.items():
            verdicts = cluster_verdicts(planner, ctx, c, state, stop=False)
            row = []
            for rank, f in enumerate(ctx.flavours):
                results = tuple(verdicts[f])
                scores: tuple[tuple[str, int], ...] = ()
                total = None
                if all(r.ok for r in results):
                    option = Candidate(name, f, rank)
                    scores = tuple((s.name, s.score(ctx, option, state))
                                   for s, _ in planner.plugins.scorers)
                    total = sum(w * v for (_, w), (_, v) in zip(weights, scores, strict=True))
                row.append(FlavourVerdict(f, results, scores, total))
            table[name] = row
        seen.append((ctx, table))

    if wid not in spec.workloads and wid not in spec.invalid:
        raise UnknownWorkload(wid)
    plan = planner.plan(previous, observe=(wid, observe))
    placement = plan.workloads[wid]
    if not seen:  # invalid: nothing was judged
        return Explanation(wid, placement, False, (), weights)
    ctx, table = seen[-1]
    chosen = {(a.cluster, a.flavour) for a in placement.assignments}
    clusters = tuple(
        ClusterVerdict(name, tuple(row), any((name, v.flavour) in chosen for v in row))
        for name, row in table.items())
    return Explanation(wid, placement, ctx.keep, clusters, weights)
