"""A cluster's pass costs the same in a fleet of 10 clusters as in one of 200.

Issue 22, item 2 (work proportional to change): each finished pass built the set of
answering clusters (every adapter's health), asked every cluster's `signature` to tell
whether the head commit was applied (`Rollout.cluster_done`), and scanned every row
of `live` to forget its own cluster's stale rows: O(clusters) work per pass, so
O(clusters^2) per round of passes. Here the real `ClusterReconciler` and `Rollout`
run twenty passes of one simulated cluster (over HTTPS) among 10 or 200 real
connected adapters, every other cluster already applied and recorded, and the test
counts what a pass looks at: passes over the adapters and over `live`, signatures
asked. The counts are the same at both sizes; the head still counts as applied. With
a copy of an Invalid workload here, the pass asked every other cluster what it runs
(O(objects of the fleet)); now only the clusters of its last placement.

`failover_graces` likewise: the status document asks each Unreachable cluster's
failover grace; kept with the plan, that is one pass over the plan per plan, however
many clusters are away, and the same answers as asking one cluster at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from bench.placement import synthetic_spec
from clusters.adapter import ClusterAdapter
from clusters.kubeconfig import ConnectionSpec
from clusters.sim import SimClusterSpec, start_sim
from controllers.runtime.desired import DesiredState
from controllers.runtime.liverows import LiveRows
from controllers.runtime.reconcile import ClusterReconciler
from controllers.runtime.rollout import Rollout
from controllers.runtime.suspension import Suspensions
from controllers.settings import Settings
from controllers.status.cache import Versioned
from controllers.status.metrics import ControllerMetrics
from controllers.status.statusdoc import PlacementLive, failover_grace, failover_graces
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.render import render
from tests.integration.test_reconcile_plan_scan import CountingWorkloads
from tests.support.adapter import FAST, adapter_spec, job, namespace

PER_CLUSTER = 2
"""Workloads the plan places on each cluster."""


class Passes:
    """Counts passes over a mapping (iteration, keys, values, items)."""

    n = 0


class CountingPasses:
    """A mapping mixin counting passes over it (iteration, keys, values, items)."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        Passes.n += 1
        return super().__iter__()  # type: ignore[misc]

    def keys(self):  # type: ignore[no-untyped-def]
        Passes.n += 1
        return super().keys()  # type: ignore[misc]

    def values(self):  # type: ignore[no-untyped-def]
        Passes.n += 1
        return super().values()  # type: ignore[misc]

    def items(self):  # type: ignore[no-untyped-def]
        Passes.n += 1
        return super().items()  # type: ignore[misc]


class CountingAdapters(CountingPasses, Versioned[str, ClusterAdapter]):
    """The Manager's adapters (a `Versioned` dict), counting passes over them."""


class CountingLive(CountingPasses, LiveRows):
    """The Manager's `live` (a `LiveRows`), counting passes over it."""


class CountingDesired(DesiredState):
    signatures = 0

    def signature(self, cluster: ClusterName) -> tuple[Any, ...]:
        CountingDesired.signatures += 1
        return super().signature(cluster)


def wid_of(cluster: str, j: int) -> WorkloadId:
    return WorkloadId(f"team-a/{cluster}-w{j}")


def fleet_plan(names: list[str]) -> Plan:
    workloads = {wid_of(n, j): WorkloadPlacement(wid_of(n, j), "Placed", (
        Assignment(ClusterName(n), Flavour("h100-80gb"), 1, 1),))
        for n in names for j in range(PER_CLUSTER)}
    return Plan("c1", dict(sorted(workloads.items())))


@dataclass
class Fleet:
    names: list[str]
    adapters: CountingAdapters
    first: ClusterAdapter


@asynccontextmanager
async def fleet(tmp: Path, size: int) -> AsyncIterator[Fleet]:
    """`size` simulated clusters, a real adapter connected to each; the first runs
    (informers, heartbeat), the others are connected only."""
    names = [f"c{i:04d}" for i in range(size)]
    nodes = adapter_spec().nodes
    async with await start_sim([SimClusterSpec(n, nodes) for n in names],
                               pod_start_seconds=0.05) as sim:
        kubeconfig = sim.write_kubeconfig(tmp / "kubeconfig")
        adapters = CountingAdapters()
        try:
            for n in names:
                adapters[n] = await ClusterAdapter.connect(
                    ConnectionSpec(n, str(kubeconfig), n), FAST)
            async with anyio.create_task_group() as tg:
                tg.start_soon(adapters[names[0]].run)
                await adapters[names[0]].wait_synced(20.0)
                yield Fleet(names, adapters, adapters[names[0]])
                tg.cancel_scope.cancel()
        finally:
            for a in dict(adapters).values():
                await a.aclose()


