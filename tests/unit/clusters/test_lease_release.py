"""Letting a Lease go on a clean stop (`LeaderElector.release`, `Leadership.release`).

A fake home: Leases by name with resourceVersions (a PUT over another version is a
Conflict, as the API server answers), every request counted; a stop's bound is shown
by a home that never answers, counted, never timed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from clusters.errors import ClusterError, Conflict
from clusters.leader import LEASE_NAME, LeaderElector
from clusters.shardlease import ShardLease
from controllers.runtime.leadership import Leadership

NS = "aifleet-system"


class Home:
    """Leases by name; `before_put` runs just before a PUT is judged (another replica
    acting between our read and our write); `hang`: nothing is ever answered;
    `down`: every request refused."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.calls: Counter[tuple[str, str]] = Counter()
        self.before_put: Callable[[], None] | None = None
        self.hang = False
        self.down = False

    def put(self, name: str, holder: str, transitions: int, duration: int = 300) -> None:
        self.version += 1
        self.leases[name] = {
            "metadata": {"name": name, "namespace": NS,
                         "resourceVersion": str(self.version)},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "renewTime": "2026-12-05T09:00:00.000000Z",
                     "acquireTime": "2026-12-05T08:00:00.000000Z",
                     "leaseTransitions": transitions}}

    async def request(self, method: str, path: str, *, verb: str, body: Any = None,
                      retry: bool = True, **_: Any) -> dict[str, Any]:
        name = path.rstrip("/").split("/")[-1]
        self.calls[(method, name)] += 1
        if self.hang:
            await anyio.sleep_forever()
        if self.down:
            raise ClusterError("connection refused", cluster="home")
        if method == "GET":
            return self.leases[name]
        assert method == "PUT"
        if self.before_put is not None:
            self.before_put()
            self.before_put = None
        if body["metadata"]["resourceVersion"] != \
                self.leases[name]["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", cluster="home")
        self.version += 1
        self.leases[name] = {**body, "metadata": {**body["metadata"],
                                                  "resourceVersion": str(self.version)}}
        return self.leases[name]

    def puts(self) -> int:
        return sum(n for (method, _name), n in self.calls.items() if method == "PUT")


def held(home: Home, identity: str = "a", generation: int = 3,
         name: str = LEASE_NAME) -> LeaderElector:
    """`identity`'s elector holding Lease `name` at `generation`, as the home has it."""
    home.put(name, identity, generation)
    lease = LeaderElector(home, identity, namespace=NS, duration=300.0,  # type: ignore[arg-type]
                          name=name)
    lease._won(time.monotonic(), generation)
    assert lease.is_leader
    return lease


