"""`fleet run --shards N`: replicas split the clusters, counted in API writes.

Three clusters, one pinned workload on each, a management home for the Leases; the
real Manager, two or three of them, each with its own state dir. Who wrote where is
counted from each replica's own requests to each simulated cluster (`apply` and
`delete` calls of its adapters), never from timing.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import jsonschema
import pytest
import structlog

from clusters.apply import Fenced
from clusters.client import LEASE
from clusters.leader import LEASE_NAME, LeaderElector
from clusters.shardlease import ShardLease
from controllers.demo.sandbox import Sandbox, until
from controllers.persist import shardstatus, sharedplan
from controllers.runtime import control
from controllers.runtime.manager import Manager
from controllers.status.cache import StatusCache
from fleet.ids import ClusterName, Flavour
from fleet.placement.types import Assignment
from fleet.planning import placements
from fleet.shards import lease_name, shard_of
from tests.fleetdocs import POLICY, cluster, workload
from tests.specs import load_schema
from tests.support.controller import CLUSTERS, FAST, fast_settings, sandbox
from tests.support.logs import logged

LEASE_SECONDS = 2.0
ROOT = Path(__file__).resolve().parents[2]


def pinned(name: str, on: str, image: str = "registry.internal/serve:v1") -> str:
    return workload(name, "web-team", data_class="public", wtype="inference",
                    extra_spec=f"    clusters: [{on}]\n").replace(
        "  replicas: 2\n", "  replicas: 1\n").replace("      count: 8\n", "      count: 1\n"
    ).replace("registry.internal/trainer:v1", image)


def files(image: str = "registry.internal/serve:v1") -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        f"clusters/{name}.yaml": cluster(name, j, (("h100-80gb", 32, 8),))
        for name, j in CLUSTERS.items()}
    out["policies/residency.yaml"] = POLICY
    for name in CLUSTERS:
        out[f"workloads/web-team/on-{name}.yaml"] = pinned(f"on-{name}", name, image)
    return out


def settings(box: Sandbox, tmp: Path, who: str, shards: int) -> Any:
    return fast_settings(box, home=True, leader_elect=True, identity=who,
                         state_dir=tmp / f"state-{who}", shards=shards)


@asynccontextmanager
async def fleet_of(tmp: Path, shards: int) -> AsyncIterator[tuple[Sandbox, AsyncExitStack]]:
    """The sandbox, and a stack to start replicas on (`start`)."""
    async with sandbox(tmp, files(), home=True) as box, AsyncExitStack() as stack:
        yield box, stack


async def start(box: Sandbox, stack: AsyncExitStack, tmp: Path, who: str,
                shards: int, lease: float = LEASE_SECONDS) -> Manager:
    return await stack.enter_async_context(box.controller(
        settings(box, tmp, who, shards), adapter_options=FAST, lease_duration=lease))


def writes_on(m: Manager) -> dict[str, int]:
    return {name: a.stats.calls.get("apply", 0) + a.stats.calls.get("delete", 0)
            for name, a in m.adapters.items()}


def images(box: Sandbox) -> dict[str, str]:
    assert box.sim is not None
    out = {}
    for name, sim in box.sim.clusters.items():
        for dep in sim.objects("Deployment"):
            out[name] = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    return out


def synced_everywhere(doc: dict[str, Any], commit: str) -> bool:
    rows = [w for w in doc["workloads"] if w["status"] == "Placed"]
    return len(rows) == len(CLUSTERS) and all(
        w["sync"] == "Synced" and w.get("commit") == commit for w in rows)


def balanced(*ms: Manager) -> bool:
    held = [m.shards.held() if m.shards is not None else [] for m in ms]
    flat = sorted(s for h in held for s in h)
    return all(held) and flat == sorted(set(flat)) and len(flat) == max(
        m.settings.shards for m in ms)


async def roll(box: Sandbox, image: str, *ms: Manager) -> str:
    """Commit a new image for every workload; every replica fetches it."""
    commit = box.repo.commit({f"workloads/web-team/on-{n}.yaml": pinned(f"on-{n}", n, image)
                              for n in CLUSTERS}, f"image {image}")
    for m in ms:
        m.trigger_fetch()
    # every cluster (one still without the workload must not pass as rolled out)
    await until(lambda: images(box) == dict.fromkeys(CLUSTERS, image), 30,
                what=f"{image} everywhere")
    return commit


async def test_each_cluster_is_written_by_exactly_the_replica_holding_its_shard(
        tmp_path: Path) -> None:
    async with fleet_of(tmp_path, 3) as (box, stack):
        # A Lease long enough that a loaded machine never lets one lapse mid-test.
        a, b, c = [await start(box, stack, tmp_path, who, 3, lease=6.0) for who in "abc"]
        await until(lambda: balanced(a, b, c), 60, what="one shard each")
        owner = {s: m.settings.identity for m in (a, b, c)
                 for s in (m.shards.held() if m.shards else [])}
        await until(lambda: a.desired.plan is not None and b.desired.plan is not None
                    and c.desired.plan is not None, 20, what="every replica planned")
        before = {m.settings.identity: writes_on(m) for m in (a, b, c)}
        commit = await roll(box, "registry.internal/serve:v2", a, b, c)
        for m in (a, b, c):  # any replica answers for the whole fleet
            await until(functools.partial(lambda r: synced_everywhere(r.status(), commit), m),
                        20, what=f"{m.settings.identity} sees every shard synced")
        assert owner == {s: m.settings.identity for m in (a, b, c)
                         for s in (m.shards.held() if m.shards else [])}  # none moved
        for m in (a, b, c):
            after = writes_on(m)
            for name in CLUSTERS:
                wrote = after.get(name, 0) - before[m.settings.identity].get(name, 0)
                mine = owner[shard_of(name, 3)] == m.settings.identity
                assert (wrote > 0) == mine, (m.settings.identity, name, wrote)
        for m in (a, b, c):  # summed over the replicas, each shard is held once
            text = m.metrics_text()
            for shard in range(3):
                mine = owner[shard] == m.settings.identity
                assert f'aifleet_shard_held{{shard="{shard}"}} {1.0 if mine else 0.0}' in text
        leader = next(m for m in (a, b, c) if m.may_act())
        code, answer = await control.act(leader, "suspend", {"cluster": "eu-fra-1"})
        assert code == 409 and "--shards" in answer["error"]  # not shared yet: refused
        jsonschema.validate(c.status(), load_schema("status.schema.json"))
        # c learns who holds the others' shards at its next read of the Leases: a shard
        # that changed hands just before the roll may still show its first holder
        # (CI: a took shard 0 first and gave it to b a second before the roll).
        expected = {n: owner[shard_of(n, 3)] for n in CLUSTERS}
        await until(lambda: shard_owners(c.status()) == expected, 20,
                    what="c's status names each cluster's shard owner")


def shard_owners(doc: dict[str, Any]) -> dict[str, Any]:
    rows = {r["name"]: r for r in doc["clusters"]}
    return {n: rows[n]["shardOwner"] for n in CLUSTERS}


async def test_a_shard_let_go_sees_its_new_holders_writes_as_no_drift(
        tmp_path: Path) -> None:
    """A replica stays connected to a shard's clusters for a Lease duration after it
    lets the shard go. The new holder's writes there are not drift: the replica that
    let go reports none, records no DriftCorrected and corrects nothing (CI once showed
    a's drift reports, each a DriftCorrected in the ledger, for b's first writes)."""
    async with fleet_of(tmp_path, 2) as (box, stack):
        a = await start(box, stack, tmp_path, "a", 2, lease=10.0)
        await until(lambda: a.shards is not None and a.shards.held() == [0, 1], 30,
                    what="a holds both shards")
        await until(lambda: images(box) == dict.fromkeys(CLUSTERS, "registry.internal/serve:v1"),
                    30, what="a applied everything")
        b = await start(box, stack, tmp_path, "b", 2, lease=10.0)
        await until(lambda: balanced(a, b), 60, what="one shard each")
        gone = [n for n in CLUSTERS if a.shards is not None and not a.shards.owns(n)]
        assert gone and all(n in a.adapters for n in gone)  # still connected
        drift_before = len(a.drift)
        commit = await roll(box, "registry.internal/serve:v2", a, b)

        def seen_by_a() -> bool:  # a's informers saw b's writes on the shard it let go
            return all(any(o.get("kind") == "Deployment" and o["spec"]["template"]["spec"][
                "containers"][0]["image"] == "registry.internal/serve:v2"
                for o in a.adapters[n].applier.live.values()) for n in gone)
        await until(seen_by_a, 20, what="a saw b's writes")
        await until(lambda: synced_everywhere(b.status(), commit), 20,
                    what="b sees every shard synced")
        assert [d for d in a.drift[drift_before:] if d.cluster in gone] == []
        assert not [e for e in a.feed.document()["events"]
                    if e["event"] == "DriftCorrected" and e.get("cluster") in gone]
        assert all(a.adapters[n].applier.corrections == 0 for n in gone if n in a.adapters)


async def test_a_dead_replicas_clusters_are_taken_over_after_its_lease_expires(
        tmp_path: Path) -> None:
    async with fleet_of(tmp_path, 2) as (box, stack):
        a = await start(box, stack, tmp_path, "a", 2)
        async with AsyncExitStack() as b_stack:
            b = await start(box, b_stack, tmp_path, "b", 2)
            await until(lambda: balanced(a, b), 30, what="one shard each")
            await roll(box, "registry.internal/serve:v2", a, b)
            lost = b.shards.held() if b.shards else []
            b.leadership.release_on_stop = False  # stands in for a SIGKILL
        # b is gone without letting its Lease go (as after SIGKILL): a takes its
        # shard once the Lease expires, and applies the next commit there too.
        await until(lambda: a.shards is not None and a.shards.held() == [0, 1], 30,
                    what="a holds both shards")
        before = writes_on(a)
        await roll(box, "registry.internal/serve:v3", a)
        after = writes_on(a)
        taken = [n for n in CLUSTERS if shard_of(n, 2) in lost]
        assert taken and all(after[n] > before.get(n, 0) for n in taken)
        # The takeover and its phases, in order, as status shows them (bench.shards
        # prints them): b's Lease lapsed, a took it, connected, listed, reconciled.
        assert a.shards is not None
        await until(lambda: bool(a.shards and a.shards.takeovers
                                 and a.shards.takeovers[-1].done), 10,
                    what="the takeover's phases done")
        took = [t.as_json() for t in a.shards.takeovers]
        assert [(t["shard"], t["previous"], t["clusters"]) for t in took] == \
            [(lost[0], "b", len(taken))]
        phases = [took[0][k] for k in ("expiredAt", "acquiredAt", "connectedAt",
                                        "listedAt", "reconciledAt")]
        assert all(phases) and phases == sorted(phases)
        assert phases[1] <= took[0]["firstReconciledAt"] <= phases[-1]
        assert a.status()["shards"]["takeovers"] == took


async def test_a_clean_stop_hands_its_shards_and_leadership_over_at_once(
        tmp_path: Path) -> None:
    """A replica stopped cleanly (SIGTERM: its Manager's task group cancelled) lets its
    Leases go once nothing of it writes any more, and the other takes them at once:
    the Leases last 300 s, so a takeover within the test's time is the release's
    doing, never a lapse. The survivor leads and applies the next commit on the
    stopped replica's clusters."""
    long = 300.0
    async with fleet_of(tmp_path, 2) as (box, _stack), anyio.create_task_group() as tg:
        with structlog.testing.capture_logs() as logs:
            a, stop_a, a_stopped = await apart(tg, box, tmp_path, "a", lease=long)
            await until(lambda: a.elector is not None and a.elector.is_leader, 30,
                        what="a leads")
            b, stop_b, _ = await apart(tg, box, tmp_path, "b", lease=long)
            await until(lambda: a.shards is not None and b.shards is not None
                        and bool(a.shards.held())
                        and sorted(a.shards.held() + b.shards.held()) == [0, 1], 60,
                        what="the shards held, one by a at least")
            await roll(box, "registry.internal/serve:v2", a, b)
            assert a.shards is not None
            lost = a.shards.held()
            namespace = a.home.namespace
            stop_a.set()
            await a_stopped.wait()  # a's cleanup done
        released = {(e["event"], e.get("lease"), e.get("shard")) for e in logs
                    if e.get("event") in ("leader_lease_released", "shard_released")
                    and e.get("identity") == "a"}
        assert released == {("leader_lease_released", LEASE_NAME, None)} | {
            ("shard_released", None, s) for s in lost}
        client = b.home.client()
        assert client is not None
        for name in [LEASE_NAME, *(lease_name(s) for s in lost)]:
            spec = (await client.request("GET", LEASE.item(name, namespace),
                                         verb="get"))["spec"]
            # let go (b may have taken it already): never a's any more
            assert spec["holderIdentity"] in ("", "b")
            if spec["holderIdentity"] == "":
                assert spec["leaseDurationSeconds"] == 1
        await until(lambda: b.shards is not None and b.shards.held() == [0, 1]
                    and b.leadership.may_act(), 30, what="b holds both shards and leads")
        assert b.shards is not None and not b.shards.takeovers  # no Lease lapsed
        before = writes_on(b)
        await roll(box, "registry.internal/serve:v3", b)
        after = writes_on(b)
        taken = [n for n in CLUSTERS if shard_of(n, 2) in lost]
        assert taken and all(after[n] > before.get(n, 0) for n in taken)
        stop_b.set()


async def apart(tg: anyio.abc.TaskGroup, box: Sandbox, tmp: Path, who: str, *,
                lease: float) -> tuple[Manager, anyio.Event, anyio.Event]:
    """Replica `who` of 2 shards running in a task of its own (stopped, in any order,
    by setting the first Event; the second is set once it stopped)."""
    stop, stopped = anyio.Event(), anyio.Event()
    started: list[Manager] = []

    async def run() -> None:
        async with box.controller(settings(box, tmp, who, 2), adapter_options=FAST,
                                  lease_duration=lease) as m:
            started.append(m)
            await stop.wait()
        stopped.set()
    tg.start_soon(run)
    await until(lambda: bool(started), 30, what=f"{who} started")
    return started[0], stop, stopped


async def test_a_follower_says_nothing_pending_before_it_has_the_leaders_plan(
        tmp_path: Path) -> None:
    """A replica that does not lead has no plan of its own: until the leader's plan of
    its commit is published it logs and records no workload as Pending (it used to log
    every workload); with that plan, it says Pending what the leader left Pending, once."""
    async with sandbox(tmp_path, files(), home=True) as box:
        with structlog.testing.capture_logs() as logs:
            async with box.controller(settings(box, tmp_path, "b", 2), adapter_options=FAST,
                                      lease_duration=LEASE_SECONDS) as b, \
                    anyio.create_task_group() as tg:
                await until(lambda: b.home.client() is not None, 30,
                            what="b's home client")
                client = b.home.client()
                assert client is not None
                # The leader is elsewhere, and publishes nothing yet.
                leader = LeaderElector(client, "leader-elsewhere",
                                       namespace=b.home.namespace, duration=LEASE_SECONDS,
                                       margin=0.5)
                assert await leader.try_acquire_or_renew()
                tg.start_soon(leader.run)
                await until(lambda: logged(logs, "placement_reconciled") >= 2, 30,
                            what="b planned twice")
                assert b.desired.plan is not None and not b.leadership.may_act()
                assert {wp.status for wp in b.desired.plan.workloads.values()} == {"Pending"}
                assert logged(logs, "workload_pending") == 0
                assert not [e for e in b.feed.document()["events"]
                            if e.get("event") == "Pending"]
                # The leader's plan of b's commit: two placed, one left Pending.
                plan = b.desired.plan
                left = sorted(plan.workloads)[0]
                placed = {wid: (Assignment(ClusterName(wid.split("/on-")[1]),
                                           Flavour("h100-80gb"), 1, 1),)
                          for wid in plan.workloads if wid != left}
                assert await sharedplan.write(client, b.home.namespace, placed, plan.commit)
                await until(lambda: b.shards is not None and b.shards.following_leader(),
                            30, what="b follows the leader's plan")
                await until(lambda: logged(logs, "workload_pending") >= 1, 10,
                            what="the leader's Pending workload said")
                assert [e["workload"] for e in logs if e.get("event") == "workload_pending"] \
                    == [left]
                tg.cancel_scope.cancel()


async def test_a_shard_renewed_late_keeps_its_clusters_connected(tmp_path: Path) -> None:
    """A renew that comes late (the loop stalled) loses the shard until the next round
    re-takes it at the same generation: its clusters stay connected meanwhile (the same
    adapters, not listed again), and nothing is written there while it is not held."""
    async with sandbox(tmp_path, files(), home=True) as box, \
            box.controller(settings(box, tmp_path, "a", 2), adapter_options=FAST,
                           lease_duration=LEASE_SECONDS) as a:
        shards = a.shards
        assert shards is not None
        await until(lambda: shards.held() == [0, 1], 30, what="a holds both shards")
        await roll(box, "registry.internal/serve:v2", a)
        mine = [n for n in CLUSTERS if shard_of(n, 2) == 1]
        adapters = {n: a.adapters[n] for n in mine}
        generation = shards.leases[1].generation
        shards.leases[1]._deadline = 0.0  # its renew deadline passed (a late renew)
        assert not shards.owns(mine[0])
        assert not adapters[mine[0]].applier.may_write()
        # the connect loop sees it lost (a release pass without it) ...
        await until(lambda: shards._connected_for is not None and 1 not in dict(
            shards._connected_for), 10, what="the loss seen by the connect loop")
        # ... and the next round takes it again, at the same generation
        await until(lambda: shards.held() == [0, 1], 10, what="shard 1 re-taken")
        assert shards.leases[1].generation == generation
        assert {n: a.adapters.get(n) for n in mine} == adapters


async def test_a_replica_that_lost_its_shard_lease_writes_nothing_there(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, files(), home=True) as box:
        assert box.home is not None and box.sim is not None
        async with box.controller(settings(box, tmp_path, "a", 2), adapter_options=FAST,
                                  lease_duration=LEASE_SECONDS) as a:
            await until(lambda: a.shards is not None and a.shards.held() == [0, 1], 30,
                        what="a holds both shards")
            await roll(box, "registry.internal/serve:v2", a)
            assert a.shards is not None
            victim = next(n for n in CLUSTERS if shard_of(n, 2) == 1)
            adapter = a.adapters[victim]  # kept: a may disconnect it once the Lease is lost
            stale = [o for o in adapter.applier.desired.values()
                     if o["kind"] == "Deployment"]
            # Another replica takes shard 1 while a is paused (it still believes it
            # holds it: its deadline has not passed).
            lease_client = a.shards.leases[1].client
            path = LEASE.item(lease_name(1), a.home.namespace)
            lease = await lease_client.request("GET", path, verb="get")
            spec = lease["spec"]
            spec["holderIdentity"] = "intruder"
            spec["leaseTransitions"] = int(spec["leaseTransitions"]) + 1
            await lease_client.request("PUT", path, verb="update", body=lease)
            # ... and keeps it: the intruder renews, and writes nothing itself.
            intruder = ShardLease(lease_client, "intruder", 1, count=2,
                                  namespace=a.home.namespace,
                                  duration=LEASE_SECONDS, margin=0.5)
            async with anyio.create_task_group() as tg:
                tg.start_soon(intruder.run)
                await anyio.sleep(a.shards.leases[1].confirm_every + 0.1)  # last read ages
                edited = [{**o, "spec": {**o["spec"], "replicas": 3}} for o in stale]
                result = await adapter.apply(edited, prune=False)
                assert result.failed and all(isinstance(e, Fenced) for _k, e in result.failed)
                dep = next(iter(box.sim.clusters[victim].objects("Deployment")))
                assert dep["spec"]["replicas"] == 1
                # and it lets the cluster go: disconnected, nothing written from now on
                await until(lambda: a.shards is not None and a.shards.held() == [0], 10,
                            what="a lets the shard go")
                await until(lambda: victim not in a.adapters, 10,
                            what="a disconnects the cluster of the shard it lost")
                await roll_other(box, a, victim)
                assert victim not in a.adapters
                tg.cancel_scope.cancel()


async def roll_other(box: Sandbox, a: Manager, victim: str) -> None:
    """Commit a change on every cluster; wait until a applied it on its own shard."""
    image = "registry.internal/serve:v9"
    box.repo.commit({f"workloads/web-team/on-{n}.yaml": pinned(f"on-{n}", n, image)
                     for n in CLUSTERS}, "image v9")
    a.trigger_fetch()
    others = [n for n in CLUSTERS if n != victim and shard_of(n, 2) == 0]
    await until(lambda: all(images(box).get(n) == image for n in others), 30,
                what="v9 on a's own shard")
    assert images(box)[victim] != image  # its holder (the intruder) wrote nothing


@pytest.mark.parametrize(("flags", "said"), [
    (["--shards", "2"], "--shards needs --leader-elect"),
    (["--shards", "2", "--leader-elect", "--home-context", "home", "--ledger"],
     "--shards with --ledger is not supported yet"),
], ids=["without-leader-election", "with-the-ledger"])
def test_fleet_run_refuses_shards_it_cannot_keep_in_one_line(flags: list[str],
                                                             said: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", "x",
                        *flags], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert said in r.stderr


async def test_no_shard_is_held_while_a_replica_of_another_shard_count_runs(
        tmp_path: Path) -> None:
    """A rollout from --shards 3 to 2: the old split's live Lease keeps the new replica
    off every shard (two splits would give a cluster a writer under each)."""
    async with fleet_of(tmp_path, 3) as (box, stack):
        old = await stack.enter_async_context(box.controller(
            settings(box, tmp_path, "old", 3), adapter_options=FAST, lease_duration=6.0))
        await until(lambda: old.shards is not None and old.shards.held() == [0, 1, 2],
                    30, what="the old replica holds its three shards")
        new = await stack.enter_async_context(box.controller(
            settings(box, tmp_path, "new", 2), adapter_options=FAST, lease_duration=6.0))
        assert new.shards is not None
        await until(lambda: new.shards is not None and new.shards.rounds >= 3, 60,
                    what="three rounds of the new replica")
        assert new.shards.held() == []
        assert new.adapters == {}  # holding no shard, it connects to no cluster
        assert new.status()["shards"]["otherShardCounts"]


async def test_a_replicas_cached_status_follows_another_shards_results(
        tmp_path: Path) -> None:
    """The status cache of a sharded replica (issue 22): the same document as one built
    whole, shard fields included, and built again when another shard's published
    results change (they come into `live`), not otherwise on their account."""
    async with fleet_of(tmp_path, 2) as (box, stack):
        a, b = [await start(box, stack, tmp_path, who, 2, lease=6.0) for who in "ab"]
        await until(lambda: balanced(a, b), 30, what="one shard each")
        commit = await roll(box, "registry.internal/serve:v2", a, b)
        await until(lambda: synced_everywhere(a.status(), commit), 20,
                    what="a sees every shard synced")
        assert b.shards is not None
        theirs = b.shards.held()[0]
        cluster = next(n for n in CLUSTERS if shard_of(n, 2) == theirs)
        cache = StatusCache(a, max_age=1e9, clock=lambda: 0.0)  # the fingerprint decides
        doc = json.loads((await cache.body()).raw)
        whole = a.status()
        assert {k: v for k, v in doc.items() if k != "controller"} == {
            k: v for k, v in whole.items() if k != "controller"}
        assert doc["shards"]["held"] == (a.shards.held() if a.shards else None)
        jsonschema.validate(doc, load_schema("status.schema.json"))
        # b's results unchanged: a's polls of them (every second) leave `live` as it
        # is (each write would count as a change, and the document be built again).
        client = a.home.client()
        assert client is not None and a.shards is not None
        await a.shards._read_others(client)
        before = {k: v for k, v in a.live.items() if shard_of(k[0], 2) == theirs}
        await a.shards._read_others(client)
        after = {k: v for k, v in a.live.items() if shard_of(k[0], 2) == theirs}
        assert before and after.keys() == before.keys()
        assert all(after[k] is v for k, v in before.items())
        # b's shard reports a failure there (as b would publish it): a's document shows it.
        mine = {k: replace(v, sync="Failed", message="refused: the test")
                for k, v in b.live.items() if shard_of(k[0], 2) == theirs}
        await shardstatus.write(client, b.home.namespace, theirs,
                                shardstatus.encode("b", mine))
        builds = cache.builds

        async def shows_failed() -> bool:
            rows = json.loads((await cache.body()).raw)["workloads"]
            row = next(w for w in rows if w["id"] == f"web-team/on-{cluster}")
            return bool(row["sync"] == "Failed")
        for _ in range(100):
            if await shows_failed():
                break
            await anyio.sleep(0.2)
        else:
            raise AssertionError("a's cached document never showed b's failure")
        assert cache.builds > builds


async def leader_elsewhere(box: Sandbox) -> None:
    """The leader Lease held by another process, for an hour: one that never publishes
    a plan unless the test does."""
    from datetime import UTC, datetime

    from clusters.leader import LEASE_NAME
    from tests.support.home import NS, create_namespace, home_request

    await create_namespace(box)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await home_request(box, "POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": NS},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now, "leaseTransitions": 1}})


