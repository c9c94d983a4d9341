"""Nothing is lost on leader handover: what the leader decided stays decided when it
dies and the other replica takes over (`controllers.runtime.handover`).

Two real Managers with `--leader-elect` share a simulated management cluster (the
home: the Lease and the shared state ConfigMaps) and the simulated members, each with
its own state dir. The leader is killed (its task cancelled: no Lease release, nothing
handed over); the other replica takes the Lease once it expires and must keep:

- a workload suspended through `fleet suspend` (asked of the leader: a follower answers
  409) suspended: not applied, status says so;
- a held mass deletion held, with its reason in status, also when the replica that
  takes over never saw it being held (a new pod, empty state dir) and the fleet's
  applied commit lags (one cluster keeps refusing a write);
- a refused force-push rollback refused.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog.testing

from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from tests.support.controller import (
    FAST,
    SERVE,
    applied_next,
    condition,
    fast_settings,
    force_pushed_back,
    rolled_out,
    sandbox,
    serve_doc,
    services_fleet,
    where,
    writes,
)
from tests.support.logs import logged

ROOT = Path(__file__).resolve().parents[2]
LEASE = 2.0
JOB_WRITES = "/apis/batch/v1/namespaces/"

Kill = Callable[[], Awaitable[None]]


async def replica(tg: anyio.abc.TaskGroup, box: Sandbox, name: str, root: Path,
                  **overrides: Any) -> tuple[Manager, Kill]:
    """A controller replica with its own state dir, running until `kill()`ed."""
    settings = fast_settings(box, home=True, leader_elect=True, identity=name,
                             state_dir=root / f"state-{name}", **overrides)
    scope = anyio.CancelScope()
    stopped = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[Manager]) -> None:
        try:
            with scope:
                async with box.controller(settings, adapter_options=FAST,
                                          lease_duration=LEASE) as m:
                    task_status.started(m)
                    await anyio.sleep_forever()
        finally:
            stopped.set()

    m: Manager = await tg.start(run)

    async def kill() -> None:
        scope.cancel()
        await stopped.wait()

    return m, kill


def leading(m: Manager) -> bool:
    return bool(m.status()["leader"]["leading"])


async def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("FLEET_SERVER", "NO_COLOR")})


def deployment(box: Sandbox, cluster: str, name: str) -> dict[str, Any] | None:
    assert box.sim is not None
    return next((o for o in box.sim.clusters[cluster].objects("Deployment")
                 if o["metadata"]["name"] == name), None)


def image(box: Sandbox, cluster: str, name: str) -> str:
    dep = deployment(box, cluster, name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def row(m: Manager, wid: str) -> dict[str, Any]:
    return next(w for w in m.status()["workloads"] if w["id"] == wid)


async def leader(tg: anyio.abc.TaskGroup, box: Sandbox, root: Path, *,
                 rolled: bool = True) -> tuple[Manager, Kill]:
    """Replica a, once it leads (and, `rolled`, once the test fleet runs)."""
    a, kill_a = await replica(tg, box, "a", root)
    await until(lambda: leading(a), 20, what="a leads")
    if rolled:
        await rolled_out(a, box)
    return a, kill_a


async def follower(tg: anyio.abc.TaskGroup, box: Sandbox, root: Path) -> Manager:
    """Replica b, once it has planned and runs for the Lease."""
    b, _ = await replica(tg, box, "b", root)
    await until(lambda: b.desired.plan is not None and b.elector is not None, 20,
                what="b follows")
    return b


async def test_a_suspended_workload_stays_suspended_when_the_leader_dies(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        a, kill_a = await leader(tg, box, tmp_path)
        b = await follower(tg, box, tmp_path)
        serve_on = where(a.status())[SERVE][0]
        r = await fleet("suspend", SERVE, "--server", f"http://127.0.0.1:{a.port}")
        assert r.returncode == 0, r.stderr
        # A new commit of it: the leader leaves it alone.
        new = box.repo.commit(
            {"workloads/nlp-team/serve.yaml": serve_doc(image="registry.internal/serve:v2")},
            "serve v2")
        a.trigger_fetch()
        b.trigger_fetch()
        await until(lambda: a.status()["source"]["appliedCommit"] == new, 20,
                    what="a applied the commit elsewhere")
        assert image(box, serve_on, "serve") == "registry.internal/serve:v1"

        await kill_a()
        await until(lambda: leading(b), 20, what="b took over")
        # b reconciled every cluster as leader (the head is applied), and left serve alone.
        await until(lambda: b.status()["source"]["appliedCommit"] == new, 20,
                    what="b applied the head")
        assert image(box, serve_on, "serve") == "registry.internal/serve:v1"
        assert row(b, SERVE)["suspended"]["since"].endswith("Z")
        cond = condition(b.status(), "Suspended")
        assert cond is not None and SERVE in cond["message"]
        # and b may resume it: it is b's to decide now.
        r = await fleet("resume", SERVE, "--server", f"http://127.0.0.1:{b.port}")
        assert r.returncode == 0 and f"workload {SERVE} resumed" in r.stdout, r.stderr
        await until(lambda: image(box, serve_on, "serve") == "registry.internal/serve:v2",
                    15, what="resumed by the new leader")
        tg.cancel_scope.cancel()


def running_svcs(box: Sandbox) -> set[str]:
    assert box.sim is not None
    return {o["metadata"]["name"] for c in box.sim.clusters.values()
            for o in c.objects("Deployment") if o["metadata"]["name"].startswith("svc-")}


def held(m: Manager) -> dict[str, Any] | None:
    return condition(m.status(), "DeletionsHeld")


async def holding_a_mass_deletion(tg: anyio.abc.TaskGroup, box: Sandbox, root: Path
                                  ) -> tuple[Manager, Kill, str]:
    """Replica a leads the services fleet and holds the deletion of 9 of its 10
    services; (a, its kill, the held commit). Every cluster keeps refusing Job writes:
    the fleet's applied commit never reaches the first commit (what a new replica
    used to judge a head against)."""
    assert box.sim is not None
    for sim_cluster in box.sim.clusters.values():
        sim_cluster.faults.fail_next(10_000, 503, prefix=JOB_WRITES)
    a, kill_a = await leader(tg, box, root, rolled=False)
    await until(lambda: len(running_svcs(box)) == 10, 30, what="services rolled out")
    head = box.repo.commit({f"workloads/nlp-team/svc-{i}.yaml": None for i in range(9)},
                           "drop most services")
    a.trigger_fetch()
    await until(lambda: held(a) is not None, 20, what="a holds the deletion")
    return a, kill_a, head


async def test_a_held_mass_deletion_stays_held_when_a_new_replica_takes_over(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, services_fleet(), home=True) as box, \
            anyio.create_task_group() as tg:
        a, kill_a, head = await holding_a_mass_deletion(tg, box, tmp_path)
        reason = held(a)
        assert reason is not None and reason["reason"] == "MassDeletion"
        # A new pod (a rolling update: empty state dir) joins; then the leader dies.
        b = await follower(tg, box, tmp_path)
        await kill_a()
        await until(lambda: leading(b), 20, what="b took over")
        await until(lambda: b.source.observed == head and held(b) is not None, 20,
                    what="b holds the deletion")
        # b reconciles as leader (a pass per cluster at least) and deletes nothing.
        await until(lambda: b.reconciler.totals.runs >= len(b.adapters), 20,
                    what="b reconciled every cluster")
        assert len(running_svcs(box)) == 10
        cond = held(b)
        assert cond is not None and cond["reason"] == reason["reason"]
        assert "Fleet-Allow: mass-deletion" in cond["message"]
        assert b.desired.head == box.first_commit
        tg.cancel_scope.cancel()


async def test_a_refused_rollback_stays_refused_when_the_leader_dies(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        a, kill_a = await leader(tg, box, tmp_path)
        b = await follower(tg, box, tmp_path)
        newer = await applied_next(a, box, b)
        serve_on = where(a.status())[SERVE][0]
        await force_pushed_back(a, box)
        await kill_a()
        b.trigger_fetch()
        await until(lambda: leading(b), 20, what="b took over")
        await until(lambda: synced(b.status(), newer) == (3, 3), 20,
                    what="b serves the applied commit")
        cond = condition(b.status(), "NonFastForwardRefused")
        assert cond is not None and newer[:12] in cond["message"]
        dep = deployment(box, serve_on, "serve")
        assert dep is not None and dep["spec"]["replicas"] == 2
        tg.cancel_scope.cancel()


async def test_a_rollback_taken_while_the_home_was_unreadable_is_not_applied_on_takeover(
        tmp_path: Path) -> None:
    # A new replica starts just after a force-push rollback, while the management
    # cluster fails every read of the source guard: it cannot know the leader's applied
    # commit, so it takes the rolled-back head as its view. The leader then dies. The
    # new leader must read the home before it writes anything: it refuses the rollback.
    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        assert box.home is not None
        home = box.home.clusters["home"]
        a, kill_a = await leader(tg, box, tmp_path)
        newer = await applied_next(a, box)
        await until(lambda: any(o["metadata"]["name"] == "aifleet-source" and
                                (o.get("data") or {}).get("applied") == newer
                                for o in home.objects("ConfigMap")), 10, what="guard shared")
        serve_on = where(a.status())[SERVE][0]
        home.faults.fail_next(1_000_000, 503, prefix=(
            "/api/v1/namespaces/aifleet-system/configmaps/aifleet-source"))
        await force_pushed_back(a, box)
        b, _ = await replica(tg, box, "b", tmp_path)
        await until(lambda: b.desired.head == box.first_commit, 20,
                    what="b took the rollback as its view")
        with structlog.testing.capture_logs() as logs:
            await kill_a()
            assert b.elector is not None
            await until(lambda: b.elector is not None and b.elector.is_leader, 20,
                        what="b holds the Lease")
            # A leader that did not wait for the home would have written by now: b tried
            # to take over twice, and its clusters had as many passes as two each.
            passes = b.queue.stats.processed + 2 * len(b.adapters)
            await until(lambda: logged(logs, "takeover_waits_for_home") >= 2
                        and b.queue.stats.processed >= passes, 20,
                        what="b's take-over refused twice, two passes of each cluster")
        home.faults.clear()
        await until(lambda: condition(b.status(), "NonFastForwardRefused") is not None, 20,
                    what="b refuses the rollback")
        assert writes(b) == 0
        dep = deployment(box, serve_on, "serve")
        assert dep is not None and dep["spec"]["replicas"] == 2
        tg.cancel_scope.cancel()


async def test_a_drain_the_leader_started_is_finished_by_a_new_replica(
        tmp_path: Path) -> None:
    # The leader starts draining a cluster whose Cluster file was removed, but the
    # cluster refuses the deletes; the leader dies. The replica that takes over is a
    # new pod, and the fleet's applied commit lags (Jobs are refused everywhere), so
    # neither the repo nor that commit says how to reach the cluster: only the
    # leader's `retiring` copy in the home does.
    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        assert box.sim is not None and box.home is not None
        for sim_cluster in box.sim.clusters.values():
            sim_cluster.faults.fail_next(1_000_000, 503, prefix=JOB_WRITES)
        a, kill_a = await leader(tg, box, tmp_path, rolled=False)
        await until(lambda: SERVE in where(a.status()) and any(
            deployment(box, c, "serve") for c in box.sim.clusters), 20, what="serve runs")
        gone = where(a.status())[SERVE][0]
        box.sim.clusters[gone].faults.fail_next(1_000_000, 503,
                                                prefix="/apis/apps/v1/namespaces/")
        box.repo.commit({f"clusters/{gone}.yaml": None}, f"retire {gone}")
        a.trigger_fetch()
        await until(lambda: gone in a.retiring, 20, what="a drains")
        await until(lambda: (a.shared.published.get("retiring") or {}).get(
            "clusters", {}).get(gone) is not None, 10, what="a shared the drain")
        assert deployment(box, gone, "serve") is not None  # the drain cannot delete yet
        assert a.status()["source"]["appliedCommit"] is None
        b = await follower(tg, box, tmp_path)
        await kill_a()
        for sim_cluster in box.sim.clusters.values():
            sim_cluster.faults.clear()
        await until(lambda: leading(b), 20, what="b took over")
        await until(lambda: deployment(box, gone, "serve") is None and gone not in b.adapters,
                    30, what="b finished the drain")
        await until(lambda: any(deployment(box, c, "serve") is not None
                                for c in box.sim.clusters if c != gone), 20,
                    what="serve runs elsewhere")
        tg.cancel_scope.cancel()


async def test_a_suspension_the_home_cannot_take_yet_is_said_and_saved_later(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        assert box.home is not None
        home = box.home.clusters["home"]
        a, _ = await leader(tg, box, tmp_path)
        home.faults.fail_next(1_000_000, 503, prefix=(
            "/api/v1/namespaces/aifleet-system/configmaps/aifleet-state-suspended"))
        r = await fleet("suspend", SERVE, "--server", f"http://127.0.0.1:{a.port}")
        assert r.returncode == 0, r.stderr
        assert "not yet saved in the home cluster" in r.stdout
        await until(lambda: condition(a.status(), "SharedStateNotSaved") is not None, 10,
                    what="status says so")
        home.faults.clear()
        await until(lambda: condition(a.status(), "SharedStateNotSaved") is None, 10,
                    what="saved once the home answers")
        assert a.shared.published["suspended"]["workloads"].keys() == {SERVE}
        tg.cancel_scope.cancel()


async def test_a_follower_that_adopted_a_held_commit_serves_the_leaders_base_on_takeover(
        tmp_path: Path) -> None:
    # Like the held test above, but the new replica could not read the held copy when
    # it started (the home refused those reads), so it adopted the held commit as its
    # view. Taking over, it reads the hold and goes back to the commit the leader
    # served, planned, before it writes anything.
    async with sandbox(tmp_path, services_fleet(), home=True) as box, \
            anyio.create_task_group() as tg:
        assert box.home is not None
        home = box.home.clusters["home"]
        a, kill_a, head = await holding_a_mass_deletion(tg, box, tmp_path)
        await until(lambda: (a.shared.published.get("held") or {}).get("commit") == head,
                    10, what="a shared the hold")
        for piece in ("held", "adopted"):
            home.faults.fail_next(1_000_000, 503, prefix=(
                f"/api/v1/namespaces/aifleet-system/configmaps/aifleet-state-{piece}"))
        b, _ = await replica(tg, box, "b", tmp_path)
        await until(lambda: b.desired.head == head, 20, what="b adopted the held commit")
        await kill_a()
        await until(lambda: b.elector is not None and b.elector.is_leader, 20,
                    what="b holds the Lease")
        home.faults.clear()
        await until(lambda: leading(b), 20, what="b took over")
        await until(lambda: b.reconciler.totals.runs >= len(b.adapters), 20,
                    what="b reconciled every cluster")
        assert len(running_svcs(box)) == 10
        assert b.desired.head == box.first_commit
        cond = held(b)
        assert cond is not None and cond["reason"] == "MassDeletion"
        tg.cancel_scope.cancel()
