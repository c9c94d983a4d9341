"""The loop-blocker sampler (`controllers.runtime.blockers`): while the loop is overdue
it names the code holding it; while it is not, it records nothing. Real threads, the
lag's clock injected (no wall-clock assertion)."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel

from controllers.runtime.blockers import Blockers, stack_key
from controllers.runtime.looplag import LoopLag
from tests.support.clock import FakeClock


def hold_the_loop(entered: threading.Event, done: list[bool]) -> None:
    """Code that blocks the loop (busy, in Python, no call of a Python function, so
    this is the innermost frame) until the sampler has looked."""
    entered.set()
    n = 0
    while not done:
        n += 1


async def test_a_blocked_loop_is_sampled_at_the_code_that_blocks_it() -> None:
    clock = FakeClock()
    parked = anyio.Event()

    async def sleep(_: float) -> None:
        await parked.wait()

    lag = LoopLag(0.1, clock=clock, sleep=sleep)
    blockers = Blockers(lag, threshold=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.tick)  # due at now + 0.1
        await anyio.lowlevel.checkpoint()
        blockers.sample()  # not overdue: nothing
        assert not blockers.samples
        clock.advance(0.2)  # overdue by 0.1 > 0.05: the loop is blocked now
        done: list[bool] = []
        entered = threading.Event()

        def look() -> None:
            entered.wait()
            for _ in range(3):
                blockers.sample()
            done.append(True)

        watcher = threading.Thread(target=look)
        watcher.start()
        hold_the_loop(entered, done)
        watcher.join()
        parked.set()
    (stack, count), = blockers.samples.items()
    assert count == 3
    assert stack[0].endswith("test_blockers.py:hold_the_loop")
    assert blockers.top(1) == [(round(3 * blockers.every, 2), stack)]


def test_a_stack_names_our_frames_without_line_numbers() -> None:
    import sys

    key = stack_key(sys._getframe())
    assert key[0] == "test_blockers.py:test_a_stack_names_our_frames_without_line_numbers"
    assert all(k.count(":") == 1 for k in key)
