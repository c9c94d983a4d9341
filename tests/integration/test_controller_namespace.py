"""The controller's namespace follows its pod's: installed with `helm install -n other`.

`fleet run --leader-elect --home-in-cluster --cluster-secrets` started as the chart
starts it, with the pod's environment reproduced for a local process (as
test_controller_in_cluster.py does): the ServiceAccount folder also holds the
`namespace` file the kubelet mounts, here `other`. The members are registered with
`fleet cluster add --namespace other`; their Cluster files name no kubeconfig, so with
--cluster-secrets each member reached proves its Secret was read from `other`. The Lease and
both state ConfigMaps must be in `other` on the management cluster, nothing in
`aifleet-system` anywhere. Simulated home and members over HTTPS, real Git repo.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import httpx

from clusters.namespace import DEFAULT, FILE, resolve
from controllers.demo.sandbox import Sandbox, synced
from controllers.persist import sharedplan
from controllers.runtime import sourceguard
from tests.integration.test_controller_in_cluster import pod_environment, replica, wait_for
from tests.support.controller import CLUSTERS, sandbox

OTHER = "other"


async def fleet_cluster(*args: str, env: dict[str, str]) -> str:
    p = await anyio.run_process([sys.executable, "-m", "controllers.cli", "cluster", *args],
                                env=env, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def names(box: Sandbox, kind: str, namespace: str) -> set[str]:
    assert box.home is not None
    return {o["metadata"]["name"] for o in box.home.clusters["home"].objects(kind, namespace)}


async def test_a_controller_in_namespace_other_keeps_and_reads_everything_there(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        assert box.home is not None and box.sim is not None
        env = {k: v for k, v in os.environ.items()
               if k not in ("KUBECONFIG", "FLEET_NAMESPACE")}
        for name in sorted(CLUSTERS):
            await fleet_cluster("add", name, "--context", name, "--kubeconfig",
                                str(box.kubeconfig), "--home-kubeconfig",
                                str(box.home_kubeconfig), "--namespace", OTHER, env=env)
        assert names(box, "Secret", OTHER) >= set(CLUSTERS)
        # `fleet cluster list` finds them there, by flag or by FLEET_NAMESPACE.
        listed = json.loads(await fleet_cluster(
            "list", "--home-kubeconfig", str(box.home_kubeconfig), "--format", "json",
            env={**env, "FLEET_NAMESPACE": OTHER}))
        assert {c["name"]: c["state"] for c in listed["clusters"]} == \
            dict.fromkeys(CLUSTERS, "Reachable")
        empty = json.loads(await fleet_cluster(
            "list", "--home-kubeconfig", str(box.home_kubeconfig), "--format", "json",
            env=env))
        assert empty["clusters"] == []  # aifleet-system holds none

        mgmt = box.home.clusters["home"]
        pod_env, sa = pod_environment(tmp_path, mgmt.url, mgmt.token)
        (sa / FILE).write_text(f"{OTHER}\n")
        pod_env["FLEET_CLUSTER_SECRETS"] = "true"  # Cluster files name no kubeconfig
        async with replica(box, pod_env, tmp_path, "replica-a") as (proc, c, log_path):
            async def rolled_out() -> bool:
                assert proc.returncode is None, log_path.read_text()[-2000:]
                try:
                    doc = (await c.get("/api/v1/status")).json()
                except (httpx.HTTPError, ValueError):
                    return False
                return synced(doc, box.first_commit) == (3, 3)
            await wait_for(rolled_out, 90)

            async def state_kept() -> bool:
                return {sharedplan.NAME, sourceguard.CONFIGMAP} <= names(
                    box, "ConfigMap", OTHER)
            await wait_for(state_kept, 30)
            leases = mgmt.objects("Lease", OTHER)
            assert [lease["spec"]["holderIdentity"] for lease in leases] == ["replica-a"]
        for kind in ("Lease", "ConfigMap", "Secret"):
            assert names(box, kind, DEFAULT) == set(), kind
        for member in box.sim.clusters.values():
            assert not member.objects("Lease", OTHER) and not member.objects("Lease", DEFAULT)
        text = log_path.read_text()
        assert f'"namespace": "{OTHER}"' in text  # said at start (home_connected)
        assert '"controller_namespace_open_to_tenants"' in text  # a team may be `other`
        assert mgmt.token not in text


def test_the_namespace_is_the_flag_else_the_pods_else_the_default(tmp_path: Path) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    assert resolve(None, home_in_cluster=True, serviceaccount_dir=sa) == DEFAULT  # no file
    (sa / FILE).write_text("ml-platform\n")
    assert resolve(None, home_in_cluster=True, serviceaccount_dir=sa) == "ml-platform"
    assert resolve("ops", home_in_cluster=True, serviceaccount_dir=sa) == "ops"
    # Outside the cluster the mount is not the controller's (a home kubeconfig).
    assert resolve(None, home_in_cluster=False, serviceaccount_dir=sa) == DEFAULT


def test_a_namespace_a_team_folder_could_use_is_warned_about(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from clusters.adapter import AdapterOptions
    from clusters.home import Home

    def warned(namespace: str) -> bool:
        settings = SimpleNamespace(
            kubeconfig=None, home_kubeconfig=None, home_context=None, leader_cluster=None,
            home_in_cluster=True, serviceaccount_dir=tmp_path, namespace=namespace)
        with capture_logs() as logs:
            assert Home(settings, {}, AdapterOptions()).namespace == namespace
        return any(e["event"] == "controller_namespace_open_to_tenants" for e in logs)

    assert warned("ml-platform")
    assert not warned(DEFAULT) and not warned("aifleet-prod") and not warned("kube-fleet")
