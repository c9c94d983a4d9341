"""`fleet run --shards N`: a replica connects only to its own shards' clusters (issue 22).

Six simulated clusters (four in shard 0, two in shard 1 of 2), one workload pinned to
each, a management home for the Leases and publications; the real Manager, two of
them. Who talks to which cluster is read from each replica's adapters and, from the
outside, from the simulated API servers' open watches; what a replica knows of the
other shard's clusters comes only from that shard's publication.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import jsonschema

from clusters.shardlease import ShardLease
from controllers.demo.sandbox import Sandbox, until
from controllers.runtime.manager import Manager
from controllers.status.cache import StatusCache
from fleet.shards import shard_of
from tests.fleetdocs import POLICY, cluster, workload
from tests.specs import load_schema
from tests.support.controller import FAST, fast_settings, sandbox

SIX = {"eu-fra-1": "DE", "eu-par-1": "FR", "us-east-1": "US", "eu-ams-1": "NL",
       "us-west-1": "US", "eu-mad-1": "ES"}
SHARDS = 2
LEASE = 4.0


def pinned(on: str, image: str) -> str:
    return workload(f"on-{on}", "web-team", data_class="public", wtype="inference",
                    extra_spec=f"    clusters: [{on}]\n").replace(
        "  replicas: 2\n", "  replicas: 1\n").replace("      count: 8\n", "      count: 1\n"
    ).replace("registry.internal/trainer:v1", image)


def files(image: str = "registry.internal/serve:v1") -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        f"clusters/{name}.yaml": cluster(name, j, (("h100-80gb", 32, 8),))
        for name, j in SIX.items()}
    out["policies/residency.yaml"] = POLICY
    for name in SIX:
        out[f"workloads/web-team/on-{name}.yaml"] = pinned(name, image)
    return out


@asynccontextmanager
async def six(tmp: Path) -> AsyncIterator[Sandbox]:
    async with sandbox(tmp, files(), home=True) as box:
        yield box


async def start(box: Sandbox, stack: AsyncExitStack, tmp: Path, who: str) -> Manager:
    s = fast_settings(box, home=True, leader_elect=True, identity=who,
                      state_dir=tmp / f"state-{who}", shards=SHARDS, failover_grace=0.5)
    return await stack.enter_async_context(box.controller(
        s, adapter_options=FAST, lease_duration=LEASE))


def held(m: Manager) -> list[int]:
    return m.shards.held() if m.shards is not None else []


def own(m: Manager) -> set[str]:
    return {n for n in SIX if shard_of(n, SHARDS) in held(m)}


def images(box: Sandbox) -> dict[str, str]:
    assert box.sim is not None
    return {name: dep["spec"]["template"]["spec"]["containers"][0]["image"]
            for name, sim in box.sim.clusters.items() for dep in sim.objects("Deployment")}


def whole_fleet_synced(doc: dict[str, Any], commit: str | None = None) -> bool:
    rows = [w for w in doc["workloads"] if w["status"] == "Placed"]
    healthy = {r["name"] for r in doc["clusters"] if r["health"] == "Healthy"}
    return len(rows) == len(SIX) and healthy == set(SIX) and all(
        w["sync"] == "Synced" and (commit is None or w.get("commit") == commit)
        for w in rows)


async def roll(box: Sandbox, image: str, *ms: Manager) -> str:
    commit = box.repo.commit({f"workloads/web-team/on-{n}.yaml": pinned(n, image)
                              for n in SIX}, f"image {image}")
    for m in ms:
        m.trigger_fetch()
    return commit


async def test_each_replica_connects_only_to_its_shards_clusters_and_answers_for_all(
        tmp_path: Path) -> None:
    async with six(tmp_path) as box, AsyncExitStack() as stack:
        assert box.sim is not None
        a = await start(box, stack, tmp_path, "a")
        b = await start(box, stack, tmp_path, "b")
        await until(lambda: len(held(a)) == len(held(b)) == 1, 60, what="one shard each")
        await until(lambda: set(a.adapters) == own(a) and set(b.adapters) == own(b), 30,
                    what="each replica connected to its own shard's clusters only")
        assert own(a) | own(b) == set(SIX) and not own(a) & own(b)
        for m in (a, b):  # either replica's status covers the whole fleet
            await until(functools.partial(lambda r: whole_fleet_synced(r.status()), m), 30,
                        what=f"{m.settings.identity} sees the whole fleet synced")
        # From the clusters' side: every open watch of a cluster is its owner's (a
        # second replica watching it too would double them).
        owner = {n: (a if n in own(a) else b) for n in SIX}

        def watches_are_the_owners() -> bool:
            return all(len(box.sim.clusters[n].open_watches)  # type: ignore[union-attr]
                       == len(owner[n].adapters[n].watching()) > 0 for n in SIX)
        await until(watches_are_the_owners, 20, what="each cluster watched by its owner only")
        assert set(a.adapters) == own(a) and set(b.adapters) == own(b)  # still
        for m in (a, b):
            doc = m.status()
            jsonschema.validate(doc, load_schema("status.schema.json"))
            rows = {r["name"]: r for r in doc["clusters"]}
            for n in set(SIX) - own(m):  # the other shard's: from its publication, fresh
                assert rows[n]["health"] == "Healthy" and rows[n]["shardNewsFresh"] is True
                assert rows[n]["shardNewsAt"]
            for n in own(m):
                assert "shardNewsAt" not in rows[n]
        # Capacity as well: the leader plans the other shard's clusters from their nodes;
        # the other replica placed nothing itself (it writes the leader's placements).
        leader, follower = (a, b) if a.may_act() else (b, a)
        other = set(SIX) - own(leader)
        assert all(leader.placement.views()[n].nodes for n in other)
        assert leader.placement.placements_made > 0
        assert follower.placement.placements_made == 0 and follower.desired.plan is not None


async def test_a_silent_shards_clusters_are_held_until_it_is_taken_over(
        tmp_path: Path) -> None:
    """The follower dies, and its shard's Lease is kept by a zombie that renews it but
    publishes nothing (a hung replica): the leader's news of those clusters goes stale
    and they are Unknown -- nothing moves off them, though the failover grace is half a
    second. When the Lease lapses the leader takes the shard and reconciles them."""
    async with six(tmp_path) as box, AsyncExitStack() as stack:
        a = await start(box, stack, tmp_path, "a")
        await until(a.may_act, 30, what="a leads")
        async with AsyncExitStack() as b_stack:
            b = await start(box, b_stack, tmp_path, "b")
            await until(lambda: len(held(a)) == len(held(b)) == 1, 60,
                        what="one shard each")
            await until(lambda: whole_fleet_synced(a.status()), 30, what="all synced")
            lost = held(b)[0]
            gone = sorted(n for n in SIX if shard_of(n, SHARDS) == lost)
            zombie_client = b.shards.leases[lost].client if b.shards else None
        assert zombie_client is not None and a.shards is not None
        # b is gone (no release); a zombie "b" keeps renewing its Lease.
        zombie = ShardLease(zombie_client, "b", lost, count=SHARDS,
                            namespace=a.home.namespace, duration=LEASE, margin=0.5)
        before = images(box)
        plans: list[Any] = []
        cache = StatusCache(a, max_age=1e9, clock=lambda: 0.0)  # rebuilt on change only

        async def cached_health() -> set[str]:
            rows = json.loads((await cache.body()).raw)["clusters"]
            return {r["health"] for r in rows if r["name"] in gone}
        assert await cached_health() == {"Healthy"}
        async with anyio.create_task_group() as tg:
            tg.start_soon(zombie.run)
            shards = a.shards
            await until(lambda: all(shards.news[n][1] is False for n in gone),
                        3 * LEASE + 5, what="the leader's news of the silent shard stale")
            # A while of silence, several re-plans: the workloads stay Placed there.
            for _ in range(3):
                a.trigger_plan()
                await anyio.sleep(LEASE / 2)
                plan = a.desired.plan
                assert plan is not None
                plans.append(plan)
            for plan in plans:
                for n in gone:
                    wp = plan.workloads[f"web-team/on-{n}"]
                    assert wp.status == "Placed" and [x.cluster for x in wp.assignments] \
                        == [n], wp.reasons
            rows = {r["name"]: r for r in a.status()["clusters"]}
            assert all(rows[n]["health"] == "Unknown" for n in gone)
            assert await cached_health() == {"Unknown"}  # the cached document follows
            assert all(rows[n]["shardNewsFresh"] is False for n in gone)
            tg.cancel_scope.cancel()  # the zombie stops renewing: the Lease lapses
        assert images(box) == before  # nothing deleted, nothing moved
        await until(lambda: held(a) == [0, 1], 3 * LEASE + 5, what="a takes the shard")
        await until(lambda: set(a.adapters) == set(SIX), 20, what="a connects its clusters")
        await roll(box, "registry.internal/serve:v2", a)
        await until(lambda: all(images(box).get(n) == "registry.internal/serve:v2"
                                for n in gone), 30, what="the taken clusters reconciled")
