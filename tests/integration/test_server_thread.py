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
        async with httpx.AsyncClient(base_url=url) as c:
            first = (await c.get("/api/v1/status")).json()  # a document is published
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

