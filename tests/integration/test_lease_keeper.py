"""The shard Lease keeper (`clusters.leasekeeper`) with two real replicas.

Each replica is the real Manager on an event loop of its own, in a thread of its own
(`Replica`), so one replica's loop can be stalled -- `time.sleep` on it, as a long
placement pass or a stuck call would -- while the other replica, the simulated clusters
(over HTTP on loopback, on the test's loop) and the test run on. How long a stall lasts
is decided by counts (renewals made, rounds done, a Lease taken), never by the clock.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio

from clusters.client import LEASE, KubeClient
from clusters.kubeconfig import ConnectionSpec, api_client
from clusters.leader import LEASE_NAME
from clusters.leasekeeper import LeaseKeeper
from clusters.namespace import DEFAULT
from clusters.shardlease import ShardLease
from clusters.sim import SimClusterSpec, start_sim
from controllers.demo.sandbox import Sandbox, until
from controllers.runtime.manager import Manager
from controllers.runtime.shards import Shards
from fleet.shards import lease_name, shard_of
from tests.fleetdocs import POLICY, cluster, workload
from tests.support.controller import CLUSTERS, FAST, fast_settings, sandbox

LEASE_SECONDS = 3.0
SHARDS = 2
T = TypeVar("T")


def pinned(name: str, on: str, image: str) -> str:
    return workload(name, "web-team", data_class="public", wtype="inference",
                    extra_spec=f"    clusters: [{on}]\n").replace(
        "  replicas: 2\n", "  replicas: 1\n").replace("      count: 8\n", "      count: 1\n"
    ).replace("registry.internal/trainer:v1", image)


def files(image: str) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        f"clusters/{name}.yaml": cluster(name, j, (("h100-80gb", 32, 8),))
        for name, j in CLUSTERS.items()}
    out["policies/residency.yaml"] = POLICY
    out.update({f"workloads/web-team/on-{n}.yaml": pinned(f"on-{n}", n, image)
                for n in CLUSTERS})
    return out


def images(box: Sandbox) -> dict[str, str]:
    assert box.sim is not None
    return {name: dep["spec"]["template"]["spec"]["containers"][0]["image"]
            for name, sim in box.sim.clusters.items() for dep in sim.objects("Deployment")}


class Replica:
    """`fleet run --shards 2` as one replica: the Manager on its own loop and thread."""

    def __init__(self, box: Sandbox, tmp: Path, who: str, *, lease: float,
                 liveness: float | None) -> None:
        self.settings = fast_settings(box, home=True, leader_elect=True, identity=who,
                                      state_dir=tmp / f"state-{who}", shards=SHARDS,
                                      lease_liveness=liveness)
        self.box = box
        self.lease = lease
        self.who = who
        self._m: Manager | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"replica-{who}", daemon=True)

    @property
    def m(self) -> Manager:
        assert self._m is not None
        return self._m

    @property
    def shards(self) -> Shards:
        assert self.m.shards is not None
        return self.m.shards

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # handed to the test's thread
            self._failed = e
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.box.controller(self.settings, adapter_options=FAST,
                                       lease_duration=self.lease) as m:
            self._m = m
            self._ready.set()
            await self._stop.wait()

    async def start(self) -> None:
        self._thread.start()
        await anyio.to_thread.run_sync(self._ready.wait)
        if self._failed is not None:
            raise self._failed

    async def stop(self) -> None:
        """A clean stop: the Manager's task group cancelled, as on SIGTERM."""
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        await anyio.to_thread.run_sync(self._thread.join)

    async def ask(self, fn: Callable[[], T]) -> T:
        """`fn()` run on the replica's own loop (its state is that loop's to touch)."""
        assert self.loop is not None

        async def call() -> T:
            return fn()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self.loop))

    async def ask_async(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` on the replica's own loop (its clients are bound to it)."""
        assert self.loop is not None

        async def call() -> T:
            return await fn()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self.loop))

    def stall(self, until_set: threading.Event, *, chunk: float | None) -> None:
        """Block the replica's loop until `until_set` is set: in one piece (`chunk`
        None: a hung loop, no heartbeat), or in pieces of `chunk` seconds with the
        loop's ready work run between them (a busy loop that still beats)."""
        assert self.loop is not None

        async def busy() -> None:
            while not until_set.is_set():
                until_set.wait(chunk)  # blocks the loop: a long CPU-bound step
                await asyncio.sleep(0)  # whatever became ready runs (the heartbeat)
        if chunk is None:
            self.loop.call_soon_threadsafe(until_set.wait)
        else:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(busy()))


def held(r: Replica) -> list[int]:
    return r.shards.held()


@asynccontextmanager
async def two_replicas(tmp: Path, *, lease: float = LEASE_SECONDS,
                       liveness: float | None = None
                       ) -> AsyncIterator[tuple[Sandbox, Replica, Replica]]:
    """The sandbox (three clusters, a workload pinned on each, a management home for
    the Leases) and replicas a and b, one shard each once they have settled."""
    async with sandbox(tmp, files("registry.internal/serve:v1"), home=True) as box:
        a, b = (Replica(box, tmp, who, lease=lease, liveness=liveness) for who in "ab")
        try:
            await a.start()
            await b.start()

            async def settled() -> bool:
                return len(await a.ask(lambda: held(a))) == 1 and \
                    len(await b.ask(lambda: held(b))) == 1
            await until_async(settled, 60, what="one shard each")
            await until(lambda: set(images(box).values()) == {"registry.internal/serve:v1"}
                        and len(images(box)) == len(CLUSTERS), 30, what="v1 everywhere")
            yield box, a, b
        finally:
            await a.stop()
            await b.stop()


async def until_async(predicate: Callable[[], Awaitable[bool]], within: float, *,
                      what: str) -> None:
    """As `until`, for a predicate asked of a replica's loop."""
    with anyio.move_on_after(within):
        for _ in itertools.count():
            if await predicate():
                return
            await anyio.sleep(0.1)
    raise TimeoutError(f"{what} not reached within {within:.0f} s")


def renewed(r: Replica, shard: int) -> int:
    return r.shards.keeper.counts().get(shard, {}).get("renewed", 0)


def withheld(r: Replica, shard: int) -> int:
    return r.shards.keeper.counts().get(shard, {}).get("withheld", 0)


async def test_a_busy_replica_whose_loop_still_beats_keeps_its_shard(tmp_path: Path) -> None:
    """Its loop blocked in pieces (each shorter than the liveness, together many Lease
    durations): the keeper renews throughout, the other replica never takes the shard."""
    async with two_replicas(tmp_path) as (_box, a, b):
        shard = (await a.ask(lambda: held(a)))[0]
        generation = await a.ask(lambda: a.shards.leases[shard].generation)
        before = renewed(a, shard)
        per_lease = round(LEASE_SECONDS / a.shards.keeper.renew_every)  # renews a duration
        done = threading.Event()
        a.stall(done, chunk=LEASE_SECONDS / 4)  # a beat waits at most two steps
        rounds = await b.ask(lambda: b.shards.rounds)
        try:
            # busy while b makes 3 Lease durations' worth of rounds (one each third of a
            # duration, or sooner): a's Lease would have lapsed three times over
            await until_async(_rounds_past(b, rounds + 3 * per_lease), 60,
                              what="b's rounds while a is busy")
            renewals = renewed(a, shard) - before
        finally:
            done.set()
        assert renewals >= per_lease  # renewed while busy, off its loop
        assert withheld(a, shard) == 0
        assert await a.ask(lambda: held(a)) == [shard]
        assert await a.ask(lambda: a.shards.leases[shard].generation) == generation
        assert await b.ask(lambda: b.shards.takeovers) == []  # its Lease never lapsed
        doc = await a.ask(a.m.status)
        assert doc["shards"]["renewals"]["a"][str(shard)]["renewed"] >= before + renewals
        text = await a.ask(a.m.metrics_text)
        assert 'aifleet_lease_renewals_total{outcome="renewed"}' in text
        assert 'aifleet_lease_renewals_total{outcome="withheld"} 0.0' in text


async def test_a_hung_replica_loses_its_shard_and_writes_nothing_after(
        tmp_path: Path) -> None:
    """Its loop blocked in one piece (no heartbeat): the keeper withholds the renewals,
    the Lease lapses, the other replica takes the shard and rolls a new image there; the
    hung replica, back, writes nothing of its stale plan there."""
    async with two_replicas(tmp_path, liveness=LEASE_SECONDS / 2) as (box, a, b):
        shard = (await a.ask(lambda: held(a)))[0]
        lost = await a.ask(lambda: a.shards.leases[shard].generation)
        victims = sorted(n for n in CLUSTERS if shard_of(n, SHARDS) == shard)
        adapters = await a.ask(lambda: {n: a.m.adapters[n] for n in victims})
        writes = {n: ad.stats.calls.get("apply", 0) + ad.stats.calls.get("delete", 0)
                  for n, ad in adapters.items()}
        hung = threading.Event()
        a.stall(hung, chunk=None)
        try:
            await until(lambda: withheld(a, shard) >= 1, 30, what="a's renewals withheld")
            await until_async(_holds_both(b), 60, what="b takes a's shard")
            image = "registry.internal/serve:v2"
            box.repo.commit({f"workloads/web-team/on-{n}.yaml": pinned(f"on-{n}", n, image)
                             for n in CLUSTERS}, "image v2")
            b.m.trigger_fetch()  # b's own loop reads it; a flag, safe from here
            await until(lambda: all(images(box).get(n) == image for n in victims), 30,
                        what="b rolls v2 onto a's former shard")
            stalled_renewals = renewed(a, shard)
        finally:
            hung.set()
        # back: the hold is gone before anything else runs, and stays gone
        assert not await a.ask(lambda: a.shards.leases[shard].is_leader)
        assert not await a.ask(lambda: any(ad.applier.may_write() for ad in adapters.values()))
        rounds = await a.ask(lambda: a.shards.rounds)
        await until_async(_rounds_past(a, rounds + 2), 30, what="a's rounds after the hang")
        assert renewed(a, shard) == stalled_renewals  # a lapsed hold is never renewed
        taken = await a.ask(lambda: a.shards.leases[shard].generation)
        if taken == lost:  # not taken back (at a new generation): not one write there
            assert {n: ad.stats.calls.get("apply", 0) + ad.stats.calls.get("delete", 0)
                    for n, ad in adapters.items()} == writes
        assert all(images(box)[n] == image for n in victims)  # v1 never written back
        takeovers = await b.ask(lambda: [t.shard for t in b.shards.takeovers])
        assert shard in takeovers


def _holds_both(r: Replica) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await r.ask(lambda: held(r)) == list(range(SHARDS))
    return check


def _rounds_past(r: Replica, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await r.ask(lambda: r.shards.rounds) >= n
    return check


async def test_a_clean_stop_ends_the_renewals_and_lets_the_lease_go(
        tmp_path: Path) -> None:
    """Stopped cleanly, a replica's keeper thread ends and its shard Lease is let go
    once the replica's cleanup is done: it names the replica no more, and the other
    takes it as a free Lease (not a takeover of a lapsed one)."""
    async with two_replicas(tmp_path) as (box, a, b):
        shard = (await a.ask(lambda: held(a)))[0]
        keeper = a.shards.keeper
        await a.stop()
        assert not keeper.alive
        counts = keeper.counts()
        assert box.home is not None
        client = await b.ask(lambda: b.m.home.client())
        assert client is not None
        namespace = b.m.home.namespace
        lease = await b.ask_async(lambda: client.request(
            "GET", LEASE.item(lease_name(shard), namespace), verb="get"))
        assert lease["spec"]["holderIdentity"] in ("", "b")  # let go
        await until_async(_holds_both(b), 60, what="b takes the shard a let go")
        previous = await b.ask(lambda: [(t.shard, t.previous) for t in b.shards.takeovers])
        assert (shard, "a") not in previous  # free, not lapsed
        assert keeper.counts() == counts  # nothing renewed after the stop


# ---------------------------------------------------------------- the keeper alone


class Clock:
    """The monotonic clock of a Lease and its keeper, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def home_lease(tmp: Path, clock: Clock) -> AsyncIterator[tuple[KubeClient, ShardLease]]:
    """A simulated home over HTTP, a client of it, and shard 0's Lease taken by "a"
    (duration 3 s, margin 0.75 s: held until 102.25 on `clock`)."""
    sim = await start_sim([SimClusterSpec("home", ())])
    async with sim:
        path = sim.write_kubeconfig(tmp / "kubeconfig")
        client = KubeClient("home", await api_client(ConnectionSpec("home", str(path), "home")))
        try:
            lease = ShardLease(client, "a", 0, count=1, namespace=DEFAULT, duration=3.0,
                               margin=0.75, clock=clock)
            assert await lease.try_acquire_or_renew()
            yield client, lease
        finally:
            await client.close()


async def test_the_keeper_renews_while_the_loop_beats_and_withholds_once_it_stops(
        tmp_path: Path) -> None:
    clock = Clock()
    async with home_lease(tmp_path, clock) as (client, lease):
        keeper = LeaseKeeper(renew_every=1.0, liveness=2.0, clock=clock)
        keeper.keep(lease)
        keeper.beat(client.transport.cfg)
        clock.now += 0.5
        await keeper.pass_once(client)  # not due yet
        assert keeper.counts() == {}
        clock.now += 0.6  # due; the last beat 1.1 s ago
        await keeper.pass_once(client)
        assert keeper.counts() == {0: {"renewed": 1}}
        assert lease.hold.deadline == clock.now + 3.0 - 0.75
        calls = client.stats.total
        clock.now += 2.1  # due again, but the loop has not beaten for 2.1 s > 2 s
        await keeper.pass_once(client)
        assert keeper.counts() == {0: {"renewed": 1, "withheld": 1}}
        assert client.stats.total == calls  # nothing sent
        clock.now += 1.0  # past the deadline: not held, not the keeper's to renew
        keeper.beat(client.transport.cfg)
        await keeper.pass_once(client)
        assert not lease.is_leader
        assert keeper.counts() == {0: {"renewed": 1, "withheld": 1}}
        assert client.stats.total == calls


async def test_a_renew_begun_before_a_release_does_not_bring_the_hold_back(
        tmp_path: Path) -> None:
    clock = Clock()
    async with home_lease(tmp_path, clock) as (_client, lease):
        begun = lease.hold  # what a renew in the keeper's thread starts from
        assert await lease.release()
        assert not lease._commit(begun.term, clock.now, begun.generation)
        assert not lease.is_leader
        assert lease.hold.confirmed is None


# ---------------------------------------------------------------- the leader Lease


def leader_renewed(r: Replica, outcome: str = "renewed") -> int:
    return r.m.leadership.keeper.counts().get(LEASE_NAME, {}).get(outcome, 0)


def leading(r: Replica) -> bool:
    """Read from the test's thread: the hold is one immutable value (`Hold`)."""
    elector = r.m.leadership.elector
    return elector is not None and elector.is_leader


async def the_leader(a: Replica, b: Replica) -> tuple[Replica, Replica]:
    """(the replica that leads, the other), once one does."""
    await until(lambda: leading(a) or leading(b), 60, what="a leader")
    return (a, b) if leading(a) else (b, a)


async def test_a_busy_leader_whose_loop_still_beats_keeps_the_leader_lease(
        tmp_path: Path) -> None:
    """The leader's loop blocked in pieces (each shorter than the liveness, together
    many Lease durations): the keeper renews the leader Lease throughout, off the loop;
    the other replica never leads and the generation stays."""
    async with two_replicas(tmp_path) as (_box, a, b):
        leader, other = await the_leader(a, b)
        elector = leader.m.leadership.elector
        assert elector is not None
        generation = elector.generation
        before = leader_renewed(leader)
        per_lease = round(LEASE_SECONDS / leader.m.leadership.keeper.renew_every)
        done = threading.Event()
        leader.stall(done, chunk=LEASE_SECONDS / 4)
        rounds = await other.ask(lambda: other.shards.rounds)
        try:
            await until_async(_rounds_past(other, rounds + 3 * per_lease), 60,
                              what="the other's rounds while the leader is busy")
            renewals = leader_renewed(leader) - before
            assert not leading(other)
        finally:
            done.set()
        assert renewals >= per_lease  # renewed while busy, off its loop
        assert leader_renewed(leader, "withheld") == 0
        assert await leader.ask(lambda: leader.m.may_act())
        assert elector.generation == generation
        assert not await other.ask(lambda: other.m.may_act())
        doc = await leader.ask(leader.m.status)
        assert doc["shards"]["renewals"][leader.who][LEASE_NAME]["renewed"] >= \
            before + renewals


async def test_a_hung_leader_loses_the_leader_lease_and_acts_no_more(
        tmp_path: Path) -> None:
    """The leader's loop blocked in one piece (no heartbeat): the keeper withholds the
    leader Lease's renewals too, the other replica takes it (a new generation) and
    leads; the hung one, back, may not act, and its lapsed hold is never renewed."""
    async with two_replicas(tmp_path, liveness=LEASE_SECONDS / 2) as (_box, a, b):
        leader, other = await the_leader(a, b)
        elector = leader.m.leadership.elector
        assert elector is not None
        generation = elector.generation
        hung = threading.Event()
        leader.stall(hung, chunk=None)
        try:
            await until(lambda: leader_renewed(leader, "withheld") >= 1, 30,
                        what="the leader's renewals withheld")
            await until(lambda: leading(other), 60, what="the other takes the lead")
            renewals = leader_renewed(leader)
        finally:
            hung.set()
        assert not leading(leader)
        assert not await leader.ask(lambda: leader.m.may_act())
        other_elector = other.m.leadership.elector
        assert other_elector is not None and other_elector.generation > generation
        rounds = await leader.ask(lambda: leader.shards.rounds)
        await until_async(_rounds_past(leader, rounds + 2), 30, what="rounds after the hang")
        assert leader_renewed(leader) == renewals  # a lapsed hold is never renewed
        assert not leading(leader) and leading(other)