async def test_a_release_empties_the_holder_as_client_go_does_and_stops_acting_first(
        ) -> None:
    home = Home()
    lease = held(home)
    assert await lease.release(duration=1)
    spec = home.leases[LEASE_NAME]["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1  # client-go's ReleaseOnCancel record
    assert spec["leaseTransitions"] == 3  # kept: the taker bumps it
    assert spec["renewTime"] == spec["acquireTime"] != "2026-12-05T09:00:00.000000Z"
    assert not lease.is_leader  # its writers' fence is down


@pytest.mark.parametrize(("holder", "generation"), [
    ("b", 4),  # another replica took it (after a lapse)
    ("a", 5),  # this identity's Lease, but another hold of it (a later take)
], ids=["taken-by-another", "another-generation"])
async def test_a_lease_that_changed_hands_is_never_released(holder: str,
                                                            generation: int) -> None:
    home = Home()
    lease = held(home)
    home.put(LEASE_NAME, holder, generation)
    before = home.leases[LEASE_NAME]
    assert not await lease.release(duration=1)
    assert home.puts() == 0
    assert home.leases[LEASE_NAME] == before


async def test_a_lease_taken_between_the_read_and_the_write_is_left_to_its_taker() -> None:
    """The write is over the version read: a take that lands between the two makes it
    a Conflict, and the Lease read again names the taker: nothing more is sent."""
    home = Home()
    lease = held(home)
    home.before_put = lambda: home.put(LEASE_NAME, "b", 4)
    assert not await lease.release(duration=1)
    assert home.leases[LEASE_NAME]["spec"]["holderIdentity"] == "b"
    assert home.calls[("PUT", LEASE_NAME)] == 1  # the one refused
    assert home.calls[("GET", LEASE_NAME)] == 2  # read again after the Conflict


async def test_a_shard_lease_let_go_to_an_asker_keeps_its_duration() -> None:
    home = Home()
    home.put("aifleet-shard-1", "a", 2)
    lease = ShardLease(home, "a", 1, count=2, namespace=NS,  # type: ignore[arg-type]
                       duration=300.0, margin=2.0)
    lease._won(time.monotonic(), 2)
    assert await lease.release()  # balancing: the asker's mark stays fresh as long
    spec = home.leases["aifleet-shard-1"]["spec"]
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 300


class NoHome:
    """What `Leadership` asks of the home here: its client."""

    def __init__(self, client: Home | None) -> None:
        self._client = client
        self.namespace = NS

    def client(self) -> Home | None:
        return self._client


def leadership(home: Home | None) -> Leadership:
    return Leadership(elect=True, identity="a", home=NoHome(home),  # type: ignore[arg-type]
                      adapters={}, holding=lambda: False, blocked=lambda: None,
                      tick=0.01, lease_duration=300.0)


def kept(lead: Leadership, home: Home, *names: str) -> None:
    for name in names:
        lead.keeper.keep(held(home, name=name))


async def test_a_stop_lets_every_lease_it_holds_go_and_leaves_others_alone() -> None:
    home = Home()
    lead = leadership(home)
    kept(lead, home, LEASE_NAME, "aifleet-shard-0", "aifleet-shard-2")
    never = LeaderElector(home, "a", namespace=NS, duration=300.0,  # type: ignore[arg-type]
                          name="aifleet-shard-1")  # tried, never held: not even read
    lead.keeper.keep(never)
    assert await lead.release() == 3
    assert {n: lease["spec"]["holderIdentity"] for n, lease in home.leases.items()} == \
        dict.fromkeys((LEASE_NAME, "aifleet-shard-0", "aifleet-shard-2"), "")
    assert ("GET", "aifleet-shard-1") not in home.calls


async def test_a_stop_with_the_home_unreachable_is_bounded_and_lets_them_lapse() -> None:
    """A home that never answers: each Lease's read is sent once, then the stop goes on
    at its bound; the Leases still name the replica (they lapse)."""
    home = Home()
    lead = leadership(home)
    kept(lead, home, LEASE_NAME, "aifleet-shard-0")
    home.hang = True
    lead.release_within = 0.05
    with anyio.fail_after(30):  # a hang fails the test instead of blocking the suite
        assert await lead.release() == 0
    assert home.calls == Counter({("GET", LEASE_NAME): 1, ("GET", "aifleet-shard-0"): 1})
    assert all(lease["spec"]["holderIdentity"] == "a" for lease in home.leases.values())


async def test_a_stop_with_the_home_refusing_only_logs() -> None:
    home = Home()
    lead = leadership(home)
    kept(lead, home, LEASE_NAME)
    home.down = True
    assert await lead.release() == 0
    assert home.calls == Counter({("GET", LEASE_NAME): 1})  # no retry loop at a stop


async def test_a_stop_while_an_operator_action_writes_lets_nothing_go() -> None:
    home = Home()
    lead = leadership(home)
    kept(lead, home, LEASE_NAME)
    lead.release_within = 0.05
    assert await lead.release(writing=lambda: True) == 0
    assert not home.calls


async def test_a_stop_standing_in_for_a_kill_lets_nothing_go() -> None:
    home = Home()
    lead = leadership(home)
    kept(lead, home, LEASE_NAME)
    lead.release_on_stop = False
    assert await lead.release() == 0
    assert not home.calls
