""""Applied" is said only once the head runs on every cluster this replica applies.

Real Git repo, simulated clusters over HTTP, the real Manager. Before, the rollout
looked only at connected clusters: a cluster still connecting (or, with --shards, every
cluster of a replica that held no shard yet) counted as done, and `appliedCommit`,
Ready, `commit_applied`, the metric and the source guard's base said the head applied
before anything ran there (bench.scale at 300 x 15,000: replica 0 "applied" at 70 s
with 0 of 13,780 workloads Synced). What runs is read from the clusters' own stores.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from controllers.demo.sandbox import running, until
from controllers.runtime.manager import Manager
from tests.integration.test_controller_shards import LEASE_SECONDS, files, images, settings
from tests.support.controller import CLUSTERS, FAST, fast_settings, sandbox

V1 = "registry.internal/serve:v1"


async def test_applied_commit_stays_unset_until_a_late_cluster_is_connected_and_applied(
        tmp_path: Path) -> None:
    late = "us-east-1"
    async with sandbox(tmp_path, files()) as box:
        m = Manager(fast_settings(box), adapter_options=FAST)
        m.clusters.wanted = lambda name: name != late  # as if still connecting
        passes: list[str] = []
        done = m.reconciler.on_done

        def on_done(name: str) -> None:
            passes.append(name)
            done(name)
        m.reconciler.on_done = on_done
        async with running(m):
            others = [n for n in CLUSTERS if n != late]
            await until(lambda: all(images(box).get(n) == V1 for n in others)
                        and set(others) <= set(passes), 30,
                        what="the connected clusters applied, their passes ended")
            await until(lambda: m.desired.plan is not None, 10, what="a plan")
            doc = m.status()
            assert doc["source"]["appliedCommit"] is None  # before: the head, here
            assert m.ready() == (False, "first plan not applied yet")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
                assert (await c.get("/readyz")).status_code == 503
            assert late not in m.adapters and late not in images(box)
            assert m.sources.source.applied is None  # the source guard's base neither
            m.clusters.wanted = lambda _name: True  # connected at last
            await m.sources.retry_connections()
            await until(lambda: m.applied_commit == box.first_commit, 30,
                        what="the head applied once the late cluster runs it")
            assert images(box) == dict.fromkeys(CLUSTERS, V1)
            assert m.status()["source"]["appliedCommit"] == box.first_commit
            assert m.sources.source.applied == box.first_commit


async def test_a_replica_that_holds_no_shard_says_no_commit_applied(
        tmp_path: Path) -> None:
    """--shards 1, two replicas: `a` holds the shard, `b` none. `b` applies nothing,
    so it says no commit applied (before: the head, as soon as it had a plan) -- but
    it is Ready, serving the fleet's status. Once `a` is gone, `b` takes the shard and
    says the head applied only then, with every cluster running it."""
    async with sandbox(tmp_path, files(), home=True) as box, \
            anyio.create_task_group() as tg:
        a = Manager(settings(box, tmp_path, "a", 1), adapter_options=FAST,
                    lease_duration=LEASE_SECONDS)
        stop_a = anyio.Event()

        async def run_a() -> None:
            async with running(a):
                await stop_a.wait()
        tg.start_soon(run_a)
        await until(lambda: a.applied_commit == box.first_commit, 30, what="a applied")
        b = Manager(settings(box, tmp_path, "b", 1), adapter_options=FAST,
                    lease_duration=LEASE_SECONDS)
        seen: list[tuple[str | None, list[int], dict[str, str]]] = []
        told = b.rollout.on_applied

        def on_applied(head: str | None) -> None:
            assert b.shards is not None
            seen.append((head, b.shards.held(), images(box)))
            told(head)
        b.rollout.on_applied = on_applied
        async with running(b):
            assert b.shards is not None
            await until(lambda: b.desired.plan is not None
                        and b.desired.plan.commit == box.first_commit
                        and b.shards is not None and b.shards.rounds > 0
                        and b.shards.following_leader(), 30, what="b has a's plan")
            b.rollout.cluster_done("")  # as its next plan would: nothing more to wait for
            assert b.shards.held() == [] and b.applied_commit is None and seen == []
            assert b.status()["source"]["appliedCommit"] is None
            assert b.ready() == (True, "holds no shard: applies nothing here")
            stop_a.set()  # a is gone: b takes the shard once its Lease lapses
            await until(lambda: b.applied_commit == box.first_commit, 30,
                        what="b applied the head on the shard it took")
            head, held, running_then = seen[0]
            assert (head, held) == (box.first_commit, [0])
            assert running_then == dict.fromkeys(CLUSTERS, V1)
