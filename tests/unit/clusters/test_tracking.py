"""Health, capacity arithmetic, hashing and the rate limit, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.apply import HASH_ANNOTATION, content_hash, stamp
from clusters.capacity import CapacityTracker
from clusters.client import Outcome, RetryPolicy, TokenBucket
from clusters.health import HealthTracker, deployment_health, job_health
from tests.support.clock import FakeClock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cluster_health_goes_degraded_then_unreachable_then_healthy_again() -> None:
    clock = Clock()
    h = HealthTracker(unreachable_after=15, degraded_window=60, clock=clock)
    assert h.state == "Unknown"
    h.record(Outcome.OK)
    assert h.state == "Healthy"
    h.record(Outcome.NO_ANSWER)
    assert h.state == "Degraded"
    clock.now += 16
    h.record(Outcome.NO_ANSWER)
    assert h.state == "Unreachable" and h.unreachable_since == 1000.0
    h.record(Outcome.OK)
    assert h.state == "Degraded"  # it answers again, but failed within the window
    clock.now += 61
    assert h.state == "Healthy"
    h.record(Outcome.ERROR)
    assert h.state == "Degraded"


def node(name: str, gpus: int, ready: bool = True, product: str = "H100") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                                   "conditions": [{"type": "Ready",
                                                   "status": "True" if ready else "False"}]}}


def pod(name: str, gpus: int, node_name: str | None, phase: str = "Running",
        ours: bool = False) -> dict[str, Any]:
    labels = {"aifleet.dev/managed-by": "aifleet"} if ours else {}
    return {"metadata": {"name": name, "namespace": "t", "labels": labels},
            "spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "resources": {
                         "limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


def test_capacity_counts_non_terminal_pods_against_their_node() -> None:
    cap = CapacityTracker()
    cap.on_pod("ADDED", pod("early", 2, "n1"))  # before its node is seen
    cap.on_node("ADDED", node("n1", 8))
    cap.on_node("ADDED", node("n2", 8))
    cap.on_pod("ADDED", pod("p1", 4, "n1"))
    cap.on_pod("ADDED", pod("waiting", 8, None, "Pending"))
    assert [(n.name, n.free) for n in cap.by_product()["H100"]] == [("n1", 2), ("n2", 8)]
    assert cap.unbound_gpus == 8
    cap.on_pod("MODIFIED", pod("p1", 4, "n1", "Succeeded"))
    cap.on_pod("DELETED", pod("early", 2, "n1"))
    assert cap.nodes["n1"].free == 8
    cap.on_node("MODIFIED", node("n2", 8, ready=False))
    assert cap.nodes["n2"].free == 0


def test_our_own_pods_count_as_ours_in_a_replan_never_as_someone_elses() -> None:
    cap = CapacityTracker()
    cap.on_pod("ADDED", pod("ours-early", 2, "n1", ours=True))
    cap.on_node("ADDED", node("n1", 8))
    cap.on_pod("ADDED", pod("theirs", 2, "n1"))
    cap.on_pod("ADDED", pod("ours", 4, "n1", ours=True))
    n1 = cap.nodes["n1"]
    assert (n1.free, n1.free_for_us) == (0, 6)
    cap.on_pod("DELETED", pod("ours", 4, "n1", ours=True))
    assert (n1.free, n1.free_for_us) == (4, 6)


def test_dra_devices_stand_in_where_no_device_plugin_resource_exists() -> None:
    cap = CapacityTracker()
    cap.on_node("ADDED", {"metadata": {"name": "n1", "labels": {}}, "spec": {},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    cap.on_resource_slice("ADDED", {"spec": {"nodeName": "n1", "devices": [
        {"name": f"gpu-{i}", "attributes": {"productName": {"string": "NVIDIA-B200"}}}
        for i in range(8)]}})
    assert [(n.name, n.free) for n in cap.by_product()["NVIDIA-B200"]] == [("n1", 8)]


def _slice(name: str, node: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "driver": "gpu.nvidia.com", "nodeName": node,
        "pool": {"name": node, "generation": 1, "resourceSliceCount": 2},
        "devices": devices}}


def _gpu(i: int, product: str = "NVIDIA H100 80GB HBM3", **extra: str) -> dict[str, Any]:
    attrs = {"productName": {"string": product}, **{k: {"string": v}
                                                   for k, v in extra.items()}}
    return {"name": f"gpu-{i}", "attributes": attrs}


def _claim(name: str, node: str, devices: list[int], ours: bool) -> dict[str, Any]:
    labels = {"aifleet.dev/managed-by": "aifleet"} if ours else {}
    return {"metadata": {"name": name, "namespace": "t", "labels": labels},
            "status": {"allocation": {"devices": {"results": [
                {"request": "gpus", "driver": "gpu.nvidia.com", "pool": node,
                 "device": f"gpu-{i}"} for i in devices]}}}}


def test_dra_free_devices_are_slice_devices_minus_allocated_claims() -> None:
    cap = CapacityTracker()
    # Slices and claims may arrive before the node; a pool may span two slices.
    cap.on_resource_slice("ADDED", _slice("n1-a", "n1", [_gpu(i) for i in range(4)]))
    cap.on_resource_claim("ADDED", _claim("theirs", "n1", [0, 1], ours=False))
    cap.on_node("ADDED", {"metadata": {"name": "n1", "labels": {}}, "spec": {},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    cap.on_resource_slice("ADDED", _slice("n1-b", "n1", [_gpu(i) for i in range(4, 8)]))
    n1 = cap.nodes["n1"]
    # The driver's "NVIDIA H100 80GB HBM3" is GFD's "NVIDIA-H100-80GB-HBM3".
    assert [n.name for n in cap.by_product()["NVIDIA-H100-80GB-HBM3"]] == ["n1"]
    assert (n1.gpus, n1.free) == (8, 6)
    version = cap.version
    cap.on_resource_claim("ADDED", _claim("ours", "n1", [4, 5, 6], ours=True))
    assert (n1.free, n1.free_for_us, n1.dra_used_ours) == (3, 6, 3)
    assert cap.version > version
    cap.on_resource_claim("MODIFIED", {**_claim("theirs", "n1", [], ours=False),
                                       "status": {}})  # deallocated
    assert n1.free == 5
    cap.on_resource_claim("DELETED", _claim("ours", "n1", [4, 5, 6], ours=True))
    cap.on_resource_slice("DELETED", _slice("n1-b", "n1", []))
    assert (n1.gpus, n1.free) == (4, 4)


def test_a_mig_device_is_counted_under_its_gfd_mig_product() -> None:
    cap = CapacityTracker()
    cap.on_node("ADDED", {"metadata": {"name": "m", "labels": {}}, "spec": {},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    cap.on_resource_slice("ADDED", _slice("m-0", "m", [
        _gpu(i, "NVIDIA A100-SXM4-80GB", type="mig", profile="3g.40gb") for i in range(2)]))
    assert sorted(cap.by_product()) == ["NVIDIA-A100-SXM4-80GB-MIG-3g.40gb"]


def test_content_hash_ignores_its_own_annotation_and_sees_any_change() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}]}}
    stamped = stamp(obj)
    assert stamped["metadata"]["annotations"][HASH_ANNOTATION] == content_hash(obj)
    assert content_hash(stamped) == content_hash(obj)
    changed = {**obj, "spec": {"ports": [{"port": 81}]}}
    assert content_hash(changed) != content_hash(obj)


async def test_token_bucket_allows_a_burst_then_paces_to_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=100, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert clock.sleeps == []  # the burst goes at once
    for _ in range(10):
        await bucket.acquire()
    # 10 tokens beyond the burst at 100/s: 10 waits of 10 ms on the bucket's clock.
    assert bucket.waits == 10 and sum(clock.sleeps) == pytest.approx(0.1)
    clock.advance(1.0)  # idle for a second: the burst refills, capped at 5
    for _ in range(5):
        await bucket.acquire()
    assert bucket.waits == 10
    await bucket.acquire()
    assert bucket.waits == 11


def test_retry_policy_honours_retry_after_with_a_cap() -> None:
    policy = RetryPolicy(max_retry_after=30)
    assert policy.delay(0, 2.0) == 2.0
    assert policy.delay(3, 600.0) == 30
    assert all(0 <= policy.delay(a, None) <= policy.cap for a in range(10))


def test_workload_health_from_job_and_deployment_status() -> None:
    job = {"spec": {"parallelism": 2}, "status": {"active": 2, "ready": 2}}
    assert job_health(job) == "Running"
    assert job_health({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) \
        == "Succeeded"
    assert job_health({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) \
        == "Failed"
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 3}}
    assert deployment_health(dep) == "Running"
    dep["status"]["observedGeneration"] = 1
    assert deployment_health(dep) == "Progressing"


def test_cluster_health_says_why_it_is_degraded_or_unreachable() -> None:
    clock = Clock()
    h = HealthTracker(unreachable_after=15, degraded_window=60, clock=clock)
    h.record(Outcome.OK)
    assert h.why() is None
    h.record(Outcome.ERROR, "GET /api/v1/pods: 503 ServiceUnavailable")
    reason, message = h.why() or ("", "")
    assert reason == "APIErrors" and "GET /api/v1/pods: 503 ServiceUnavailable" in message
    h.record(Outcome.NO_ANSWER, "GET /version: ClientConnectorError: refused")
    clock.now += 16
    assert h.state == "Unreachable"
    reason, message = h.why() or ("", "")
    assert reason == "NoAnswer" and message.startswith("no answer for 16s")
    assert "GET /version" in message
    h.record(Outcome.OK)
    clock.now += 61
    assert h.state == "Healthy" and h.why() is None


def test_a_cut_off_cluster_is_unreachable_from_then_with_its_cause() -> None:
    clock = FakeClock()
    h = HealthTracker(unreachable_after=15.0, clock=clock)
    h.record(Outcome.OK)
    assert h.state == "Healthy"
    clock.advance(3.0)
    h.cut_off("CredentialsDeleted", "credentials Secret ns/a was deleted")
    # At once, not after unreachable_after: the controller itself stopped talking.
    assert h.state == "Unreachable"
    assert h.why() == ("CredentialsDeleted", "credentials Secret ns/a was deleted")
    clock.advance(7.0)
    assert h.unreachable_for() == 7.0  # the failover grace counts from the cut
    h.record(Outcome.OK)  # a late answer of the closed client changes nothing
    h.cut_off("CredentialsUnusable", "later")  # the first cause is kept
    assert h.state == "Unreachable" and h.why() == (
        "CredentialsDeleted", "credentials Secret ns/a was deleted")


def test_heard_within_is_an_answer_in_the_window_with_nothing_unanswered_since() -> None:
    clock = Clock()
    h = HealthTracker(unreachable_after=15, degraded_window=60, clock=clock)
    assert not h.heard_within(5)  # nothing heard yet
    h.record(Outcome.ERROR, "GET /x: 503")  # an error status is an answer
    assert h.heard_within(5)
    clock.now += 5
    assert not h.heard_within(5)
    h.record(Outcome.OK)
    h.record(Outcome.NO_ANSWER, "GET /y: timeout")  # then something went unanswered
    assert not h.heard_within(5)
    h.record(Outcome.OK)
    assert h.heard_within(5)
    h.record(Outcome.BUSY)  # no evidence either way
    assert h.heard_within(5)
    h.cut_off("CredentialsRemoved", "gone")
    assert not h.heard_within(5)
