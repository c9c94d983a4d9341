"""Clusters reached through credentials Secrets on the management cluster.

With `--cluster-secrets`, a Cluster file naming no kubeconfig is reached only through
the Secret named after it in aifleet-system on the management cluster: the
controller's `--kubeconfig` points at no file at all here, so every member reached
proves its Secret was read. A missing Secret and a Secret without credentials are that
cluster's diagnostics (the others roll out), and no token appears in status or logs.

The last test takes the whole path: `fleet cluster add` per member, then a controller
that rolls the fleet out through those Secrets alone.

Real Git repo, simulated home and members over HTTP (TLS, bearer tokens), real Manager.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from controllers.demo.sandbox import until
from controllers.runtime import manager_io
from tests.support.controller import CLUSTERS, FAST, fast_settings, rolled_out, sandbox
from tests.support.home import create_namespace, put_credentials


async def test_members_are_reached_only_through_their_credentials_secrets(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async with sandbox(tmp_path, home=True) as box:
        await create_namespace(box)
        await put_credentials(box, "eu-fra-1")
        await put_credentials(box, "us-east-1", token=False)  # no credentials in it
        # eu-par-1 has no Secret at all.
        settings = fast_settings(box, home=True, cluster_secrets=True,
                                 kubeconfig=str(tmp_path / "no-such-kubeconfig"))
        async with box.controller(settings, adapter_options=FAST) as m:
            await until(lambda: "eu-fra-1" in m.adapters
                        and m.adapters["eu-fra-1"].synced.is_set(), 20,
                        what="eu-fra-1 connected through its Secret")
            await until(lambda: {"eu-par-1", "us-east-1"} <= set(m.connect_errors), 20,
                        what="the other two diagnosed")
            errors = dict(m.connect_errors)
            assert "no credentials Secret aifleet-system/eu-par-1" in errors["eu-par-1"]
            assert "fleet cluster add eu-par-1" in errors["eu-par-1"]
            assert "no credentials" in errors["us-east-1"]
            assert set(m.adapters) == {"eu-fra-1"}
            # Put the missing Secret: the next poll connects it, no restart.
            await put_credentials(box, "eu-par-1")
            await until(lambda: "eu-par-1" in m.adapters, 20,
                        what="eu-par-1 connected once its Secret exists")
            events = m.feed.document()
            assert any(e.get("type") == "ClusterConnectionFailed" or
                       "ClusterConnectionFailed" in json.dumps(e, default=str)
                       for e in events.get("events", []))
            shown = (json.dumps(m.status()) + manager_io.metrics_text(m)
                     + json.dumps(events, default=str))
        logs = capfd.readouterr()
        assert "cluster_connect_failed" in logs.out + logs.err  # the logs were captured
        assert box.sim is not None
        for name, c in box.sim.clusters.items():
            assert c.token not in shown, name
            assert c.token not in logs.out + logs.err, name


async def test_a_fleet_registered_with_fleet_cluster_add_rolls_out(tmp_path: Path) -> None:
    """The whole path: `fleet cluster add` (a subprocess) per member, then a controller
    whose only way to the members is those Secrets."""
    async with sandbox(tmp_path, home=True) as box:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        for name in sorted(CLUSTERS):
            p = await anyio.run_process(
                [sys.executable, "-m", "controllers.cli", "cluster", "add", name,
                 "--context", name, "--kubeconfig", str(box.kubeconfig),
                 "--home-kubeconfig", str(box.home_kubeconfig)], env=env, check=False)
            assert p.returncode == 0, p.stderr.decode()
        settings = fast_settings(box, home=True, cluster_secrets=True,
                                 kubeconfig=str(tmp_path / "no-such-kubeconfig"))
        async with box.controller(settings, adapter_options=FAST) as m:
            placed = await rolled_out(m, box)
            assert set(m.adapters) == set(CLUSTERS) and not m.connect_errors
            assert {c for where in placed.values() for c in where} <= set(CLUSTERS)


def test_cluster_secrets_without_a_management_cluster_stops_fleet_run(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo",
                        str(tmp_path), "--cluster-secrets"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    assert "--cluster-secrets reads credentials Secrets from the management" in r.stderr
