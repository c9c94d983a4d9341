"""Destructive commits are held: a deleted `clusters/`, a folder move, several clusters
retired at once, most workloads deleted. Nothing is deleted, status says why and how to
allow it (`Fleet-Allow:` in a later commit's message), a restart keeps holding, and a
revert is planned from the last applied plan: nothing moves (issue 15, findings 1, 12).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from tests.support.controller import (
    CLUSTERS,
    FAST,
    SERVICES,
    TRAIN,
    fast_settings,
    rolled_out,
    sandbox,
    service_doc,
    services_fleet,
    where,
)

ROOT = Path(__file__).resolve().parents[2]
def running(box: Sandbox) -> dict[str, set[str]]:
    assert box.sim is not None
    return {c: workloads_on(box.sim, c) for c in CLUSTERS}


def everything(box: Sandbox) -> set[str]:
    return set().union(*running(box).values())


def held(m: Manager) -> list[dict[str, Any]]:
    return [c for c in m.status()["source"]["conditions"] if c["type"] == "DeletionsHeld"]


async def all_rolled_out(m: Manager, box: Sandbox, n: int) -> None:
    await until(lambda: synced(m.status(), box.first_commit) == (n, n), 30,
                what="first rollout")


async def fleet_status(port: int | None) -> str:
    r = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controllers.cli", "status", "--server",
                         f"http://127.0.0.1:{port}"], cwd=ROOT, capture_output=True,
        text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def holding(m: Manager, commit: str) -> bool:
    """Whether `m` says it holds `commit` (judged by this process, not restored)."""
    return any(f"commit {commit[:12]}:" in c["message"] for c in held(m))


async def every_cluster_reconciled(m: Manager) -> None:
    """Until each cluster has been through one more whole reconcile pass, started from
    now: whatever the controller does with the state it holds, it has done. A condition
    to wait on, where a sleep would only guess how long that takes on a loaded machine."""
    done: set[str] = set()
    handler = m.queue.handler

    async def counted(name: str) -> float | None:
        again = await handler(name)
        done.add(name)
        return again

    m.queue.handler = counted
    try:
        for name in sorted(m.adapters):
            m.queue.add(name)
        await until(lambda: done >= set(m.adapters), 60, what="every cluster reconciled")
    finally:
        m.queue.handler = handler


async def stays(m: Manager, box: Sandbox, before: dict[str, set[str]], commit: str) -> None:
    """The controller has judged `commit`, holds it, and, every cluster reconciled
    since, has deleted nothing."""
    await until(lambda: holding(m, commit), 60, what="commit held")
    await every_cluster_reconciled(m)
    assert running(box) == before
    assert m.status()["source"]["appliedCommit"] == box.first_commit
    assert holding(m, commit)


async def test_deleting_every_cluster_file_deletes_nothing(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        before = running(box)
        commit = box.repo.commit({f"clusters/{c}.yaml": None for c in CLUSTERS},
                                 "clusters are managed elsewhere now")
        m.trigger_fetch()
        await stays(m, box, before, commit)
        cond = held(m)[0]
        assert cond["reason"] == "EmptyFleet"
        assert "Fleet-Allow: mass-deletion" in cond["message"]
        assert "Fleet-Allow: retire" in cond["message"]
        assert m.retiring == set() and sorted(m.adapters) == sorted(CLUSTERS)
        assert m.ready()[0]  # not broken: serving the last applied commit


async def test_moving_every_folder_into_a_subfolder_deletes_nothing(tmp_path: Path) -> None:
    # `git mv clusters policies workloads fleet/`
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        before = running(box)
        files = dict(box.repo.files)
        moves: dict[str, str | bytes | None] = {p: None for p in files}
        moves.update({f"fleet/{p}": data for p, data in files.items()})
        commit = box.repo.commit(moves, "restructure: everything under fleet/")
        m.trigger_fetch()
        await stays(m, box, before, commit)
        assert held(m)[0]["reason"] == "EmptyFleet"
        assert m.retiring == set()


async def test_retiring_two_clusters_waits_for_the_retire_allowance(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        keep = placed[TRAIN][0]  # the EU gang job stays where it is
        gone = sorted(set(CLUSTERS) - {keep})
        before = running(box)
        commit = box.repo.commit({f"clusters/{c}.yaml": None for c in gone},
                                 "consolidate on one cluster")
        m.trigger_fetch()
        await stays(m, box, before, commit)
        cond = held(m)[0]
        assert cond["reason"] == "RetireLimit"
        assert all(c in cond["message"] for c in gone)
        assert "Fleet-Allow: retire" in cond["message"]
        assert m.retiring == set()
        out = await fleet_status(m.port)
        assert "! DeletionsHeld: commit" in out and "Fleet-Allow: retire" in out

        allowed = box.repo.commit({}, "consolidate on one cluster\n\nFleet-Allow: retire")
        m.trigger_fetch()
        await until(lambda: all(not workloads_on(box.sim, c) for c in gone)  # type: ignore[arg-type]
                    and all(c not in m.adapters for c in gone), 30, what="drained")
        await until(lambda: not held(m) and m.status()["source"]["appliedCommit"] == allowed,
                    20, what="allowed commit applied")
        assert TRAIN in workloads_on(box.sim, keep)  # type: ignore[arg-type]


async def test_deleting_most_workloads_is_held_across_a_restart_until_allowed(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, services_fleet()) as box:
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await all_rolled_out(m, box, 13)
            before = running(box)
            assert set(SERVICES) <= everything(box)
            commit = box.repo.commit(
                {f"workloads/nlp-team/svc-{i}.yaml": None for i in range(9)},
                "retire old services")
            m.trigger_fetch()
            await stays(m, box, before, commit)
            cond = held(m)[0]
            assert cond["reason"] == "MassDeletion"
            assert "9 of 13" in cond["message"] and "Fleet-Allow: mass-deletion" in \
                cond["message"]
            assert m.ready()[0]
            assert "! DeletionsHeld: commit" in await fleet_status(m.port)
        assert (tmp_path / "state" / "held.json").exists()

        # A restart must not apply the held commit: it serves the applied one first, and
        # holds the head again once it has judged it against what runs (not only the
        # hold restored from held.json).
        async with box.controller(fast_settings(box), adapter_options=FAST) as m2:
            await until(lambda: holding(m2, commit) and m2.status()["source"][
                "appliedCommit"] == box.first_commit, 60, what="held again after the restart")
            await every_cluster_reconciled(m2)
            assert running(box) == before
            assert m2.desired.head == box.first_commit

            allowed = box.repo.commit({}, "retire old services\n\n"
                                          "Fleet-Allow: mass-deletion\n")
            m2.trigger_fetch()
            await until(lambda: not (set(SERVICES[:9]) & everything(box)), 60,
                        what="the allowed deletion pruned")
            # The status says so once every cluster has reconciled the allowed commit,
            # not when the first prune lands: wait for that, do not race it.
            await until(lambda: m2.status()["source"]["appliedCommit"] == allowed, 60,
                        what="the allowed commit applied")
            assert not held(m2)
            assert SERVICES[9] in everything(box)
        assert not (tmp_path / "state" / "held.json").exists()


async def test_a_mass_deletion_pushed_while_no_controller_ran_is_held_at_start(
        tmp_path: Path) -> None:
    """The restart gap: with no hold saved, the head a controller finds at start used to
    be adopted as it was. The last applied commit (kept by the source guard) is served
    first, and the head judged once what runs is known."""
    async with sandbox(tmp_path, services_fleet()) as box:
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await all_rolled_out(m, box, 13)
            before = running(box)
        assert not (tmp_path / "state" / "held.json").exists()
        commit = box.repo.commit({f"workloads/nlp-team/svc-{i}.yaml": None for i in range(9)},
                                 "retire old services, pushed while the controller was down")
        async with box.controller(fast_settings(box), adapter_options=FAST) as m2:
            await until(lambda: bool(held(m2)), 30, what="held at start")
            assert held(m2)[0]["reason"] == "MassDeletion"
            assert m2.status()["source"]["observedCommit"] == commit
            assert m2.desired.head == box.first_commit
            await every_cluster_reconciled(m2)
            assert running(box) == before


async def test_reverting_a_held_commit_moves_nothing(tmp_path: Path) -> None:
    async with sandbox(tmp_path, services_fleet()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await all_rolled_out(m, box, 13)
        before, placed = running(box), where(m.status())
        uids = box_uids(box)
        removed = {f"workloads/nlp-team/svc-{i}.yaml": None for i in range(9)}
        commit = box.repo.commit(removed, "retire old services")  # type: ignore[arg-type]
        m.trigger_fetch()
        await stays(m, box, before, commit)
        revert = box.repo.commit({p: service_doc(int(p.split("-")[-1][0])) for p in removed},
                                 f"Revert \"retire old services\"\n\nThis reverts {commit}.")
        m.trigger_fetch()
        await until(lambda: m.status()["source"]["appliedCommit"] == revert, 20,
                    what="revert applied")
        assert not held(m)
        assert where(m.status()) == placed and running(box) == before
        assert box_uids(box) == uids  # nothing deleted and re-created either


def box_uids(box: Sandbox) -> dict[str, set[str]]:
    """The uid of every Job and Deployment we run, per cluster."""
    from controllers.demo.faults import owned

    assert box.sim is not None
    return {c: {str(o["metadata"]["uid"]) for kind in ("Job", "Deployment")
                for o in owned(box.sim, c, kind)} for c in CLUSTERS}


async def test_a_retired_cluster_keeps_the_copy_of_an_invalid_workload(
        tmp_path: Path) -> None:
    # The Cluster file and the Workload's validity go in one commit: the drain must not
    # delete the last good copy of a workload the repo still has (Invalid, protected).
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        removed = placed[TRAIN][0]
        assert box.sim is not None
        broken = box.repo.files["workloads/nlp-team/train.yaml"].replace(
            b"  replicas: 2\n", b"  replicas: many\n")
        commit = box.repo.commit({f"clusters/{removed}.yaml": None,
                                  "workloads/nlp-team/train.yaml": broken}, "retire a cluster")
        m.trigger_fetch()
        await until(lambda: m.desired.head == commit, 15, what="commit adopted")
        assert TRAIN in m.desired.spec.invalid  # type: ignore[union-attr]
        await every_cluster_reconciled(m)  # a drain pass ran: train's copy must stay
        assert TRAIN in workloads_on(box.sim, removed)
        assert removed in m.retiring and removed in m.adapters
        retiring = [c for c in m.status()["source"]["conditions"]
                    if c["type"] == "ClusterRetiring"]
        assert retiring and retiring[0]["message"].startswith(f"{removed}: ")


async def test_a_refused_prune_of_everything_shows_in_status(tmp_path: Path) -> None:
    # A residency change that leaves every workload Pending: the clusters' prune of
    # everything is refused (an empty plan is far more often a bug), and status says so
    # instead of "Ready" over 0 running workloads.
    from tests.fleetdocs import POLICY

    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        before = running(box)
        nowhere = POLICY.replace('public: {allowed: ["*"]}', "public: {allowed: [BR]}") \
            .replace("eu-personal: {allowed: [EU]}", "eu-personal: {allowed: [BR]}")
        commit = box.repo.commit({"policies/residency.yaml": nowhere}, "tighten residency")
        m.trigger_fetch()
        await until(lambda: m.desired.head == commit and bool(held(m)), 15,
                    what="refused prune in status")
        cond = held(m)[0]
        assert cond["reason"] == "EmptyFleet" and "refusing to delete all" in cond["message"]
        assert running(box) == before
        box.repo.commit({"policies/residency.yaml": POLICY}, "revert")
        m.trigger_fetch()
        await until(lambda: not held(m), 15, what="condition cleared")
        assert running(box) == before


async def test_a_policy_change_that_would_move_most_workloads_waits(tmp_path: Path) -> None:
    # No file of a workload changes, yet placement would move most of them: public data
    # allowed in the US only. Moving away from a cluster deletes there: held.
    from tests.fleetdocs import POLICY

    async with sandbox(tmp_path, services_fleet()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await all_rolled_out(m, box, 13)
        before, placed = running(box), where(m.status())
        outside_us = [w for w, cs in placed.items() if cs != ["us-east-1"] and w != TRAIN]
        assert len(outside_us) > 4  # the test means something: most would move
        us_only = POLICY.replace('public: {allowed: ["*"]}', "public: {allowed: [US]}")
        commit = box.repo.commit({"policies/residency.yaml": us_only}, "public data: US")
        m.trigger_fetch()
        await stays(m, box, before, commit)
        assert where(m.status()) == placed
        cond = held(m)[0]
        assert cond["reason"] == "MassDeletion" and "move away" in cond["message"]

        allowed = box.repo.commit({}, "public data: US\n\nFleet-Allow: mass-deletion")
        m.trigger_fetch()
        await until(lambda: m.status()["source"]["appliedCommit"] == allowed and all(
            where(m.status())[w] == ["us-east-1"] for w in outside_us), 30,
            what="moved once allowed")
        assert not held(m)
