"""The score plugins: soft preferences between the options that passed every filter.

Each returns 0..100 for one (cluster, flavour) option; a `static` scorer depends only on
the option (not on the state or on where the workload runs now), so the planner caches
its weighted score with the candidate list; `fleet.placement.framework.WEIGHTS`
turns them into one total, and ties break by cluster name.

- Sticky: 100 on a cluster the workload runs on now. Moving a running job costs hours
  of GPU time, so this outweighs everything else.
- FlavourPreference: 100 for the workload's first flavour, one less per step down its
  list (earlier flavours are preferred, rule 4).
- Packing: how full the cluster's flavour is after this placement. Filling used clusters
  first leaves whole clusters, and with best-fit on nodes whole 8-GPU nodes, free for
  big gangs.
- Price: 100 for the cheapest GPU-hour in the fleet, 0 for the dearest or unpriced.
"""

from __future__ import annotations

from fleet.placement.context import Candidate, WorkloadContext
from fleet.placement.framework import WEIGHTS, Scorer
from fleet.placement.snapshot import Snapshot
from fleet.placement.state import State, packing


class Sticky:
    name = "Sticky"
    static = False

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return 100 if any(a.cluster == option.cluster for a in w.previous) else 0


class FlavourPreference:
    name = "FlavourPreference"
    static = True

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return max(0, 100 - option.rank)


class Packing:
    name = "Packing"
    static = False

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        key = (option.cluster, option.flavour)
        return packing(self._snap.capacity.get(key, 0), state.total(key),
                       w.replicas_needed(option.cluster) * w.count)


class Price:
    name = "Price"
    static = True

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return self._snap.clusters[option.cluster].price_score.get(option.flavour, 0)


def default_scorers(snap: Snapshot) -> tuple[Scorer, ...]:
    return (Sticky(), FlavourPreference(), Packing(snap), Price(snap))


def total(scores: dict[str, int]) -> int:
    return sum(WEIGHTS[name] * s for name, s in scores.items())
