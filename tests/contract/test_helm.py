"""helm v4 against the simulated clusters (or a real cluster), with a small chart.

helm is a client nobody here wrote, and it leans on the API server where kubectl does
not: releases live in Secrets (the default storage driver: `sh.helm.release.v1.<name>.v<n>`,
type `helm.sh/release.v1`, labels `owner=helm,name=...,status=...`), written and
deleted through typed clients in protobuf (DeleteOptions included, which is why
`helm uninstall` used to hang on a 415); chart objects go in by server-side apply
(field manager `helm`); `--wait` watches them with kstatus, whose Deployment reader
lists the Deployment's ReplicaSets and whose verdict is the Deployment's own status
(observedGeneration, updated/ready/available replicas, Progressing reason).

The chart is `charts/smallweb` (Deployment, Service, ConfigMap, Secret). The binary
comes from `make kubectl` (`scripts/fetch_kubectl.py` extracts helm v4 beside
kubectl); without it these tests skip. `--wait` needs apps/v1 ReplicaSets,
which kstatus reads for a Deployment; the simulator serves them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.k8s import eventually, raw

ROOT = Path(__file__).resolve().parents[2]
CHART = Path(__file__).resolve().parent / "charts" / "smallweb"


def _binary() -> str | None:
    local = ROOT / ".cache" / "bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


pytestmark = pytest.mark.skipif(
    _binary() is None, reason="helm not found: run `make kubectl` "
    "(scripts/fetch_kubectl.py installs helm v4 into .cache/bin)")


@dataclass
class Helm:
    """The real helm binary, with its own config/cache/data homes (nothing in ~)."""

    kubeconfig: Path
    context: str | None
    home: Path

    async def __call__(self, *args: str, within: float = 120) -> tuple[int, str]:
        argv = [str(_binary()), "--kubeconfig", str(self.kubeconfig), *args]
        if self.context:
            argv += ["--kube-context", self.context]
        env = {**os.environ, **{f"HELM_{k}_HOME": str(self.home / k.lower())
                                for k in ("CACHE", "CONFIG", "DATA")}}
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), within)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"helm {' '.join(args)} took over {within}s") from None
        return proc.returncode or 0, out.decode()

    async def ok(self, *args: str) -> str:
        rc, out = await self(*args)
        assert rc == 0, f"helm {' '.join(args)} failed ({rc}): {out}"
        return out


@pytest.fixture
def helm(kubeconfig: Path, context: str | None, tmp_path: Path) -> Helm:
    return Helm(kubeconfig, context, tmp_path / "helm")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def releases(api: client.ApiClient, ns: str, name: str = "web") -> dict[str, str]:
    """The release Secrets of `name`: {secret name: status label}."""
    code, body, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/secrets",
                              query=[("labelSelector", f"owner=helm,name={name}")])
    assert code == 200
    for item in body["items"]:
        assert item["type"] == "helm.sh/release.v1"
    return {i["metadata"]["name"]: i["metadata"]["labels"]["status"] for i in body["items"]}


async def get(api: client.ApiClient, path: str) -> tuple[int, Any]:
    code, body, _ = await raw(api, "GET", path)
    return code, body


async def greeting(api: client.ApiClient, ns: str) -> str:
    code, cm = await get(api, f"/api/v1/namespaces/{ns}/configmaps/web-settings")
    assert code == 200
    return str(cm["data"]["greeting"])


async def test_install_stores_the_release_in_a_secret_and_applies_the_chart(
        helm: Helm, api: client.ApiClient, ns: str) -> None:
    await helm.ok("install", "web", str(CHART), "-n", ns)
    assert await releases(api, ns) == {"sh.helm.release.v1.web.v1": "deployed"}
    code, creds = await get(api, f"/api/v1/namespaces/{ns}/secrets/web-credentials")
    assert code == 200
    assert creds["data"] == {"password": b64("not-a-real-secret")}  # from stringData
    assert "stringData" not in creds and creds["type"] == "Opaque"
    code, dep = await get(api, f"/apis/apps/v1/namespaces/{ns}/deployments/web-web")
    assert code == 200 and dep["spec"]["replicas"] == 2
    assert ("helm", "Apply") in {(e["manager"], e["operation"])
                                 for e in dep["metadata"]["managedFields"]}
    code, svc = await get(api, f"/api/v1/namespaces/{ns}/services/web-web")
    assert code == 200 and svc["spec"]["ports"][0]["port"] == 80
    assert await greeting(api, ns) == "hello"
    assert "web" in await helm.ok("list", "-n", ns, "--short")


async def test_upgrade_rollback_and_uninstall(helm: Helm, api: client.ApiClient,
                                              ns: str) -> None:
    await helm.ok("install", "web", str(CHART), "-n", ns)
    await helm.ok("upgrade", "web", str(CHART), "-n", ns, "--set", "greeting=bonjour")
    assert await greeting(api, ns) == "bonjour"
    assert await releases(api, ns) == {"sh.helm.release.v1.web.v1": "superseded",
                                       "sh.helm.release.v1.web.v2": "deployed"}
    await helm.ok("rollback", "web", "1", "-n", ns)
    assert await greeting(api, ns) == "hello"
    assert (await releases(api, ns))["sh.helm.release.v1.web.v3"] == "deployed"
    # The release Secrets are deleted with protobuf DeleteOptions: this used to hang.
    out = await helm.ok("uninstall", "web", "-n", ns)
    assert 'release "web" uninstalled' in out
    assert await releases(api, ns) == {}
    for path in (f"/api/v1/namespaces/{ns}/configmaps/web-settings",
                 f"/api/v1/namespaces/{ns}/secrets/web-credentials",
                 f"/api/v1/namespaces/{ns}/services/web-web",
                 f"/apis/apps/v1/namespaces/{ns}/deployments/web-web"):
        assert (await get(api, path))[0] == 404, path


async def test_upgrade_wait_returns_once_the_new_pods_are_available(
        helm: Helm, api: client.ApiClient, ns: str) -> None:
    await helm.ok("install", "web", str(CHART), "-n", ns)
    await helm.ok("upgrade", "web", str(CHART), "-n", ns, "--set", "greeting=bonjour",
                  "--wait", "--timeout", "60s")
    code, dep = await get(api, f"/apis/apps/v1/namespaces/{ns}/deployments/web-web")
    assert code == 200
    status, want = dep["status"], dep["spec"]["replicas"]
    assert status["observedGeneration"] == dep["metadata"]["generation"]
    assert status["updatedReplicas"] == status["availableReplicas"] == want
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert (await releases(api, ns))["sh.helm.release.v1.web.v2"] == "deployed"


async def test_upgrade_wait_fails_while_the_new_pods_cannot_run(
        helm: Helm, api: client.ApiClient, ns: str) -> None:
    await helm.ok("install", "web", str(CHART), "-n", ns)
    rc, out = await helm("upgrade", "web", str(CHART), "-n", ns, "--set", "gpus=64",
                         "--wait", "--timeout", "5s")
    assert rc != 0 and "Deployment" in out and "not ready" in out

    async def failed() -> bool:
        return (await releases(api, ns)).get("sh.helm.release.v1.web.v2") == "failed"
    await eventually(failed)
