"""The scorer plugins: soft preferences between options that passed every filter.

Each returns 0..100 for one (cluster, flavour) option and declares what the pruned walk
needs (`fleet.placement.framework.Scorer`): whether it is `static` (cached with the
candidates, keyed by `key(w)`), its workload-independent `rank` and its `bound`. The
weights live in the profile (`fleet.placement.registry`); ties break by cluster name.

- Sticky: 100 on a cluster the workload runs on now. Moving a running job costs hours
  of GPU time, so this outweighs everything else.
- FlavourPreference: 100 for the workload's first flavour, one less per step down its
  list (earlier flavours are preferred, rule 4).
- Packing: how full the cluster's flavour is after this placement. Filling used clusters
  first leaves whole clusters, and with best-fit on nodes whole 8-GPU nodes, free for
  big gangs.
- Price: 100 for the cheapest GPU-hour in the fleet, 0 for the dearest or unpriced.
- Spot: `fleet.placement.spot`.
"""

from __future__ import annotations

from fleet.ids import Flavour
from fleet.placement.context import Candidate, WorkloadContext
from fleet.placement.framework import no_key
from fleet.placement.snapshot import NodeKey, Snapshot
from fleet.placement.state import Hist, State, free_total, packing


class Sticky:
    name = "Sticky"
    static = False
    ranked = False

    key = staticmethod(no_key)

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        for a in w.previous:
            if a.cluster == option.cluster:
                return 100
        return 0

    def rank(self, key: NodeKey, free: Hist) -> int:
        return 0  # unranked

    def bound(self, flavour: Flavour, need: int) -> int:
        return 0  # 0 wherever it does not run


class FlavourPreference:
    name = "FlavourPreference"
    static = True
    ranked = False

    key = staticmethod(no_key)  # the flavour's rank, which every candidate key holds

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return max(0, 100 - option.rank)

    def rank(self, key: NodeKey, free: Hist) -> int:
        return 0  # unranked

    def bound(self, flavour: Flavour, need: int) -> int:
        return 100


class Packing:
    name = "Packing"
    static = False
    ranked = True

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    key = staticmethod(no_key)

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        key = (option.cluster, option.flavour)
        return packing(self._snap.capacity.get(key, 0), state.total(key),
                       w.replicas_needed(option.cluster) * w.count)

    def rank(self, key: NodeKey, free: Hist) -> int:
        return packing(self._snap.capacity.get(key, 0), free_total(free), 0)

    def bound(self, flavour: Flavour, need: int) -> int:
        # `need` GPUs raise packing by at most 100 * need / capacity (+1 for rounding),
        # most on the smallest cluster of the flavour
        cap = self._snap.min_capacity.get(flavour, 0)
        return (100 * need) // cap + 1 if cap > 0 else 0


class Price:
    name = "Price"
    static = True
    ranked = True

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    key = staticmethod(no_key)

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return self._snap.clusters[option.cluster].price_score.get(option.flavour, 0)

    def rank(self, key: NodeKey, free: Hist) -> int:
        return self._snap.clusters[key[0]].price_score.get(key[1], 0)

    def bound(self, flavour: Flavour, need: int) -> int:
        return 0
