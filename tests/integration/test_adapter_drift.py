"""Drift against a simulated cluster: an out-of-band change to a field we apply is
reported with its path and the manager that made it (from managedFields) and corrected
(self-heal); what other managers add and what the server defaults is not drift."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.client import SERVICE
from tests.support.adapter import (
    FAST,
    NAME,
    TEAM,
    Connected,
    all_seen,
    connected,
    namespace,
    serving,
    stored,
    until,
)
from tests.support.clock import RecordingSleep

CHANGES = [
    ({"spec": {"replicas": 3}}, "spec.replicas", 1, 3),
    # A merge patch replaces lists whole: the edited container is sent complete, as
    # `kubectl edit` sends the whole object.
    ({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "evil.example/serve:latest",
         "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}},
     "spec.template.spec.containers[name=main].image",
     "registry.internal/serve:v1", "evil.example/serve:latest"),
    ({"metadata": {"labels": {"aifleet.dev/workload": "nlp-team.other"}}},
     "metadata.labels.aifleet.dev/workload", "nlp-team.serve", "nlp-team.other"),
]


def _deployment(c: Connected) -> dict[str, Any]:
    return stored(c, "Deployment")["serve"]


def _image(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


async def _applied(c: Connected) -> None:
    result = await c.adapter.apply([namespace(), *serving("serve")])
    assert result.ok
    await until(lambda: len(c.adapter.applier.live) == 3, what="informers caught up")


@pytest.mark.parametrize(("change", "path", "want", "got"), CHANGES,
                         ids=["replicas", "image", "label"])
async def test_an_out_of_band_edit_is_reported_with_path_and_manager_and_corrected(
        tmp_path: Path, change: dict[str, Any], path: str, want: Any, got: Any) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        writes = c.adapter.stats.calls["apply"]
        await c.cluster.edit("Deployment", TEAM, "serve", change, manager="kubectl-edit")

        await until(lambda: bool(c.adapter.drift_log), what="the drift reported")
        report = c.adapter.drift_log[0]
        assert report.key == ("apps/v1", "Deployment", TEAM, "serve")
        assert report.workload == "nlp-team.serve" and report.corrected
        assert [(f.path, f.desired, f.live, f.manager) for f in report.fields] == [
            (path, want, got, "kubectl-edit")]

        await until(lambda: c.adapter.applier.corrections == 1, what="the correction")
        dep = _deployment(c)
        assert (dep["spec"]["replicas"], _image(dep)) == (1, "registry.internal/serve:v1")
        assert dep["metadata"]["labels"]["aifleet.dev/workload"] == "nlp-team.serve"
        assert c.adapter.stats.calls["apply"] == writes + 1
        # Corrected means quiet: no further reports once live matches again (every
        # event up to a later one handled, the correction's own among them).
        await all_seen(c, "Deployment", "serve")
        assert len(c.adapter.drift_log) == 1 and c.adapter.applier.corrections == 1


async def test_without_self_heal_drift_is_reported_and_left_alone(tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, self_heal=False)
    async with connected(tmp_path, options=options) as c:
        await _applied(c)
        await c.cluster.edit("Deployment", TEAM, "serve", {"spec": {"replicas": 5}},
                             manager="hpa-controller")
        await until(lambda: bool(c.adapter.drift_log), what="the drift reported")
        report = c.adapter.drift_log[0]
        assert not report.corrected
        assert [(f.path, f.manager) for f in report.fields] == [("spec.replicas",
                                                                  "hpa-controller")]
        await all_seen(c, "Deployment", "serve")  # every later event handled: still left
        assert _deployment(c)["spec"]["replicas"] == 5
        assert c.adapter.applier.corrections == 0
        assert [r.corrected for r in c.adapter.drift_log] == [False]


async def test_fields_added_by_other_managers_and_server_defaults_are_not_drift(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        await c.cluster.edit("Deployment", TEAM, "serve", {
            "metadata": {"annotations": {"team.example/owner": "alice"},
                         "labels": {"cost-centre": "42"}},
            "spec": {"template": {"metadata": {"annotations": {"sidecar": "injected"}}}}},
            manager="kubectl-annotate")
        # Handled (and judged) once the adapter holds a later version than the edit's.
        await all_seen(c, "Deployment", "serve")
        live = c.adapter.applier.live[("apps/v1", "Deployment", TEAM, "serve")]
        assert live["metadata"]["annotations"]["team.example/owner"] == "alice"
        # The server defaulted strategy, progressDeadlineSeconds, imagePullPolicy...
        dep = _deployment(c)
        assert "strategy" in dep["spec"]
        assert c.adapter.drift_log == []
        again = await c.adapter.apply([namespace(), *serving("serve")])
        assert (len(again.unchanged), again.api_calls) == (3, 0)


async def test_an_owned_object_deleted_out_of_band_is_recreated(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        uid = stored(c, "Service")["serve"]["metadata"]["uid"]
        await c.adapter.client.request("DELETE", SERVICE.item("serve", TEAM),
                                       verb="delete")
        await until(lambda: c.adapter.applier.corrections == 1, what="the re-creation")
        assert c.adapter.drift_log[0].fields[0].path == "(object)"
        assert stored(c, "Service")["serve"]["metadata"]["uid"] != uid


async def test_a_fight_with_another_controller_is_rate_limited(tmp_path: Path) -> None:
    sleep = RecordingSleep()  # the backoff is recorded, not waited: nothing here is timed
    async with connected(tmp_path, options=dataclasses.replace(FAST, sleep=sleep)) as c:
        await _applied(c)
        backoffs = []
        for replicas in (2, 3, 4):
            await c.cluster.edit("Deployment", TEAM, "serve", {"spec": {"replicas": replicas}},
                                 manager="rogue-autoscaler")
            await until(lambda: _deployment(c)["spec"]["replicas"] == 1,
                        within=15, what="corrected")
            backoffs.append(list(sleep.sleeps))
        # Each correction after the first waits longer (per-object backoff: 1 s, 2 s).
        assert c.adapter.applier.corrections == 3
        assert backoffs == [[], [1.0], [1.0, 2.0]]


def _kubectl() -> str | None:
    local = Path(__file__).resolve().parents[2] / ".cache" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


@pytest.mark.skipif(_kubectl() is None, reason="kubectl not found: run `make kubectl`")
async def test_a_real_kubectl_edit_is_reported_as_kubectl_edit_and_corrected(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        editor = "sed -i s#registry.internal/serve:v1#evil.example/serve:latest#"
        proc = await asyncio.create_subprocess_exec(
            str(_kubectl()), "--kubeconfig", str(c.kubeconfig), "--context", NAME,
            "--cache-dir", str(tmp_path / "kube-cache"), "edit", "deployment", "serve",
            "-n", TEAM, env={**os.environ, "KUBE_EDITOR": editor},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "deployment.apps/serve edited"

        await until(lambda: c.adapter.applier.corrections == 1, what="the correction")
        report = c.adapter.drift_log[0]
        assert [(f.path, f.live, f.manager) for f in report.fields] == [
            ("spec.template.spec.containers[name=main].image", "evil.example/serve:latest",
             "kubectl-edit")]
        assert _image(_deployment(c)) == "registry.internal/serve:v1"


async def test_a_new_adapter_that_found_everything_unchanged_corrects_drift_at_once(
        tmp_path: Path) -> None:
    """After a reconnect (a rotated token) or a restart, the first pass finds every
    object as wanted and writes nothing; an edit after it is drift all the same, seen
    by its event and corrected, not left until the next pass (none comes here)."""
    from clusters.adapter import ClusterAdapter
    from clusters.kubeconfig import ConnectionSpec

    async with connected(tmp_path) as c:
        await _applied(c)
        fresh = await ClusterAdapter.connect(ConnectionSpec(NAME, str(c.kubeconfig), NAME),
                                             FAST)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fresh.run)
                await fresh.wait_synced(10.0)
                result = await fresh.apply([namespace(), *serving("serve")])
                assert result.ok and len(result.unchanged) == 3 and result.api_calls == 0
                await c.cluster.edit("Deployment", TEAM, "serve", {"spec": {"replicas": 3}},
                                     manager="kubectl-edit")
                await until(lambda: fresh.applier.corrections == 1, what="the correction")
                assert _deployment(c)["spec"]["replicas"] == 1
                assert [r.corrected for r in fresh.drift_log] == [True]
                tg.cancel_scope.cancel()
        finally:
            await fresh.aclose()
