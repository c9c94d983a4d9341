"""bench.shardstop: how a stopped replica's Leases went, as the home shows them.

A fake home answers each list of the Leases from a script of states (one per read,
the last repeated), and a fake process ends at a given poll; reads are counted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from bench.shardstop import Gone, Stopped, held_by, release_failures, verdict, watch_stop
from clusters.errors import ClusterError

RENEWED = "2026-12-05T09:00:00.000000Z"
"""The stopped replica's last renew read before the stop (Lease duration 15 s)."""


def spec(holder: str, *, acquired: str = "2026-12-05T08:00:00.000000Z",
         duration: int = 15, renewed: str = RENEWED) -> dict[str, Any]:
    return {"holderIdentity": holder, "leaseDurationSeconds": duration,
            "acquireTime": acquired, "renewTime": renewed, "leaseTransitions": 3}


BEFORE = spec("replica-1")


@pytest.mark.parametrize(("after", "how"), [
    (None, "held"),
    (spec("", duration=1), "let go"),
    (spec("replica-0", acquired="2026-12-05T09:00:01.500000Z"), "let go"),
    (spec("replica-0", acquired="2026-12-05T09:00:14.999000Z"), "let go"),
    (spec("replica-0", acquired="2026-12-05T09:00:15.000000Z"), "lapsed"),
    (spec("replica-0", acquired="2026-12-05T09:00:16.000000Z"), "lapsed"),
    ({"holderIdentity": "replica-0"}, "unknown"),
    (spec("replica-0", acquired="yesterday"), "unknown"),
], ids=["never-seen-moved", "seen-free", "taken-at-once", "taken-just-before-the-lapse",
        "taken-at-the-lapse", "taken-after-the-lapse", "no-acquire-time", "garbled-time"])
def test_a_lease_taken_before_it_could_lapse_was_let_go(after: dict[str, Any] | None,
                                                         how: str) -> None:
    assert verdict(BEFORE, after) == how


class Home:
    """The Leases of the namespace, listed from `states` (one per read)."""

    def __init__(self, *states: dict[str, dict[str, Any]] | None) -> None:
        self.states = list(states)
        self.reads = 0

    async def request(self, method: str, path: str, *, verb: str,
                      **_: Any) -> dict[str, Any]:
        assert (method, verb) == ("GET", "list")
        assert path.endswith("/namespaces/aifleet-system/leases")
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        if state is None:
            raise ClusterError("connection refused", cluster="home")
        return {"items": [{"metadata": {"name": name}, "spec": s}
                          for name, s in state.items()]}


class Proc:
    """A process that has ended with `code` from its `ends_at`-th poll on."""

    def __init__(self, code: int, ends_at: int) -> None:
        self.code, self.ends_at, self.polls = code, ends_at, 0
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.polls += 1
        if self.polls >= self.ends_at:
            self.returncode = self.code
        return self.returncode


def test_held_by_names_only_the_replicas_leases() -> None:
    home = Home({"aifleet-controller": spec("replica-0"), "aifleet-shard-0": BEFORE,
                 "aifleet-shard-1": spec("")})
    assert anyio.run(held_by, home, "aifleet-system", "replica-1") == {
        "aifleet-shard-0": BEFORE}


def test_a_clean_stop_is_watched_until_every_lease_is_taken_and_the_process_ended() -> None:
    held = {"aifleet-controller": BEFORE, "aifleet-shard-1": BEFORE}
    taken = spec("replica-0", acquired="2026-12-05T09:00:02.000000Z")
    home = Home(held,
                None,  # unreadable once: nothing concluded from it
                {"aifleet-controller": spec("", duration=1), "aifleet-shard-1": BEFORE},
                {"aifleet-controller": spec("", duration=1), "aifleet-shard-1": taken},
                {"aifleet-controller": taken, "aifleet-shard-1": taken})
    proc = Proc(0, ends_at=3)

    async def main() -> Stopped:
        return await watch_stop(home, "aifleet-system", "replica-1", held,
                                proc, time.perf_counter(), within=60)  # type: ignore[arg-type]

    seen = anyio.run(main)
    assert seen.exit_code == 0 and seen.exited_after is not None
    assert [(g.name, g.how, (g.after or {}).get("holderIdentity"), g.taker)
            for g in seen.leases] == [
        ("aifleet-controller", "let go", "", "replica-0"),
        ("aifleet-shard-1", "let go", "replica-0", "replica-0")]
    free, taken_ = seen.leases[0], seen.leases[1]
    assert free.seen_after is not None and free.taken_after is not None
    assert free.seen_after < free.taken_after  # seen free a read before it was taken
    assert taken_.seen_after == taken_.taken_after
    assert seen.problems() == []
    assert home.reads == 5  # no read once another replica held each Lease


def test_a_lease_left_to_lapse_or_a_failed_exit_is_a_problem() -> None:
    lapsed = Gone("aifleet-shard-1", BEFORE,
                  spec("replica-0", acquired="2026-12-05T09:00:15.100000Z"), 15.2)
    kept = Gone("aifleet-controller", BEFORE)
    stopped = Stopped([lapsed, kept], exit_code=1, exited_after=0.5)
    stopped.failures = release_failures([json.dumps({"event": "shard_release_failed"})])
    assert stopped.problems() == ["exit code 1", "Lease aifleet-shard-1 lapsed",
                                  "Lease aifleet-controller held",
                                  "shard_release_failed x1 in its log"]
    assert Stopped([]).problems() == ["still running"]


def test_release_failures_are_counted_from_the_json_log() -> None:
    lines = ["Traceback (most recent call last):", "[1, 2]",
             json.dumps({"event": "leases_release_timed_out", "within": 1.7}),
             json.dumps({"event": "shard_released", "shard": 1}),
             json.dumps({"event": "leases_release_timed_out", "within": 1.7})]
    assert release_failures(lines) == {"leases_release_timed_out": 2}
