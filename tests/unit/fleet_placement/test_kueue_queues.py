"""Placement on Kueue clusters is bounded per team queue (fleet/placement/queues.py):
the free quota of the ClusterQueue the team's LocalQueue points to, Kueue's way."""

from __future__ import annotations

import pytest

from fleet.capacity import (
    CapacitySnapshot,
    ClusterCapacity,
    ClusterQueueCapacity,
    KueueCapacity,
    QueueQuota,
)
from fleet.ids import ClusterName, Flavour, Team, WorkloadId
from fleet.placement import IncrementalPlanner, place
from fleet.placement.queues import MISSING, Queues
from fleet.placement.state import State
from fleet.placement.types import Assignment
from tests.unit.fleet_placement.builders import cluster, declared, fleet, quota, workload

H100 = Flavour("h100-80gb")
KUEUE = ClusterName("a-kueue")
PLAIN = ClusterName("b-plain")


def cq(name: str, nominal: int, *, cohort: str | None = None, used: int = 0,
       borrowing: int | None = None, lending: int | None = None) -> ClusterQueueCapacity:
    return ClusterQueueCapacity(name, cohort, {H100: QueueQuota(nominal, borrowing, lending,
                                                                used)})


def kueue(*queues: ClusterQueueCapacity, teams: tuple[str, ...] = ()) -> KueueCapacity:
    """The queues, and for each team its LocalQueue (team/team) -> its own queue."""
    return KueueCapacity({q.name: q for q in queues}, {(t, t): t for t in teams})


def with_kueue(cap: CapacitySnapshot, name: ClusterName, k: KueueCapacity
               ) -> CapacitySnapshot:
    c = cap.clusters[name]
    return CapacitySnapshot({**cap.clusters, name: ClusterCapacity(
        c.name, c.health, c.unreachable_seconds, c.nodes, k)})


def two_clusters(*docs: object) -> tuple[object, CapacitySnapshot]:
    spec = fleet(cluster(str(KUEUE), offers=(("h100-80gb", 32, 8),), stack={"kueue": True}),
                 cluster(str(PLAIN), "US", offers=(("h100-80gb", 32, 8),)), *docs)  # type: ignore[arg-type]
    return spec, declared(spec)


def where(plan: object, wid: str) -> list[str]:
    p = plan.workloads[WorkloadId(wid)]  # type: ignore[attr-defined]
    return [a.cluster for a in p.assignments]


def test_one_teams_full_queue_sends_its_workload_elsewhere_the_other_team_still_lands(
) -> None:
    # vision-team's first (priority): its choice is not swayed by packing next to train
    spec, cap = two_clusters(workload("train", "nlp-team"),
                             workload("fit", "vision-team", priority=10))
    cap = with_kueue(cap, KUEUE, kueue(cq("nlp-team", 8, used=8), cq("vision-team", 8),
                                       teams=("nlp-team", "vision-team")))
    plan = place(spec, cap)  # type: ignore[arg-type]
    assert where(plan, "nlp-team/train") == [PLAIN]
    assert where(plan, "vision-team/fit") == [KUEUE]
    # without Kueue's figures both would take the first cluster by name
    plain = place(spec, two_clusters()[1])  # type: ignore[arg-type]
    assert where(plain, "nlp-team/train") == [KUEUE]


def test_the_queue_full_everywhere_is_pending_with_kueues_reason() -> None:
    spec = fleet(cluster(str(KUEUE), offers=(("h100-80gb", 32, 8),), stack={"kueue": True}),
                 workload("train", "nlp-team", replicas=2))
    cap = with_kueue(declared(spec), KUEUE, kueue(cq("nlp-team", 16, used=12),
                                                 teams=("nlp-team",)))
    p = place(spec, cap).workloads[WorkloadId("nlp-team/train")]
    assert p.status == "Pending"
    assert p.reasons[0].message == (
        "0/1 clusters: 1 Kueue queue full (nlp-team: needs 16 GPUs, most free 4)")
    assert p.reasons[1].cluster == KUEUE and p.reasons[1].rule == "KueueQueue"
    assert p.reasons[1].message == ("Kueue ClusterQueue nlp-team: 4 h100-80gb GPUs of quota "
                                    "free (nominal 16), needs 16")


