"""The HTTP server on its own thread (`controllers.serverthread`, issue 22): the status
document the cache published and the webhook are answered while the controller's
event loop is held by Python code; the fetch the webhook asked for runs once the loop
is back. The real controller on simulated
clusters over HTTP; the client runs in a thread of its own (a blocking client: the
loop it would otherwise share is the one held). Counted, not timed: the hold ends when
the answers have come (a generous limit only keeps a broken build from hanging)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from controllers.demo.sandbox import until
from tests.fleetdocs import workload
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox

SECRET = b"s3cret"
LIMIT = 60.0
"""Seconds the loop is held at most, if the answers never come (then the test fails)."""


def hold_loop_until(done: threading.Event) -> bool:
    """Hold the loop's thread in Python code until `done`; whether it came."""
    end = time.perf_counter() + LIMIT
    while not done.is_set():
        if time.perf_counter() > end:
            return False
        sum(range(200))
    return True


async def test_status_and_the_webhook_are_answered_while_the_loop_is_held(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, webhook_secret=SECRET.decode(), poll_interval=3600),
            adapter_options=FAST) as m:
        await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        await m.status_cache.rebuild()  # the rolled-out fleet's document is published
        async with httpx.AsyncClient(base_url=url) as c:
            first = (await c.get("/api/v1/status")).json()
        commit = box.repo.commit({"workloads/nlp-team/extra.yaml": workload(
            "extra", "nlp-team", data_class="public", wtype="inference")}, "one more")
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        answers: dict[str, Any] = {}
        done = threading.Event()

        def ask() -> None:
            try:
                with httpx.Client(base_url=url, timeout=None) as c:
                    r = c.get("/api/v1/status")
                    answers["status"] = (r.status_code, len(r.json()["workloads"]))
                    r = c.post("/hooks/git", content=body,
                               headers={"X-Hub-Signature-256": signature})
                    answers["webhook"] = r.status_code
            finally:
                done.set()

        served = m.status_cache.served
        client = threading.Thread(target=ask)
        client.start()
        answered_while_held = hold_loop_until(done)
        client.join()
        assert answered_while_held
        assert answers == {"status": (200, len(first["workloads"])), "webhook": 202}
        # The loop is back: the cache learns it was asked for, the fetch runs.
        await until(lambda: m.status_cache.served > served, 10, what="the request counted")
        await until(lambda: m.source.observed == commit, 30, what="the webhook's fetch")



def read_while_held(url: str, reads: list[tuple[str, str, dict[str, str]]]
                    ) -> dict[str, httpx.Response]:
    """Each (name, path, headers) read from a thread of its own while the test holds
    the controller's loop (until the answers came); the answers by name."""
    answers: dict[str, httpx.Response] = {}
    done = threading.Event()

    def ask() -> None:
        try:
            with httpx.Client(base_url=url, timeout=None) as c:
                for name, path, headers in reads:
                    answers[name] = c.get(path, headers=headers)
        finally:
            done.set()

    client = threading.Thread(target=ask)
    client.start()
    answered_while_held = hold_loop_until(done)
    client.join()
    assert answered_while_held
    return answers


async def test_status_is_answered_before_the_first_build_while_the_loop_is_held(
        tmp_path: Path) -> None:
    """A controller just started (the server listening, nothing loaded, the refresher
    not run yet), its loop held: status is answered, an honest "no plan yet" document
    (the one published before the server listened), valid to the schema."""
    import jsonschema

    from tests.specs import load_schema

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        builds = m.status_cache.builds  # no await since the start: the loop ran nothing
        answers = read_while_held(f"http://127.0.0.1:{m.port}", [
            ("status", "/api/v1/status", {}),
            ("now", "/api/v1/status", {"Cache-Control": "no-cache"}),
            ("healthz", "/healthz", {})])
        assert builds == 1  # the document published before listening, and only it
        assert {k: r.status_code for k, r in answers.items()} == {
            "status": 200, "now": 200, "healthz": 200}
        doc = answers["status"].json()
        jsonschema.validate(doc, load_schema("status.schema.json"))
        assert doc["source"]["appliedCommit"] is None and doc["workloads"] == []
        ready = doc["source"]["conditions"][0]
        assert (ready["type"], ready["status"]) == ("Ready", "False")
        assert "no plan yet" in ready["message"]
        # the state of now was asked for (the plain read too: the document is the
        # primed one, built before anything was loaded); no build could come (the loop
        # was held), so both were answered with the last document, its age said
        assert answers["now"].content == answers["status"].content
        assert "age" in answers["now"].headers
        assert (m.status_cache.fresh_served, m.status_cache.fresh_late) == (0, 2)


