"""`fleet run`'s front process (`controllers.front`, `controllers.frontproc`, issue 22):
the API served from a process of its own, through a real `fleet run` on simulated
clusters. The controller stopped (SIGSTOP): status is still answered, its age growing;
the controller killed: the front exits; the front killed: the controller exits
non-zero (docs/controller.md "The front process"). Counted and observed, not timed: a
limit only keeps a broken build from hanging."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx

from controllers.demo.sandbox import Sandbox, until
from tests.support import procs
from tests.support.controller import sandbox
from tests.support.serving import until_ready

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def fleet_run(box: Sandbox, tmp_path: Path, *extra: str
                    ) -> AsyncIterator[tuple[anyio.abc.Process, httpx.AsyncClient, Path]]:
    """`fleet run` on the sandbox until /readyz says 200: the process, a client of its
    API, its log. Killed (SIGCONT first) when the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    log_path = tmp_path / "controller.log"
    with log_path.open("wb") as log:
        proc = await anyio.open_process(
            [sys.executable, "-m", "controllers.cli", "run", "--repo", str(box.repo.path),
             "--kubeconfig", str(box.kubeconfig), "--state-dir", str(tmp_path / "state"),
             "--listen", f"127.0.0.1:{port}", "--poll-interval", "3600", "--log-json",
             "true", "--webhook-secret", SECRET.decode(), *extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            await until_ready(c, proc, log_path, 60)
            yield proc, c, log_path
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            await proc.wait()


def front_of(pid: int) -> procs.Proc:
    [front] = [p for p in procs.descendants(pid)
               if p.ppid == pid and "controllers.front" in p.cmdline]
    return front


def signed(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256":
            "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()}


async def test_the_front_serves_status_the_webhook_and_forwards_the_rest(
        tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("read r-0123456789abcdef\noperate o-0123456789abcdef\n")
    async with sandbox(tmp_path) as box, fleet_run(
            box, tmp_path, "--api-tokens-file", str(tokens)) as (proc, c, log_path):
        front = front_of(proc.pid)
        read = {"Authorization": "Bearer r-0123456789abcdef"}
        assert (await c.get("/api/v1/status")).status_code == 401  # the same auth
        r = await c.get("/api/v1/status", headers={**read, "Cache-Control": "no-cache"})
        assert r.status_code == 200 and "Age" in r.headers
        assert r.json()["source"]["appliedCommit"] == box.first_commit
        again = await c.get("/api/v1/status",
                            headers={**read, "If-None-Match": r.headers["ETag"]})
        assert again.status_code in (200, 304)
        # forwarded to the controller: its answers, auth checked in the front first
        assert (await c.post("/api/v1/sync", json={}, headers=read)).status_code == 403
        synced = await c.post("/api/v1/sync", json={},
                              headers={"Authorization": "Bearer o-0123456789abcdef"})
        assert synced.status_code == 200 and synced.json()["ok"] is True
        assert (await c.post("/api/v1/sync", content=b"{}", headers={
            "Authorization": "Bearer o-0123456789abcdef", "Content-Type": "text/plain"})
                ).status_code == 415
        cap = await c.get("/api/v1/capacity", headers={**read, "Accept-Encoding": "gzip"})
        assert cap.status_code == 200 and cap.json()["clusters"]  # gzip passed through
        # the webhook: the signature checked in the front, the fetch asked of the controller
        body = b'{"ref": "refs/heads/main"}'
        assert (await c.post("/hooks/git", content=body,
                             headers={"X-Hub-Signature-256": "sha256=00"})).status_code == 401
        hook = await c.post("/hooks/git", content=body, headers=signed(body))
        assert (hook.status_code, hook.text) == (202, "fetch scheduled\n")
        await until(lambda: "git_webhook_received" in log_path.read_text(), 20,
                    what="the controller told of the webhook")
        # each request timed by the front, counted in the controller's metrics
        metrics = (await c.get("/metrics", headers=read)).text
        assert 'route="/api/v1/status"' in metrics
        assert procs.alive(front)


async def test_a_stopped_controller_still_has_its_status_answered(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, fleet_run(box, tmp_path) as (proc, c, _log):
        first = await c.get("/api/v1/status", headers={"Cache-Control": "no-cache"})
        workloads = len(first.json()["workloads"])
        assert workloads > 0
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            ages = []
            with anyio.fail_after(30):
                while not ages or ages[-1] < 2:
                    r = await c.get("/api/v1/status")
                    assert r.status_code == 200
                    assert len(r.json()["workloads"]) == workloads
                    ages.append(int(r.headers["Age"]))
                    await anyio.sleep(0.5)
            assert ages == sorted(ages)  # the last document, its age growing
            # the state of now is asked for: the last one, its age said, after a short wait
            now = await c.get("/api/v1/status", headers={"Cache-Control": "no-cache"})
            assert now.status_code == 200 and int(now.headers["Age"]) >= 2
            assert (await c.get("/healthz")).status_code == 200  # stopped < ALIVE_LIMIT
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert (await c.get("/readyz")).status_code == 200  # forwarded once it runs


async def test_a_killed_controller_takes_its_front_with_it(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, fleet_run(box, tmp_path) as (proc, _c, _log):
        front = front_of(proc.pid)
        proc.kill()
        await proc.wait()
        await until(lambda: not procs.alive(front), 15, what="the front gone")


async def test_a_killed_front_stops_the_controller_non_zero(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, fleet_run(box, tmp_path) as (proc, _c, log_path):
        front = front_of(proc.pid)
        os.kill(front.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            code = await proc.wait()
        assert code not in (0, None)
        assert "front_exited" in log_path.read_text()


async def test_serve_in_process_starts_no_front(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, fleet_run(
            box, tmp_path, "--serve-in-process") as (proc, c, _log):
        assert not [p for p in procs.descendants(proc.pid)
                    if "controllers.front" in p.cmdline]
        assert (await c.get("/api/v1/status")).status_code == 200
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await proc.wait() == 0


async def test_sigterm_stops_controller_and_front_cleanly(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, fleet_run(box, tmp_path) as (proc, _c, log_path):
        front = front_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await proc.wait() == 0
        assert not procs.alive(front)  # the controller waited for it
        assert "front_stopping" in log_path.read_text()


async def test_the_front_outlives_a_sigterm_and_ends_with_the_controller(
        tmp_path: Path) -> None:
    """Ctrl-C or systemd's stop signal the whole group: the front ends with the
    controller, never before it (the controller would take that for a dead front and
    exit 2)."""
    async with sandbox(tmp_path) as box, fleet_run(box, tmp_path) as (proc, c, _log):
        front = front_of(proc.pid)
        os.kill(front.pid, signal.SIGTERM)
        assert (await c.get("/readyz")).status_code == 200  # through the front, still there
        assert procs.alive(front) and proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await proc.wait() == 0
        assert not procs.alive(front)
