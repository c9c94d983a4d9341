"""The controller's HTTP endpoints, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx
import pytest

from controllers.server import Endpoints, bound_port, build_app, serve

SECRET = b"hook-secret"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    hooks: list[str] = []

    async def on_hook() -> None:
        hooks.append("fetch")

    ep = Endpoints(status=lambda: {"kind": "FleetStatus"}, capacity=lambda: {"clusters": {}},
                   metrics=lambda: "aifleet_up 1\n", ready=lambda: (False, "clusters syncing"),
                   on_git_hook=on_hook)
    runner = await serve(build_app(ep, SECRET), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}", hooks
    finally:
        await runner.cleanup()


async def test_probes_metrics_and_status(server: tuple[str, list[str]]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert (r.status_code, r.text.strip()) == (503, "clusters syncing")
        assert (await c.get("/metrics")).text == "aifleet_up 1\n"
        assert (await c.get("/api/v1/status")).json() == {"kind": "FleetStatus"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()},
         202),
        ({"X-Gitea-Signature": hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()}, 202),
        ({"X-Gitlab-Token": SECRET.decode()}, 202),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
        ({}, 401),
    ],
    ids=["github", "gitea", "gitlab", "bad-signature", "unsigned"],
)
async def test_git_hook_needs_a_valid_signature(server: tuple[str, list[str]],
                                                headers: dict[str, str], code: int) -> None:
    url, hooks = server
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/hooks/git", content=b"{}", headers=headers)
    assert r.status_code == code
    assert hooks == (["fetch"] if code == 202 else [])
