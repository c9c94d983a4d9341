"""The placement framework: filter and score plugins, their results, weights, registry.

Shaped like Karmada's scheduler framework (`framework/interface.go`): a *filter* says
whether a workload may go to a cluster (with one of its flavours) and, when not, why, as
data; a *scorer* rates a feasible (cluster, flavour) option from 0 to 100. The framework
owns the order of filters, the weights of scorers and a name -> plugin registry, so the
rules live in small classes and the pass over the fleet (`fleet.placement.core`) only
combines them.

Filters come in two kinds, and the split is what makes placement fast:
- *static* filters (Residency, Selector, Taint, Health, Flavour) depend only on the
  workload's placement fields and the cluster, never on what was placed before, so their
  verdicts are computed once per distinct placement key and cached;
- *dynamic* filters (Capacity, Quota) read the capacity and quota state as the pass
  consumes it, so they run for every decision, on the clusters the static ones left.

A rejection is never an exception: a `FilterResult` carries the rule, a message for
one cluster and a short `summary` that groups clusters in a Pending diagnosis
("7 residency(eu-personal)"), plus the numbers of a capacity shortfall.

Weights are orders of magnitude apart, which makes the total score lexicographic:
stickiness first, then the workload's flavour order, then packing and price together.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from fleet.ids import Flavour

if TYPE_CHECKING:
    from fleet.placement.context import Candidate, WorkloadContext
    from fleet.placement.snapshot import ClusterInfo
    from fleet.placement.state import State

Code = Literal["Fits", "Unschedulable", "Never"]
"""Fits; Unschedulable now (capacity, quota: may change); Never (a rule forbids it)."""


@dataclass(frozen=True, slots=True)
class FilterResult:
    rule: str
    code: Code = "Fits"
    message: str = ""
    summary: str = ""
    """How this rejection is counted in a diagnosis: `residency(eu-personal)`."""
    needs_per_node: int = 0
    """For Capacity: GPUs one replica needs on one node."""
    largest_free: int = 0
    """For Capacity: the most free GPUs on one node of the cluster (over the flavours)."""

    @property
    def ok(self) -> bool:
        return self.code == "Fits"


class Filter(Protocol):
    """A hard rule. `flavour` is None for rules that do not depend on the flavour."""

    name: str
    static: bool
    per_flavour: bool

    def filter(self, w: WorkloadContext, cluster: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult: ...


class StaticFilter(Filter, Protocol):
    """A filter whose verdict depends only on `key(w, flavour)` and the cluster."""

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable: ...


class Scorer(Protocol):
    """A soft preference between feasible options, 0..100 (higher is better)."""

    name: str
    static: bool

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int: ...


WEIGHTS: Mapping[str, int] = {
    "Sticky": 10_000,
    "FlavourPreference": 1_000,
    "Packing": 1,
    "Price": 1,
}
"""The only place scorer weights live. Sticky (100 x 10,000) outweighs any flavour
difference (at most 100 x 1,000), and one step in flavour order (1,000) outweighs
packing plus price together (at most 200): earlier flavours are always preferred."""

FITS_CACHE: dict[str, FilterResult] = {}


def fits(rule: str) -> FilterResult:
    """The shared 'passes' result of a rule (no allocation per decision)."""
    found = FITS_CACHE.get(rule)
    if found is None:
        found = FITS_CACHE[rule] = FilterResult(rule)
    return found
