"""`fleet run --home-in-cluster`: the controller started the way the Helm chart starts it.

The pod's environment is reproduced for a local process: KUBERNETES_SERVICE_HOST/PORT
point at a simulated management cluster (127.0.0.1), and a ServiceAccount folder holds
its bearer token and CA (FLEET_SERVICEACCOUNT_DIR stands for the kubelet's mount at
/var/run/secrets/kubernetes.io/serviceaccount). The Lease and the shared state must
land in the management cluster, never on a member. The simulator checks the bearer
token but not RBAC: the chart's Role is checked by the contract test of the chart.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

from clusters.sim import SimCluster, tls
from controllers.demo.sandbox import Sandbox
from tests.integration.test_controller_cli import ROOT, free_port
from tests.support.controller import sandbox


def pod_environment(tmp: Path, url: str, token: str) -> tuple[dict[str, str], Path]:
    """What the kubelet gives a container: the API service's address and the mounted
    ServiceAccount token and CA (here in a temp folder)."""
    sa = tmp / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(tls.make_tls().ca_pem)
    parts = urlsplit(url)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEET_", "KUBERNETES_"))}
    env.update({"KUBERNETES_SERVICE_HOST": str(parts.hostname),
                "KUBERNETES_SERVICE_PORT": str(parts.port),
                "FLEET_SERVICEACCOUNT_DIR": str(sa)})
    return env, sa


@contextlib.asynccontextmanager
async def replica(box: Sandbox, env: dict[str, str], tmp: Path, identity: str
                  ) -> AsyncIterator[tuple[anyio.abc.Process, httpx.AsyncClient, Path]]:
    """`fleet run` as the chart's container runs it (leader election, in-cluster home),
    on its own port and state dir; killed at the end if still running."""
    port = free_port()
    log_path = tmp / f"{identity}.log"
    with log_path.open("wb") as log:
        proc = await anyio.open_process(
            [sys.executable, "-m", "controllers.cli", "run", "--repo", str(box.repo.path),
             "--kubeconfig", str(box.kubeconfig), "--state-dir", str(tmp / identity),
             "--listen", f"127.0.0.1:{port}", "--poll-interval", "1", "--log-json", "true",
             "--leader-elect", "--home-in-cluster", "--identity", identity],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            yield proc, c, log_path
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.move_on_after(15):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def tail(log_path: Path) -> str:
    return log_path.read_text()[-2000:]


async def wait_for(check: Callable[[], Awaitable[bool]], within: float) -> None:
    with anyio.fail_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(0.2)


async def leading(proc: anyio.abc.Process, c: httpx.AsyncClient, log_path: Path) -> bool:
    assert proc.returncode is None, tail(log_path)
    try:
        return "aifleet_leader 1.0" in (await c.get("/metrics")).text
    except httpx.HTTPError:
        return False


def lease_holders(box: Sandbox) -> list[str]:
    assert box.home is not None
    return [o["spec"].get("holderIdentity") for o in box.home.clusters["home"].objects(
        "Lease", "aifleet-system")]


async def test_the_lease_and_shared_state_live_in_the_cluster_the_controller_runs_in(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        assert box.home is not None and box.sim is not None
        mgmt = box.home.clusters["home"]
        env, _ = pod_environment(tmp_path, mgmt.url, mgmt.token)
        async with replica(box, env, tmp_path, "replica-a") as (proc, c, log_path):
            async def led() -> bool:
                return await leading(proc, c, log_path) and bool(lease_holders(box))
            await wait_for(led, 60)
            assert lease_holders(box) == ["replica-a"]
            for member in box.sim.clusters.values():
                assert not member.objects("Lease", "aifleet-system")
        text = log_path.read_text()
        assert '"home_connected"' in text and "in-cluster" in text
        assert mgmt.token not in text  # the ServiceAccount token is never logged


async def test_killing_the_leader_hands_over_to_the_other_replica(tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        assert box.home is not None
        mgmt = box.home.clusters["home"]
        env, _ = pod_environment(tmp_path, mgmt.url, mgmt.token)
        async with replica(box, env, tmp_path, "replica-a") as a, \
                replica(box, env, tmp_path, "replica-b") as b:
            async def one_leads() -> bool:
                return await leading(*a) or await leading(*b)
            await wait_for(one_leads, 60)
            leader, follower = (a, b) if await leading(*a) else (b, a)
            assert not await leading(*follower)
            # A follower is never ready (it applies nothing), which is why the chart's
            # PodDisruptionBudget is off by default: it would count only the leader.
            async def planned_not_applied() -> bool:
                try:  # the follower may still be starting (its server not up yet)
                    r = await follower[1].get("/readyz")
                except httpx.HTTPError:
                    return False
                assert r.status_code == 503, r.text
                return "first plan not applied yet" in r.text
            await wait_for(planned_not_applied, 60)
            (first,) = lease_holders(box)
            leader[0].kill()  # a crash: the Lease is not released
            await leader[0].wait()
            # Within a lease duration (15 s) and a renew period.
            await wait_for(lambda: leading(*follower), 60)
            (second,) = lease_holders(box)
            assert first != second and second in ("replica-a", "replica-b")
            assert (await follower[1].get("/healthz")).status_code == 200


def test_home_in_cluster_outside_a_cluster_says_what_is_missing(tmp_path: Path) -> None:
    from clusters.errors import KubeconfigError
    from clusters.kubeconfig import in_cluster_client

    async def connect(environ: dict[str, str]) -> str:
        try:
            await in_cluster_client(tmp_path, "home", environ)
        except KubeconfigError as e:
            return str(e)
        raise AssertionError("connected without a cluster")

    assert "KUBERNETES_SERVICE_HOST" in anyio.run(connect, {})
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert f"{tmp_path / 'token'} is missing" in anyio.run(connect, env)


def test_home_in_cluster_and_a_home_kubeconfig_are_refused_together() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", "x",
                        "--leader-elect", "--home-in-cluster", "--home-kubeconfig", "k"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2
    assert "--home-in-cluster and --home-kubeconfig/--home-context" in r.stderr


async def test_the_lease_is_taken_when_creating_the_namespace_is_forbidden(
        tmp_path: Path) -> None:
    """Installed by the chart, the controller has a Role in aifleet-system only: creating
    a Namespace is a 403 (the install made it). The Lease must still be taken."""
    from clusters.client import KubeClient
    from clusters.kubeconfig import in_cluster_client
    from clusters.leader import LeaderElector
    from clusters.sim import SimClusterSpec, start_sim

    async with await start_sim([SimClusterSpec("home", ())]) as sim:
        mgmt = sim.clusters["home"]
        env, sa = pod_environment(tmp_path, mgmt.url, mgmt.token)
        api = await in_cluster_client(sa, "home", env)
        kube = KubeClient("home", api)
        try:
            await kube.request("POST", "/api/v1/namespaces", verb="create", body={
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "aifleet-system"}})
            mgmt.faults.fail_next(1, 403, prefix="/api/v1/namespaces")
            elector = LeaderElector(kube, "replica-a", namespace="aifleet-system")
            assert await elector.try_acquire_or_renew()
            assert lease_holders_of(mgmt) == ["replica-a"]
            assert mgmt.faults._failing == []  # the 403 was served (to the Namespace POST)
        finally:
            await kube.close()


def lease_holders_of(cluster: SimCluster) -> list[str]:
    return [o["spec"].get("holderIdentity") for o in cluster.objects("Lease",
                                                                      "aifleet-system")]
