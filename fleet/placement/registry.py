"""The plugin registry and the profile: which filters run in which order, which scorers
with which weights.

As Karmada's `plugins/registry.go` and kube-scheduler's profiles: a plugin is a name and
a factory, `(snapshot, spec) -> plugin`; a `Profile` names the filters in diagnosis
order and the scorers with their weights; `Profile.build` makes the `Plugins` one
planner runs, sorted by what the fast path asks of each (`fleet.placement.framework`).
Adding a rule is one class, one line here and, for a scorer, one weight in the profile.

The default weights are orders of magnitude apart, which makes the total score
lexicographic: stickiness first, then the workload's flavour order, then its spot rule,
then packing and price together.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import TypeVar, cast

from fleet.placement.context import StaticKey, WorkloadContext
from fleet.placement.filters import (
    Capacity,
    Cordon,
    FlavourOffer,
    Health,
    KueueQueue,
    Quota,
    Residency,
    Selector,
    Taint,
)
from fleet.placement.framework import (
    Filter,
    RoomFilter,
    Scorer,
    StaticFilter,
    TotalFilter,
    no_key,
)
from fleet.placement.scorers import FlavourPreference, Packing, Price, Sticky
from fleet.placement.snapshot import NodeKey, Snapshot
from fleet.placement.spot import Spot, SpotRequired
from fleet.placement.state import Hist
from fleet.spec import FleetSpec

P = TypeVar("P")
Factory = Callable[[Snapshot, FleetSpec], P]


def _plain(cls: Callable[[], P]) -> Factory[P]:
    return lambda snap, spec: cls()


def _of_snapshot(cls: Callable[[Snapshot], P]) -> Factory[P]:
    return lambda snap, spec: cls(snap)


FILTERS: Mapping[str, Factory[Filter]] = {
    "Residency": Residency,
    "Flavour": _plain(FlavourOffer),
    "Spot": _plain(SpotRequired),
    "Selector": _plain(Selector),
    "Taint": _plain(Taint),
    "Health": _plain(Health),
    "Cordon": _plain(Cordon),
    "Capacity": _plain(Capacity),
    "KueueQueue": _of_snapshot(KueueQueue),
    "Quota": _of_snapshot(Quota),
}

SCORERS: Mapping[str, Factory[Scorer]] = {
    "Sticky": _plain(Sticky),
    "FlavourPreference": _plain(FlavourPreference),
    "Spot": _of_snapshot(Spot),
    "Packing": _of_snapshot(Packing),
    "Price": _of_snapshot(Price),
}


def _key_reader(plugins: tuple[StaticFilter | Scorer, ...]
                ) -> Callable[[WorkloadContext], Hashable]:
    """One function that reads what `plugins` key on, for every workload: the fields
    they declare (`key_field`) in one C call (`operator.attrgetter`), then the `key`
    of the others; a plugin that reads nothing (`no_key`) adds nothing."""
    fields = tuple(dict.fromkeys(f for p in plugins if (f := getattr(p, "key_field", None))))
    calls = tuple(p.key for p in plugins
                  if not getattr(p, "key_field", None) and p.key is not no_key)
    read = attrgetter(*fields) if fields else None
    if not calls:
        return read if read is not None else no_key
    if read is None:
        return lambda ctx: tuple([k(ctx) for k in calls])
    return lambda ctx: (read(ctx), *[k(ctx) for k in calls])


class UnknownPlugin(KeyError):
    """A profile names a plugin no registry has."""


@dataclass(frozen=True, slots=True)
class Profile:
    filters: tuple[str, ...]
    """Filter names, in diagnosis order."""
    scorers: tuple[tuple[str, int], ...]
    """(scorer name, weight)."""
    filter_registry: Mapping[str, Factory[Filter]] = field(
        default_factory=lambda: MappingProxyType(FILTERS))
    scorer_registry: Mapping[str, Factory[Scorer]] = field(
        default_factory=lambda: MappingProxyType(SCORERS))

    @property
    def weights(self) -> dict[str, int]:
        return dict(self.scorers)

    def build(self, snap: Snapshot, spec: FleetSpec) -> Plugins:
        def make(registry: Mapping[str, Factory[P]], name: str, what: str) -> P:
            factory = registry.get(name)
            if factory is None:
                raise UnknownPlugin(f"no {what} plugin {name!r} (known: "
                                    f"{', '.join(sorted(registry))})")
            plugin = factory(snap, spec)
            if getattr(plugin, "name", None) != name:
                raise UnknownPlugin(f"{what} {name!r} builds a plugin named "
                                    f"{getattr(plugin, 'name', None)!r}")
            return plugin

        return Plugins(
            tuple(make(self.filter_registry, n, "filter") for n in self.filters),
            tuple((make(self.scorer_registry, n, "scorer"), w) for n, w in self.scorers))


DEFAULT_PROFILE = Profile(
    filters=("Residency", "Flavour", "Spot", "Selector", "Taint", "Health", "Cordon",
             "Capacity", "KueueQueue", "Quota"),
    scorers=(("Sticky", 10_000), ("FlavourPreference", 1_000), ("Spot", 3),
             ("Packing", 1), ("Price", 1)))
"""Sticky (100 x 10,000) outweighs any flavour difference (at most 100 x 1,000); one
step in flavour order (1,000) outweighs spot, packing and price together (at most 500);
the spot rule (300) outweighs packing plus price (at most 200)."""

WEIGHTS: Mapping[str, int] = DEFAULT_PROFILE.weights
"""The default profile's weights, by scorer name."""


