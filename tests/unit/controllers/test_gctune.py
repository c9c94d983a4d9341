"""The garbage collector tuned for the controller's long-lived heap (issue 22):
thresholds set and given back, the heap frozen after the first plan and then at most
once per interval after plans. Counted on an injected clock, freeze and collect."""

from __future__ import annotations

import asyncio
import gc

from controllers.runtime import busy, gctune
from controllers.runtime.gctune import Settler
from tests.support.clock import FakeClock


class Calls:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def freeze(self) -> None:
        self.seen.append("freeze")

    def collect(self, generation: int) -> int:
        self.seen.append(f"collect({generation})")
        return 0


def test_tune_sets_the_thresholds_and_returns_those_it_replaced() -> None:
    before = gc.get_threshold()
    try:
        assert gctune.tune() == before
        assert gc.get_threshold() == gctune.THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_the_heap_is_frozen_at_most_once_per_interval_young_cycles_collected_first() -> None:
    clock, calls = FakeClock(), Calls()
    s = Settler(every=60.0, clock=clock, freeze=calls.freeze, collect=calls.collect)
    assert s.settle()  # the first plan: the state is loaded
    assert calls.seen == ["collect(1)", "freeze"]
    clock.advance(59.0)
    assert not s.settle()  # a plan a minute later is not frozen again
    assert s.settle(force=True)
    clock.advance(60.0)
    assert s.settle()
    assert s.settled == 3
    assert calls.seen == ["collect(1)", "freeze"] * 3


def test_each_plan_made_asks_the_settler() -> None:
    calls = Calls()
    s = Settler(every=0.0, clock=FakeClock(), freeze=calls.freeze, collect=calls.collect)

    async def run() -> None:
        plan_changed = asyncio.Condition()
        task = asyncio.create_task(busy.settle_after_plans(plan_changed, s))
        await asyncio.sleep(0)
        for _ in range(3):
            async with plan_changed:
                plan_changed.notify_all()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        task.cancel()
    asyncio.run(run())
    assert s.settled == 3
