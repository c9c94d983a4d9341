"""The home cluster, refusals that survive restarts, and followers that never write.

- A refused force-push rollback stays refused after a restart: with the same state dir
  (`source.json`), and with an empty one (the copy in the management cluster).
- With leader election, the Lease lives in a management cluster: a member going down
  stops nothing elsewhere.
- A follower serves status but writes no ledger record, no commit status and nothing
  to the home cluster.

Real bare Git remote, simulated clusters over HTTP, the real Manager.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from tests.support.controller import (
    CLUSTERS,
    FAST,
    SERVE,
    applied_next,
    condition,
    fast_settings,
    force_pushed_back,
    rolled_out,
    sandbox,
    serve_doc,
    where,
)


def deployment(box: Sandbox, cluster: str, name: str) -> dict[str, Any] | None:
    assert box.sim is not None
    return next((o for o in box.sim.clusters[cluster].objects("Deployment")
                 if o["metadata"]["name"] == name), None)


def serve_replicas(box: Sandbox, cluster: str) -> int:
    dep = deployment(box, cluster, "serve")
    assert dep is not None
    return int(dep["spec"]["replicas"])


async def roll_forward_then_force_push_back(m: Manager, box: Sandbox) -> tuple[str, str]:
    """Apply a second commit (serve x2), then force-push main back to the first, and
    wait for the refusal; (newer commit, the cluster serve runs on)."""
    await rolled_out(m, box)
    newer = await applied_next(m, box)
    serve_on = where(m.status())[SERVE][0]
    await force_pushed_back(m, box)
    return newer, serve_on


async def test_a_refused_rollback_stays_refused_after_a_restart(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        async with box.controller(fast_settings(box), adapter_options=FAST) as first:
            newer, serve_on = await roll_forward_then_force_push_back(first, box)
        saved = tmp_path / "state" / "source.json"
        assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
        async with box.controller(fast_settings(box), adapter_options=FAST) as second:
            await until(lambda: condition(second.status(), "NonFastForwardRefused")
                        is not None, 10, what="rollback refused after the restart")
            # It serves the applied commit (its mirror still has it), never the rollback.
            await until(lambda: synced(second.status(), newer) == (3, 3), 20,
                        what="applied commit served after the restart")
            doc = second.status()
            assert doc["source"]["observedCommit"] == box.first_commit
            cond = condition(doc, "NonFastForwardRefused")
            assert cond is not None and newer[:12] in cond["message"]
            assert serve_replicas(box, serve_on) == 2


async def test_a_new_replica_refuses_the_rollback_from_the_management_clusters_copy(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        first_settings = fast_settings(box, home=True, state_dir=tmp_path / "state-a")
        async with box.controller(first_settings, adapter_options=FAST) as first:
            newer, serve_on = await roll_forward_then_force_push_back(first, box)
            await until(lambda: home_configmap(box, "aifleet-source") is not None, 10,
                        what="guard shared")
        data = (home_configmap(box, "aifleet-source") or {}).get("data") or {}
        assert data.get("applied") == newer
        # A new pod: empty state dir, new mirror (which cannot even fetch `newer` now).
        second_settings = fast_settings(box, home=True, state_dir=tmp_path / "state-b")
        async with box.controller(second_settings, adapter_options=FAST) as second:
            await until(lambda: condition(second.status(), "NonFastForwardRefused")
                        is not None, 10, what="rollback refused by a new replica")
            assert second.desired.spec is None  # nothing planned, so nothing applied
            assert second.status()["source"]["appliedCommit"] is None
            assert serve_replicas(box, serve_on) == 2


async def test_a_new_replica_with_a_member_as_home_applies_nothing_of_the_rollback(
        tmp_path: Path) -> None:
    # With a member as home, the shared copy can only be read once that member is
    # connected, i.e. after the first commit is read: it must still win before any
    # write.
    from tests.support.controller import writes

    async with sandbox(tmp_path) as box:
        home = "us-east-1"
        first_settings = fast_settings(box, leader_cluster=home, state_dir=tmp_path / "a")
        async with box.controller(first_settings, adapter_options=FAST) as first:
            newer, serve_on = await roll_forward_then_force_push_back(first, box)
        second_settings = fast_settings(box, leader_cluster=home, state_dir=tmp_path / "b")
        async with box.controller(second_settings, adapter_options=FAST) as second:
            await until(lambda: condition(second.status(), "NonFastForwardRefused")
                        is not None or second.applied_commit is not None, 10,
                        what="rollback refused or applied")
            doc = second.status()
            cond = condition(doc, "NonFastForwardRefused")
            assert cond is not None and newer[:12] in cond["message"]
            assert doc["source"]["appliedCommit"] is None
            assert writes(second) == 0
            assert serve_replicas(box, serve_on) == 2


def home_configmap(box: Sandbox, name: str) -> dict[str, Any] | None:
    assert box.home is not None
    return next((o for o in box.home.clusters["home"].objects("ConfigMap")
                 if o["metadata"]["name"] == name), None)


def lease_renewed(box: Sandbox) -> datetime:
    """When the leader last renewed its Lease in the management cluster."""
    assert box.home is not None
    leases = box.home.clusters["home"].objects("Lease")
    renewed = [datetime.strptime(o["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
               .replace(tzinfo=UTC) for o in leases]
    return max(renewed, default=datetime.min.replace(tzinfo=UTC))


def leading(*ms: Manager) -> list[Manager]:
    return [m for m in ms if m.status()["leader"]["leading"]]


async def test_a_member_cluster_going_down_does_not_stop_the_leader(tmp_path: Path) -> None:
    # The Lease used to live on the first member by name (eu-fra-1): losing it stopped
    # both replicas from leading, and nothing was reconciled anywhere.
    async with sandbox(tmp_path, home=True) as box:
        assert box.sim is not None
        a_settings = fast_settings(box, home=True, leader_elect=True, identity="a",
                                   state_dir=tmp_path / "state-a")
        b_settings = fast_settings(box, home=True, leader_elect=True, identity="b",
                                   state_dir=tmp_path / "state-b")
        async with box.controller(a_settings, adapter_options=FAST, lease_duration=2.0) as a, \
                box.controller(b_settings, adapter_options=FAST, lease_duration=2.0) as b:
            await until(lambda: len(leading(a, b)) == 1, 20, what="one leader")
            await rolled_out(leading(a, b)[0], box)
            lost = min(CLUSTERS)
            await box.sim.clusters[lost].down()
            await until(lambda: all(next(c for c in m.status()["clusters"]
                                         if c["name"] == lost)["health"] == "Unreachable"
                                    for m in (a, b)), 20, what="member unreachable")
            # Past the point where a Lease held before the member went down has expired:
            # leadership was renewed (in the management cluster) since.
            expired_by = datetime.now(UTC) + timedelta(seconds=2.0)
            await until(lambda: lease_renewed(box) > expired_by, 20,
                        what="Lease renewed while a member is down")
            extra = serve_doc().replace("name: serve", "name: extra")
            box.repo.commit({"workloads/nlp-team/extra.yaml": extra}, "a new service")
            a.trigger_fetch()
            b.trigger_fetch()
            await until(lambda: any(deployment(box, c, "extra") for c in CLUSTERS
                                    if c != lost), 20,
                        what="new commit applied on a surviving member")
            assert len(leading(a, b)) == 1


async def test_a_follower_writes_no_ledger_record_no_commit_status_and_nothing_shared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test-token")
    statuses = r"https://api\.github\.com/repos/acme/fleet/statuses/(?P<sha>[0-9a-f]{40})"
    with respx.mock(assert_all_mocked=True) as forge:
        route = forge.post(url__regex=statuses).mock(return_value=httpx.Response(201))

        def posted(sha: str) -> Counter[tuple[str, str]]:
            return Counter((body["context"], body["state"]) for body in (
                json.loads(c.request.content) for c in route.calls
                if str(c.request.url).endswith(sha)))

        async with sandbox(tmp_path, home=True) as box:
            settings = [fast_settings(box, home=True, leader_elect=True, identity=name,
                                      ledger=True, forge="github", forge_repo="acme/fleet",
                                      state_dir=tmp_path / f"state-{name}")
                        for name in ("a", "b")]
            async with box.controller(settings[0], adapter_options=FAST,
                                      lease_duration=2.0) as a:
                await rolled_out(a, box)
                async with box.controller(settings[1], adapter_options=FAST,
                                          lease_duration=2.0) as b:
                    await until(lambda: b.desired.plan is not None
                                and b.elector is not None, 10, what="follower planned")
                    # A new workload: both replicas plan it; only the leader may say so.
                    extra = serve_doc().replace("name: serve", "name: extra")
                    commit = box.repo.commit({"workloads/nlp-team/extra.yaml": extra},
                                             "extra")
                    a.trigger_fetch()
                    b.trigger_fetch()
                    await until(lambda: synced(a.status(), commit) == (4, 4), 20,
                                what="leader applied the new workload")
                    await until(lambda: b.desired.plan is not None
                                and b.desired.plan.commit == commit, 10,
                                what="follower planned the new workload")
                    assert b.status()["leader"]["leading"] is False
                    assert len(b.status()["workloads"]) == 4  # it serves status
                    await until(lambda: placed_records(box.repo.path)
                                .get("nlp-team/extra") == 1, 10, what="leader's record")
                    assert b.events is not None
                    await until(lambda: b.events.pending == 0,  # type: ignore[union-attr]
                                10, what="follower's ledger flushed")
                    assert b.events.written == 0  # type: ignore[union-attr]
                    assert placed_records(box.repo.path)["nlp-team/extra"] == 1
                    extra_on = where(a.status())["nlp-team/extra"][0]
                    await until(lambda: (f"aifleet/{extra_on}", "success") in posted(commit),
                                10, what="leader's commit status")
                    # One pending per cluster (the leader's), never a second (a follower's).
                    assert posted(commit)[(f"aifleet/{extra_on}", "pending")] == 1
                    assert all(n == 1 for n in posted(commit).values()), posted(commit)
                    assert b.home.management is not None
                    calls = b.home.management.stats.calls
                    assert calls["update"] == calls["create"] == 0, calls  # nothing shared


def placed_records(repo: Path) -> Counter[str]:
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    try:
        return Counter(r.entry.workload for r in read_ledger(repo)
                       if r.entry.event == "Placed")
    except WorkloadsError:
        return Counter()  # no ledger branch yet


async def test_a_management_kubeconfig_that_cannot_be_used_is_a_condition_not_a_crash(
        tmp_path: Path) -> None:
    bad = tmp_path / "home-kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    async with sandbox(tmp_path) as box:
        settings = fast_settings(box, home_kubeconfig=str(bad), leader_elect=True,
                                 identity="a")
        async with box.controller(settings, adapter_options=FAST) as m:
            await until(lambda: any(c["type"] == "HomeUnavailable"
                                    for c in m.status()["source"]["conditions"]), 10,
                        what="HomeUnavailable")
            assert m.status()["leader"]["leading"] is False


async def test_retiring_the_member_that_holds_the_lease_does_not_stop_the_controller(
        tmp_path: Path) -> None:
    # Found by the chaos test: with `--leader-cluster X`, removing X's Cluster file
    # drained and disconnected it, and the elector kept renewing through the closed
    # client: `RuntimeError('Session is closed')` ended the controller's task group.
    async with sandbox(tmp_path) as box:
        home = "us-east-1"
        settings = fast_settings(box, leader_elect=True, leader_cluster=home, identity="a")
        async with box.controller(settings, adapter_options=FAST, lease_duration=1.5) as m:
            await until(lambda: m.may_act(), 20, what="leading")
            await rolled_out(m, box)
            box.repo.commit({f"clusters/{home}.yaml": None}, "retire the Lease's cluster")
            m.trigger_fetch()
            await until(lambda: home not in m.adapters, 30, what="drained and disconnected")
            # Leadership lapses (nowhere to renew it): the controller stays up and says so.
            await until(lambda: not m.may_act(), 20, what="leadership lapsed")
            async with httpx.AsyncClient() as c:
                r = await c.get(f"http://127.0.0.1:{m.port}/healthz")
            assert r.status_code == 200
            assert m.status()["leader"]["leading"] is False
