"""The plugin registry and profiles: plugins by name, in the profile's order and
weights; the planner runs whatever the profile names and never names a plugin."""

from __future__ import annotations

from collections.abc import Hashable
from types import MappingProxyType

import pytest

from fleet.ids import Flavour, WorkloadId
from fleet.placement import explain, place
from fleet.placement.context import Candidate, WorkloadContext
from fleet.placement.core import Planner
from fleet.placement.registry import (
    DEFAULT_PROFILE,
    FILTERS,
    SCORERS,
    WEIGHTS,
    Profile,
    UnknownPlugin,
)
from fleet.placement.snapshot import NodeKey
from fleet.placement.state import Hist, State
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

W = WorkloadId


def test_the_default_profile_builds_every_plugin_under_its_registry_name() -> None:
    spec = fleet(cluster("c1"))
    plugins = Planner(spec, declared(spec)).plugins
    assert [f.name for f in plugins.filters] == list(DEFAULT_PROFILE.filters)
    assert plugins.weights == DEFAULT_PROFILE.scorers
    assert set(DEFAULT_PROFILE.filters) == set(FILTERS)
    assert {n for n, _ in DEFAULT_PROFILE.scorers} == set(SCORERS)
    assert dict(plugins.weights) == WEIGHTS


@pytest.mark.parametrize("profile", [
    Profile(("Residency", "Nope", "Capacity"), (("Price", 1),)),
    Profile(("Residency", "Capacity"), (("Nope", 1),)),
], ids=["unknown-filter", "unknown-scorer"])
def test_a_profile_naming_an_unknown_plugin_is_refused_with_the_known_ones(
        profile: Profile) -> None:
    spec = fleet(cluster("c1"))
    with pytest.raises(UnknownPlugin, match=r"Nope.*known: "):
        Planner(spec, declared(spec), profile)


def test_a_profile_without_a_room_filter_is_refused() -> None:
    spec = fleet(cluster("c1"))
    with pytest.raises(ValueError, match="room filter"):
        Planner(spec, declared(spec), Profile(("Residency",), (("Price", 1),)))


def test_the_profile_order_is_the_diagnosis_order() -> None:
    """A cluster is counted under the first rule it fails, in the profile's order."""
    spec = fleet(cluster("us-1", "US"), cluster("de-1", "DE", (("l40s-48gb", 16, 4),)),
                 cluster("us-2", "US", (("l40s-48gb", 16, 4),)),
                 workload("w", data_class="eu-personal"))
    default = place(spec, declared(spec)).workloads[W("nlp-team/w")]
    assert default.reasons[0].message == (
        "0/3 clusters: 2 residency(eu-personal), 1 no h100-80gb")
    flavour_first = Profile(("Flavour", "Residency", "Capacity"), DEFAULT_PROFILE.scorers)
    other = place(spec, declared(spec), profile=flavour_first).workloads[W("nlp-team/w")]
    assert other.reasons[0].message == (
        "0/3 clusters: 2 no h100-80gb, 1 residency(eu-personal)")


class PreferLastName:
    """A test scorer: 100 for the alphabetically last cluster of the snapshot."""

    name = "PreferLastName"
    static = True
    ranked = False

    def __init__(self, last: str) -> None:
        self._last = last

    def key(self, w: WorkloadContext) -> Hashable:
        return ()

    def score(self, w: WorkloadContext, option: Candidate, state: State) -> int:
        return 100 if option.cluster == self._last else 0

    def rank(self, key: NodeKey, free: Hist) -> int:
        return 0

    def bound(self, flavour: Flavour, need: int) -> int:
        return 100


def test_a_scorer_added_by_registry_and_profile_changes_the_choice_and_explain() -> None:
    spec = fleet(cluster("a-cheap", prices={"h100-80gb": 1.0}),
                 cluster("z-dear", prices={"h100-80gb": 3.0}), workload("w"))
    scorers = MappingProxyType({**SCORERS, "PreferLastName":
                                lambda snap, spec: PreferLastName(max(snap.clusters))})
    profile = Profile(DEFAULT_PROFILE.filters,
                      (*DEFAULT_PROFILE.scorers, ("PreferLastName", 5)),
                      scorer_registry=scorers)
    assert place(spec, declared(spec)).workloads[W("nlp-team/w")].clusters == ("a-cheap",)
    plan = place(spec, declared(spec), profile=profile)
    assert plan.workloads[W("nlp-team/w")].clusters == ("z-dear",)
    ex = explain(spec, declared(spec), "nlp-team/w", profile=profile)
    assert ("PreferLastName", 5) in ex.weights
    by = {str(c.cluster): dict(c.flavours[0].scores) for c in ex.clusters}
    assert by["z-dear"]["PreferLastName"] == 100 and by["a-cheap"]["PreferLastName"] == 0


def test_the_static_key_reads_declared_fields_and_leaves_out_plugins_that_read_nothing(
        ) -> None:
    """`key_field` and `no_key` are declarations the fast path trusts: two workloads
    that differ in a declared field get different candidate keys (so neither reuses
    the other's candidates), and a workload's key holds nothing for a plugin that reads
    no workload field."""
    spec = fleet(cluster("c1"), workload("a", data_class="public"),
                 workload("b", data_class="eu-personal"), workload("c", data_class="public"))
    planner = Planner(spec, declared(spec))
    a, b, c = (planner.context(W(f"nlp-team/{n}"), (), keep=False) for n in "abc")
    assert a.static_key != b.static_key  # Residency's declared field differs
    assert a.static_key is c.static_key  # same fields: one interned key, one cache entry
    fields = [p.key_field for p in planner.plugins.static_filters  # type: ignore[attr-defined]
              if getattr(p, "key_field", None)]
    assert "data_class" in fields
    # the static scorers' part is only what a keyed scorer reads (the spot rule): the
    # flavour order, price and the rest declare `no_key`
    assert a.static_key[2] == a.spot
