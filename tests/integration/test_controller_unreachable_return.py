"""Nothing lost to a partition: a spread workload keeps its surviving replicas while one
of its clusters is away, and a cluster that answers again is reconciled only against a
plan made after its return, so what that plan keeps there is never deleted and
re-created (issue 15, findings 4 and 5). The real controller on simulated clusters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from clusters.sim import SimFleet
from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import synced, until
from controllers.runtime.manager import Manager
from controllers.runtime.replanner import Replanner
from controllers.status.statusview import render_fleet
from fleet.capacity import CapacitySnapshot
from fleet.placement.types import Plan, PreviousPlan
from fleet.spec import FleetSpec
from tests.fleetdocs import POLICY, workload
from tests.support.controller import FAST, TRAIN, fast_settings, fleet_files, sandbox, where

CHAT, HEALTH = "nlp-team/chat", "health-team/records"
EU = ("eu-fra-1", "eu-par-1")


def partition_fleet() -> dict[str, str | bytes]:
    """The harness fleet plus an HA eu-personal service spread over 2..3 clusters (only
    two are in the EU) and a de-health gang that may run only in Germany (eu-fra-1)."""
    files = fleet_files()
    files["policies/residency.yaml"] = POLICY.replace(
        "    br-personal: {allowed: [BR]}\n",
        "    br-personal: {allowed: [BR]}\n    de-health: {allowed: [DE]}\n")
    files["workloads/nlp-team/chat.yaml"] = workload(
        "chat", data_class="eu-personal", wtype="inference",
        extra_spec="    spread: {minClusters: 2, maxClusters: 3}\n").replace(
        "  replicas: 2\n", "  replicas: 4\n").replace("      count: 8\n", "      count: 1\n")
    files["workloads/health-team/records.yaml"] = workload(
        "records", "health-team", data_class="de-health")
    return files


def uids(sim: SimFleet, cluster: str) -> dict[str, str]:
    """Workload id -> uid of its Job or Deployment on `cluster` (a re-created object
    has a new uid)."""
    out: dict[str, str] = {}
    for kind in ("Job", "Deployment"):
        for o in sim.clusters[cluster].objects(kind):
            label = (o["metadata"].get("labels") or {}).get("aifleet.dev/workload")
            if label:
                out[label.replace(".", "/", 1)] = o["metadata"]["uid"]
    return out


def reasons(m: Manager, wid: str) -> list[str | None]:
    assert m.desired.plan is not None
    return [r.rule for r in m.desired.plan.workloads[wid].reasons]  # type: ignore[index]


async def rolled_out(m: Manager, box: Any) -> dict[str, list[str]]:
    await until(lambda: synced(m.status(), box.first_commit) == (5, 5), 30,
                what="first rollout")
    return where(m.status())


async def plans_after(m: Manager, n: int) -> None:
    """Until `n` more plans have been made (asked for, as a resync would), and the
    clusters reconciled against them had their turn."""
    for _ in range(n):
        start = len(m.placement_durations)
        m.trigger_plan()
        await until(lambda: len(m.placement_durations) > start, 20,  # noqa: B023
                    what="one more plan")
        await anyio.sleep(0.3)


async def sampling(sample: Callable[[], None], body: Callable[[], Any]) -> None:
    """Run `body` while `sample` is called every few milliseconds."""
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            while True:
                sample()
                await anyio.sleep(0.005)
        tg.start_soon(watch)
        await body()
        tg.cancel_scope.cancel()


async def test_a_spread_workload_keeps_its_surviving_replicas_while_a_cluster_is_down(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, partition_fleet()) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        assert placed[CHAT] == list(EU)
        sim = box.sim
        assert sim is not None
        lost, survivor = EU
        before = uids(sim, survivor)[CHAT]
        missing: list[bool] = []

        async def partition() -> None:
            await sim.clusters[lost].down()
            # Past the grace, it cannot be spread over two EU clusters any more: it
            # stays Placed on the survivor, degraded and saying why.
            await until(lambda: where(m.status())[CHAT] == [survivor]
                        and "Degraded" in reasons(m, CHAT), 20, what="chat degraded")
            await plans_after(m, 3)
            await until(lambda: synced(m.status())[0] >= 1, 10, what="reconciled")

        await sampling(lambda: missing.append(CHAT not in workloads_on(sim, survivor)),
                       partition)
        assert len(missing) > 10 and not any(missing)
        assert uids(sim, survivor)[CHAT] == before  # never deleted, never re-created
        row = next(w for w in m.status()["workloads"] if w["id"] == CHAT)
        assert row["status"] == "Placed"
        assert any(r["message"].startswith("degraded: 4 of 4 replicas on 1 cluster")
                   for r in row["reasons"])
        # `fleet status` lists it under what needs attention, with why.
        attention = render_fleet(m.status()).split("Needs attention")[1]
        assert CHAT in attention and "degraded: 4 of 4 replicas on 1 cluster" in attention
        # Residency holds, degraded or not.
        assert CHAT not in workloads_on(sim, "us-east-1")


class SlowPlacer:
    """The controller's own placement (`Replanner`), taking `delay` seconds more per
    plan once asked to: what a plan of a big fleet costs (seconds, docs/controller.md),
    so a reconcile that does not wait for the plan made after a return runs first."""

    def __init__(self) -> None:
        self.inner = Replanner()
        self.delay = 0.0

    def __call__(self, spec: FleetSpec, capacity: CapacitySnapshot,
                 previous: PreviousPlan | None = None, *, commit: str | None = None
                 ) -> Plan:
        time.sleep(self.delay)  # in the placement worker thread, as a long plan is
        return self.inner(spec, capacity, previous, commit=commit)


async def test_a_returning_cluster_keeps_what_the_new_plan_keeps_there(
        tmp_path: Path) -> None:
    placer = SlowPlacer()
    async with sandbox(tmp_path, partition_fleet()) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST,
            place=placer) as m:
        placed = await rolled_out(m, box)
        sim = box.sim
        assert sim is not None
        away, other = "eu-fra-1", "eu-par-1"
        assert placed[HEALTH] == [away] and away in placed[CHAT]
        before = uids(sim, away)
        trained_here = TRAIN in before
        await sim.clusters[away].down()
        # While it is away: the de-health gang fits nowhere else (Pending), the spread
        # is degraded on the other EU cluster, train (if it ran here) fails over.
        await until(lambda: m.desired.plan is not None
                    and m.desired.plan.workloads[HEALTH].status == "Pending"  # type: ignore[index]
                    and away not in where(m.status())[CHAT]
                    and where(m.status())[TRAIN] == [other], 20, what="failed over")
        assert where(m.status())[CHAT] == [other]
        await plans_after(m, 2)
        # Real failovers: train if it ran here, a public workload that ran here.
        moved = {w for w, cs in where(m.status()).items() if w in before and away not in cs
                 and w not in (HEALTH, CHAT)}
        assert (TRAIN in moved) is trained_here
        stale_before = m.reconciler.totals.stale_deleted
        pruned_before = m.reconciler.totals.pruned
        changed: list[str] = []

        def sample() -> None:
            now = uids(sim, away)
            changed.extend(w for w in (HEALTH, CHAT) if now.get(w) != before[w])

        async def back() -> None:
            placer.delay = 1.0
            await sim.clusters[away].up()
            await until(lambda: HEALTH in where(m.status())
                        and where(m.status())[HEALTH] == [away]
                        and away in where(m.status())[CHAT], 20, what="kept on return")
            # Stale copies of the real failovers still go first.
            await until(lambda: not (workloads_on(sim, away) & moved), 20,
                        what="stale copies deleted")
            await until(lambda: synced(m.status())[0] == synced(m.status())[1], 20,
                        what="reconciled after return")
            placer.delay = 0.0
            await plans_after(m, 2)

        await sampling(sample, back)
        # The only copy of the de-health gang and the spread's replicas kept running
        # through the partition: never deleted, never re-created.
        assert changed == []
        assert {w: uids(sim, away)[w] for w in (HEALTH, CHAT)} == \
            {w: before[w] for w in (HEALTH, CHAT)}
        stale = m.reconciler.totals.stale_deleted - stale_before  # objects
        assert (stale > 0) is bool(moved)
        assert m.reconciler.totals.pruned == pruned_before
        assert [c for c in ("eu-fra-1", "eu-par-1", "us-east-1")
                if TRAIN in workloads_on(sim, c)] == [other]
