"""A cluster's credentials Secret changed or deleted while the controller runs.

The members answer only the tokens they are told to (`SimCluster.accept_tokens`), as a
real API server answers 401 to a bearer token it does not know. A rotated token in the
Secret reconnects that cluster alone (the others keep their connections), and the old
token can then be revoked while the cluster keeps being synced; a deleted Secret makes
the cluster Unreachable with the reason, nothing deleted, and putting it back connects
it again. No token, old or new, shows in status, metrics, events or logs.

Real Git repo, simulated home and members over HTTPS, real Manager.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controllers.demo.faults import find_deployment, inject_replica_drift, owned, workloads_on
from controllers.demo.sandbox import Sandbox, until
from controllers.runtime import manager_io
from controllers.runtime.manager import Manager
from tests.support.controller import CLUSTERS, FAST, fast_settings, rolled_out, sandbox
from tests.support.home import NS, create_namespace, home_request, put_credentials


async def set_token(box: Sandbox, cluster: str, token: str) -> None:
    """`kubectl patch secret` of the token key alone (a merge patch)."""
    await home_request(box, "PATCH", f"/api/v1/namespaces/{NS}/secrets/{cluster}",
                       {"data": {"token": base64.b64encode(token.encode()).decode()}},
                       "application/merge-patch+json")


@asynccontextmanager
async def rolled_out_through_secrets(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, Manager]]:
    """A controller reaching every member through its credentials Secret alone (its
    `--kubeconfig` names no file), once the fleet runs there; stopped on the way out."""
    async with sandbox(tmp_path, home=True) as box:
        await create_namespace(box)
        for name in sorted(CLUSTERS):
            await put_credentials(box, name)
        async with box.controller(settings_for(box, tmp_path),  # type: ignore[arg-type]
                                  adapter_options=FAST) as m:
            await rolled_out(m, box)
            yield box, m


def settings_for(box: Sandbox, tmp_path: Path) -> object:
    return fast_settings(box, home=True, cluster_secrets=True, failover_grace=3600.0,
                         kubeconfig=str(tmp_path / "no-such-kubeconfig"))


def shown(m: Manager) -> str:
    return (json.dumps(m.status()) + manager_io.metrics_text(m)
            + json.dumps(m.feed.document(), default=str))


def never_shown(tokens: list[str], text: str, capfd: pytest.CaptureFixture[str],
                logged: str) -> None:
    """No token in what the controller showed (`text`) nor in its logs, which were
    captured (`logged`, an event the test made it log, is in them)."""
    logs = capfd.readouterr()
    assert logged in logs.out + logs.err
    assert tokens
    for token in tokens:
        assert token not in text
        assert token not in logs.out + logs.err


def owned_uids(box: Sandbox, cluster: str) -> set[str]:
    assert box.sim is not None
    return {o["metadata"]["uid"] for kind in ("Job", "Deployment")
            for o in owned(box.sim, cluster, kind)}


def reconnected(m: Manager, cluster: str, old: object) -> bool:
    """`cluster` has a new adapter, synced. In the reconnect gap (the old one dropped,
    the new one not yet made) it has none: not yet, rather than a KeyError."""
    adapter = m.adapters.get(cluster)
    return adapter is not None and adapter is not old and adapter.synced.is_set()


def health(m: Manager, cluster: str) -> dict[str, object]:
    return next(c for c in m.status()["clusters"] if c["name"] == cluster)


async def test_a_rotated_token_reconnects_that_cluster_alone_and_it_keeps_syncing(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async with rolled_out_through_secrets(tmp_path) as (box, m):
        assert box.sim is not None
        cluster, ns, name, replicas = find_deployment(box.sim)
        member = box.sim.clusters[cluster]
        old, new = member.token, secrets.token_urlsafe(24)
        before = dict(m.adapters)
        member.accept_tokens(new, old)  # a grace window: both answered
        await set_token(box, cluster, new)
        await until(lambda: reconnected(m, cluster, before[cluster]), 20,
                    what="the cluster reconnected with its new token")
        assert all(m.adapters[n] is before[n] for n in CLUSTERS if n != cluster)
        await until(lambda: before[cluster].client.transport._session is None, 5,
                    what="the old client closed")
        member.accept_tokens(new)  # the old token revoked: 401 from now on
        # Still synced with the new credentials: drift there is corrected.
        await inject_replica_drift(box.sim, cluster, ns, name, replicas + 3)
        await until(lambda: find_deployment(box.sim, (cluster, ns, name))[3]  # type: ignore[arg-type]
                    == replicas, 20, what="drift corrected with the new token")
        assert health(m, cluster)["health"] in ("Healthy", "Degraded")
        assert not m.connect_errors
        text = shown(m)
    never_shown([old, new], text, capfd, "cluster_credentials_changed")


async def test_a_deleted_secret_makes_the_cluster_unreachable_and_deletes_nothing(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async with rolled_out_through_secrets(tmp_path) as (box, m):
        assert box.sim is not None
        cluster = find_deployment(box.sim)[0]
        running = {n: workloads_on(box.sim, n) for n in CLUSTERS}
        uids = owned_uids(box, cluster)
        others = {n: m.adapters[n] for n in CLUSTERS if n != cluster}
        await home_request(box, "DELETE", f"/api/v1/namespaces/{NS}/secrets/{cluster}")
        await until(lambda: health(m, cluster)["health"] == "Unreachable", 20,
                    what="Unreachable once its Secret is gone")
        row = health(m, cluster)
        assert row["reason"] == "CredentialsDeleted", row
        assert f"credentials Secret {NS}/{cluster} was deleted" in str(row["message"])
        checks = m.credentials.checks
        await until(lambda: m.credentials.checks >= checks + 3, 20,
                    what="three more looks at the Secrets")
        # Nothing deleted: not on that cluster (nor drained), not elsewhere.
        assert {n: workloads_on(box.sim, n) for n in CLUSTERS} == running
        assert owned_uids(box, cluster) == uids
        assert not m.retiring
        assert all(m.adapters[n] is a for n, a in others.items())
        events = json.dumps(m.feed.document(), default=str)
        assert "ClusterUnreachable" in events
        # Put back: connected again, without a restart.
        await put_credentials(box, cluster)
        await until(lambda: health(m, cluster)["health"] == "Healthy", 20,
                    what="connected again once its Secret is back")
        assert {n: workloads_on(box.sim, n) for n in CLUSTERS} == running
        text = shown(m)
        tokens = [c.token for c in box.sim.clusters.values()]
    never_shown(tokens, text, capfd, "cluster_credentials_deleted")


async def test_what_is_not_a_new_credential_changes_nothing_and_a_broken_one_cuts_off(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An annotation reconnects nothing; a LIST the management cluster fails is not a
    deletion; a Secret changed to hold no credentials cuts its cluster off (the old
    token is not used on) until it is fixed."""
    async with rolled_out_through_secrets(tmp_path) as (box, m):
        assert box.sim is not None and box.home is not None
        before = dict(m.adapters)
        path = f"/api/v1/namespaces/{NS}/secrets/eu-par-1"
        await home_request(box, "PATCH", path,
                           {"metadata": {"annotations": {"owner": "platform"}}},
                           "application/merge-patch+json")
        checks = m.credentials.checks
        await until(lambda: m.credentials.checks >= checks + 2, 20, what="two looks")
        assert m.adapters == before and all(
            m.adapters[n] is a for n, a in before.items())
        # The management cluster fails every LIST of the Secrets for a while.
        faults = box.home.clusters["home"].faults
        faults.fail_next(10_000, 503, prefix=f"/api/v1/namespaces/{NS}/secrets")
        checks = m.credentials.checks
        await until(lambda: m.credentials.checks >= checks + 3, 30,
                    what="three looks that failed")
        assert all(m.adapters[n] is a for n, a in before.items())
        assert all(health(m, n)["health"] != "Unreachable" for n in CLUSTERS)
        faults.clear()
        # No credentials in it any more: cut off, the key named, no value.
        await home_request(box, "PATCH", path, {"data": {"token": None}},
                           "application/merge-patch+json")
        await until(lambda: health(m, "eu-par-1")["health"] == "Unreachable", 20,
                    what="cut off once its Secret holds no credentials")
        row = health(m, "eu-par-1")
        assert row["reason"] == "CredentialsUnusable", row
        assert "no credentials: give 'token'" in str(row["message"]), row
        assert all(m.adapters[n] is before[n] for n in CLUSTERS if n != "eu-par-1")
        await set_token(box, "eu-par-1", box.sim.clusters["eu-par-1"].token)
        await until(lambda: health(m, "eu-par-1")["health"] == "Healthy", 20,
                    what="connected again once the Secret is fixed")
        text = shown(m)
        tokens = [c.token for c in box.sim.clusters.values()]
    never_shown(tokens, text, capfd, "credentials_list_failed")
