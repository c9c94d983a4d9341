"""Capacity discovery against a simulated cluster: GPUs per node from the Node and Pod
informers, following a Job from its pods' start to their completion, and a node that
goes NotReady."""

from __future__ import annotations

from pathlib import Path

import anyio

from clusters.adapter import ClusterAdapter
from tests.support.adapter import A100, H100, NAME, connected, job, namespace, until


def free_by_node(adapter: ClusterAdapter) -> dict[str, int]:
    return {n.name: n.free for n in adapter.nodes()}


def free_of(adapter: ClusterAdapter, product: str) -> int:
    return sum(n.free for n in adapter.nodes() if n.gpu_product == product)


async def test_free_gpus_drop_while_a_job_runs_and_return_when_it_completes(
        tmp_path: Path) -> None:
    async with connected(tmp_path, job_seconds=1.5) as c:
        a = c.adapter
        assert free_of(a, H100) == 16
        before = a.capacity_version
        result = await a.apply([namespace(), job("train", gpus=8)])
        assert result.ok, result.failed

        await until(lambda: free_of(a, H100) == 8, what="the Job's pod holding 8 GPUs")
        # A whole 8-GPU node is taken: the largest free block is the other node.
        assert sorted(free_by_node(a).values()) == [0, 4, 8]
        assert max(n.free for n in a.nodes() if n.gpu_product == H100) == 8
        assert sum(n.used_ours for n in a.nodes()) == 8
        assert a.capacity_version > before

        await until(lambda: free_of(a, H100) == 16, within=15,
                    what="the GPUs returned after the Job completed")
        # The pod's end frees the GPUs; the Job controller marks the Job after it.
        await until(lambda: a.workload_health("nlp-team.train") == "Succeeded",
                    what="the Job succeeded")
        assert free_of(a, A100) == 4


async def test_gpus_of_pods_not_ours_count_as_used_but_not_as_ours(tmp_path: Path) -> None:
    async with connected(tmp_path, job_seconds=30) as c:
        a = c.adapter
        theirs = job("someone-else", gpus=4, product=A100)
        del theirs["metadata"]["labels"]["aifleet.dev/managed-by"]
        del theirs["spec"]["template"]["metadata"]["labels"]["aifleet.dev/managed-by"]
        await a.apply([namespace(), theirs, job("ours", gpus=8)], prune=False)
        await until(lambda: free_of(a, A100) == 0 and free_of(a, H100) == 8,
                    what="both Jobs' pods running")
        a100 = next(n for n in a.nodes() if n.gpu_product == A100)
        assert (a100.used, a100.used_ours, a100.free_for_us) == (4, 0, 0)
        h100_used = [(n.used, n.used_ours, n.free_for_us) for n in a.nodes()
                     if n.gpu_product == H100 and n.used]
        assert h100_used == [(8, 8, 8)]


async def test_a_node_gone_not_ready_offers_no_free_gpus_until_it_is_back(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        a = c.adapter
        node = f"{NAME}-h100-0"
        c.cluster.set_node_ready(node, False)
        await until(lambda: not a.capacity.nodes[node].ready, what="node NotReady seen")
        assert free_by_node(a)[node] == 0
        assert free_of(a, H100) == 8
        c.cluster.set_node_ready(node, True)
        await until(lambda: free_by_node(a)[node] == 8, what="node Ready again")


async def test_a_cluster_without_dra_is_synced_from_device_plugin_resources_alone(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        # A 1.35 server serves resource.k8s.io/v1 even where no DRA driver runs: the
        # adapter watches its ResourceSlices (none are published) and ResourceClaims,
        # and counts GPUs from nvidia.com/gpu allocatable only.
        await until(lambda: c.adapter._slices.synced.is_set(), what="slices listed")
        assert c.adapter.stats.errors.get("NotFound", 0) == 0
        assert all(n.dra_devices == 0 for n in c.adapter.nodes())
        assert free_of(c.adapter, H100) == 16


async def test_a_server_without_resource_k8s_io_is_asked_once_and_synced_without_it(
        tmp_path: Path) -> None:
    """An older server (before 1.34 without the beta group) answers 404: the adapter
    stops asking, and `synced` does not wait for DRA informers that will never run."""
    async with connected(tmp_path, run=False) as c:
        c.cluster.faults.fail_next(1, 404, prefix="/apis/resource.k8s.io")
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.adapter.run)
            await c.adapter.wait_synced(10.0)
            assert c.adapter.stats.errors.get("NotFound", 0) == 1
            assert not c.adapter._slices.synced.is_set()
            assert all(n.dra_devices == 0 for n in c.adapter.nodes())
            assert free_of(c.adapter, H100) == 16
            tg.cancel_scope.cancel()
