"""What the HTTP server sends of a JSON document (`controllers.status.bodies`,
`controllers.server.send`): the same document gzipped or not, 304 for a known ETag,
and `/api/v1/events` built once per new event, not per request, yet always the
document `EventFeed.document` builds now. Over real HTTP on loopback; counted, not
timed."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import AsyncIterator

import httpx
import pytest

from controllers.server import Endpoints, bound_port, build_app, serve
from controllers.status.bodies import Body, KeyedBodies, accepts_gzip
from controllers.status.eventfeed import EventFeed
from tests.support.clock import FakeClock

IDENTITY = {"Accept-Encoding": "identity"}


async def nothing() -> None:
    return None


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, EventFeed, KeyedBodies, list[int]]]:
    """A server whose events come from a small real feed (size 4: reads cross its
    truncation) and whose capacity comes from a counted cache."""
    feed = EventFeed(size=4, clock=FakeClock())
    capacity = KeyedBodies(size=1)
    version = [0]
    built: list[int] = []

    def capacity_doc() -> dict[str, object]:
        built.append(version[0])
        return {"kind": "CapacitySnapshot", "version": version[0]}

    ep = Endpoints(status=lambda: {"kind": "FleetStatus"}, capacity=lambda: {},
                   metrics=lambda: "", ready=lambda: (True, "ok"), on_git_hook=nothing,
                   events_body=feed.body,
                   capacity_body=lambda: capacity.get(version[0], None, capacity_doc))
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}", feed, capacity, version
    finally:
        await runner.cleanup()


async def test_events_served_equal_a_fresh_document_over_random_changes(
        served: tuple[str, EventFeed, KeyedBodies, list[int]]) -> None:
    """Property-style: random events and random reads (any `since`, some for one
    workload, gzipped or not); every answer is what the feed builds now, and a read
    repeated with no event between builds nothing."""
    url, feed, _, _ = served
    rng = random.Random(22)
    workloads = ["t/a", "t/b", "t/c"]
    async with httpx.AsyncClient(base_url=url) as c:
        for _ in range(120):
            if rng.random() < 0.4:
                feed.record(rng.choice(["Placed", "Applied", "Moved"]),
                            rng.choice(workloads))
            since = rng.randrange(0, feed.seq + 3)
            params: dict[str, str | int] = {"since": since}
            wid = rng.choice([None, *workloads])
            if wid is not None:
                params["workload"] = wid
            headers = IDENTITY if rng.random() < 0.5 else {}
            r = await c.get("/api/v1/events", params=params, headers=headers)
            assert r.status_code == 200
            assert r.json() == feed.document(since, wid)
            builds = feed.bodies.builds
            again = await c.get("/api/v1/events", params=params, headers=headers)
            assert again.content == r.content
            assert feed.bodies.builds == builds  # the same read again: nothing built


async def test_events_and_capacity_are_built_once_per_change(
        served: tuple[str, EventFeed, KeyedBodies, list[int]]) -> None:
    url, feed, capacity, version = served
    feed.record("Placed", "t/a")
    async with httpx.AsyncClient(base_url=url) as c:
        for _ in range(5):
            assert (await c.get("/api/v1/events")).json()["latestSeq"] == 1
            assert (await c.get("/api/v1/capacity")).json()["version"] == 0
        assert (feed.bodies.builds, capacity.builds) == (1, 1)
        feed.record("Applied", "t/a")
        version[0] = 1
        for _ in range(5):
            assert (await c.get("/api/v1/events")).json()["latestSeq"] == 2
            assert (await c.get("/api/v1/capacity")).json()["version"] == 1
        assert (feed.bodies.builds, capacity.builds) == (2, 2)


async def test_a_body_is_sent_gzipped_to_who_accepts_it_and_304_for_its_etag(
        served: tuple[str, EventFeed, KeyedBodies, list[int]]) -> None:
    url, feed, _, _ = served
    feed.record("Placed", "t/a")
    async with httpx.AsyncClient(base_url=url) as c:
        plain = await c.get("/api/v1/events", headers=IDENTITY)
        zipped = await c.get("/api/v1/events", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in plain.headers
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == plain.content  # httpx undoes the gzip
        etag = plain.headers["etag"]
        assert zipped.headers["etag"] == etag
        assert plain.headers["vary"] == "Accept-Encoding"
        same = await c.get("/api/v1/events", headers={"If-None-Match": etag})
        assert (same.status_code, same.content) == (304, b"")
        feed.record("Applied", "t/a")
        changed = await c.get("/api/v1/events", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_a_body_is_its_document_and_the_same_gzipped() -> None:
    doc = {"b": [1, 2], "a": "é"}
    body = Body.of(doc)
    assert json.loads(body.raw) == doc and body.raw.endswith(b"\n")
    assert gzip.decompress(body.gz) == body.raw
    assert Body.of(dict(reversed(doc.items()))).etag == body.etag  # keys sorted
    assert Body.of({**doc, "c": 1}).etag != body.etag


@pytest.mark.parametrize(("header", "gz"), [
    ("gzip, deflate", True), ("br;q=1.0, gzip;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), (None, False), ("gzip;q=x", False),
])
def test_accept_encoding(header: str | None, gz: bool) -> None:
    assert accepts_gzip(header) is gz


async def test_each_request_is_timed_by_route_with_its_answer_whole() -> None:
    seen: list[tuple[str, float, float]] = []
    doc = {"kind": "FleetStatus", "workloads": [{"id": f"t/w{i}"} for i in range(2000)]}
    ep = Endpoints(status=lambda: doc, capacity=lambda: {}, metrics=lambda: "",
                   ready=lambda: (True, "ok"), on_git_hook=nothing,
                   observe=lambda route, cpu, wall: seen.append((route, cpu, wall)))
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound_port(runner)}") as c:
            for headers in (IDENTITY, {}, IDENTITY):
                r = await c.get("/api/v1/status", headers=headers)
                assert r.json() == doc  # written whole, gzipped or not
            assert (await c.get("/nowhere")).status_code == 404
    finally:
        await runner.cleanup()
    assert [route for route, _, _ in seen] == ["/api/v1/status"] * 3 + ["other"]
    assert all(cpu >= 0 and wall >= 0 for _, cpu, wall in seen)