INVALID = WorkloadId("team-a/broken")


async def passes_of_one_cluster(tmp: Path, size: int, *, invalid: bool = False
                                ) -> tuple[int, int]:
    """(passes over adapters and live, signatures asked) in 20 passes of the first
    cluster, after a first one. With `invalid`, a copy of a workload Invalid in this
    commit (last placed on the second cluster) runs on the first: whether it is a stale
    copy asks who runs it elsewhere."""
    async with fleet(tmp, size) as f:
        desired = CountingDesired(render)
        desired.head = "c1"
        desired.plan = fleet_plan(f.names)
        if invalid:
            desired.spec = synthetic_spec(2, 2)  # a spec: Invalid workloads are protected
            before = {**desired.plan.workloads, INVALID: WorkloadPlacement(
                INVALID, "Placed", (Assignment(ClusterName(f.names[1]),
                                               Flavour("h100-80gb"), 1, 1),))}
            desired.plan = Plan("c1", dict(sorted(before.items())))
            desired.plan = Plan("c1", {**before, INVALID: WorkloadPlacement(
                INVALID, "Invalid")})
            await f.first.apply([namespace("team-a"), job("broken", team="team-a")],
                                prune=False)
        others = f.names[1:]
        applied = {n: desired.signature(ClusterName(n)) for n in others}
        live = CountingLive({(ClusterName(n), wid_of(n, j)): PlacementLive(
            "Synced", "Healthy", "c1", None) for n in others for j in range(PER_CLUSTER)})
        done: list[str | None] = []
        rollout = Rollout(Settings(repo=str(tmp), state_dir=tmp / "state"),
                          desired=desired, adapters=f.adapters,
                          suspensions=Suspensions.load(tmp / "state"),
                          applied_signature=applied, metrics=ControllerMetrics(),
                          may_act=lambda: True, task_group=lambda: None,
                          on_applied=done.append)
        reconcile = ClusterReconciler(desired, f.adapters, live, applied_signature=applied,
                                      on_done=rollout.cluster_done)
        first = f.names[0]
        assert await reconcile(first) == reconcile.resync_interval
        assert rollout.applied_commit == "c1" and done == ["c1"]  # every cluster applied
        Passes.n = CountingDesired.signatures = 0
        for _ in range(20):
            assert await reconcile(first) == reconcile.resync_interval
        assert rollout.applied_commit == "c1" and len(done) == 21
        assert len(live) == PER_CLUSTER * len(others)  # the others' rows kept
        if invalid:  # its last good state: kept, never pruned
            assert "team-a.broken" in f.first.live_workloads()
        return Passes.n, CountingDesired.signatures


@pytest.mark.parametrize("invalid", [False, True], ids=["valid", "invalid-copy"])
async def test_a_pass_does_not_grow_with_the_clusters(tmp_path: Path, invalid: bool) -> None:
    small = await passes_of_one_cluster(tmp_path / "10", 10, invalid=invalid)
    big = await passes_of_one_cluster(tmp_path / "200", 200, invalid=invalid)
    assert small == big
    fleet_passes, signatures = big
    assert fleet_passes == 0  # neither the adapters nor live are walked per pass
    assert signatures == 20 * 2  # the reconciler's, and the rollout's of that cluster


async def test_a_new_plan_is_waited_for_on_every_cluster(tmp_path: Path) -> None:
    # The rollout's index follows the plan: a new plan that changes what another
    # cluster runs makes the head wait for that cluster again, and its pass ends it.
    async with fleet(tmp_path, 3) as f:
        desired = DesiredState(render)
        desired.head = "c1"
        desired.plan = fleet_plan(f.names)
        applied = {n: desired.signature(ClusterName(n)) for n in f.names[1:]}
        rollout = Rollout(Settings(repo=str(tmp_path), state_dir=tmp_path / "state"),
                          desired=desired, adapters=f.adapters,
                          suspensions=Suspensions.load(tmp_path / "state"),
                          applied_signature=applied, metrics=ControllerMetrics(),
                          may_act=lambda: True, task_group=lambda: None,
                          on_applied=lambda _head: None)
        reconcile = ClusterReconciler(desired, f.adapters, {}, applied_signature=applied,
                                      on_done=rollout.cluster_done)
        await reconcile(f.names[0])
        assert rollout.applied_commit == "c1"
        moved = {**desired.plan.workloads}
        w = wid_of(f.names[0], 0)
        moved[w] = WorkloadPlacement(w, "Placed", (
            Assignment(ClusterName(f.names[1]), Flavour("h100-80gb"), 1, 1),))
        desired.head = "c2"
        desired.plan = Plan("c2", dict(sorted(moved.items())))
        await reconcile(f.names[0])
        assert rollout.applied_commit == "c1"  # f.names[1] has not run c2's set yet
        applied[f.names[1]] = desired.signature(ClusterName(f.names[1]))
        rollout.cluster_done(f.names[1])  # as its pass would
        assert rollout.applied_commit == "c2"
        # A cluster connected meanwhile has applied nothing: the head waits for it.
        adapter = f.adapters.pop(f.names[2])
        rollout.cluster_done("")
        f.adapters["late-1"] = adapter
        desired.head = "c3"
        desired.plan = Plan("c3", desired.plan.workloads)
        applied.update({n: desired.signature(ClusterName(n)) for n in f.names[:2]})
        rollout.cluster_done(f.names[0])
        assert rollout.applied_commit == "c2"  # late-1 has run nothing (Unknown, not away)
        f.adapters["late-1"] = f.adapters.pop("late-1")  # the set changed again: same
        rollout.cluster_done(f.names[0])
        assert rollout.applied_commit == "c2"


