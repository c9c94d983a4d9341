"""Kueue's queues as placement sees them (clusters/capacity.py `KueueQuota`): per
ClusterQueue its GPU quota per ResourceFlavor and cohort, what others' Workloads reserve
apart from ours, and our LocalQueues; the nodes themselves are not capped by quota."""

from __future__ import annotations

from typing import Any

from clusters.capacity import (
    CapacityTracker,
    FlavourQuota,
    KueueQuota,
    QueueView,
    slim_workload,
)

H100 = "NVIDIA-H100-80GB-HBM3"
GPU = "nvidia.com/gpu"


def flavour(name: str, product: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeLabels": {"nvidia.com/gpu.product":
                                                                 product}}}


def queue(name: str, nominal: int, reserved: int = 0, rf: str = "h100",
          borrowing: int | None = None, cohort: str | None = "ai") -> dict[str, Any]:
    gpu: dict[str, Any] = {"name": GPU, "nominalQuota": nominal}
    if borrowing is not None:
        gpu["borrowingLimit"] = str(borrowing)
    return {"metadata": {"name": name},
            "spec": {**({"cohortName": cohort} if cohort else {}), "resourceGroups": [{
                "coveredResources": [GPU, "cpu"], "flavors": [{"name": rf, "resources": [
                    gpu, {"name": "cpu", "nominalQuota": "64"}]}]}]},
            "status": {"flavorsReservation": [{"name": rf, "resources": [
                {"name": GPU, "total": str(reserved), "borrowed": "0"}]}]}}


def workload(name: str, gpus: int, *, ours: bool, finished: bool = False,
             cq: str = "a") -> dict[str, Any]:
    labels = {"aifleet.dev/managed-by": "aifleet"} if ours else {}
    conds = [{"type": "Finished", "status": "True"}] if finished else []
    return {"metadata": {"name": name, "namespace": "t"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "x"}]}}}]},
            "status": {"conditions": conds, "admission": {
                "clusterQueue": cq, "podSetAssignments": [{
                    "name": "main", "flavors": {GPU: "h100"},
                    "resourceUsage": {GPU: str(gpus)}}]}}}


def test_each_queue_says_its_quota_and_what_others_reserve_apart_from_ours() -> None:
    k = KueueQuota()
    k.on_flavour("ADDED", flavour("h100", H100))
    k.on_cluster_queue("ADDED", queue("a", 16, reserved=12, borrowing=4))
    k.on_cluster_queue("ADDED", queue("b", 8, reserved=4, cohort=None))
    assert k.on_workload("ADDED", slim_workload(workload("mine", 8, ours=True)))
    assert not k.on_workload("ADDED", slim_workload(workload("theirs", 4, ours=False)))
    view = k.queues()
    assert view.cluster_queues == (
        QueueView("a", "ai", (("h100", H100, FlavourQuota(16, 4, None), 4, 8),)),
        QueueView("b", None, (("h100", H100, FlavourQuota(8, None, None), 4, 0),)))
    # our Workload finished: its quota is given back, and no longer ours
    assert k.on_workload("MODIFIED", workload("mine", 8, ours=True, finished=True))
    assert k.queues().cluster_queues[0].flavours[0][3:] == (12, 0)
    k.on_cluster_queue("DELETED", queue("b", 8))
    assert [q.name for q in k.queues().cluster_queues] == ["a"]


def test_our_local_queues_say_which_clusterqueue_each_team_waits_in() -> None:
    t = CapacityTracker()
    before = t.version
    t.on_local_queue("ADDED", {"metadata": {"namespace": "nlp", "name": "nlp"},
                               "spec": {"clusterQueue": "nlp"}})
    assert t.version > before
    assert t.kueue.queues().local_queues == ((("nlp", "nlp"), "nlp"),)
    t.on_local_queue("DELETED", {"metadata": {"namespace": "nlp", "name": "nlp"},
                                 "spec": {"clusterQueue": "nlp"}})
    assert t.kueue.queues().local_queues == ()


def test_the_nodes_are_not_capped_by_kueue_quota() -> None:
    """One team's free quota is not another's, and a Deployment is not queued: the
    nodes' figures stay the nodes'; placement bounds each team by its queue."""
    t = CapacityTracker()
    for n in ("n0", "n1"):
        t.on_node("ADDED", {"metadata": {"name": n, "labels": {
            "nvidia.com/gpu.product": H100}}, "spec": {}, "status": {
            "allocatable": {GPU: "8"}, "conditions": [{"type": "Ready", "status": "True"}]}})
    t.on_resource_flavor("ADDED", flavour("h100", H100))
    t.on_cluster_queue("ADDED", queue("a", 4))
    assert [n.free for n in t.view()] == [8, 8]


def test_only_a_workload_neither_admitted_nor_finished_is_queued() -> None:
    from clusters.health import kueue_queued

    def wl(**conds: str) -> dict[str, Any]:
        return {"spec": {"queueName": "nlp-team"}, "status": {"conditions": [
            {"type": k, "status": v, "message": f"{k} says {v}"} for k, v in conds.items()]}}
    assert kueue_queued([wl(QuotaReserved="True", Admitted="True")]) is None
    assert kueue_queued([wl(QuotaReserved="True", Admitted="True", Finished="True")]) is None
    assert kueue_queued([wl(QuotaReserved="False")]) == \
        "queued by Kueue in LocalQueue nlp-team: QuotaReserved says False"
    assert kueue_queued([wl()]) == \
        "queued by Kueue in LocalQueue nlp-team: waiting for Kueue to evaluate it"
