"""`fleet run --shards N`: a follower takes a new publication of the leader's plan when
its index changes (`controllers.runtime.planwatch`), not at its next poll.

The real Manager against a simulated home over HTTP; the leader is another process
that never publishes unless the test does (`leader_elsewhere`). The follower's poll is
made an hour long, so a publication taken in was woken by the watch: counted in the
share loop's polls and the watch's wakes, never timed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clusters.leader import LEASE_NAME
from clusters.sim.server import SimCluster
from controllers.demo.sandbox import until
from controllers.persist import sharedplan
from controllers.runtime.manager import Manager
from controllers.runtime.shards import Shards
from tests.integration.test_controller_shards import (
    LEASE_SECONDS,
    files,
    leader_elsewhere,
    settings,
)
from tests.support.controller import FAST, sandbox
from tests.support.home import NS, home_request

HOUR = 3600.0


def plan_watches(home: SimCluster) -> int:
    """Watches open at the home on the index ConfigMap alone."""
    return sum(1 for r in home.open_watches.values()
               if r.query.get("fieldSelector") == f"metadata.name={sharedplan.NAME}")


async def poll_hourly(shards: Shards) -> None:
    """The share loop's polls an hour apart from its next wait on (a poll ended after
    the change: the wait that follows it is an hour)."""
    shards.poll_every = HOUR
    polls = shards.polls
    await until(lambda: shards.polls > polls, 30, what="a poll after the change")


async def publish_and_take(m: Manager, shards: Shards, commit: str) -> None:
    client = m.home.client()
    assert client is not None
    assert await sharedplan.write(client, m.home.namespace, {}, commit)
    await until(lambda: shards.leader_plan is not None and shards.leader_plan[0] == commit,
                30, what=f"the publication of {commit} taken in")


@asynccontextmanager
async def a_follower(tmp_path: Path) -> AsyncIterator[tuple[Any, SimCluster, Manager, Shards]]:
    """A sandbox with a home, its leader elsewhere, and replica "a" following it:
    (the sandbox, the simulated home, the replica, its shards)."""
    async with sandbox(tmp_path, files(), home=True) as box:
        await leader_elsewhere(box)
        assert box.home is not None
        home = box.home.clusters["home"]
        async with box.controller(settings(box, tmp_path, "a", 1), adapter_options=FAST,
                                  lease_duration=LEASE_SECONDS) as a:
            shards = a.shards
            assert shards is not None
            yield box, home, a, shards


async def test_a_follower_takes_a_new_publication_without_waiting_for_its_poll(
        tmp_path: Path) -> None:
    """With polls an hour apart, each new publication is still taken in: one stream on
    the index alone, woken by its event; no poll ran meanwhile. Once the replica leads,
    its watch is closed (its own plan is the one)."""
    async with a_follower(tmp_path) as (box, home, a, shards):
        assert not a.may_act()
        await until(lambda: plan_watches(home) == 1, 30, what="the plan watch open")
        await poll_hourly(shards)
        polls, streams = shards.polls, shards.plan_watch.streams
        for n in range(3):
            watch = shards.plan_watch
            wakes, events, decodes = watch.wakes, watch.events, shards.plan_decodes
            await publish_and_take(a, shards, f"commit-{n}")
            assert shards.plan_decodes == decodes + 1
            assert watch.wakes == wakes + 1
            # a part and the index written: the index's event alone
            assert watch.events == events + 1
        assert shards.polls == polls  # taken between polls: woken by the watch
        assert shards.plan_watch.streams == streams and plan_watches(home) == 1
        assert shards.woken_reads >= 3

        # it leads: the watch is closed, none opened again
        await home_request(box, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/"
                           f"{NS}/leases/{LEASE_NAME}", ok=(200,))
        await until(lambda: a.may_act(), 30, what="a leads")
        await until(lambda: plan_watches(home) == 0, 30, what="the plan watch closed")
        streams, rounds = shards.plan_watch.streams, shards.rounds
        await until(lambda: shards.rounds >= rounds + 3, 30, what="three Lease rounds")
        assert shards.plan_watch.streams == streams and plan_watches(home) == 0


async def test_a_cut_plan_watch_is_opened_again_and_the_poll_still_reads(
        tmp_path: Path) -> None:
    """A watch that says nothing (a stream stalled without an error) loses nothing:
    the poll, at its second, reads the publication. The simulated home cuts every
    watch: the follower's is opened again (from now, no resourceVersion) and wakes it
    for the next publication, polls an hour apart."""
    async with a_follower(tmp_path) as (_box, home, a, shards):
        watch = shards.plan_watch
        await until(lambda: plan_watches(home) == 1, 30, what="the plan watch open")

        # a watch that wakes nobody: the poll takes the publication at its time
        watch.wake = lambda: None
        wakes, woken, polls = watch.wakes, shards.woken_reads, shards.polls
        await publish_and_take(a, shards, "by-the-poll")
        assert watch.wakes > wakes  # it saw the change, and said it to nobody
        assert shards.woken_reads == woken and shards.polls > polls
        watch.wake = shards._wake_plan

        await poll_hourly(shards)
        polls, streams, failures = shards.polls, watch.streams, watch.failures
        assert home.faults.cut_watches() >= 1
        await until(lambda: watch.streams > streams and plan_watches(home) == 1, 30,
                    what="the plan watch opened again")
        assert watch.failures > failures
        await publish_and_take(a, shards, "after-the-cut")
        assert shards.polls == polls  # woken by the watch opened again
