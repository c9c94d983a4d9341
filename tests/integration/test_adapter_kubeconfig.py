"""Connections from real kubeconfig files against a simulated cluster: an exec or
auth-provider plugin is refused (and never run) unless the operator allows it; allowed,
it really runs and its credential works; no token or key ever reaches the logs."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.adapter import ClusterAdapter
from clusters.client import NODE
from clusters.errors import ExecPluginRefused, Unauthorized
from clusters.kubeconfig import ConnectionSpec
from tests.support.adapter import FAST, NAME, Connected, connected, namespace, serving


def _exec_plugin(tmp: Path, token: str) -> tuple[Path, Path]:
    """A credential plugin (a shell script) that records that it ran."""
    marker = tmp / "plugin-ran"
    script = tmp / "get-token.sh"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token}}
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho '{json.dumps(credential)}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, marker


def _with_user(c: Connected, user: dict[str, Any]) -> Path:
    doc = yaml.safe_load(c.kubeconfig.read_text())
    doc["users"] = [{"name": f"{NAME}-admin", "user": user}]
    path = c.kubeconfig.with_name("kubeconfig-plugin")
    path.write_text(yaml.safe_dump(doc))
    return path


def _exec_user(script: Path) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                     "command": str(script), "interactiveMode": "Never"}}


async def test_a_kubeconfig_with_an_exec_plugin_is_refused_and_the_plugin_never_runs(
        tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        script, marker = _exec_plugin(tmp_path, c.cluster.token)
        path = _with_user(c, _exec_user(script))
        with pytest.raises(ExecPluginRefused) as e:
            await ClusterAdapter.connect(ConnectionSpec(NAME, str(path), NAME), FAST)
        assert str(script) in str(e.value) and "--allow-exec-plugins" in str(e.value)
        assert not marker.exists()


async def test_a_kubeconfig_with_an_auth_provider_is_refused(tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        path = _with_user(c, {"auth-provider": {"name": "oidc", "config": {
            "id-token": c.cluster.token, "idp-issuer-url": "https://127.0.0.1:1"}}})
        with pytest.raises(ExecPluginRefused) as e:
            await ClusterAdapter.connect(ConnectionSpec(NAME, str(path), NAME), FAST)
        assert "oidc" in str(e.value) and c.cluster.token not in str(e.value)


async def test_an_allowed_exec_plugin_runs_and_its_token_is_used(tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        script, marker = _exec_plugin(tmp_path, c.cluster.token)
        path = _with_user(c, _exec_user(script))
        adapter = await ClusterAdapter.connect(ConnectionSpec(NAME, str(path), NAME),
                                               dataclasses.replace(FAST, allow_exec=True))
        try:
            nodes = await adapter.client.request("GET", NODE.collection(), verb="list")
            assert len(nodes["items"]) == 3 and marker.exists()
        finally:
            await adapter.aclose()


async def test_a_wrong_token_is_a_permanent_unauthorized_error_that_names_no_secret(
        tmp_path: Path) -> None:
    async with connected(tmp_path, run=False) as c:
        wrong = "not-the-token-" + c.cluster.token[::-1]
        path = _with_user(c, {"token": wrong})
        adapter = await ClusterAdapter.connect(ConnectionSpec(NAME, str(path), NAME), FAST)
        try:
            with pytest.raises(Unauthorized) as e:
                await adapter.client.request("GET", NODE.collection(), verb="list")
            assert adapter.stats.retries == 0
            assert wrong not in str(e.value)
        finally:
            await adapter.aclose()


async def test_no_token_or_key_reaches_the_logs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    async with connected(tmp_path) as c:
        c.cluster.faults.fail_next(2, 503)
        await c.adapter.apply([namespace(), *serving("serve")])
        await c.cluster.down()
        await c.cluster.up()
        doc = yaml.safe_load(c.kubeconfig.read_text())
        secrets = [c.cluster.token, doc["clusters"][0]["cluster"]["certificate-authority-data"]]
        out = capsys.readouterr()
        logged = out.out + out.err
        assert "cluster_applied" in logged
        assert all(s not in logged for s in secrets)
