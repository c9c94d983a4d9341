"""A Pending workload's reasons kept by cause (`Diagnosis`): read as the tuple they stand
for, and a plan that does not grow with clusters x Pending workloads (issue 22)."""

from __future__ import annotations

import pickle

import pytest

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName
from fleet.placement import place
from fleet.placement.types import (
    Diagnosis,
    Plan,
    Reason,
    Refusal,
    fleetwide,
    prepend,
    reasons_about,
)
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload

C = ClusterName
STAY = Reason("cannot stay: nodes lost", C("c3"), "Capacity")
HEAD = Reason("0/5 clusters: 3 Unknown health, 2 residency(eu-personal)", None, "Unschedulable")
UNKNOWN = Refusal("cluster health Unknown", "Health", (C("c1"), C("c3"), C("c4")))
RESIDENCY = Refusal("dataClass eu-personal may not run in US", "Residency", (C("c0"), C("c2")))
DIAGNOSIS = Diagnosis((STAY, HEAD), (UNKNOWN, RESIDENCY))
AS_TUPLE = (STAY, HEAD,
            Reason("dataClass eu-personal may not run in US", C("c0"), "Residency"),
            Reason("cluster health Unknown", C("c1"), "Health"),
            Reason("dataClass eu-personal may not run in US", C("c2"), "Residency"),
            Reason("cluster health Unknown", C("c3"), "Health"),
            Reason("cluster health Unknown", C("c4"), "Health"))


def test_a_diagnosis_reads_as_the_tuple_of_its_reasons_in_cluster_order() -> None:
    d = DIAGNOSIS
    assert tuple(d) == AS_TUPLE and len(d) == len(AS_TUPLE) and d.refused == 5
    assert [d[i] for i in range(len(d))] == list(AS_TUPLE)
    assert [d[-i] for i in range(1, len(d) + 1)] == [AS_TUPLE[-i] for i in range(1, 8)]
    assert d[1:4] == AS_TUPLE[1:4] and d[::-2] == AS_TUPLE[::-2]
    with pytest.raises(IndexError):
        d[len(AS_TUPLE)]
    assert d == AS_TUPLE and hash(d) == hash(AS_TUPLE)
    assert AS_TUPLE == d  # noqa: SIM300 -- the tuple on the left: its reflected ==
    assert d != AS_TUPLE[:-1] and d != (*AS_TUPLE[:-1], AS_TUPLE[2])
    assert d != list(AS_TUPLE)  # as a tuple is never equal to a list
    back = pickle.loads(pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL))
    assert isinstance(back, Diagnosis) and back == d and tuple(back) == AS_TUPLE
    with pytest.raises(AttributeError):
        d.lead = ()  # type: ignore[misc]


def test_diagnoses_grouped_differently_are_equal_when_they_read_the_same() -> None:
    # the same reasons with c0 in the lead instead of in its refusal
    moved = Diagnosis((STAY, HEAD, AS_TUPLE[2]),
                      (UNKNOWN, Refusal(RESIDENCY.message, RESIDENCY.rule, (C("c2"),))))
    assert moved == DIAGNOSIS and hash(moved) == hash(DIAGNOSIS)
    assert DIAGNOSIS == moved  # noqa: SIM300 -- each side's == asked
    other = Diagnosis((STAY, HEAD), (UNKNOWN, Refusal("x", "Residency", RESIDENCY.clusters)))
    assert other != DIAGNOSIS and len(other) == len(DIAGNOSIS)


def test_reasons_about_a_cluster_and_the_fleetwide_ones_as_of_the_tuple() -> None:
    for name in ("c0", "c1", "c3", "c9"):
        expected = tuple(r for r in AS_TUPLE if r.cluster == name)
        assert reasons_about(DIAGNOSIS, C(name)) == expected
        assert reasons_about(AS_TUPLE, C(name)) == expected
    assert fleetwide(DIAGNOSIS) == fleetwide(AS_TUPLE) == (HEAD,)
    live = Reason("not running anywhere", None, "Live")
    first = prepend((live,), DIAGNOSIS)
    assert isinstance(first, Diagnosis) and first == (live, *AS_TUPLE)
    assert prepend((live,), AS_TUPLE) == (live, *AS_TUPLE) and prepend((), DIAGNOSIS) is DIAGNOSIS