@dataclass(slots=True)
class Plugins:
    """One profile's plugins, grouped the way the planner's fast path uses them."""

    filters: tuple[Filter, ...]
    scorers: tuple[tuple[Scorer, int], ...]
    static_filters: tuple[StaticFilter, ...] = ()
    dynamic_filters: tuple[Filter, ...] = ()
    """The room and total filters, in profile order."""
    room_filters: tuple[RoomFilter, ...] = ()
    total_filters: tuple[TotalFilter, ...] = ()
    room_filter: RoomFilter = field(init=False)
    """The first room filter (the fast path's room check); `more_rooms` the others."""
    more_rooms: tuple[RoomFilter, ...] = ()
    static_scorers: tuple[tuple[Scorer, int], ...] = ()
    dynamic_scorers: tuple[tuple[Scorer, int], ...] = ()
    ranked: tuple[tuple[Scorer, int], ...] = ()
    """Scorers with a workload-independent rank (the walk's order)."""
    ranked_static: tuple[tuple[Scorer, int], ...] = ()
    bounded: tuple[tuple[Scorer, int], ...] = ()
    """The scorers whose `bound` the walk adds: the ranked and the dynamic ones."""
    ranked_dynamic: tuple[tuple[Scorer, int], ...] = ()
    """The ranked scorers whose rank reads the nodes' free GPUs (a static scorer's
    cannot: its score reads no state, so its rank is fixed per option)."""
    _filter_part: Callable[[WorkloadContext], Hashable] = field(default=no_key)
    _scorer_part: Callable[[WorkloadContext], Hashable] = field(default=no_key)
    _fixed_rank: dict[NodeKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[Filter]] = {"static": [], "room": [], "total": []}
        for f in self.filters:
            by_kind[f.kind].append(f)
        self.static_filters = tuple(cast(StaticFilter, f) for f in by_kind["static"])
        self.room_filters = tuple(cast(RoomFilter, f) for f in by_kind["room"])
        self.total_filters = tuple(cast(TotalFilter, f) for f in by_kind["total"])
        if not self.room_filters:
            # the pass places replicas on nodes, which only a room filter checks
            raise ValueError("a placement profile needs a room filter (Capacity)")
        self.room_filter, *more = self.room_filters
        self.more_rooms = tuple(more)
        self.dynamic_filters = tuple(f for f in self.filters if f.kind != "static")
        self.static_scorers = tuple(s for s in self.scorers if s[0].static)
        self.dynamic_scorers = tuple(s for s in self.scorers if not s[0].static)
        self.ranked = tuple(s for s in self.scorers if s[0].ranked)
        self.ranked_static = tuple(s for s in self.ranked if s[0].static)
        self.ranked_dynamic = tuple(s for s in self.ranked if not s[0].static)
        self.bounded = tuple(s for s in self.scorers if s[0].ranked or not s[0].static)
        self._filter_part = _key_reader(self.static_filters)
        self._scorer_part = _key_reader(tuple(s for s, _ in self.static_scorers))

    @property
    def weights(self) -> tuple[tuple[str, int], ...]:
        return tuple((s.name, w) for s, w in self.scorers)

    def static_key(self, ctx: WorkloadContext) -> StaticKey:
        """What every static plugin reads of the workload: the candidate cache key,
        `(flavours, static filters' keys, static scorers' keys)`."""
        return (ctx.flavours, self._filter_part(ctx), self._scorer_part(ctx))

    def rank(self, key: NodeKey, free: Hist) -> int:
        """The weighted rank of an option: the walk visits higher ranks first. The
        static scorers' part is fixed per option, so it is summed once."""
        total = self._fixed_rank.get(key)
        if total is None:
            total = self._fixed_rank[key] = sum(
                w * s.rank(key, free) for s, w in self.ranked_static)
        for s, w in self.ranked_dynamic:  # the ranks that read the free GPUs
            total += w * s.rank(key, free)
        return total
