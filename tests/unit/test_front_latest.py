"""The front's status document (`controllers.front.Latest`): what it tells the
controller for each read (over a real socketpair) and the age it answers with, on an
injected clock."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from controllers.front import Latest
from controllers.frontproc import Kind, read_frame
from controllers.status.bodies import Body

PRIMED = Body.of({"workloads": []})
BUILT = Body.of({"workloads": [{"id": "nlp-team/a"}]})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@asynccontextmanager
async def channel() -> AsyncIterator[tuple[asyncio.StreamWriter, asyncio.StreamReader]]:
    """The front's end (a writer) and the controller's (a reader) of a socketpair."""
    front, controller = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=front)
    reader, other = await asyncio.open_connection(sock=controller)
    try:
        yield writer, reader
    finally:
        writer.close()
        other.close()


async def test_a_read_tells_the_controller_and_answers_with_the_age() -> None:
    clock = Clock()
    async with channel() as (writer, controller):
        latest = Latest(writer, PRIMED, clock=clock, fresh_wait=60, stale_after=30)
        clock.t = 104.0
        latest.pushed(BUILT)
        clock.t = 110.5
        assert await latest.now(fresh=False) == (BUILT, 6.5)
        assert await read_frame(controller) == (Kind.ASKED, b"")


async def test_the_primed_document_waits_for_the_state_of_now() -> None:
    async with channel() as (writer, controller):
        latest = Latest(writer, PRIMED, clock=Clock(), fresh_wait=60, stale_after=30)
        read = asyncio.create_task(latest.now(fresh=False))
        assert await read_frame(controller) == (Kind.HURRY, b"")
        assert not read.done()  # waits for the controller's answer
        latest.pushed(BUILT)
        latest.answered()
        assert (await read)[0] is BUILT


async def test_an_old_document_or_no_cache_hurries_and_a_silent_controller_is_not_waited_for(
        ) -> None:
    clock = Clock()
    async with channel() as (writer, controller):
        latest = Latest(writer, PRIMED, clock=clock, fresh_wait=0.01, stale_after=30)
        latest.pushed(BUILT)
        assert await latest.now(fresh=True) == (BUILT, 0.0)  # no answer: the last one
        assert await read_frame(controller) == (Kind.HURRY, b"")
        clock.t += 31  # older than stale_after
        assert await latest.now(fresh=False) == (BUILT, 31.0)
        assert await read_frame(controller) == (Kind.HURRY, b"")


def test_the_front_loads_none_of_the_controller() -> None:
    # Its memory is the document's and aiohttp's: importing the status cache for two
    # constants once loaded the whole controller into it (106 MiB instead of 42).
    probe = ("import sys, controllers.front; print(' '.join(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('fleet', 'workloads', 'clusters') "
             "or m.startswith(('controllers.runtime', 'controllers.status.cache')))))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=120, check=True)
    assert r.stdout.split() == []