def held(plan: Plan) -> tuple[int, int]:
    """(per-cluster entries the plan holds, Reasons it reads as) over its Pending
    workloads: each lead reason and each cluster of a refusal, counted once per object
    (shared objects are held, and pickled, once)."""
    seen: set[int] = set()
    entries = reads = 0
    for p in plan.workloads.values():
        if p.status != "Pending":
            continue
        assert isinstance(p.reasons, Diagnosis)
        reads += len(p.reasons)
        if id(p.reasons) not in seen:
            seen.add(id(p.reasons))
            entries += len(p.reasons.lead)
        for r in p.reasons.refusals:
            if id(r) not in seen:
                seen.add(id(r))
                entries += len(r.clusters)
    return entries, reads


def unknown_fleet(clusters: int, workloads: int) -> FleetSpec:
    """`clusters` clusters (a third in the US) and `workloads` alike eu-personal ones."""
    return fleet(*(cluster(f"c{i:03d}", "US" if i % 3 == 0 else "DE")
                   for i in range(clusters)),
                 *(workload(f"w{i:04d}", data_class="eu-personal") for i in range(workloads)))


@pytest.mark.parametrize("clusters", [10, 40], ids=["10-clusters", "40-clusters"])
def test_a_cold_start_plan_holds_each_cause_once_not_each_cluster_per_workload(
        clusters: int) -> None:
    # Every cluster Unknown (no capacity known yet): every workload is Pending, refused
    # by all clusters. Before, the plan held clusters x workloads reasons.
    small = place(unknown_fleet(clusters, 25), CapacitySnapshot({}))
    big = place(unknown_fleet(clusters, 100), CapacitySnapshot({}))
    (e_small, r_small), (e_big, r_big) = held(small), held(big)
    assert (r_small, r_big) == (25 * (clusters + 1), 100 * (clusters + 1))  # reads as before
    assert e_small == e_big == clusters + 1  # one summary line, one entry per cluster


def full_fleet(clusters: int, workloads: int) -> FleetSpec:
    """Clusters of one 8-GPU node each and more 8-GPU workloads than clusters."""
    return fleet(*(cluster(f"c{i:03d}", offers=(("h100-80gb", 8, 8),))
                   for i in range(clusters)),
                 *(workload(f"w{i:04d}", count=8) for i in range(workloads)))


def test_a_full_fleet_plan_holds_each_capacity_verdict_once() -> None:
    for clusters in (10, 40):
        spec = full_fleet(clusters, clusters + 60)
        plan = place(spec, declared(spec))
        entries, reads = held(plan)
        assert reads == 60 * (clusters + 1)
        assert entries == clusters + 1
        first = next(p for p in plan.workloads.values() if p.status == "Pending")
        assert first.reasons[1] == Reason("h100-80gb: needs 8 on one node, largest free 0",
                                          C("c000"), "Capacity")


def test_pickled_plan_grows_per_pending_workload_alike_at_10_and_at_40_clusters() -> None:
    # What the placement worker sends the controller: 50 more Pending workloads add
    # about the same bytes whatever the clusters. Before, each added a memo reference
    # per cluster (6,850 bytes at 10 clusters, 9,950 at 40: 2 bytes per cluster each);
    # now 2,354 and 2,300 (the pickle's memo indexes differ a little).
    def size(clusters: int, workloads: int) -> int:
        plan = place(unknown_fleet(clusters, workloads), CapacitySnapshot({}))
        return len(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))

    per_10 = size(10, 100) - size(10, 50)
    per_40 = size(40, 100) - size(40, 50)
    assert per_40 - per_10 < 50  # under a byte per workload for 30 more clusters
