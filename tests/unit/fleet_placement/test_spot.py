"""The Spot filter and scorer: `placement.spot` against the Clusters' `gpus[].spot`.

Properties on the random fleets of `strategies`, with some offers made spot and every
workload given a random spot rule (or none: avoid), plus the cases a user reads.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.ids import WorkloadId
from fleet.models import Document
from fleet.placement import explain, place
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_placement.strategies import Fleet, fleets
from tests.unit.fleet_placement.test_placement_properties import (
    RULE,
    assert_best_of_full_table,
)

W = WorkloadId
RULES = (None, "prefer", "avoid", "require")


def with_spot(f: Fleet, seed: int) -> Fleet:
    """The fleet with about half the offers spot and a random rule per workload."""
    rnd = random.Random(seed)
    docs: list[Document] = []
    for d in f.docs:
        if d.kind == "Cluster":
            gpus = tuple(o.model_copy(update={"spot": rnd.random() < 0.5})
                         for o in d.spec.gpus)
            d = d.model_copy(update={"spec": d.spec.model_copy(update={"gpus": gpus})})
        elif d.kind == "Workload":
            p = d.spec.placement.model_copy(update={"spot": rnd.choice(RULES)})
            d = d.model_copy(update={"spec": d.spec.model_copy(update={"placement": p})})
        docs.append(d)
    return Fleet(tuple(docs), f.capacity)


def spot_fleets() -> st.SearchStrategy[Fleet]:
    return st.builds(with_spot, fleets(), st.integers(0, 2**32 - 1))


def is_spot(f: Fleet, cluster_name: str, flavour: str) -> bool:
    spec = f.spec()
    offer = spec.clusters[cluster_name].offer(flavour)  # type: ignore[index]
    assert offer is not None
    return offer.spot


@RULE
@given(spot_fleets())
def test_require_never_places_on_on_demand_capacity(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    for wid, p in plan.workloads.items():
        w = spec.workloads.get(wid)
        if w is None or w.spec.placement.spot != "require":
            continue
        for a in p.assignments:
            assert is_spot(f, a.cluster, a.flavour), (wid, a)


@RULE
@given(spot_fleets(), st.data())
def test_with_spot_the_choice_is_still_the_best_option_of_the_full_table(
        f: Fleet, data: st.DataObject) -> None:
    """The pruned walk stays exact with the Spot scorer in the total."""
    spec = f.spec()
    if spec.workloads:
        assert_best_of_full_table(spec, f.capacity,
                                  data.draw(st.sampled_from(sorted(spec.workloads))))


@RULE
@given(spot_fleets(), st.data())
def test_within_the_chosen_flavour_the_preferred_kind_of_capacity_wins(
        f: Fleet, data: st.DataObject) -> None:
    """prefer: spot if any feasible option of that flavour is spot; avoid (and unset):
    on-demand if any is; never at the cost of an earlier flavour."""
    spec = f.spec()
    if not spec.workloads:
        return
    wid = data.draw(st.sampled_from(sorted(spec.workloads)))
    w = spec.workloads[wid]
    ex = explain(spec, f.capacity, wid)
    if ex.placement.status != "Placed" or w.spec.effective_spread.max_clusters > 1:
        return
    (a,) = ex.placement.assignments
    same_flavour = [c.cluster for c in ex.clusters for v in c.flavours
                    if v.feasible and v.flavour == a.flavour]
    wanted = w.spec.effective_spot != "avoid"
    if any(is_spot(f, c, a.flavour) == wanted for c in same_flavour):
        assert is_spot(f, a.cluster, a.flavour) == wanted, (wid, a, same_flavour)


def spot_pair(rule: str | None, wtype: str = "training") -> str:
    """Two equal clusters but for price and spot: the spot one is cheaper."""
    spec = fleet(cluster("ondemand", "DE", prices={"h100-80gb": 3.0}),
                 cluster("spotty", "DE", prices={"h100-80gb": 1.0}, spot=("h100-80gb",)),
                 workload("w", wtype=wtype, placement={"spot": rule} if rule else {}))
    (a,) = place(spec, declared(spec)).workloads[W("nlp-team/w")].assignments
    return a.cluster


@pytest.mark.parametrize(("rule", "wtype", "where"), [
    (None, "training", "ondemand"),
    (None, "batch", "ondemand"),
    ("avoid", "batch", "ondemand"),
    ("prefer", "batch", "spotty"),
    ("prefer", "training", "spotty"),
    ("require", "training", "spotty"),
], ids=["unset-is-avoid", "unset-batch-is-avoid", "avoid-pays-more", "prefer-batch",
        "prefer-training", "require"])
def test_the_spot_rule_outweighs_price(rule: str | None, wtype: str, where: str) -> None:
    assert spot_pair(rule, wtype) == where


def test_require_with_no_spot_offer_is_pending_and_says_not_spot() -> None:
    spec = fleet(cluster("c1", "DE"), cluster("c2", "FR"),
                 workload("w", placement={"spot": "require"}))
    p = place(spec, declared(spec)).workloads[W("nlp-team/w")]
    assert p.status == "Pending"
    assert p.reasons[0].message == "0/2 clusters: 2 no spot h100-80gb"
    assert p.reasons[0].rule == "Spot"
    assert {r.rule for r in p.reasons[1:]} == {"Spot"}


def test_explain_shows_the_spot_filter_and_scorer_with_its_weight() -> None:
    spec = fleet(cluster("c1", "DE"), workload("w", placement={"spot": "prefer"}))
    ex = explain(spec, declared(spec), "nlp-team/w")
    (v,) = ex.clusters[0].flavours
    assert "Spot" in [r.rule for r in v.filters]
    assert dict(v.scores)["Spot"] == 0  # on-demand, and the workload prefers spot
    assert dict(ex.weights)["Spot"] == 3