def scanned_grace(spec: Any, plan: Plan, cluster: str) -> float | None:
    """`failover_grace` as it was: a scan of the whole plan for one cluster."""
    graces = [spec.workloads[wid].spec.unreachable_grace_seconds
              for wid, wp in plan.workloads.items()
              if wid in spec.workloads and any(a.cluster == cluster for a in wp.assignments)]
    return float(min(graces)) if graces else None


@pytest.mark.parametrize("clusters", [10, 200])
def test_failover_graces_are_one_pass_per_plan(clusters: int) -> None:
    spec = synthetic_spec(clusters, 4 * clusters)
    names = sorted(spec.clusters)
    workloads = CountingWorkloads()
    for i, wid in enumerate(sorted(spec.workloads)):
        on = (names[i % clusters], names[(i * 7 + 1) % clusters])
        workloads[wid] = WorkloadPlacement(wid, "Placed", tuple(
            Assignment(ClusterName(c), Flavour("h100-80gb"), 1, 1) for c in sorted(set(on))))
    plan = Plan("c1", workloads)
    desired = DesiredState(render)
    desired.spec, desired.plan = spec, plan
    one_by_one = {c: scanned_grace(spec, plan, c) for c in names}
    CountingWorkloads.passes = 0
    kept = {c: failover_grace(spec, plan, c, None, desired.kept(
        ("failover_graces",), lambda: failover_graces(spec, plan))) for c in names}
    assert kept == one_by_one and len(kept) == clusters
    assert CountingWorkloads.passes == 1  # once for the plan, not once per cluster
    assert failover_grace(spec, plan, names[0], 30.0, {}) == 30.0  # fleet-wide wins
    assert failover_grace(spec, plan, "not-there", None) is None


async def gang_start_lookups(tmp: Path, size: int) -> tuple[int, int]:
    """(passes over the adapters, clusters asked) when a gang about to start on the
    last cluster asks which others still run a copy: the first runs it (its Job and
    pods), no cluster runs the other. The answer is checked against asking every
    cluster, as a reconciler without the index does."""
    from clusters.inventory import WhereRuns
    from tests.support.adapter import until

    async with fleet(tmp, size) as f:
        where = WhereRuns()
        for a in dict(f.adapters).values():  # as the Manager does before each one runs
            a.join(where)
        await f.first.apply([namespace("team-a"), job("gang", team="team-a")], prune=False)
        await until(lambda: bool(f.first.pods("team-a.gang")), 20,
                    what="the gang's pods seen on the first cluster")
        desired = DesiredState(render)
        desired.head = "c1"
        desired.plan = fleet_plan(f.names)
        indexed = ClusterReconciler(desired, f.adapters, {}, where=where)
        every = ClusterReconciler(desired, f.adapters, {})
        starting = {"team-a.gang", "team-a.nowhere"}
        Passes.n = where.asked = 0
        held = indexed._held_elsewhere(f.names[-1], starting)
        counts = (Passes.n, where.asked)
        assert held == every._held_elsewhere(f.names[-1], starting) == {
            "team-a.gang": {f.names[0]}}
        assert indexed._held_elsewhere(f.names[0], starting) == {}  # not itself
        return counts


async def test_a_gang_start_asks_only_the_clusters_the_index_names(tmp_path: Path) -> None:
    small = await gang_start_lookups(tmp_path / "10", 10)
    big = await gang_start_lookups(tmp_path / "200", 200)
    assert small == big == (0, 1)  # no pass over the fleet; one cluster asked
