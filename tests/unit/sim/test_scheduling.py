"""The scheduler's filters and the simulated nodes a Cluster file turns into."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from clusters.sim.jobs import _parse_ranges, _ranges
from clusters.sim.nodes import (
    GPU,
    SimNode,
    gpu_memory_mib,
    node_allocatable,
    node_capacity,
    node_object,
    set_ready,
    spec_from_cluster,
)
from clusters.sim.scheduler import (
    add_usage,
    choose_node,
    gpu_request,
    pod_requests,
    unschedulable_message,
)
from fleet.models import Cluster
from tests.fleetdocs import cluster as cluster_yaml


def node(name: str, gpus: int = 8, taints: tuple[dict[str, Any], ...] = (),
         **labels: str) -> dict[str, Any]:
    return node_object(SimNode(name, "H100", gpus, labels, taints), uid=name,
                       created="2026-01-01T00:00:00Z", index=1)


def pod(gpus: int = 0, **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "i"}
    if gpus:
        c["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"metadata": {"name": "p"}, "spec": {"containers": [c], **spec}}


NODES = [node("n0", 4, ({"key": "dedicated", "value": "x", "effect": "NoSchedule"},),
              pool="a"),
         node("n1", 8, pool="b")]


@pytest.mark.parametrize(("p", "used", "expected"), [
    (pod(2), {}, "n1"),
    (pod(2, tolerations=[{"key": "dedicated", "operator": "Exists"}]), {}, "n0"),
    (pod(6), {"n1": 4}, None),
    (pod(0, nodeSelector={"pool": "a"}), {}, None),
    (pod(0, nodeSelector={"pool": "a"},
         tolerations=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]), {}, "n0"),
    (pod(1, affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["b"]}]}]}}}), {}, "n1"),
], ids=["fits-untainted", "toleration-opens-tainted", "insufficient-after-use",
        "selector-hits-taint", "selector-and-toleration", "required-affinity"])
def test_choose_node_applies_the_filters(p: dict[str, Any], used: dict[str, int],
                                         expected: str | None) -> None:
    chosen, message = choose_node(p, NODES, {n: Counter({GPU: g}) for n, g in used.items()})
    assert chosen == expected
    assert bool(message) is (expected is None)


def test_unschedulable_message_counts_reasons_like_kube_scheduler() -> None:
    _, message = choose_node(pod(16), NODES, {})
    assert message.startswith("0/2 nodes are available: ")
    assert "1 Insufficient nvidia.com/gpu" in message
    assert "1 node(s) had untolerated taint {dedicated: x}" in message


def test_not_ready_and_cordoned_nodes_take_no_pods() -> None:
    down = node("n2")
    set_ready(down, False, "2026-01-01T00:00:00Z")
    cordoned = node("n3")
    cordoned["spec"]["unschedulable"] = True
    chosen, message = choose_node(pod(1), [down, cordoned], {})
    assert chosen is None and "were unschedulable" in message


def cpu_pod(cpu: str, memory: str = "1Gi", gpus: int = 0) -> dict[str, Any]:
    p = pod(gpus)
    res = p["spec"]["containers"][0].setdefault("resources", {})
    res["requests"] = {"cpu": cpu, "memory": memory}
    return p


def test_allocatable_is_capacity_minus_reservations_and_eviction_thresholds() -> None:
    """An 8-GPU node (192 cores, 2 TiB): CPU keeps 60+10+10+188*2.5 = 550m back,
    memory the GKE tiers (1+0.8+0.8+6.72+38.4 GiB) plus the 100Mi eviction threshold;
    GPUs and pods are not reserved."""
    cap = node_capacity(8)
    alloc = node_allocatable(cap)
    assert cap["cpu"] == "192" and alloc["cpu"] == "191450m"
    reserved_ki = 2 * 1024**3 - int(alloc["memory"].removesuffix("Ki"))
    assert reserved_ki == int(47.72 * 1024 * 1024) + 100 * 1024
    assert alloc[GPU] == cap[GPU] == "8" and alloc["pods"] == cap["pods"] == "110"
    assert alloc["ephemeral-storage"] == str(int(1024**4 * 0.9))


def test_a_pod_asking_a_whole_nodes_cpu_capacity_does_not_fit_its_allocatable() -> None:
    chosen, message = choose_node(cpu_pod("192"), [node("n1")], {})
    assert chosen is None
    assert message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 "
                       "nodes are available: 1 No preemption victims found for incoming pod.")
    assert choose_node(cpu_pod("191"), [node("n1")], {})[0] == "n1"


def test_cpu_memory_and_pods_already_booked_count_against_the_node() -> None:
    used: dict[str, Counter[str]] = {}
    add_usage(used, "n1", pod_requests(cpu_pod("100", "1500Gi")))
    chosen, message = choose_node(cpu_pod("100", "600Gi"), [node("n1")], used)
    assert chosen is None
    assert "1 Insufficient cpu, 1 Insufficient memory." in message
    used = {"n1": Counter({"pods": 110})}
    assert "1 Too many pods." in choose_node(cpu_pod("1"), [node("n1")], used)[1]


def test_effective_request_counts_init_containers_sidecars_and_overhead() -> None:
    p = cpu_pod("2")
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always",
         "resources": {"requests": {"cpu": "500m"}}},
        {"name": "init", "resources": {"requests": {"cpu": "4", "memory": "8Gi"}}}]
    p["spec"]["overhead"] = {"cpu": "250m"}
    req = pod_requests(p)
    # containers 2 + sidecar 0.5 = 2.5; init 4 + sidecar 0.5 = 4.5 wins; + overhead.
    assert req["cpu"] == 4750
    assert req["memory"] == 8 * 1024**3  # the init container's 8Gi beats the 1Gi


def test_reasons_sort_as_count_reason_strings_like_fit_error() -> None:
    msg = unschedulable_message(12, {"Insufficient cpu": 3, "Insufficient memory": 10})
    assert msg.startswith("0/12 nodes are available: 10 Insufficient memory, "
                          "3 Insufficient cpu. preemption:")


def test_gpu_request_sums_containers_limits() -> None:
    p = pod(2)
    p["spec"]["containers"].append({"name": "d", "resources": {
        "requests": {"nvidia.com/gpu": 1}}})
    assert gpu_request(p) == 3


def test_spec_from_cluster_makes_one_node_per_whole_node_with_gfd_labels() -> None:
    import yaml
    c = Cluster.model_validate(yaml.safe_load(cluster_yaml(
        "eu-fra-1", flavours=(("h100-80gb", 16, 8), ("l4", 4, 4)))))
    spec = spec_from_cluster(c)
    assert [n.name for n in spec.nodes] == ["eu-fra-1-h100-80gb-0", "eu-fra-1-h100-80gb-1",
                                            "eu-fra-1-l4-0"]
    h100 = spec.nodes[0]
    assert h100.gpus == 8 and h100.labels["nvidia.com/gpu.count"] == "8"
    assert h100.labels["nvidia.com/gpu.memory"] == str(80 * 1024)
    assert h100.taints == ()


@pytest.mark.parametrize(("product", "flavour", "mib"), [
    ("NVIDIA-H100-80GB-HBM3", "h100", 81920), ("NVIDIA-L4", "l4", 23034),
    ("Mystery", "x", None)], ids=["from-name", "known-product", "unknown"])
def test_gpu_memory_label(product: str, flavour: str, mib: int | None) -> None:
    assert gpu_memory_mib(product, flavour) == mib


@pytest.mark.parametrize(("indexes", "text"), [
    (set(), ""), ({0}, "0"), ({0, 1, 2}, "0-2"), ({0, 1, 3, 5, 6}, "0-1,3,5-6")],
    ids=["none", "one", "run", "mixed"])
def test_completed_indexes_round_trip(indexes: set[int], text: str) -> None:
    assert _ranges(indexes) == text and _parse_ranges(text) == indexes
