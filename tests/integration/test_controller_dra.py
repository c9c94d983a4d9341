"""DRA capacity drives placement, through the real controller on simulated clusters.

Two clusters alike but for how they hand out GPUs: `a-dra` (Cluster label
`aifleet.dev/gpu-allocation: dra`, so its GPUs exist only as ResourceSlice devices)
and `b-plain` (`nvidia.com/gpu`). With a-dra's devices free, ties break by name and
the workload goes there; with every device held by someone else's ResourceClaims, the
controller sees no free GPU on a-dra and places the workload on b-plain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusters.sim import SimCluster
from clusters.sim.resources import BY_KIND
from controllers.demo.sandbox import until
from tests.fleetdocs import POLICY, cluster, workload
from tests.support.controller import FAST, fast_settings, sandbox, where

TRAIN = "nlp-team/train"
DRA_LABELS = "{tier: prod, aifleet.dev/gpu-allocation: dra}"


def files() -> dict[str, str | bytes]:
    return {
        "clusters/a-dra.yaml": cluster("a-dra", "DE", (("h100-80gb", 16, 8),), DRA_LABELS),
        "clusters/b-plain.yaml": cluster("b-plain", "US", (("h100-80gb", 16, 8),)),
        "policies/residency.yaml": POLICY,
        "workloads/nlp-team/train.yaml": workload("train", data_class="public").replace(
            "  replicas: 2\n", "  replicas: 1\n"),
    }


def take_every_device(c: SimCluster) -> None:
    """Someone else's two pods, each holding a claim on 8 of a-dra's 16 devices."""
    store = c.store
    store.create(BY_KIND["Namespace"], {"metadata": {"name": "other-team"}})
    store.create(BY_KIND["ResourceClaimTemplate"], {
        "metadata": {"name": "eight", "namespace": "other-team"},
        "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": {
            "deviceClassName": "gpu.nvidia.com", "count": 8}}]}}}})
    for i in range(2):
        pod: dict[str, Any] = {
            "metadata": {"name": f"big-{i}", "namespace": "other-team"},
            "spec": {"resourceClaims": [{"name": "gpus",
                                         "resourceClaimTemplateName": "eight"}],
                     "containers": [{"name": "main", "image": "other/trainer:v1",
                                     "resources": {"claims": [{"name": "gpus"}]}}]}}
        store.create(BY_KIND["Pod"], pod)


def allocated(c: SimCluster) -> int:
    return sum(len(((cl.get("status") or {}).get("allocation") or {}).get("devices", {})
                   .get("results") or []) for cl in c.objects("ResourceClaim"))


async def test_a_dra_cluster_with_free_devices_is_chosen(tmp_path: Path) -> None:
    async with sandbox(tmp_path, files()) as box, \
            box.controller(fast_settings(box), adapter_options=FAST) as m:
        assert box.sim is not None and box.sim.clusters["a-dra"].spec.dra
        await until(lambda: where(m.status()).get(TRAIN), 20, what="train placed")
        assert where(m.status())[TRAIN] == ["a-dra"]


async def test_a_dra_cluster_whose_devices_are_all_claimed_is_not_chosen(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, files()) as box:
        assert box.sim is not None
        dra = box.sim.clusters["a-dra"]
        take_every_device(dra)
        await until(lambda: allocated(dra) == 16, 10, what="16 devices allocated")
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: where(m.status()).get(TRAIN), 20, what="train placed")
            assert where(m.status())[TRAIN] == ["b-plain"]
            free = {n.name: (n.dra_devices, n.free) for n in m.adapters["a-dra"].nodes()}
            assert free == {"a-dra-h100-80gb-0": (8, 0), "a-dra-h100-80gb-1": (8, 0)}
