"""The adapter tests' set-up (`tests/support/adapter.py`): connecting over HTTPS from a
written kubeconfig, node capacity and health as the adapter reads them."""

from __future__ import annotations

from pathlib import Path

from tests.support.adapter import (
    A100,
    H100,
    NAME,
    connected,
)


async def test_adapter_connects_and_syncs_nodes_from_a_written_kubeconfig(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        nodes = {n.name: (n.gpu_product, n.gpus, n.ready) for n in c.adapter.nodes()}
        assert nodes == {f"{NAME}-a100-0": (A100, 4, True),
                         f"{NAME}-h100-0": (H100, 8, True),
                         f"{NAME}-h100-1": (H100, 8, True)}
        assert c.adapter.health_state == "Healthy"
