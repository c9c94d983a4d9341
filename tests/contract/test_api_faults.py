"""Contract: fault injection. The failures our adapter must survive, produced on demand.

Each test names the real-world failure it reproduces and checks what a client sees,
through kubernetes-asyncio. Simulator-only (they need `sim`/`cluster`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch

from clusters.sim import SimCluster
from tests.contract.k8s import configmap, raw


async def test_latency_delays_every_request(api: client.ApiClient, cluster: SimCluster) -> None:
    """A slow API server (overloaded etcd): each request waits the injected latency."""
    cluster.faults.set_latency(0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await client.CoreV1Api(api).list_namespace()
    assert loop.time() - start >= 0.3


async def test_latency_can_target_a_path_prefix(api: client.ApiClient,
                                                cluster: SimCluster) -> None:
    """Latency on one API group only (a slow aggregated API): others stay fast."""
    cluster.faults.set_latency(5.0, prefix="/apis/batch")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await client.CoreV1Api(api).list_namespace()
    assert loop.time() - start < 2.0


@pytest.mark.parametrize(("status", "reason"), [
    (500, "InternalError"), (503, "ServiceUnavailable")], ids=["500", "503"])
async def test_next_n_requests_fail_with_a_server_error_status(
        api: client.ApiClient, cluster: SimCluster, status: int, reason: str) -> None:
    """5xx during an API server rollout: the next N requests fail as v1 Status, then
    the server answers again."""
    cluster.faults.fail_next(2, status)
    core = client.CoreV1Api(api)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            await core.list_namespace()
        assert err.value.status == status
        assert json.loads(err.value.body)["reason"] == reason
    assert (await core.list_namespace()).items


async def test_throttling_is_429_with_retry_after(api: client.ApiClient,
                                                  cluster: SimCluster) -> None:
    """API priority and fairness throttling: 429 TooManyRequests with a Retry-After
    header and details.retryAfterSeconds."""
    cluster.faults.fail_next(1, 429, retry_after=3)
    status, body, headers = await raw(api, "GET", "/api/v1/namespaces")
    assert status == 429 and body["reason"] == "TooManyRequests"
    assert headers["Retry-After"] == "3" and body["details"]["retryAfterSeconds"] == 3


async def test_an_error_rate_fails_about_that_share_of_requests(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """A flaky load balancer: roughly `rate` of requests fail (seeded, repeatable)."""
    cluster.faults.fail_rate(0.5, 502)
    codes = [(await raw(api, "GET", "/api/v1/namespaces"))[0] for _ in range(40)]
    assert 8 <= codes.count(502) <= 32 and codes.count(200) == 40 - codes.count(502)


async def test_a_dropped_connection_is_a_client_connection_error(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """A connection reset mid-request (load balancer idle timeout): no HTTP response.
    aiohttp retries a request once on a reused connection, so two drops reach the caller."""
    cluster.faults.drop_next(2)
    with pytest.raises(aiohttp.ClientError):
        await client.CoreV1Api(api).list_namespace()
    assert (await client.CoreV1Api(api).list_namespace()).items


async def test_cut_watches_end_open_streams_abruptly(api: client.ApiClient, ns: str,
                                                     cluster: SimCluster) -> None:
    """Watch streams dropped (API server restart): an open watch ends without the
    timeout's clean EOF, and a client must re-watch."""
    core = client.CoreV1Api(api)

    async def consume() -> list[Any]:
        got: list[Any] = []
        w = watch.Watch()
        async with w:
            async for ev in w.stream(core.list_namespaced_config_map, ns,
                                     timeout_seconds=30):
                got.append(ev)
        return got
    task = asyncio.create_task(consume())
    for _ in range(100):
        if cluster.open_watches:
            break
        await asyncio.sleep(0.02)
    assert cluster.faults.cut_watches() == 1
    with pytest.raises((aiohttp.ClientError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(task, 5)


async def test_a_down_cluster_refuses_connections_until_it_is_up(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """The whole control plane unreachable: connections are refused; after `up` the
    same URL serves again."""
    await cluster.down()
    with pytest.raises(aiohttp.ClientError):
        await client.CoreV1Api(api).list_namespace()
    await cluster.up()
    assert (await client.CoreV1Api(api).list_namespace()).items


async def test_an_out_of_band_edit_is_recorded_under_its_own_field_manager(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """`kubectl edit` by a human: the change lands with manager kubectl-edit (operation
    Update) owning the field, so our next apply of it conflicts."""
    await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings",
              query=[("fieldManager", "fleet")], body=configmap(ns, k="ours"),
              content_type="application/apply-patch+yaml")
    await cluster.edit("ConfigMap", ns, "settings", {"data": {"k": "theirs"}})
    cm = await client.CoreV1Api(api).read_namespaced_config_map("settings", ns)
    assert cm.data["k"] == "theirs"
    owners = {m.manager: m.operation for m in cm.metadata.managed_fields}
    assert owners["kubectl-edit"] == "Update"
    status, body, _ = await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings",
                                query=[("fieldManager", "fleet")], body=configmap(ns, k="ours"),
                                content_type="application/apply-patch+yaml")
    assert status == 409 and "kubectl-edit" in body["message"]


async def test_the_admin_endpoint_injects_faults_with_the_cluster_token(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """`POST /_sim/faults` (for `fleet sim up` users) takes the same bearer token: a
    wrong token is 401; the right one arms the fault."""
    status, _, _ = await raw(api, "POST", "/_sim/faults", body={"failNext": {"count": 1}},
                             headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, done, _ = await raw(api, "POST", "/_sim/faults",
                                body={"failNext": {"count": 1, "status": 503}})
    assert status == 200 and done["failNext"]["count"] == 1
    assert (await raw(api, "GET", "/api/v1/namespaces"))[0] == 503
    assert (await raw(api, "GET", "/api/v1/namespaces"))[0] == 200


async def test_admin_endpoint_takes_a_cluster_down_for_a_while(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """`POST /_sim/down {"seconds": s}`: an outage a `fleet sim up` user can start from
    outside; connections are refused, then the same URL serves again."""
    status, _, _ = await raw(api, "POST", "/_sim/down", body={"seconds": 0.5})
    assert status == 200
    for _ in range(50):
        if cluster.is_down:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(aiohttp.ClientError):
        await client.CoreV1Api(api).list_namespace()
    for _ in range(100):
        if not cluster.is_down:
            break
        await asyncio.sleep(0.05)
    assert (await client.CoreV1Api(api).list_namespace()).items


async def test_admin_endpoint_flips_node_readiness_and_edits(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """`/_sim/nodes/<n>/ready` and `/_sim/edit` do what set_node_ready and edit do."""
    node = "contract-1-h100-0"
    await raw(api, "POST", f"/_sim/nodes/{node}/ready", body={"ready": False})
    got = await client.CoreV1Api(api).read_node(node)
    assert {c.type: c.status for c in got.status.conditions}["Ready"] == "Unknown"
    await client.CoreV1Api(api).create_namespaced_config_map(ns, configmap(ns))
    status, out, _ = await raw(api, "POST", "/_sim/edit", body={
        "kind": "ConfigMap", "namespace": ns, "name": "settings",
        "patch": {"data": {"k": "edited"}}})
    assert status == 200 and out["data"]["k"] == "edited"


async def test_a_watch_whose_client_leaves_is_released(kubeconfig: Path, context: str,
                                                       ns: str, cluster: SimCluster) -> None:
    """A client that abandons its watch (Ctrl-C on `kubectl get -w`) frees it on the
    server at once, not at its timeout, as the real server's watch cache does."""
    own = await config.new_client_from_config(config_file=str(kubeconfig), context=context)
    core = client.CoreV1Api(own)

    async def consume() -> None:
        w = watch.Watch()
        async with w:
            async for _ in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=60):
                pass
    task = asyncio.create_task(consume())
    for _ in range(100):
        if cluster.open_watches:
            break
        await asyncio.sleep(0.02)
    assert len(cluster.store.watchers) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await own.close()
    for _ in range(100):
        if not cluster.store.watchers:
            break
        await asyncio.sleep(0.02)
    assert not cluster.store.watchers and not cluster.open_watches
