"""The server under contract: the simulator by default, a real cluster on request.

Fixtures, usable by every contract test module (kubernetes-asyncio and kubectl ones):

    kubeconfig  Path to a kubeconfig whose current context is the server under test
    context     that context's name (None against a real cluster: its current one)
    server      the running `SimFleet`, or None against a real cluster
    sim         the running `SimFleet` (skips against a real cluster)
    cluster     the simulated cluster under test, `sim.clusters[CLUSTER]` (same)
    api         a kubernetes-asyncio ApiClient for the context
    ns          a fresh namespace, deleted afterwards

With `FLEET_E2E_KUBECONFIG=/path/to/kubeconfig` the same tests run unchanged against
that cluster's current context; tests that need the simulator's powers (fault
injection, GPU nodes, direct store reads) ask for `sim`/`cluster` and skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from clusters.sim import SimCluster, SimClusterSpec, SimFleet, SimNode, start_sim

E2E = os.environ.get("FLEET_E2E_KUBECONFIG")
CLUSTER = "contract-1"
PRODUCT = "NVIDIA-H100-80GB-HBM3"
sim_only = pytest.mark.skipif(bool(E2E), reason="needs the simulator's powers")


def contract_spec() -> SimClusterSpec:
    """Two 8-GPU H100 nodes and one tainted 4-GPU A100 node."""
    labels = {"nvidia.com/gpu.product": PRODUCT, "nvidia.com/gpu.count": "8"}
    a100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": "4"}
    return SimClusterSpec(CLUSTER, (
        SimNode(f"{CLUSTER}-a100-0", "NVIDIA-A100-SXM4-40GB", 4, a100,
                ({"key": "dedicated", "value": "batch", "effect": "NoSchedule"},)),
        SimNode(f"{CLUSTER}-h100-0", PRODUCT, 8, labels),
        SimNode(f"{CLUSTER}-h100-1", PRODUCT, 8, labels),
    ))


@pytest.fixture
async def server() -> AsyncIterator[SimFleet | None]:
    """The simulator, started for this test; None against a real cluster."""
    if E2E:
        yield None
        return
    fleet = await start_sim([contract_spec()], job_seconds=1.0, pod_start_seconds=0.05)
    fleet.clusters[CLUSTER].bookmark_seconds = 0.2
    async with fleet:
        yield fleet


@pytest.fixture
def sim(server: SimFleet | None) -> SimFleet:
    if server is None:
        pytest.skip("needs the simulator's powers (FLEET_E2E_KUBECONFIG is set)")
    return server


@pytest.fixture
def cluster(sim: SimFleet) -> SimCluster:
    return sim.clusters[CLUSTER]


@pytest.fixture
def kubeconfig(server: SimFleet | None, tmp_path: Path) -> Path:
    if server is None:
        return Path(str(E2E))
    return server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def context() -> str | None:
    return None if E2E else CLUSTER


@pytest.fixture
async def api(kubeconfig: Path, context: str | None) -> AsyncIterator[client.ApiClient]:
    api_client = await config.new_client_from_config(config_file=str(kubeconfig),
                                                     context=context)
    async with api_client:
        yield api_client


@pytest.fixture
async def ns(api: client.ApiClient) -> AsyncIterator[str]:
    name = f"ct-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        await core.delete_namespace(name)
    except client.ApiException as e:
        if e.status != 404:
            raise