def test_a_team_with_a_teamquota_whose_queue_is_not_applied_yet_gets_the_one_coming(
) -> None:
    """The first plan of a fleet comes before the first apply: a TeamQuota team's queue
    is not on the cluster yet. It is bounded by the queue aifleet is about to apply
    (its TeamQuota's nominal, in its cohort), not refused: refusing would send every
    such workload away from every Kueue cluster for good (placement is sticky)."""
    spec, cap = two_clusters(workload("a", "nlp-team", replicas=2),
                             workload("b", "nlp-team", replicas=2, priority=-1),
                             quota("nlp-team", ("h100-80gb", 64, None)))
    cap = with_kueue(cap, KUEUE, kueue(cq("other", 0)))
    plan = place(spec, cap)  # type: ignore[arg-type]
    assert where(plan, "nlp-team/a") == [KUEUE]
    assert where(plan, "nlp-team/b") == [KUEUE]
    # the queue coming is nlp-team's 8, in cohort ai, where vision-team's queue is full:
    # 8 fit there; the fleet-wide quota (vision-team lends 64) would allow 16
    spec, cap = two_clusters(workload("a", "nlp-team"),
                             workload("b", "nlp-team", priority=-1),
                             quota("nlp-team", ("h100-80gb", 8, None), cohort="ai"),
                             quota("vision-team", ("h100-80gb", 64, None), cohort="ai"))
    cap = with_kueue(cap, KUEUE, kueue(cq("vision-team", 64, used=64, cohort="ai"),
                                       teams=("vision-team",)))
    plan = place(spec, cap)  # type: ignore[arg-type]
    assert (where(plan, "nlp-team/a"), where(plan, "nlp-team/b")) == ([KUEUE], [PLAIN])


def test_the_stand_in_is_the_live_clusterqueue_when_only_the_localqueue_is_missing(
) -> None:
    qs = Queues({KUEUE: KueueCapacity({"nlp-team": cq("nlp-team", 4, used=4)}, {})},
                {Team("nlp-team"): cq("nlp-team", 64)})
    assert qs.queue_of(KUEUE, Team("nlp-team")) == "nlp-team"
    assert qs.available(KUEUE, "nlp-team", H100, State({})) == 0


def test_a_team_without_teamquota_and_no_queue_yet_is_bounded_by_nodes_only() -> None:
    """aifleet applies its queue with the cluster's GPUs as nominal when it places it."""
    spec, cap = two_clusters(workload("train", "nlp-team"))
    cap = with_kueue(cap, KUEUE, kueue(cq("other", 0)))
    assert where(place(spec, cap), "nlp-team/train") == [KUEUE]  # type: ignore[arg-type]


def test_a_localqueue_pointing_to_a_missing_clusterqueue_refuses_with_a_reason() -> None:
    spec, cap = two_clusters(workload("train", "nlp-team"))
    cap = with_kueue(cap, KUEUE, KueueCapacity({}, {("nlp-team", "nlp-team"): "gone"}))
    assert where(place(spec, cap), "nlp-team/train") == [PLAIN]  # type: ignore[arg-type]
    spec1 = fleet(cluster(str(KUEUE), offers=(("h100-80gb", 32, 8),), stack={"kueue": True}),
                  workload("train", "nlp-team"))
    p = place(spec1, with_kueue(declared(spec1), KUEUE, KueueCapacity(
        {}, {("nlp-team", "nlp-team"): "gone"}))).workloads[WorkloadId("nlp-team/train")]
    assert p.status == "Pending"
    assert p.reasons[0].message == "0/1 clusters: 1 no Kueue queue"
    assert (p.reasons[1].rule, p.reasons[1].message) == (
        "KueueQueue", "no Kueue queue for nlp-team: LocalQueue nlp-team/nlp-team points to "
        "ClusterQueue gone, which does not exist")


def test_cohort_borrowing_is_counted_once_over_its_queues() -> None:
    """Two teams of nominal 0 in a cohort with 8 to lend: one 8-GPU Job borrows it all,
    the other team's finds nothing left on that cluster."""
    spec, cap = two_clusters(workload("a", "nlp-team"), workload("b", "vision-team"))
    cap = with_kueue(cap, KUEUE, kueue(
        cq("lender", 8, cohort="ai"), cq("nlp-team", 0, cohort="ai"),
        cq("vision-team", 0, cohort="ai"), teams=("nlp-team", "vision-team")))
    plan = place(spec, cap)  # type: ignore[arg-type]
    assert where(plan, "nlp-team/a") == [KUEUE]
    assert where(plan, "vision-team/b") == [PLAIN]


