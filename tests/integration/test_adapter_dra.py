"""Capacity on a DRA cluster: the adapter counts GPUs from ResourceSlices and subtracts
the devices ResourceClaims hold (resource.k8s.io/v1), against a simulated cluster whose
GPUs are published by the (simulated) NVIDIA DRA driver instead of `nvidia.com/gpu`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusters.adapter import ClusterAdapter
from clusters.apply import MANAGED_BY
from clusters.sim import SimClusterSpec, SimNode
from clusters.sim.resources import BY_KIND
from tests.support.adapter import H100, NAME, TEAM, connected, until

MIG = "NVIDIA-A100-SXM4-80GB-MIG-3g.40gb"


def dra_spec() -> SimClusterSpec:
    """Two 8-GPU H100 nodes and one node of four MIG 3g.40gb slices, all through DRA."""
    h100 = {"nvidia.com/gpu.product": H100, "nvidia.com/gpu.count": "8"}
    mig = {"nvidia.com/gpu.product": MIG, "nvidia.com/gpu.count": "4"}
    return SimClusterSpec(NAME, (
        SimNode(f"{NAME}-h100-0", H100, 8, h100),
        SimNode(f"{NAME}-h100-1", H100, 8, h100),
        SimNode(f"{NAME}-mig-0", MIG, 4, mig),
    ), dra=True)


def template(name: str, count: int, product: str = H100, *, ours: bool = True
             ) -> dict[str, Any]:
    """A ResourceClaimTemplate as a DRA-aware render would make it: the NVIDIA GPU
    class, a CEL selector on the product and memory, the count; our label on the claims."""
    meta: dict[str, Any] = {"labels": {MANAGED_BY: "aifleet"}} if ours else {}
    selectors = [
        {"cel": {"expression": f'device.attributes["gpu.nvidia.com"].productName == '
                               f'"{product}"'}},
        {"cel": {"expression": 'device.capacity["gpu.nvidia.com"].memory'
                               '.compareTo(quantity("40Gi")) >= 0'}}]
    return {"metadata": {"name": name, "namespace": TEAM}, "spec": {
        "metadata": meta, "spec": {"devices": {"requests": [{
            "name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                        "count": count, "selectors": selectors}}]}}}}


def pod(name: str, claim_template: str, run_seconds: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": TEAM}
    if run_seconds is not None:
        meta["annotations"] = {"sim.aifleet.dev/run-seconds": str(run_seconds)}
    return {"metadata": meta, "spec": {
        "restartPolicy": "Never",
        "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": claim_template}],
        "containers": [{"name": "main", "image": "registry.internal/trainer:v1",
                        "resources": {"claims": [{"name": "gpus"}]}}]}}


def free_of(adapter: ClusterAdapter, product: str) -> int:
    return sum(n.free for n in adapter.nodes() if n.gpu_product == product)


async def test_gpus_of_a_dra_cluster_come_from_its_resource_slices(tmp_path: Path) -> None:
    async with connected(tmp_path, spec=dra_spec()) as c:
        a = c.adapter
        await until(lambda: free_of(a, H100) == 16, what="slices seen")
        nodes = {n.name: (n.allocatable, n.dra_devices, n.gpu_product, n.free)
                 for n in a.nodes()}
        assert nodes == {f"{NAME}-h100-0": (0, 8, H100, 8),
                         f"{NAME}-h100-1": (0, 8, H100, 8),
                         f"{NAME}-mig-0": (0, 4, MIG, 4)}
        assert sorted(a.capacity.by_product()) == [MIG, H100]


async def test_devices_held_by_claims_are_not_free_until_their_pods_end(
        tmp_path: Path) -> None:
    async with connected(tmp_path, spec=dra_spec()) as c:
        a, store = c.adapter, c.cluster.store
        await until(lambda: free_of(a, H100) == 16, what="slices seen")
        store.create(BY_KIND["Namespace"], {"metadata": {"name": TEAM}})
        store.create(BY_KIND["ResourceClaimTemplate"], template("ours-4", 4))
        store.create(BY_KIND["ResourceClaimTemplate"], template("theirs-8", 8, ours=False))
        store.create(BY_KIND["Pod"], pod("ours", "ours-4", run_seconds=1.0))
        store.create(BY_KIND["Pod"], pod("theirs", "theirs-8"))
        await until(lambda: free_of(a, H100) == 4, what="12 devices allocated to claims")
        used = sorted((n.dra_used, n.dra_used_ours, n.free, n.free_for_us)
                      for n in a.nodes() if n.gpu_product == H100)
        # The first node holds our 4 and has 4 free; their 8 fill the second node.
        assert used == [(4, 4, 4, 8), (8, 0, 0, 0)]
        claims = c.cluster.objects("ResourceClaim", TEAM)
        assert sorted(len(cl["status"]["allocation"]["devices"]["results"])
                      for cl in claims) == [4, 8]
        # Our pod ends: its claim is released and its devices are free again.
        await until(lambda: free_of(a, H100) == 8, what="the ended pod's devices freed")
        # The claim generated for the pod that is done is deleted, not just deallocated.
        assert [cl["metadata"]["name"].split("-")[0]
                for cl in c.cluster.objects("ResourceClaim", TEAM)] == ["theirs"]
        store.create(BY_KIND["ResourceClaimTemplate"], template("nine", 9, ours=False))
        store.create(BY_KIND["Pod"], pod("too-big", "nine"))  # no node has 9 devices
        await until(lambda: any(
            cond.get("reason") == "Unschedulable" for p in c.cluster.objects("Pod", TEAM)
            if p["metadata"]["name"] == "too-big"
            for cond in p["status"].get("conditions", [])), what="too-big Unschedulable")
        assert free_of(a, H100) == 8  # a pod that cannot be allocated holds nothing
