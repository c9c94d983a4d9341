"""The management cluster (the Lease's home) down and up: leadership lapses and comes
back, and nothing that ran through the outage is moved or restarted because of it.

A leader that cannot renew its Lease stops acting (it writes nothing), but it keeps
planning as a follower does. When it leads again it rebuilds its previous plan from
what runs (`Manager.replan`, a rebuild): a gang that failed over while its cluster was
away, and whose cluster came back while nobody led, runs on two clusters at that
moment. The rebuild takes the last plan's placement for it (`_prefer_last_plan`): the
failover's target keeps the gang, the returned cluster's copy is the stale one.
The real controller with leader election in a simulated management cluster.
"""

from __future__ import annotations

from pathlib import Path

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import until
from controllers.runtime.manager import Manager
from fleet.ids import ClusterName
from fleet.safety import REACHABLE
from tests.integration.test_controller_unreachable_return import uids
from tests.support.controller import (
    FAST,
    TRAIN,
    fast_settings,
    rolled_out,
    sandbox,
    where,
)

EU = ("eu-fra-1", "eu-par-1")


def sees(m: Manager, cluster: str, workload: str) -> bool:
    """The controller's informers list `workload` on `cluster`, and its current plan
    was made while that cluster answered."""
    a = m.adapters.get(cluster)
    saw = m.desired.plan_saw or {}
    return a is not None and a.synced.is_set() and saw.get(ClusterName(cluster)) in REACHABLE \
        and workload.replace("/", ".", 1) in a.live_workloads()


async def test_a_new_leadership_keeps_a_failed_over_gang_where_the_last_plan_put_it(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        assert box.sim is not None and box.home is not None
        sim, home = box.sim, box.home.clusters["home"]
        settings = fast_settings(box, home=True, leader_elect=True, identity="a",
                                 failover_grace=1.0)
        async with box.controller(settings, adapter_options=FAST, lease_duration=2.0) as m:
            await until(m.may_act, 20, what="leading")
            placed = await rolled_out(m, box)
            away = placed[TRAIN][0]
            other = next(c for c in EU if c != away)
            # Ties break by cluster name: a rebuild that took only what runs (the gang on
            # both) would pick the returned cluster, so the test can tell.
            assert away == min(EU)
            await sim.clusters[away].down()
            await until(lambda: TRAIN in workloads_on(sim, other), 30, what="failed over")
            target_uid = uids(sim, other)[TRAIN]
            # The Lease's home goes away: leadership lapses, nothing is written.
            await home.down()
            await until(lambda: not m.may_act(), 20, what="leadership lapsed")
            # The gang's old cluster comes back while nobody leads: its copy stays
            # there (a follower deletes nothing), and the follower's plan sees it.
            await sim.clusters[away].up()
            await until(lambda: sees(m, away, TRAIN), 30, what="returned cluster seen")
            assert TRAIN in workloads_on(sim, away) and TRAIN in workloads_on(sim, other)
            assert where(m.status())[TRAIN] == [other]
            # Leading again: the rebuild from what runs sees the gang on both clusters.
            await home.up()
            await until(m.may_act, 20, what="leading again")
            await until(lambda: sum(TRAIN in workloads_on(sim, c) for c in EU) == 1, 30,
                        what="the gang on one cluster again")
            # The failover's target kept it: never moved back, never restarted.
            assert TRAIN not in workloads_on(sim, away)
            assert uids(sim, other).get(TRAIN) == target_uid
            assert where(m.status())[TRAIN] == [other]
