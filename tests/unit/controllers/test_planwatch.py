"""A follower's watch on the leader's plan index (`controllers.runtime.planwatch`):
which events wake the reader, what is asked of the server, and that it watches only
while following. Against a scripted client: streams counted, never timed."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anyio

from controllers.demo.sandbox import until
from controllers.persist import sharedplan
from controllers.runtime.planwatch import PlanWatch


def event(kind: str, rv: str) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": sharedplan.NAME,
                                                  "resourceVersion": rv}}}


class Scripted:
    """Each watch opened plays the next script, then stays open (no event more)."""

    def __init__(self, *scripts: list[dict[str, Any]]) -> None:
        self.scripts = list(scripts)
        self.asked: list[tuple[str, str | None, dict[str, str] | None]] = []

    async def watch(self, path: str, *, resource_version: str | None,
                    query: dict[str, str] | None = None,
                    timeout_seconds: int = 300) -> AsyncGenerator[dict[str, Any], None]:
        self.asked.append((path, resource_version, query))
        script = self.scripts.pop(0) if self.scripts else None
        if script is None:
            await anyio.sleep_forever()
        for e in script:
            yield e


async def test_only_a_change_the_reader_has_not_taken_wakes_it() -> None:
    """The first event is the index as it is: no wake when the reader has it. A
    BOOKMARK wakes nobody; MODIFIED and DELETED at another version do. A stream the
    server ends is opened again from now: one index, one stream at a time."""
    client = Scripted([event("ADDED", "5"), event("BOOKMARK", "6"), event("MODIFIED", "7")],
                      [event("ADDED", "7"), event("DELETED", "9")])
    seen = ["5"]
    woken: list[str] = []
    watch = PlanWatch("aifleet-system", seen=lambda: seen[0],
                      wake=lambda: woken.append("x"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run, lambda: client, lambda: True, 0.01)
        await until(lambda: watch.streams == 3, 10, what="three streams")
        tg.cancel_scope.cancel()
    # "7" was not taken when the second stream began: its ADDED woke the reader again
    assert len(woken) == 3 and watch.wakes == 3 and watch.events == 4
    assert all(a == ("/api/v1/namespaces/aifleet-system/configmaps", None,
                     {"fieldSelector": f"metadata.name={sharedplan.NAME}"})
               for a in client.asked)
    assert watch.failures == 0


async def test_nothing_is_watched_while_leading_and_stop_ends_the_stream() -> None:
    client = Scripted()
    following = [False]
    looks = [0]

    def follows() -> bool:
        looks[0] += 1
        return following[0]
    watch = PlanWatch("ns", seen=lambda: None, wake=lambda: None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run, lambda: client, follows, 0.01)
        await until(lambda: looks[0] >= 3, 10, what="three looks")
        assert watch.streams == 0 and client.asked == []
        following[0] = True
        await until(lambda: watch.streams == 1, 10, what="a stream")
        following[0] = False
        watch.stop()
        at = looks[0]
        await until(lambda: looks[0] >= at + 3, 10, what="three looks leading")
        assert watch.streams == 1 and watch.failures == 0
        following[0] = True
        await until(lambda: watch.streams == 2, 10, what="a stream again")
        tg.cancel_scope.cancel()