async def test_a_replica_waiting_for_the_leaders_plan_records_no_decisions(
        tmp_path: Path) -> None:
    """Until the leader publishes its plan, a replica that does not lead writes a
    stand-in plan (every workload Pending, "not placed by the leader's plan"): none of
    that is a decision, so none of it is logged, fed or recorded (at 50,000 workloads
    each replica logged 50,000 `workload_pending` warnings at every start)."""
    async with sandbox(tmp_path, files(), home=True) as box:
        await leader_elsewhere(box)
        async with box.controller(settings(box, tmp_path, "a", 1), adapter_options=FAST,
                                  lease_duration=LEASE_SECONDS) as a:
            await until(lambda: a.placement.records_held >= 1, 30,
                        what="a stand-in plan written")
            plan = a.desired.plan
            assert plan is not None and not a.may_act()
            assert {wp.status for wp in plan.workloads.values()} == {"Pending"}
            events = [e["event"] for e in a.feed.document()["events"]]
            assert "Pending" not in events and "Placed" not in events


async def test_the_leaders_published_plan_is_decoded_only_when_it_changed(
        tmp_path: Path) -> None:
    """A replica that does not lead looks at the leader's published placements every
    second, by their ConfigMap's metadata alone: it GETs them whole only when the
    ConfigMap was written (counted at the simulated home: seconds of an unchanged plan
    cost no full GET, where each used to fetch 183 KB at 50,000 workloads), and decodes
    them (~2.2 MB of JSON) only when what is stored changed. A new publication is
    fetched and decoded at the first look after it, as every look fetched before."""
    from controllers.persist import sharedplan
    from tests.support.home import NS

    async with sandbox(tmp_path, files(), home=True) as box:
        await leader_elsewhere(box)
        assert box.home is not None
        home = box.home.clusters["home"]
        path = f"/api/v1/namespaces/{NS}/configmaps/{sharedplan.NAME}"

        def gets(metadata_only: bool) -> int:
            return home.requests[("GET", path, metadata_only)]
        async with box.controller(settings(box, tmp_path, "a", 1), adapter_options=FAST,
                                  lease_duration=LEASE_SECONDS) as a:
            shards = a.shards
            assert shards is not None
            await until(lambda: a.desired.head is not None, 30, what="a commit fetched")
            client = a.home.client()
            assert client is not None
            assert await sharedplan.write(client, a.home.namespace, {}, a.desired.head)
            await until(lambda: shards.followed == a.desired.head, 30,
                        what="the leader's plan followed")
            assert shards.plan_decodes == 1 and shards.plan_fetches == 1
            full, looks, start = gets(False), gets(True), shards.plan_reads
            await until(lambda: shards.plan_reads >= start + 5, 30, what="five reads")
            assert gets(False) == full  # five seconds of an unchanged plan: no full GET
            assert gets(True) >= looks + 5  # each a metadata-only GET
            assert shards.plan_decodes == 1 and shards.plan_fetches == 1
            before = shards.plan_reads
            assert await sharedplan.write(client, a.home.namespace, {}, "another-commit")
            await until(lambda: shards.plan_decodes == 2, 30, what="the change decoded")
            # at the first look after the write (one in flight during it may miss it)
            assert shards.plan_reads - before <= 2
            assert shards.plan_fetches == 2 and gets(False) == full + 1
            # The leader's plan of this commit, then one workload of it moved: one part
            # fetched and decoded, and the plan made from the workload that changed.
            head, own = a.desired.head, a.desired.plan
            assert own is not None
            h100 = Flavour("h100-80gb")
            placed = {wid: (Assignment(ClusterName(wid.split("/on-")[1]), h100, 1, 1),)
                      for wid in own.workloads}
            assert await sharedplan.write(client, a.home.namespace, placed, head)
            await until(lambda: shards.followed == head and a.desired.plan is not None and
                        placements(a.desired.plan) == placed, 30, what="followed")
            reader, made = shards._plan_reader, shards._borrowing.incremental
            decoded = reader.parts_decoded
            moved = sorted(placed)[0]
            placed[moved] = (Assignment(ClusterName(moved.split("/on-")[1]), h100, 2, 1),)
            assert await sharedplan.write(client, a.home.namespace, placed, head)
            await until(lambda: a.desired.plan is not None and
                        placements(a.desired.plan) == placed, 30, what="the move followed")
            assert reader.parts_decoded == decoded + 1 and shards._borrowing.incremental > made


