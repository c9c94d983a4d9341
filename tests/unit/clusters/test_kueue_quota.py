"""Kueue's quota as placement sees it (clusters/capacity.py `KueueQuota`): per GPU
product, the ClusterQueues' nominal quota minus what others' Workloads reserve, and
the nodes' free GPUs bounded by it."""

from __future__ import annotations

from typing import Any

from clusters.capacity import CapacityTracker, KueueQuota, NodeState, slim_workload

H100 = "NVIDIA-H100-80GB-HBM3"
GPU = "nvidia.com/gpu"


def flavour(name: str, product: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeLabels": {"nvidia.com/gpu.product":
                                                                 product}}}


def queue(name: str, nominal: int, reserved: int = 0, rf: str = "h100") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"cohortName": "ai", "resourceGroups": [{
                "coveredResources": [GPU, "cpu"], "flavors": [{"name": rf, "resources": [
                    {"name": GPU, "nominalQuota": nominal},
                    {"name": "cpu", "nominalQuota": "64"}]}]}]},
            "status": {"flavorsReservation": [{"name": rf, "resources": [
                {"name": GPU, "total": str(reserved), "borrowed": "0"}]}]}}


def workload(name: str, gpus: int, *, ours: bool, finished: bool = False) -> dict[str, Any]:
    labels = {"aifleet.dev/managed-by": "aifleet"} if ours else {}
    conds = [{"type": "Finished", "status": "True"}] if finished else []
    return {"metadata": {"name": name, "namespace": "t"},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "x"}]}}}]},
            "status": {"conditions": conds, "admission": {
                "clusterQueue": "a", "podSetAssignments": [{
                    "name": "main", "flavors": {GPU: "h100"},
                    "resourceUsage": {GPU: str(gpus)}}]}}}


def node(name: str, gpus: int = 8) -> NodeState:
    return NodeState(name, H100, gpus, True, False, ())


def test_free_quota_is_the_queues_nominal_minus_what_others_reserve() -> None:
    k = KueueQuota()
    k.on_flavour("ADDED", flavour("h100", H100))
    k.on_cluster_queue("ADDED", queue("a", 16, reserved=12))
    k.on_cluster_queue("ADDED", queue("b", 8, reserved=4))
    assert k.free() == {H100: 8}
    k.on_workload("ADDED", slim_workload(workload("mine", 8, ours=True)))
    k.on_workload("ADDED", slim_workload(workload("theirs", 8, ours=False)))
    assert k.free() == {H100: 16}  # our 8 are placed again by the plan, not lost
    k.on_workload("MODIFIED", workload("mine", 8, ours=True, finished=True))
    assert k.free() == {H100: 8}
    k.on_cluster_queue("DELETED", queue("b", 8))
    assert k.free() == {H100: 4}


def test_a_flavour_no_queue_covers_is_not_bounded() -> None:
    k = KueueQuota()
    k.on_cluster_queue("ADDED", queue("a", 16, rf="unknown"))
    assert k.free() == {}
    nodes = [node("n0"), node("n1")]
    assert k.cap(nodes) == nodes


def test_nodes_offer_at_most_the_free_quota_last_node_first() -> None:
    t = CapacityTracker()
    for n in ("n0", "n1", "n2"):
        t.on_node("ADDED", {"metadata": {"name": n, "labels": {
            "nvidia.com/gpu.product": H100}}, "spec": {}, "status": {
            "allocatable": {GPU: "8"}, "conditions": [{"type": "Ready", "status": "True"}]}})
    before = t.version
    t.on_resource_flavor("ADDED", flavour("h100", H100))
    t.on_cluster_queue("ADDED", queue("a", 12))
    assert t.version > before
    view = {n.name: (n.free, n.quota_held) for n in t.view()}
    assert view == {"n0": (8, 0), "n1": (4, 4), "n2": (0, 8)}
    assert {n.name: n.free for n in t.nodes.values()} == {"n0": 8, "n1": 8, "n2": 8}


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