async def test_after_an_action_the_next_read_shows_it_while_the_loop_is_held(
        tmp_path: Path) -> None:
    """An operator action is answered once a document that shows it is published: the
    next read shows it even with the loop held (nothing left to build for it)."""
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        async with httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/api/v1/suspend", json={"workload": "nlp-team/serve"})
        assert r.status_code == 200, r.text
        builds = m.status_cache.builds
        answers = read_while_held(url, [("status", "/api/v1/status", {})])
        assert m.status_cache.builds == builds  # nothing built for the read
        row = next(w for w in answers["status"].json()["workloads"]
                   if w["id"] == "nlp-team/serve")
        assert "suspended" in row


def refresher_idle(cache: Any, served: int = 0) -> bool:
    """The cache's refresher has nothing to do: no build under way, none asked for (and
    the cache counted `served` requests: the last one's ask reached it). Then nothing
    publishes until the next request: a document it builds is the one that request got."""
    return cache.served >= served and not cache._wanted.is_set() and cache._building is None


async def test_a_document_nobody_asked_for_a_while_is_built_for_the_next_read(
        tmp_path: Path) -> None:
    """The last document older than `stale_after` (nobody asked, so none was built): the
    next plain read hurries the refresher and gets one built after it. The cache's
    clock is moved by hand; its wait bound is set out of the way (not what is tested).

    The controller runs on: its row is changed by hand in a suspended workload (a
    reconcile records the rows of the workloads it applies, and would put back its
    own; it leaves a suspended one's alone), and each read waits for the refresher to
    be idle (the build the first read asked for, published before the clock moves on,
    would otherwise be the one that answers the second, or be under way when it comes)."""
    from dataclasses import replace

    from controllers.status.cache import STALE_AFTER
    from tests.support.clock import FakeClock
    from tests.support.controller import SERVE

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await rolled_out(m, box)
        cache = m.status_cache
        key = next(k for k in m.live if k[1] == SERVE)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            r = await c.post("/api/v1/suspend", json={"workload": SERVE})
            assert r.status_code == 200, r.text
            # A pass under way when it was suspended may still record the row: its end.
            await until(lambda: key[0] not in m.queue._active, 20, what="the pass under way")
            await until(lambda: refresher_idle(cache), 20, what="the refresher idle")
            cache.clock = clock = FakeClock()
            cache.fresh_wait = LIMIT
            await cache.rebuild()
            m.live[key] = replace(m.live[key], sync="Failed", message="refused: test")
            served = cache.served
            clock.advance(1.0)  # younger than STALE_AFTER: the last one, at once
            before = await c.get("/api/v1/status")
            # It asked for the next build (the row changed): published at this clock.
            await until(lambda: refresher_idle(cache, served + 1), 20,
                        what="the build the first read asked for")
            builds, fresh = cache.builds, cache.fresh_served
            clock.advance(STALE_AFTER + 1)
            after = await c.get("/api/v1/status")
        assert before.headers["age"] == "1"
        row = next(w for w in before.json()["workloads"] if w["id"] == SERVE)
        assert row["sync"] != "Failed"
        row = next(w for w in after.json()["workloads"] if w["id"] == SERVE)
        assert row["sync"] == "Failed" and after.headers["age"] == "0"
        assert cache.fresh_served == fresh + 1 and cache.builds > builds


def fresh_reads(metrics: str) -> dict[str, float]:
    """`aifleet_status_fresh_reads_total` by outcome, from a /metrics text."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("aifleet_status_fresh_reads_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('outcome="', 1)[1].split('"', 1)[0]] = float(value)
    return out


async def test_metrics_count_status_reads_fresh_late_or_cached(tmp_path: Path) -> None:
    """`aifleet_status_fresh_reads_total{outcome}`: a plain read is served the cached
    document; a read for the state of now waits for a build after it (fresh), or, the
    loop held so that none can come, gets the last one (late). Counted over the real
    server; the cache's clock is still, so its age limits decide nothing."""
    from tests.support.clock import FakeClock

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await rolled_out(m, box)
        cache = m.status_cache
        cache.clock = FakeClock()
        url = f"http://127.0.0.1:{m.port}"
        async with httpx.AsyncClient(base_url=url) as c:
            await cache.rebuild()
            before = fresh_reads((await c.get("/metrics")).text)
            assert set(before) == {"fresh", "late", "cached"}
            cache.fresh_wait = LIMIT  # a build comes: not what is counted here
            for _ in range(3):
                assert (await c.get("/api/v1/status")).status_code == 200
            for _ in range(2):
                assert (await c.get("/api/v1/status",
                                    headers={"Cache-Control": "no-cache"})).status_code == 200
            cache.fresh_wait = 0.05  # no build can come while the loop is held
            answers = read_while_held(url, [("now", "/api/v1/status",
                                             {"Cache-Control": "no-cache"})])
            assert answers["now"].status_code == 200
            after = fresh_reads((await c.get("/metrics")).text)
        grew = {k: after[k] - before[k] for k in after}
        assert grew == {"cached": 3, "fresh": 2, "late": 1}
