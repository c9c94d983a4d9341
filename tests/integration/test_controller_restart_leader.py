"""Restart safety and leader election, counted in API writes.

- A controller stopped mid-rollout and started again rebuilds its state from the
  clusters: it writes exactly what the first one had not written, and a third start
  writes nothing at all.
- Two controllers with --leader-elect: only the Lease holder writes; when it stops, the
  other takes over without rewriting anything that is already live.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from clusters.leader import LEASE_NAME
from controllers.demo.sandbox import synced, until
from controllers.runtime.manager import Manager
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox, where, writes

JOB_WRITES = "/apis/batch/v1/namespaces/"


def renewals(m: Manager) -> int:
    return m.leadership.keeper.counts().get(LEASE_NAME, {}).get("renewed", 0)




async def test_restart_mid_rollout_writes_only_what_was_missing(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        for sim_cluster in box.sim.clusters.values():
            sim_cluster.faults.fail_next(10_000, 503, prefix=JOB_WRITES)
        async with box.controller(fast_settings(box), adapter_options=FAST) as first:
            # Deployments and Namespaces go in; both Jobs keep failing.
            await until(lambda: synced(first.status()) == (1, 3), 20, what="partial rollout")
            placed = where(first.status())
        for sim_cluster in box.sim.clusters.values():
            sim_cluster.faults.clear()
        async with box.controller(fast_settings(box), adapter_options=FAST) as second:
            await until(lambda: synced(second.status(), box.first_commit) == (3, 3), 20,
                        what="rollout finished after restart")
            assert where(second.status()) == placed  # nothing moved
            assert writes(second) == 2  # the two Jobs, nothing else
        async with box.controller(fast_settings(box), adapter_options=FAST) as third:
            await until(lambda: synced(third.status(), box.first_commit) == (3, 3), 20,
                        what="third start synced")
            assert where(third.status()) == placed
            assert writes(third) == 0


async def test_only_the_leader_writes_and_the_other_takes_over(tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        a_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-a",
                                   state_dir=tmp_path / "state-a")
        b_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-b",
                                   state_dir=tmp_path / "state-b")
        async with box.controller(a_settings, adapter_options=FAST, lease_duration=2.0) as a:
            await until(lambda: synced(a.status(), box.first_commit) == (3, 3), 20,
                        what="leader rollout")
            async with box.controller(b_settings, adapter_options=FAST,
                                      lease_duration=2.0) as b:
                await until(lambda: b.desired.plan is not None, 10, what="follower planned")
                await until(lambda: b.elector is not None, 10, what="follower electing")
                commit = box.repo.commit({"workloads/nlp-team/extra.yaml": None}, "noop")
                a.trigger_fetch()
                b.trigger_fetch()
                await until(lambda: synced(a.status(), commit) == (3, 3), 20,
                            what="leader applied")
                assert a.status()["leader"]["leading"] is True
                assert b.status()["leader"]["leading"] is False
                assert writes(a) > 0
                assert writes(b) == 0
                placed = where(a.status())
                # the leader's Lease is renewed by its keeper thread, not its loop
                await until(lambda: renewals(a) >= 1, 20, what="the keeper renews a's Lease")
                assert renewals(b) == 0  # a follower has nothing to renew
                assert 'aifleet_lease_renewals_total{outcome="renewed"}' in a.metrics_text()
            # a leaves with b stopped; start b again and stop a: b must take over.
            b2_settings = fast_settings(box, home=True, leader_elect=True,
                                        identity="replica-b", state_dir=tmp_path / "state-b")
        async with box.controller(b2_settings, adapter_options=FAST, lease_duration=2.0) as b2:
            await until(lambda: synced(b2.status(), commit) == (3, 3), 20,
                        what="new leader synced")
            assert b2.status()["leader"]["leading"] is True
            assert b2.status()["leader"]["generation"] == 2
            assert where(b2.status()) == placed
            assert writes(b2) == 0  # the live objects were already right


async def test_a_restart_waits_for_a_slow_listing_cluster_and_moves_nothing(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        async with box.controller(fast_settings(box), adapter_options=FAST) as first:
            placed = await rolled_out(first, box)
        slow = placed["nlp-team/train"][0]
        box.sim.clusters[slow].faults.set_latency(2.0, prefix="/apis/batch/v1/jobs")
        async with box.controller(fast_settings(box), adapter_options=FAST,
                                  startup_sync_timeout=0.3) as second:
            await until(lambda: synced(second.status(), box.first_commit) == (3, 3), 20,
                        what="synced after restart")
            assert where(second.status()) == placed
            assert writes(second) == 0


async def test_a_paused_old_leader_cannot_undo_the_new_leaders_writes(tmp_path: Path) -> None:
    from clusters.adapter import ClusterAdapter
    from clusters.apply import Fenced
    from clusters.kubeconfig import ConnectionSpec
    from clusters.leader import LeaderElector
    from tests.support.controller import SERVE, serve_doc

    async with sandbox(tmp_path, home=True) as box:
        assert box.sim is not None
        old = fast_settings(box, home=True, leader_elect=True, identity="old",
                            state_dir=tmp_path / "a")
        async with box.controller(old, adapter_options=FAST, lease_duration=1.0) as a:
            await until(lambda: synced(a.status(), box.first_commit) == (3, 3), 20,
                        what="old leader rollout")
            serve_on = where(a.status())[SERVE][0]
            stale = [o for o in a.adapters[serve_on].applier.desired.values()
                     if o["kind"] == "Deployment"]
        commit = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                                 "serve x2")
        new = fast_settings(box, home=True, leader_elect=True, identity="new",
                            state_dir=tmp_path / "b")
        async with box.controller(new, adapter_options=FAST, lease_duration=1.0) as b:
            await until(lambda: synced(b.status(), commit) == (3, 3), 20,
                        what="new leader applied serve x2")
            assert b.status()["leader"]["generation"] == 2
            # The old leader wakes from a pause still believing it leads (its deadline
            # check passed before the pause) and writes what it had: generation 1. Its
            # fence reads the Lease (wired as the Manager wires it), which names "new".
            assert b.elector is not None
            old_elector = LeaderElector(b.elector.client, "old", namespace=b.elector.namespace)
            old_elector.generation = 1
            paused = await ClusterAdapter.connect(
                ConnectionSpec(serve_on, str(box.kubeconfig), serve_on), FAST)
            async with anyio.create_task_group() as tg:
                tg.start_soon(paused.run)
                await paused.wait_synced(10)
                paused.applier.generation = 1
                paused.applier.may_write = lambda: True
                paused.applier.lease_check = old_elector.confirm
                result = await paused.apply(stale, prune=False)
                tg.cancel_scope.cancel()
            await paused.aclose()
            assert result.failed and isinstance(result.failed[0][1], Fenced)
            dep = next(o for o in box.sim.clusters[serve_on].objects("Deployment")
                       if o["metadata"]["name"] == "serve")
            assert dep["spec"]["replicas"] == 2
