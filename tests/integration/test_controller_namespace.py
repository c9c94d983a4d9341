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
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import anyio
import httpx

from clusters.namespace import DEFAULT, FILE, resolve
from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import Sandbox, synced
from controllers.persist import sharedplan
from controllers.runtime import sourceguard
from tests.fleetdocs import workload
from tests.gitrepo import GitRepo
from tests.integration.test_controller_in_cluster import pod_environment, replica, wait_for
from tests.support import controller as support
from tests.support.controller import CLUSTERS, FAST, fast_settings, fleet_files, sandbox
from workloads import diskcache

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


async def test_a_team_folder_named_like_the_controllers_namespace_is_invalid(
        tmp_path: Path) -> None:
    """`workloads/ml-platform/` while the controller runs in `ml-platform`: Invalid at
    its metadata.namespace line, nothing written there; the other teams roll out."""
    files = fleet_files()
    files["workloads/ml-platform/tuner.yaml"] = workload(
        "tuner", "ml-platform", data_class="public", wtype="inference").replace(
        "      count: 8\n", "      count: 1\n")
    async with sandbox(tmp_path, files) as box, box.controller(
            fast_settings(box, namespace="ml-platform"), adapter_options=FAST) as m:
        await support.rolled_out(m, box)
        doc = m.status()
        row = next(w for w in doc["workloads"] if w["id"] == "ml-platform/tuner")
        assert row["status"] == "Invalid"
        said = json.dumps(row["reasons"])
        assert "workloads/ml-platform/tuner.yaml:5: " in said, row
        assert "namespace ml-platform is the controller's own" in said, row
        assert box.sim is not None
        for name, c in box.sim.clusters.items():
            assert "ml-platform/tuner" not in workloads_on(box.sim, name)
            assert not [o for o in c.objects("Namespace")
                        if o["metadata"]["name"] == "ml-platform"], name


def test_fleet_validate_reserves_the_controllers_namespace_whatever_its_cache_holds(
        tmp_path: Path) -> None:
    """The parse cache `fleet validate` leaves in the Git directory was filled while
    `ml-platform` was allowed: it must not make the folder valid for a controller in
    `ml-platform`, nor the other way round."""
    repo = GitRepo(tmp_path / "fleet")
    files = fleet_files()
    files["workloads/ml-platform/tuner.yaml"] = workload("tuner", "ml-platform")
    repo.commit(dict(files))
    env = {k: v for k, v in os.environ.items() if k != "FLEET_NAMESPACE"}

    def validate(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controllers.cli", "validate",
                               str(repo.path), *args], capture_output=True, text=True,
                              env={**env, **extra}, timeout=120, check=False)

    said = "workloads/ml-platform/tuner.yaml:5: "
    first = validate()  # the default, aifleet-system: ml-platform is a team
    assert first.returncode == 0, first.stdout + first.stderr
    assert diskcache.load(repo.repo, "parsed")  # the cache is there to be misused
    for refused in (validate("--controller-namespace", "ml-platform"),
                    validate(FLEET_NAMESPACE="ml-platform")):
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert said in refused.stdout
        assert "namespace ml-platform is the controller's own" in refused.stdout
    again = validate("--controller-namespace", "ops")
    assert again.returncode == 0, again.stdout + again.stderr


def test_fleet_plan_of_a_change_reserves_the_controllers_namespace(tmp_path: Path) -> None:
    """`fleet plan --base --head` (its base plan is cached in the Git directory too)."""
    repo = GitRepo(tmp_path / "fleet")
    base = repo.commit(dict(fleet_files()))
    head = repo.commit({"workloads/ml-platform/tuner.yaml": workload("tuner", "ml-platform")},
                       "a team named like the controller's namespace")
    env = {k: v for k, v in os.environ.items() if k != "FLEET_NAMESPACE"}

    def plan(*args: str) -> dict[str, Any]:
        p = subprocess.run([sys.executable, "-m", "controllers.cli", "plan", str(repo.path),
                            "--base", base, "--head", head, "--format", "json", *args],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
        assert p.returncode in (0, 1), p.stderr
        return cast(dict[str, Any], json.loads(p.stdout))

    def tuner(doc: dict[str, Any]) -> str:
        return json.dumps([w for w in doc.get("workloads", [])
                           if "ml-platform/tuner" in json.dumps(w)])

    allowed = plan()
    refused = plan("--controller-namespace", "ml-platform")
    assert "controller's own" not in json.dumps(allowed)
    assert "namespace ml-platform is the controller's own" in json.dumps(refused)
    assert tuner(allowed) != tuner(refused)