def test_inference_is_not_queued_by_kueue() -> None:
    spec, cap = two_clusters(workload("serve", "nlp-team", wtype="inference",
                                      inference={"port": 8000}))
    cap = with_kueue(cap, KUEUE, kueue(cq("nlp-team", 0), teams=("nlp-team",)))
    assert where(place(spec, cap), "nlp-team/serve") == [KUEUE]  # type: ignore[arg-type]


def test_a_cluster_not_declared_kueue_is_not_bounded_by_its_queues() -> None:
    spec = fleet(cluster(str(KUEUE), offers=(("h100-80gb", 32, 8),)),
                 workload("train", "nlp-team"))
    cap = with_kueue(declared(spec), KUEUE, kueue(cq("nlp-team", 0), teams=("nlp-team",)))
    assert where(place(spec, cap), "nlp-team/train") == [KUEUE]


def test_a_running_workload_stays_even_when_its_queue_is_now_over_quota() -> None:
    """Kueue never takes back what it admitted: keeping is not judged by the queue, but
    its GPUs are charged first, so nothing new goes into the full queue."""
    spec, cap = two_clusters(workload("train", "nlp-team"), workload("more", "nlp-team"))
    cap = with_kueue(cap, KUEUE, kueue(cq("nlp-team", 8, used=8), teams=("nlp-team",)))
    prev = {WorkloadId("nlp-team/train"): (Assignment(KUEUE, H100, 1, 8),)}
    plan = place(spec, cap, prev)  # type: ignore[arg-type]
    assert where(plan, "nlp-team/train") == [KUEUE]
    assert where(plan, "nlp-team/more") == [PLAIN]
    inc = IncrementalPlanner(spec, cap, prev)  # type: ignore[arg-type]
    head = fleet(*[d for d in (spec.clusters[KUEUE], spec.clusters[PLAIN],  # type: ignore[attr-defined]
                               spec.workloads[WorkloadId("nlp-team/more")])])  # type: ignore[attr-defined]
    assert inc.replan(head, {}) == place(head, cap, {})


def q(nominal: int, used: int = 0, borrowing: int | None = None,
      lending: int | None = None) -> QueueQuota:
    return QueueQuota(nominal, borrowing, lending, used)


@pytest.mark.parametrize(("me", "others", "cohort", "charged", "free"), [
    (q(8, 3), (), None, 0, 5),
    (q(8, 3), (), None, 2, 3),
    (q(8, 10), (), None, 0, -2),  # over-admitted: Kueue's available goes negative
    (q(8), (q(8),), "ai", 0, 16),
    (q(8), (q(8, 6),), "ai", 0, 10),
    (q(8, borrowing=2), (q(8),), "ai", 0, 10),
    (q(8, 10, borrowing=2), (q(8),), "ai", 0, 0),  # borrowed 2 already
    (q(8), (q(8, lending=3),), "ai", 0, 11),  # the other keeps 5 for itself
    (q(8, lending=0), (q(8),), "ai", 0, 16),  # lends nothing, may still borrow
    (q(8, 6, lending=0), (q(8, 8, lending=0),), "ai", 0, 2),
    (q(0), (q(8, 4), q(0, 0)), "ai", 0, 4),
], ids=["no-cohort", "no-cohort-charged", "over-admitted", "cohort-all-free",
        "cohort-other-used", "borrowing-limit", "borrowing-limit-used",
        "other-lending-limit", "own-lending-limit", "both-guaranteed", "three-members"])
def test_free_quota_is_kueues_available(me: QueueQuota, others: tuple[QueueQuota, ...],
                                        cohort: str | None, charged: int, free: int) -> None:
    """kubernetes-sigs/kueue pkg/cache/resource_node.go `available`, one cohort level."""
    queues = {"me": ClusterQueueCapacity("me", cohort, {H100: me})}
    for i, o in enumerate(others):
        queues[f"o{i}"] = ClusterQueueCapacity(f"o{i}", cohort, {H100: o})
    qs = Queues({KUEUE: KueueCapacity(queues, {("t", "t"): "me"})}, {})
    assert qs.queue_of(KUEUE, Team("t")) == "me"
    state = State({})
    state.set_queue_used((KUEUE, "me", H100), charged)
    assert qs.available(KUEUE, "me", H100, state) == free


