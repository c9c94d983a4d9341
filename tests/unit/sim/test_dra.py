"""DRA in the simulator: the CEL subset, what a DRA node publishes, the allocator."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.sim import SimCluster, SimClusterSpec, SimNode, spec_from_cluster
from clusters.sim.cel import CelUnsupported, compile_selector, device_view, matches
from clusters.sim.dra import Allocator, mig_profile, node_slices
from clusters.sim.errors import SimError
from clusters.sim.resources import BY_KIND
from fleet.models import Cluster

GPU: dict[str, Any] = {"name": "gpu-0", "attributes": {
    "type": {"string": "gpu"}, "productName": {"string": "NVIDIA-H100-80GB-HBM3"},
    "index": {"int": 3}, "gpu.nvidia.com/brand": {"string": "Nvidia"}},
    "capacity": {"memory": {"value": "80Gi"}}}
D = 'device.attributes["gpu.nvidia.com"]'
C = 'device.capacity["gpu.nvidia.com"].memory'


@pytest.mark.parametrize(("expression", "expected"), [
    ('device.driver == "gpu.nvidia.com"', True),
    (f'{D}.productName == "NVIDIA-H100-80GB-HBM3"', True),
    (f"{D}['productName'] != 'NVIDIA-H100-80GB-HBM3'", False),
    (f"{D}.brand == 'Nvidia'", True),  # qualified and unqualified names are one domain
    (f"{D}.index >= 3 && {D}.index < 4", True),
    (f'{C}.compareTo(quantity("40Gi")) >= 0', True),
    (f'{C}.compareTo(quantity("80Gi")) == 0', True),
    (f'{C}.isGreaterThan(quantity("80Gi"))', False),
    (f'{C}.isLessThan(quantity("81Gi"))', True),
    (f"device.driver == 'other' && {D}.missing == 'x'", False),  # && absorbs the error
    (f"{D}.missing == 'x' || {D}.type == 'gpu'", True),
    (f"{D}.missing == 'x'", False),  # a runtime error: no match
    (f"({D}.type == 'mig' || {D}.type == 'gpu') && true", True),
], ids=lambda v: str(v)[:40])
def test_the_cel_subset_evaluates_as_cel_does(expression: str, expected: bool) -> None:
    assert matches(compile_selector(expression), device_view("gpu.nvidia.com", GPU)) \
        is expected


@pytest.mark.parametrize("expression", [
    f'{C} >= quantity("40Gi")',  # not CEL: quantities compare through compareTo
    f'{D}.productName.startsWith("NVIDIA")',
    "size(device.attributes) > 0",
    f'{D}.productName < "b"',
    "",
])
def test_expressions_outside_the_subset_are_refused_not_guessed(expression: str) -> None:
    with pytest.raises(CelUnsupported):
        compile_selector(expression)


def test_a_mig_flavour_publishes_its_partitions_as_devices() -> None:
    assert mig_profile("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb") == (
        "NVIDIA-A100-SXM4-80GB", "3g.40gb", 3, 40)
    assert mig_profile("NVIDIA-H100-80GB-HBM3") is None
    [rslice] = node_slices(SimNode("n", "NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", 4))
    devices = rslice["spec"]["devices"]
    assert [d["name"] for d in devices] == ["gpu-0-mig-0", "gpu-0-mig-1", "gpu-1-mig-0",
                                            "gpu-1-mig-1"]
    assert devices[0]["attributes"]["profile"] == {"string": "3g.40gb"}
    assert devices[0]["attributes"]["type"] == {"string": "mig"}
    assert devices[0]["capacity"] == {"memory": {"value": "40Gi"}}


def test_a_big_pool_is_split_into_slices_of_at_most_128_devices() -> None:
    slices = node_slices(SimNode("n", "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", 200))
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 72]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {2}


async def test_a_cluster_file_label_makes_the_simulated_cluster_dra() -> None:
    doc: dict[str, Any] = {
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "eu-1", "labels": {"aifleet.dev/gpu-allocation": "dra"}},
        "spec": {"region": "r", "jurisdiction": "DE", "gpus": [
            {"flavour": "h100-80gb", "product": "NVIDIA-H100-80GB-HBM3", "count": 8,
             "perNode": 8}]}}
    spec = spec_from_cluster(Cluster.model_validate(doc))
    assert spec.dra
    doc["metadata"]["labels"] = {}
    assert not spec_from_cluster(Cluster.model_validate(doc)).dra
    c = SimCluster(spec)
    node = c.objects("Node")[0]
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    assert [d["name"] for d in c.objects("ResourceSlice")[0]["spec"]["devices"]] == [
        f"gpu-{i}" for i in range(8)]
    assert sorted(o["metadata"]["name"] for o in c.objects("DeviceClass")) == [
        "gpu.nvidia.com", "mig.nvidia.com"]


def _claim(name: str, count: int, device_class: str = "gpu.nvidia.com",
           mode: str = "ExactCount") -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, "allocationMode": mode}
    if mode == "ExactCount":
        exactly["count"] = count
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}}}


async def test_the_allocator_counts_taken_devices_and_honours_classes() -> None:
    c = SimCluster(SimClusterSpec("d", (
        SimNode("a", "NVIDIA-H100-80GB-HBM3", 2),
        SimNode("b", "NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", 2)), dra=True))
    claims = BY_KIND["ResourceClaim"]
    two = c.store.create(claims, _claim("two", 2))
    alloc = Allocator(c.store)
    assert [len(r) for r in alloc.plan([two], "a") or []] == [2]
    assert alloc.plan([two], "b") is None  # MIG devices are not in the gpu class
    mig_all = c.store.create(claims, _claim("all", 0, "mig.nvidia.com", "All"))
    assert [len(r) for r in Allocator(c.store).plan([mig_all], "b") or []] == [2]
    assert Allocator(c.store).plan([two, _claim("more", 1)], "a") is None


def test_claim_shapes_are_validated_and_defaulted() -> None:
    c = SimCluster(SimClusterSpec("d", ()))
    claims = BY_KIND["ResourceClaim"]
    made = c.store.create(claims, {"metadata": {"name": "x", "namespace": "default"},
                                   "spec": {"devices": {"requests": [
                                       {"name": "g", "exactly": {"deviceClassName": "c"}}]}}})
    assert made["spec"]["devices"]["requests"][0]["exactly"] == {
        "deviceClassName": "c", "allocationMode": "ExactCount", "count": 1}
    with pytest.raises(SimError) as e:
        c.store.create(claims, _claim("bad", 1, mode="Some"))
    assert e.value.code == 422
    assert e.value.status()["details"]["causes"][0]["field"] == \
        "spec.devices.requests[0].exactly.allocationMode"
