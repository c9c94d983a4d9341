"""A clock that tests move by hand, and a sleep that records instead of waiting.

Code that paces, backs off or times out takes `clock` and `sleep` callables (the token
bucket, the health tracker, the applier's drift-heal backoff, the client's retries); a
test passes these instead of asserting seconds on a machine whose speed it does not
control.
"""

from __future__ import annotations

import asyncio


class FakeClock:
    """Monotonic seconds that move only when a test (or a recorded sleep) moves them."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock to its end; other tasks still get a turn."""
        self.sleeps.append(seconds)
        self.now = max(self.now, self.now + seconds)
        await asyncio.sleep(0)


class RecordingSleep:
    """Real time stays real; waits are recorded and skipped."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)
