"""The scheduler's filters and the simulated nodes a Cluster file turns into."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from clusters.sim.jobs import _parse_ranges, _ranges
from clusters.sim.nodes import SimNode, gpu_memory_mib, node_object, set_ready, spec_from_cluster
from clusters.sim.scheduler import choose_node, gpu_request
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
    chosen, message = choose_node(p, NODES, Counter(used))
    assert chosen == expected
    assert bool(message) is (expected is None)


def test_unschedulable_message_counts_reasons_like_kube_scheduler() -> None:
    _, message = choose_node(pod(16), NODES, Counter())
    assert message.startswith("0/2 nodes are available: ")
    assert "1 Insufficient nvidia.com/gpu" in message
    assert "1 node(s) had untolerated taint {dedicated: x}" in message


def test_not_ready_and_cordoned_nodes_take_no_pods() -> None:
    down = node("n2")
    set_ready(down, False, "2026-01-01T00:00:00Z")
    cordoned = node("n3")
    cordoned["spec"]["unschedulable"] = True
    chosen, message = choose_node(pod(1), [down, cordoned], Counter())
    assert chosen is None and "were unschedulable" in message


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
