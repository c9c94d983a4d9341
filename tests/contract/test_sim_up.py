"""`fleet sim up`: a fleet repo's Cluster files served as simulated clusters, until Ctrl-C.

Runs the real command in a child process, as a user would, and talks to what it
started through the kubeconfig it wrote (kubernetes-asyncio, one context per cluster).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from kubernetes_asyncio import client, config

from tests.contract.conftest import sim_only
from tests.fleetdocs import cluster
from tests.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


@sim_only
async def test_sim_up_serves_each_cluster_file_until_interrupted(tmp_path: Path) -> None:
    """Each Cluster file becomes a cluster with the declared GPU nodes, reachable through
    its own kubeconfig context; SIGINT stops the command cleanly (exit 0)."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE", (("h100-80gb", 16, 8),))
        + "  stack: {kueue: true, jobset: true}\n",
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("a100-80gb", 8, 4),),
                                           "{tier: prod, aifleet.dev/gpu-allocation: dra}"),
    }, "two clusters, one allocating GPUs through DRA, one running Kueue and JobSet")
    kubeconfig = tmp_path / "sim.kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controllers.cli", "sim", "up", str(repo.path),
        "--kubeconfig", str(kubeconfig), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "Ctrl-C to stop":
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, f"fleet sim up ended early: {lines}"
            lines.append(line.decode().strip())
        assert any(f"--kubeconfig {kubeconfig}" in line for line in lines)
        assert [line.split()[0] for line in lines if "as DRA devices" in line] == [
            "us-east-1"]
        assert [line.split()[0] for line in lines if "runs jobset + kueue" in line] == [
            "eu-fra-1"]
        nodes: dict[str, list[str]] = {}
        devices: dict[str, int] = {}
        plugin: dict[str, set[str]] = {}
        stacks: dict[str, list[str]] = {}
        for ctx in ("eu-fra-1", "us-east-1"):
            api = await config.new_client_from_config(config_file=str(kubeconfig),
                                                      context=ctx)
            async with api:
                items = (await client.CoreV1Api(api).list_node()).items
                nodes[ctx] = sorted(n.metadata.name for n in items)
                plugin[ctx] = {q for n in items for q in n.status.allocatable
                               if q == "nvidia.com/gpu"}
                slices = await client.CustomObjectsApi(api).list_cluster_custom_object(
                    "resource.k8s.io", "v1", "resourceslices")
                devices[ctx] = sum(len(s["spec"]["devices"]) for s in slices["items"])
                groups = await client.ApisApi(api).get_api_versions()
                stacks[ctx] = sorted(g.name for g in groups.groups
                                     if g.name in ("kueue.x-k8s.io", "jobset.x-k8s.io"))
        assert nodes == {"eu-fra-1": ["eu-fra-1-h100-80gb-0", "eu-fra-1-h100-80gb-1"],
                         "us-east-1": ["us-east-1-a100-80gb-0", "us-east-1-a100-80gb-1"]}
        # The labelled cluster's GPUs are DRA devices, the other's the device plugin's.
        assert devices == {"eu-fra-1": 0, "us-east-1": 8}
        assert plugin == {"eu-fra-1": {"nvidia.com/gpu"}, "us-east-1": set()}
        # spec.stack: Kueue's and JobSet's CRDs are served there only
        assert stacks == {"eu-fra-1": ["jobset.x-k8s.io", "kueue.x-k8s.io"], "us-east-1": []}
        assert kubeconfig.stat().st_mode & 0o077 == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 15)
    assert rc == 0


@sim_only
async def test_sim_up_never_replaces_a_kubeconfig_it_did_not_write(tmp_path: Path) -> None:
    """`--kubeconfig` means "read from" everywhere else: a real kubeconfig passed here by
    habit must survive (exit 2, one line), unless --overwrite says so."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({"clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE", (("h100-80gb", 8, 8),))})
    real = tmp_path / "config"
    real.write_text("apiVersion: v1\nkind: Config\n# my real clusters\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controllers.cli", "sim", "up", str(repo.path),
        "--kubeconfig", str(real), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    assert "was not written by `fleet sim up`" in err.decode()
    assert real.read_text() == "apiVersion: v1\nkind: Config\n# my real clusters\n"
