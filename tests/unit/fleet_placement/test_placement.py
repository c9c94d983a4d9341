"""Placement semantics, case by case: filters, scorers, stickiness, quota, spread, why."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement import place
from fleet.placement.registry import WEIGHTS
from fleet.placement.spread import divide
from fleet.placement.types import Assignment, Plan
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.builders import (
    cluster,
    declared,
    fleet,
    quota,
    with_health,
    with_nodes,
    workload,
)

W = WorkloadId


def where(plan: Plan, wid: str) -> list[tuple[str, str, int]]:
    return [(a.cluster, a.flavour, a.replicas) for a in plan.workloads[W(wid)].assignments]


def why(plan: Plan, wid: str) -> str:
    return plan.workloads[W(wid)].reasons[0].message


def test_pending_diagnosis_counts_clusters_by_first_failing_rule() -> None:
    spec = fleet(
        *[cluster(f"us-{i}", "US") for i in range(7)],
        *[cluster(f"de-l40s-{i}", "DE", (("l40s-48gb", 16, 4),)) for i in range(3)],
        cluster("de-1", "DE"), cluster("fr-1", "FR"),
        workload("big", data_class="eu-personal", count=8, flavours=("h100-80gb",)))
    cap = with_nodes(with_nodes(declared(spec), "de-1", "h100-80gb", [4, 2]),
                     "fr-1", "h100-80gb", [0, 3])
    plan = place(spec, cap)
    assert plan.workloads[W("nlp-team/big")].status == "Pending"
    assert why(plan, "nlp-team/big") == (
        "0/12 clusters: 7 residency(eu-personal), 3 no h100-80gb, "
        "2 capacity (needs 8 on one node, largest free 4)")


@pytest.mark.parametrize(("frees", "replicas", "placed"), [
    ([8, 8], 2, True),
    ([8, 4, 4], 2, False),
    ([4, 4, 4, 4], 1, False),
], ids=["two-whole-nodes", "one-node-short", "fragmented-16-free"])
def test_a_gang_needs_every_replica_on_one_node_at_once(frees: list[int], replicas: int,
                                                         placed: bool) -> None:
    spec = fleet(cluster("c1", "DE"), workload("g", replicas=replicas, count=8))
    plan = place(spec, with_nodes(declared(spec), "c1", "h100-80gb", frees))
    assert (plan.workloads[W("nlp-team/g")].status == "Placed") is placed


def test_earlier_flavour_is_preferred_and_a_later_one_used_when_it_is_full() -> None:
    spec = fleet(cluster("c1", "DE", (("h100-80gb", 8, 8), ("a100-80gb", 8, 8))),
                 workload("a", count=8, flavours=("h100-80gb", "a100-80gb"), priority=10),
                 workload("b", count=8, flavours=("h100-80gb", "a100-80gb")))
    plan = place(spec, declared(spec))
    assert where(plan, "nlp-team/a") == [("c1", "h100-80gb", 1)]
    assert where(plan, "nlp-team/b") == [("c1", "a100-80gb", 1)]


def test_higher_priority_places_first_and_ties_break_by_id() -> None:
    spec = fleet(cluster("c1", "DE", (("h100-80gb", 8, 8),)),
                 workload("low", count=8), workload("high", count=8, priority=5),
                 workload("also-low", count=8))
    plan = place(spec, declared(spec))
    assert plan.workloads[W("nlp-team/high")].status == "Placed"
    assert plan.workloads[W("nlp-team/low")].status == "Pending"


def test_packing_fills_a_used_cluster_before_an_empty_one() -> None:
    spec = fleet(cluster("a", "DE"), cluster("b", "DE"),
                 workload("first", count=4, priority=1), workload("second", count=4))
    plan = place(spec, declared(spec))
    assert where(plan, "nlp-team/first")[0][0] == where(plan, "nlp-team/second")[0][0]


def test_cheaper_cluster_wins_between_equals() -> None:
    spec = fleet(cluster("dear", "DE", prices={"h100-80gb": 3.0}),
                 cluster("cheap", "DE", prices={"h100-80gb": 2.0}), workload("w", count=8))
    assert where(place(spec, declared(spec)), "nlp-team/w")[0][0] == "cheap"


def test_weights_make_the_score_lexicographic() -> None:
    rest = 100 * (WEIGHTS["Packing"] + WEIGHTS["Price"])
    spot = 100 * WEIGHTS["Spot"]
    # running somewhere (100) beats any flavour order plus the rest
    assert WEIGHTS["Sticky"] * 100 > WEIGHTS["FlavourPreference"] * 100 + spot + rest
    # one step down the flavour list beats any spot rule, packing and price
    assert WEIGHTS["FlavourPreference"] > spot + rest
    # the spot rule beats any packing and price
    assert spot > rest


KEEP_CASES: list[tuple[str, dict[str, Any], str | None, bool]] = [
    ("cordoned", {"cordoned": True}, None, True),
    ("noschedule-taint", {"taints": [{"key": "gpu-maint", "effect": "NoSchedule"}]}, None,
     True),
    ("noexecute-taint", {"taints": [{"key": "gpu-maint", "effect": "NoExecute"}]}, None,
     False),
    ("unreachable-within-grace", {}, "Unreachable:100", True),
    ("unreachable-past-grace", {}, "Unreachable:400", False),
    ("unknown-health", {}, "Unknown", True),
]


@pytest.mark.parametrize(("_name", "change", "health", "stays"), KEEP_CASES,
                         ids=[c[0] for c in KEEP_CASES])
def test_what_runs_stays_unless_a_rule_evicts_it(_name: str, change: dict[str, Any],
                                                 health: str | None, stays: bool) -> None:
    w = workload("w", count=8, data_class="eu-personal")
    spec = fleet(cluster("a", "DE", **change), cluster("b", "FR"), w)
    cap: CapacitySnapshot = declared(spec)
    if health is not None:
        state, _, secs = health.partition(":")
        cap = with_health(cap, "a", state, float(secs) if secs else None)
    prev = {W("nlp-team/w"): (Assignment(ClusterName("a"), w.flavours[0], 1, 8),)}
    plan = place(spec, cap, prev)
    assert (where(plan, "nlp-team/w")[0][0] == "a") is stays
    if not stays:
        assert where(plan, "nlp-team/w")[0][0] == "b"
        assert plan.workloads[W("nlp-team/w")].status == "Placed"


def test_failover_never_leaves_the_residency_of_the_data() -> None:
    w = workload("w", count=8, data_class="eu-personal")
    spec = fleet(cluster("a", "DE"), cluster("us", "US"), w)
    cap = with_health(declared(spec), "a", "Unreachable", 10_000)
    prev = {W("nlp-team/w"): (Assignment(ClusterName("a"), w.flavours[0], 1, 8),)}
    p = place(spec, cap, prev).workloads[W("nlp-team/w")]
    assert p.status == "Pending"
    assert any(r.rule == "Health" and "grace" in r.message for r in p.reasons)
    assert any(r.rule == "Residency" and r.cluster == "us" for r in p.reasons)


def test_a_running_workload_is_not_preempted_by_a_new_higher_priority_one() -> None:
    spec = fleet(cluster("a", "DE", (("h100-80gb", 8, 8),)), workload("old", count=8),
                 workload("vip", count=8, priority=1000))
    prev = {W("nlp-team/old"): (Assignment(ClusterName("a"), spec.workloads[
        W("nlp-team/old")].flavours[0], 1, 8),)}
    plan = place(spec, declared(spec), prev)
    assert where(plan, "nlp-team/old") == [("a", "h100-80gb", 1)]
    assert plan.workloads[W("nlp-team/vip")].status == "Pending"


QUOTA_CASES = [
    ("within-nominal", 16, None, None, 16, True),
    ("over-nominal-no-cohort", 8, None, None, 16, False),
    ("borrows-from-cohort", 8, 8, 16, 16, True),
    ("borrowing-limit", 8, 4, 16, 16, False),
    ("cohort-has-no-slack", 8, 8, 0, 16, False),
]


@pytest.mark.parametrize(("_name", "nominal", "borrow", "lender", "gpus", "fits"),
                         QUOTA_CASES, ids=[c[0] for c in QUOTA_CASES])
def test_quota_with_borrowing_inside_the_cohort(_name: str, nominal: int, borrow: int | None,
                                                lender: int | None, gpus: int,
                                                fits: bool) -> None:
    docs: list[Any] = [cluster("a", "DE", (("h100-80gb", 64, 8),)),
                       workload("w", replicas=gpus // 8, count=8)]
    cohort = "research" if lender is not None else None
    docs.append(quota("nlp-team", ("h100-80gb", nominal, borrow), cohort=cohort))
    if lender is not None:
        docs.append(quota("vision-team", ("h100-80gb", lender, None), cohort=cohort))
    spec = fleet(*docs)
    p = place(spec, declared(spec)).workloads[W("nlp-team/w")]
    assert (p.status == "Placed") is fits
    if not fits:
        assert p.reasons[0].rule == "Quota" or "quota" in p.reasons[0].message


def test_spread_divides_replicas_by_free_capacity_over_min_to_max_clusters() -> None:
    spec = fleet(cluster("a", "DE", (("l40s-48gb", 12, 4),)),
                 cluster("b", "DE", (("l40s-48gb", 4, 4),)),
                 cluster("c", "DE", (("l40s-48gb", 8, 4),)),
                 workload("serve", wtype="inference", replicas=6, count=1,
                          flavours=("l40s-48gb",),
                          placement={"spread": {"minClusters": 2, "maxClusters": 2}}))
    got = where(place(spec, declared(spec)), "nlp-team/serve")
    assert len(got) == 2 and sum(r for _, _, r in got) == 6


def _spread_fleet() -> FleetSpec:
    return fleet(cluster("a", "DE", (("l40s-48gb", 8, 4),)),
                 cluster("b", "FR", (("l40s-48gb", 8, 4),)),
                 cluster("us", "US", (("l40s-48gb", 32, 4),)),
                 workload("chat", wtype="inference", replicas=4, count=1,
                          flavours=("l40s-48gb",), data_class="eu-personal",
                          placement={"spread": {"minClusters": 2, "maxClusters": 3}}))


L40S = Flavour("l40s-48gb")


@pytest.mark.parametrize(("previous", "status", "expected"), [
    ({"a": 2, "b": 2}, "Placed", [("b", L40S, 4)]),
    ({"a": 4}, "Pending", []),
    ({}, "Pending", []),
], ids=["survivor-kept-degraded", "ran-only-on-the-lost-cluster", "new-workload"])
def test_a_spread_workload_that_loses_a_cluster_keeps_its_surviving_copies(
        previous: dict[str, int], status: str, expected: list[tuple[str, str, int]]) -> None:
    # eu-personal over 2..3 clusters; only a and b are in the EU; a is Unreachable past
    # its grace. What survives on b stays, Placed and degraded, never Pending.
    spec = _spread_fleet()
    cap = with_health(declared(spec), "a", "Unreachable", 10_000)
    prev = {W("nlp-team/chat"): tuple(Assignment(ClusterName(c), L40S, n, 1)
                                      for c, n in sorted(previous.items()))} if previous else {}
    plan = place(spec, cap, prev)
    p = plan.workloads[W("nlp-team/chat")]
    assert (p.status, where(plan, "nlp-team/chat")) == (status, expected)
    if status == "Placed":
        assert p.reasons[0].rule == "Health" and "past the" in p.reasons[0].message
        assert p.reasons[1].rule == "Degraded" and p.reasons[1].message.startswith(
            "degraded: 4 of 4 replicas on 1 cluster")
    # Never outside residency, degraded or not.
    assert all(a.cluster != "us" for a in p.assignments)


@pytest.mark.parametrize(("replicas", "rooms", "expected"), [
    (6, [12, 4], [5, 1]),
    (3, [1, 1, 1], [1, 1, 1]),
    (4, [1, 1], None),
    (1, [5, 5], None),
], ids=["proportional", "one-each", "not-enough-room", "fewer-replicas-than-clusters"])
def test_divide(replicas: int, rooms: list[int], expected: list[int] | None) -> None:
    assert divide(replicas, rooms) == expected


def test_invalid_workloads_are_listed_as_invalid_with_their_diagnostics() -> None:
    spec = fleet(cluster("a", "DE"), workload("ok"),
                 workload("bad", flavours=("z100",)))
    plan = place(spec, declared(spec))
    bad = plan.workloads[W("nlp-team/bad")]
    assert bad.status == "Invalid" and bad.reasons[0].rule == "Invalid"
    assert "z100" in bad.reasons[0].message
    assert plan.workloads[W("nlp-team/ok")].status == "Placed"