async def ghost_for_shard_1(a: Manager) -> tuple[ShardLease, list[str]]:
    """`a` lets shard 1 (of 2) go to a holder "ghost", returned not yet running (its
    `run` takes and renews the Lease), with the clusters of that shard."""
    shards = a.shards
    assert shards is not None
    client = shards.leases[1].client
    await shards.leases[1].release()
    ghost = ShardLease(client, "ghost", 1, count=2, namespace=a.home.namespace,
                       duration=LEASE_SECONDS, margin=0.5)
    return ghost, [n for n in CLUSTERS if shard_of(n, 2) == 1]


async def until_ghost_holds(a: Manager, theirs: list[str]) -> None:
    shards = a.shards
    assert shards is not None
    await until(lambda: shards.held() == [0] and shards.owners.get(1) == "ghost"
                and not any(n in a.adapters for n in theirs), 20,
                what="ghost holds shard 1, a let its clusters go")


async def test_a_shard_made_ready_is_connected_but_not_written_until_taken(
        tmp_path: Path) -> None:
    """A replica gets ready for a shard whose holder missed a renew (`fleet.shardwatch`):
    it connects to its clusters and lists them, and writes nothing there while another
    holds the Lease; when the holder lived on after all, it lets them go again."""
    async with sandbox(tmp_path, files(), home=True) as box, \
            box.controller(settings(box, tmp_path, "a", 2), adapter_options=FAST,
                           lease_duration=LEASE_SECONDS) as a:
        shards = a.shards
        assert shards is not None and box.sim is not None
        await until(lambda: shards.held() == [0, 1], 30, what="a holds both shards")
        await roll(box, "registry.internal/serve:v2", a)
        # shard 1 goes to another holder, which keeps renewing it
        ghost, theirs = await ghost_for_shard_1(a)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ghost.run)
            await until_ghost_holds(a, theirs)
            shards._get_ready({1})  # as if ghost had missed a renew
            await until(lambda: all(n in a.adapters and a.adapters[n].synced.is_set()
                                    for n in theirs), 10, what="shard 1 connected, listed")
            assert not any(shards.owns(n) for n in theirs)
            assert not any(a.adapters[n].applier.may_write() for n in theirs)
            # a commit: a applies it on its own shard, nothing on the ready one
            await roll_other(box, a, theirs[0])
            assert all(writes_on(a)[n] == 0 for n in theirs)
            assert all(images(box)[n] == "registry.internal/serve:v2" for n in theirs)
            # ghost lived on: the clusters are let go a Lease duration later
            await until(lambda: not any(n in a.adapters for n in theirs), 10,
                        what="the ready shard's clusters let go")
            assert shards.held() == [0]
            tg.cancel_scope.cancel()


