"""The transport under every adapter (`clusters.transport`): clusters that share TLS
material share one TLS context, and requests go out as raw JSON with names and label
selectors that need quoting reaching the server intact."""

from __future__ import annotations

from pathlib import Path

from clusters.client import NAMESPACE, SERVICE, KubeClient
from clusters.kubeconfig import ConnectionSpec, connection_config
from clusters.sim import SimClusterSpec, SimNode, start_sim
from clusters.transport import shared_contexts, tls_context


def _spec(name: str) -> SimClusterSpec:
    return SimClusterSpec(name, (SimNode(f"{name}-n0", "NVIDIA-H100-80GB-HBM3", 8),))


async def test_clusters_with_one_ca_share_one_tls_context(tmp_path: Path) -> None:
    names = [f"share-{i}" for i in range(3)]
    async with await start_sim([_spec(n) for n in names]) as sim:
        path = sim.write_kubeconfig(tmp_path / "kubeconfig")
        before = shared_contexts()
        cfgs = [await connection_config(ConnectionSpec(n, str(path), n)) for n in names]
        # The same CA bytes: the context is built once, not once per cluster.
        assert len({id(tls_context(c)) for c in cfgs}) == 1
        assert shared_contexts() - before <= 1
        clients = [KubeClient(n, c, qps=0) for n, c in zip(names, cfgs, strict=True)]
        try:
            for c in clients:  # and each one is still its own cluster, over TLS
                got = await c.request("GET", NAMESPACE.collection(), verb="list")
                assert {"default", "kube-system"} <= {
                    i["metadata"]["name"] for i in got["items"]}
        finally:
            for c in clients:
                await c.close()


async def test_raw_json_bodies_and_quoted_queries_reach_the_server(tmp_path: Path) -> None:
    async with await start_sim([_spec("raw")]) as sim:
        path = sim.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient("raw", await connection_config(ConnectionSpec("raw", str(path),
                                                                          "raw")), qps=0)
        try:
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "default",
                                "labels": {"app.kubernetes.io/name": "a-b"}},
                   "spec": {"ports": [{"port": 80}]}}
            out = await client.request(
                "PATCH", SERVICE.item("web", "default"), verb="apply",
                query={"fieldManager": "t", "force": "true"}, body=svc,
                content_type="application/apply-patch+yaml")
            assert out["metadata"]["labels"] == {"app.kubernetes.io/name": "a-b"}
            assert out["metadata"]["managedFields"][0]["manager"] == "t"
            hit = await client.request("GET", SERVICE.collection("default"), verb="list",
                                       query={"labelSelector": "app.kubernetes.io/name in (a-b)"})
            miss = await client.request("GET", SERVICE.collection("default"), verb="list",
                                        query={"labelSelector": "app.kubernetes.io/name in (c-d)"})
            assert [i["metadata"]["name"] for i in hit["items"]] == ["web"]
            assert miss["items"] == []
        finally:
            await client.close()
