"""A busy controller never mistakes itself for a broken cluster (issue 22, item 0):
loop lag measured on an injected clock, health counted in loop-available seconds,
timeouts during a lag not held against the cluster, re-plan asks coalesced."""

from __future__ import annotations

import asyncio

import pytest

from clusters.client import LAG_TOLERANCE, Outcome, lagged_timeout
from clusters.health import HealthTracker
from controllers.runtime.busy import Replans, matters_to_placement
from controllers.runtime.looplag import GcPauses, LoopLag
from tests.support.clock import FakeClock


class StallingSleep:
    """A sleep that, on its clock, oversleeps by the next planned stall."""

    def __init__(self, clock: FakeClock, stalls: list[float]) -> None:
        self.clock, self.stalls = clock, stalls

    async def __call__(self, seconds: float) -> None:
        self.clock.advance(seconds + (self.stalls.pop(0) if self.stalls else 0.0))
        await asyncio.sleep(0)


def test_loop_lag_is_the_wake_past_its_due_time_summed() -> None:
    clock = FakeClock()
    lag = LoopLag(0.1, clock=clock, sleep=StallingSleep(clock, [0.0, 3.0, 0.5]))
    seen: list[float] = []
    lag._on_sample = seen.append

    async def three() -> None:
        for _ in range(3):
            await lag.tick()
    asyncio.run(three())
    assert seen == pytest.approx([0.0, 3.0, 0.5])
    assert lag.total == pytest.approx(3.5) and lag.worst() == pytest.approx(3.0)
    assert lag.summary()["samples"] == 3


def test_a_stall_in_progress_counts_before_the_monitor_wakes() -> None:
    clock = FakeClock()
    lag = LoopLag(0.1, clock=clock)
    lag._due = clock() + 0.1  # the monitor sleeps; the loop is then held for 4 s
    clock.advance(4.1)
    assert lag.stalled() == pytest.approx(4.0)
    assert lag.available() == pytest.approx(clock() - 4.0)


def test_a_stalled_loop_does_not_age_a_silence_into_unreachable() -> None:
    clock = FakeClock()
    stalled = [0.0]
    h = HealthTracker(unreachable_after=15, degraded_window=60, clock=clock,
                      stalled=lambda: stalled[0])
    h.record(Outcome.OK)
    h.record(Outcome.NO_ANSWER)
    clock.advance(20)
    stalled[0] += 18  # 18 of those 20 s the loop could not run: 2 s of real silence
    assert h.state == "Degraded"
    assert h.unreachable_for() is None
    clock.advance(14)  # now 16 s the loop could run, and still no answer
    assert str(h.state) == "Unreachable"
    assert h.unreachable_for() == pytest.approx(16)


def test_a_timeout_while_busy_is_counted_and_never_held_against_the_cluster() -> None:
    clock = FakeClock()
    h = HealthTracker(unreachable_after=15, clock=clock)
    h.record(Outcome.OK)
    for _ in range(10):
        clock.advance(5)
        h.record(Outcome.BUSY, "GET /version: TimeoutError")
    assert h.busy == 10
    assert h.state == "Healthy" and h.first_no_answer is None


@pytest.mark.parametrize(("error", "lag", "busy"), [
    (TimeoutError(), 0.0, False),
    (TimeoutError(), LAG_TOLERANCE * 5.0, False),
    (TimeoutError(), LAG_TOLERANCE * 5.0 + 0.01, True),
    (TimeoutError(), 4.0, True),
    (ConnectionRefusedError(), 4.0, False),
], ids=["quiet-timeout", "at-tolerance", "past-tolerance", "stalled-timeout",
        "refused-is-evidence"])
def test_only_a_timeout_during_loop_lag_is_discounted(error: BaseException, lag: float,
                                                      busy: bool) -> None:
    assert lagged_timeout(error, lag, 5.0) is busy


def test_replan_asks_are_coalesced_and_counted() -> None:
    r = Replans()
    for _ in range(5):
        r.ask()
    assert r.waiting
    r.planned()
    r.planned()  # a resync with no ask: nothing coalesced
    r.ask()
    r.planned()
    assert r.counts == {"asked": 6, "planned": 3, "coalesced": 4, "skipped": 0}
    assert not r.waiting


@pytest.mark.parametrize(("was", "now", "matters"), [
    ("Healthy", "Degraded", False), ("Degraded", "Healthy", False),
    ("Degraded", "Unreachable", True), ("Unreachable", "Healthy", True),
    ("Unknown", "Healthy", True)], ids=lambda v: str(v))
def test_only_a_health_change_placement_can_see_asks_for_a_replan(
        was: str, now: str, matters: bool) -> None:
    assert matters_to_placement(was, now) is matters


def test_garbage_collector_pauses_are_summed_per_generation() -> None:
    clock = FakeClock()
    pauses = GcPauses(clock)
    for gen, took in ((0, 0.001), (2, 1.5), (2, 0.5)):
        pauses.on_gc("start", {"generation": gen})
        clock.advance(took)
        pauses.on_gc("stop", {"generation": gen})
    assert pauses.collections == [1, 0, 2]
    assert pauses.seconds == pytest.approx([0.001, 0.0, 2.0])
    assert pauses.worst == pytest.approx(1.5)