async def test_a_shard_made_ready_replans_nothing_until_taken(tmp_path: Path) -> None:
    """Connecting and listing the clusters of a shard only made ready re-plan nothing
    (issue 22: each was an urgent re-plan, and under load the take waited seconds
    behind them); placement goes on seeing them as before. The take re-plans."""
    async with sandbox(tmp_path, files(), home=True) as box, \
            box.controller(settings(box, tmp_path, "a", 2), adapter_options=FAST,
                           lease_duration=LEASE_SECONDS) as a:
        shards = a.shards
        assert shards is not None and box.sim is not None
        await until(lambda: shards.held() == [0, 1], 30, what="a holds both shards")
        await roll(box, "registry.internal/serve:v2", a)
        placement = a.placement
        urgent: list[bool] = []
        fold = placement._fold

        def spy_fold(seen: Any, known: Any) -> tuple[bool, bool]:
            out = fold(seen, known)
            urgent.append(out[0])
            return out
        placement._fold = spy_fold  # type: ignore[method-assign]
        connect_triggers: list[str] = []
        trigger = a.trigger_plan

        def spy_trigger() -> None:
            caller = sys._getframe(1).f_code.co_name
            if caller == "_connect_loop":
                connect_triggers.append(caller)
            trigger()
        a.trigger_plan = spy_trigger  # type: ignore[method-assign]
        ghost, theirs = await ghost_for_shard_1(a)
        async with anyio.create_task_group() as tg:
            ghost_scope = anyio.CancelScope()

            async def run_ghost() -> None:
                with ghost_scope:
                    await ghost.run()
            tg.start_soon(run_ghost)
            await until_ghost_holds(a, theirs)
            await anyio.sleep(0.5)  # the let-go's own re-plans done
            urgent.clear()
            connect_triggers.clear()
            deferred = placement.deferred
            remote = {n: shards.views().get(n) for n in theirs}
            shards._get_ready({1})  # as if ghost had missed a renew
            await until(lambda: all(n in a.adapters and a.adapters[n].synced.is_set()
                                    for n in theirs), 10, what="shard 1 connected, listed")
            await anyio.sleep(0.5)  # a few looks of the placement loop at them
            assert all(shards.readying(n) for n in theirs)
            assert not any(urgent) and not connect_triggers
            assert placement.deferred == deferred + len(theirs)
            # placement sees them through the holder's news, as before
            assert {n: placement.views().get(n) for n in theirs} == remote
            # ghost dies: a takes shard 1 as its Lease lapses, and re-plans then
            ghost_scope.cancel()
            await until(lambda: shards.held() == [0, 1], 20, what="a takes shard 1")
            await until(lambda: any(urgent), 5, what="the take re-plans")
            views = placement.views()
            assert all(views[n] == a.clusters.views()[n] for n in theirs)
            assert not any(shards.readying(n) for n in theirs)
            tg.cancel_scope.cancel()
