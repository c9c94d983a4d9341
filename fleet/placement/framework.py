"""The placement framework: what a filter or scorer plugin is, and what it must declare.

Shaped like Karmada's scheduler framework (`framework/interface.go`): a *filter* says
whether a workload may go to a cluster (with one of its flavours) and, when not, why, as
data; a *scorer* rates a feasible (cluster, flavour) option from 0 to 100. Plugins are
registered by name and combined by a profile (`fleet.placement.registry`); the pass over
the fleet (`fleet.placement.core`) never names one. It only asks each plugin what its
fast path needs, and that is what the protocols below declare.

Filters come in three kinds, and the split is what makes placement fast:
- `static`: the verdict depends only on the workload fields named by `key(w)` (plus
  whether it is judged for keeping what runs) and the cluster, never on what was placed
  before. Its pass-set over the fleet is computed once per key and cached; `index`
  may give it straight from the snapshot's indexes (a prefilter).
- `room`: reads the capacity the pass consumes. `room(w, state)` gives its fast check
  for one decision: how many replicas an option holds now (an option is feasible when
  it holds the replicas needed); `summarize` turns its rejections into one diagnosis
  part.
- `total`: judged once per flavour on the GPUs of all the workload's replicas of that
  flavour, the same on every cluster (quota). `judge(w, flavour, gpus, state)`.
`filter(w, cluster, flavour, state)` is the full verdict of any kind, for a diagnosis
and `explain`.

A scorer is `static` when its score depends only on the workload fields named by
`key(w)` and the option: the planner caches its weighted score with the candidates.
For the pruned walk (`Planner._options`) a scorer declares whether it is `ranked`: its
score has a workload-independent part, `rank(node_key, free)`, the score of the option
for *any* workload before anything more is placed there (the walk visits options by
the weighted sum of these); and `bound(flavour, need)`: the most its score can
exceed that rank (unranked: the most it can be) on a cluster the workload does not run
on yet. Static unranked scorers need no bound: the planner takes the best of their
cached scores per flavour. A static ranked scorer's rank cannot read the free GPUs (its
score reads no state), so the registry sums it once per option.

A rejection is never an exception: a `FilterResult` carries the rule, a message for
one cluster and a short `summary` that groups clusters in a Pending diagnosis
("7 residency(eu-personal)"), plus the numbers of a capacity shortfall.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from fleet.ids import Flavour

if TYPE_CHECKING:
    from fleet.ids import ClusterName
    from fleet.placement.context import Candidate, WorkloadContext
    from fleet.placement.snapshot import ClusterInfo, NodeKey
    from fleet.placement.state import Hist, State

Code = Literal["Fits", "Unschedulable", "Never"]
"""Fits; Unschedulable now (capacity, quota: may change); Never (a rule forbids it)."""

FilterKind = Literal["static", "room", "total"]


@dataclass(frozen=True, slots=True)
class FilterResult:
    rule: str
    code: Code = "Fits"
    message: str = ""
    summary: str = ""
    """How this rejection is counted in a diagnosis: `residency(eu-personal)`."""
    needs_per_node: int = 0
    """For a shortfall of nodes: GPUs one replica needs on one node."""
    largest_free: int = 0
    """For a shortfall of nodes: the most free GPUs on one node of the cluster."""

    @property
    def ok(self) -> bool:
        return self.code == "Fits"


class Filter(Protocol):
    """A hard rule. `flavour` is None for rules that are not judged `per_flavour`."""

    name: str
    kind: FilterKind
    per_flavour: bool

    def filter(self, w: WorkloadContext, cluster: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult: ...


class StaticFilter(Filter, Protocol):
    def key(self, w: WorkloadContext) -> Hashable:
        """The workload fields the verdict reads (hashable); `keep` is added by the
        framework."""

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        """The clusters it lets through, from the snapshot's indexes, or None: the
        framework then judges every cluster once per key."""


class RoomFilter(Filter, Protocol):
    def room(self, w: WorkloadContext, state: State) -> Callable[[NodeKey], int] | None:
        """The fast check of one decision: per (cluster, flavour), the replicas of `w`
        it holds now (called for every option the walk visits: keep it a C call), or
        None when it bounds nothing for `w` (a second room filter only)."""

    def summarize(self, w: WorkloadContext, rejected: list[FilterResult]) -> str:
        """One diagnosis part for the clusters it rejected: `2 capacity (...)`."""


class TotalFilter(Filter, Protocol):
    def judge(self, w: WorkloadContext, flavour: Flavour, gpus: int, state: State
              ) -> FilterResult:
        """Whether `gpus` more GPUs of this flavour may go to the workload anywhere."""


class Scorer(Protocol):
    """A soft preference between feasible options, 0..100 (higher is better)."""

    name: str
    static: bool
    ranked: bool

    def key(self, w: WorkloadContext) -> Hashable:
        """For a static scorer, the workload fields its score reads."""

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int: ...

    def rank(self, key: NodeKey, free: Hist) -> int:
        """A ranked scorer: the score of this option for any workload, with `free` its
        nodes now. Unranked: 0."""

    def bound(self, flavour: Flavour, need: int) -> int:
        """The most `score` exceeds `rank` (unranked: the most it scores) for `need`
        more GPUs of `flavour` on a cluster the workload does not run on, for any
        workload (the planner caches it per flavour and need)."""


def no_key(w: WorkloadContext) -> Hashable:
    """The `key` of a plugin that reads no field of the workload. A plugin declares it
    with `key = staticmethod(no_key)`; the registry then leaves it out of the static key
    it builds for every workload. A plugin whose key is one field of the context says
    which with `key_field = "<field>"` (its `key(w)` returns that field): the registry
    reads all such fields of a workload in one C call."""
    return ()


FITS_CACHE: dict[str, FilterResult] = {}


def fits(rule: str) -> FilterResult:
    """The shared 'passes' result of a rule (no allocation per decision)."""
    found = FITS_CACHE.get(rule)
    if found is None:
        found = FITS_CACHE[rule] = FilterResult(rule)
    return found
