"""Spot capacity: the `SpotRequired` filter and the `Spot` scorer.

A Cluster marks an offer `spot: true` when its nodes are preemptible; a Workload says
`placement.spot`: `avoid` (the default: a preempted gang loses its work), `prefer`
(cheaper, for work that survives a preemption, such as batch Jobs) or `require`.

- `require` is a hard rule, the `Spot` filter: only spot offers (a `Never` verdict on
  an on-demand offer, counted as `no spot <flavour>` in a diagnosis).
- `prefer` and `avoid` are the `Spot` scorer: 100 on the side the workload prefers, 0
  on the other. Its weight (`fleet.placement.registry`) puts it under the flavour order
  and over packing and price together: within one flavour the preferred kind of
  capacity wins, but it never moves a workload to a later flavour.

Both depend only on the workload's rule and the offer, so both are static: their
verdicts and scores are cached with the candidates.
"""

from __future__ import annotations

from collections.abc import Hashable

from fleet.ids import ClusterName, Flavour
from fleet.placement.context import Candidate, WorkloadContext
from fleet.placement.framework import FilterKind, FilterResult, fits
from fleet.placement.snapshot import ClusterInfo, NodeKey, Snapshot
from fleet.placement.state import Hist, State


class SpotRequired:
    name = "Spot"
    kind: FilterKind = "static"
    per_flavour = True

    key_field = "spot"

    def key(self, w: WorkloadContext) -> Hashable:
        return w.spot

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None
        offer = c.offers.get(flavour)
        if w.spot != "require" or offer is None or offer.spot:
            return fits(self.name)
        return FilterResult(self.name, "Never",
                            f"{flavour} is on-demand, the workload requires spot",
                            f"no spot {flavour}")


class Spot:
    name = "Spot"
    static = True
    ranked = False

    def __init__(self, snap: Snapshot) -> None:
        # the spot offers, read once per snapshot: a candidate's score is then one
        # set lookup (it is asked for every candidate of every static key)
        self._spot: frozenset[NodeKey] = frozenset(
            (name, f) for name, c in snap.clusters.items()
            for f, offer in c.offers.items() if offer.spot)

    key_field = "spot"

    def key(self, w: WorkloadContext) -> Hashable:
        return w.spot

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        spot = (option.cluster, option.flavour) in self._spot
        return 100 if spot == (w.spot != "avoid") else 0

    def rank(self, key: NodeKey, free: Hist) -> int:
        return 0  # unranked

    def bound(self, flavour: Flavour, need: int) -> int:
        return 100
