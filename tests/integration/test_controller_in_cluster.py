"""`fleet run --home-in-cluster`: the controller started the way the Helm chart starts it.

The pod's environment is reproduced for a local process: KUBERNETES_SERVICE_HOST/PORT
point at a simulated management cluster (127.0.0.1), and a ServiceAccount folder holds
its bearer token and CA (FLEET_SERVICEACCOUNT_DIR stands for the kubelet's mount at
/var/run/secrets/kubernetes.io/serviceaccount). The Lease and the shared state must
land in the management cluster, never on a member. The simulator checks the bearer
token but not RBAC: the chart's Role is checked by the contract test of the chart.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx

from clusters.sim import tls
from tests.integration.test_controller_cli import ROOT, free_port
from tests.integration.test_controller_harness import sandbox


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


async def test_the_lease_and_shared_state_live_in_the_cluster_the_controller_runs_in(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        assert box.home is not None and box.sim is not None
        mgmt = box.home.clusters["home"]
        env, _ = pod_environment(tmp_path, mgmt.url, mgmt.token)
        port = free_port()
        log_path = tmp_path / "controller.log"
        with log_path.open("wb") as log:
            proc = await anyio.open_process(
                [sys.executable, "-m", "controllers.cli", "run", "--repo",
                 str(box.repo.path), "--kubeconfig", str(box.kubeconfig), "--state-dir",
                 str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}",
                 "--poll-interval", "1", "--log-json", "true", "--leader-elect",
                 "--home-in-cluster", "--identity", "replica-a"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                with anyio.fail_after(60):
                    while True:
                        assert proc.returncode is None, log_path.read_text()[-2000:]
                        try:
                            metrics = (await c.get("/metrics")).text
                        except httpx.HTTPError:
                            metrics = ""
                        leases = [o for o in mgmt.objects("Lease")
                                  if o["metadata"]["namespace"] == "aifleet-system"]
                        if "aifleet_leader 1.0" in metrics and leases:
                            break
                        await anyio.sleep(0.2)
            assert leases[0]["spec"]["holderIdentity"] == "replica-a"
            for member in box.sim.clusters.values():
                assert not [o for o in member.objects("Lease")
                            if o["metadata"]["namespace"] == "aifleet-system"]
            text = log_path.read_text()
            assert '"home_connected"' in text and "in-cluster" in text
            assert mgmt.token not in text  # the ServiceAccount token is never logged
        finally:
            if proc.returncode is None:
                proc.terminate()
                with anyio.move_on_after(15):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()


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