def test_queue_of_says_missing_only_where_the_localqueue_names_no_clusterqueue() -> None:
    qs = Queues({KUEUE: KueueCapacity({"x": cq("x", 1)}, {("a", "a"): "x", ("b", "b"): "y"})},
                {Team("c"): cq("c", 8)})
    assert qs.queue_of(KUEUE, Team("a")) == "x"
    assert qs.queue_of(KUEUE, Team("b")) == MISSING  # its ClusterQueue is gone
    assert qs.queue_of(KUEUE, Team("c")) == "c"  # the queue aifleet is about to apply
    assert qs.available(KUEUE, "c", H100, State({})) == 8
    assert qs.queue_of(KUEUE, Team("d")) is None  # no TeamQuota: aifleet will make it
    assert qs.queue_of(PLAIN, Team("a")) is None  # no Kueue there


def test_capacity_json_carries_the_queues_and_the_digest_ignores_our_own_usage() -> None:
    k = KueueCapacity({"nlp-team": ClusterQueueCapacity("nlp-team", "ai", {
        H100: QueueQuota(16, 4, None, 2, 8)})}, {("nlp-team", "nlp-team"): "nlp-team"})
    cap = CapacitySnapshot({KUEUE: ClusterCapacity(KUEUE, kueue=k)})
    doc = cap.to_json()
    assert doc["clusters"][0]["kueue"] == {
        "clusterQueues": [{"name": "nlp-team", "cohort": "ai", "flavours": [
            {"flavour": "h100-80gb", "nominalQuota": 16, "borrowingLimit": 4,
             "lendingLimit": None, "usedByOthers": 2, "usedByFleet": 8}]}],
        "localQueues": [{"namespace": "nlp-team", "name": "nlp-team",
                         "clusterQueue": "nlp-team"}]}
    assert CapacitySnapshot.from_json(doc) == cap
    ours = CapacitySnapshot({KUEUE: ClusterCapacity(KUEUE, kueue=KueueCapacity(
        {"nlp-team": ClusterQueueCapacity("nlp-team", "ai", {H100: QueueQuota(16, 4, None, 2, 0)})},
        k.local_queues))})
    assert ours.digest() == cap.digest()
    others = CapacitySnapshot({KUEUE: ClusterCapacity(KUEUE, kueue=KueueCapacity(
        {"nlp-team": ClusterQueueCapacity("nlp-team", "ai", {H100: QueueQuota(16, 4, None, 3, 8)})},
        k.local_queues))})
    assert others.digest() != cap.digest()
    assert "kueue" not in CapacitySnapshot({PLAIN: ClusterCapacity(PLAIN)}).to_json()[
        "clusters"][0]


@pytest.mark.parametrize(("doc", "error"), [
    ({"clusterQueues": {}}, "clusters[0].kueue.clusterQueues must be a list"),
    ({"clusterQueues": [{"name": "q", "flavours": [{"flavour": "f"}]}]},
     "clusters[0].kueue.clusterQueues[0].flavours[0].nominalQuota must be a whole number"),
    ({"clusterQueues": [{"name": "q", "cohort": 3}]},
     "clusters[0].kueue.clusterQueues[0].cohort must be a non-empty string or null"),
    ({"localQueues": [{"namespace": "a", "name": "b"}]},
     "clusters[0].kueue.localQueues[0].clusterQueue must be a non-empty string"),
], ids=["queues-not-list", "no-nominal", "bad-cohort", "lq-no-cq"])
def test_a_bad_kueue_section_is_refused_where_it_is_wrong(doc: object, error: str) -> None:
    from fleet.capacity import CapacityFormatError
    bad = {"apiVersion": "aifleet.dev/v1alpha1", "kind": "CapacitySnapshot",
           "clusters": [{"name": "a", "nodes": [], "kueue": doc}]}
    with pytest.raises(CapacityFormatError, match=error.replace("[", r"\[").replace("]", r"\]")):
        CapacitySnapshot.from_json(bad)
