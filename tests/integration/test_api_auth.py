"""The controller's HTTP API is not open: bearer tokens with a role, optional TLS.

Over real HTTP on loopback: the server alone for the route/role table, then the real
controller on simulated clusters served over HTTPS (a test CA from
`clusters.sim.tls`), read with httpx and with `fleet status` in a subprocess.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from clusters.sim.tls import make_tls
from controllers.apiauth import ApiAuth
from controllers.server import Endpoints, bound_port, build_app, serve
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox

ROOT = Path(__file__).resolve().parents[2]
READ = "read-token-0123456789abcdef"
OPERATE = "operate-token-0123456789abcdef"
SECRET = b"hook-secret"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    hooks: list[str] = []

    async def on_hook() -> None:
        hooks.append("fetch")

    async def control(action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        hooks.append(action)  # an operate route: suspend, resume, sync
        return 202, {"ok": True, "message": f"{action} scheduled"}

    ep = Endpoints(status=lambda: {"kind": "FleetStatus"}, capacity=lambda: {"clusters": {}},
                   metrics=lambda: "aifleet_up 1\n", ready=lambda: (True, "ok"),
                   on_git_hook=on_hook, page=lambda: "<html></html>", control=control)
    app = build_app(ep, SECRET, ApiAuth.from_tokens({READ: "read", OPERATE: "operate"}))
    runner = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}", hooks
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("method", "path", "token", "code"),
    [
        ("GET", "/api/v1/status", None, 401),
        ("GET", "/api/v1/status", "not-a-token-at-all-0000", 401),
        ("GET", "/api/v1/capacity", None, 401),
        ("GET", "/metrics", None, 401),
        ("GET", "/api/v1/no-such-route", None, 401),
        ("POST", "/api/v1/sync", None, 401),
        ("GET", "/api/v1/status", READ, 200),
        ("GET", "/api/v1/capacity", READ, 200),
        ("GET", "/metrics", READ, 200),
        ("GET", "/api/v1/status", OPERATE, 200),
        ("POST", "/api/v1/sync", READ, 403),
        ("POST", "/api/v1/sync", OPERATE, 202),
        ("GET", "/healthz", None, 200),
        ("GET", "/readyz", None, 200),
        ("GET", "/", None, 200),
    ],
    ids=["status-anonymous", "status-bad-token", "capacity-anonymous", "metrics-anonymous",
         "unknown-route-closed", "post-anonymous", "status-read", "capacity-read",
         "metrics-read", "status-operate", "post-read-forbidden", "post-operate",
         "healthz-open", "readyz-open", "page-html-open"],
)
async def test_every_api_route_needs_a_token_of_the_right_role(
        server: tuple[str, list[str]], method: str, path: str, token: str | None,
        code: int) -> None:
    url, hooks = server
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.request(method, path, headers=headers,
                            json={} if method == "POST" else None)
    assert r.status_code == code, r.text
    if code == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "FleetStatus" not in r.text and "aifleet_up" not in r.text
    if method == "POST":
        assert hooks == (["sync"] if code == 202 else [])


async def test_the_git_webhook_keeps_its_hmac_and_needs_no_token(
        server: tuple[str, list[str]]) -> None:
    import hashlib
    import hmac

    url, hooks = server
    sig = "sha256=" + hmac.new(SECRET, b"{}", hashlib.sha256).hexdigest()
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.post("/hooks/git", content=b"{}")).status_code == 401
        r = await c.post("/hooks/git", content=b"{}", headers={"X-Hub-Signature-256": sig})
    assert r.status_code == 202 and hooks == ["fetch"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "no tokens"), ("admin abcdefghijklmnopqrstu\n", "expected 'ROLE TOKEN'"),
     ("read short\n", "shorter than 16"), ("read a b\n", "expected 'ROLE TOKEN'")],
    ids=["empty", "unknown-role", "short-token", "three-fields"])
def test_a_bad_tokens_file_stops_fleet_run_in_one_line(tmp_path: Path, text: str,
                                                       problem: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    repo = tmp_path / "repo"
    repo.mkdir()
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", str(repo),
                          "--listen", "127.0.0.1:0", "--api-tokens-file", str(tokens)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert problem in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "abcdefghijklmnopqrstu" not in out.stderr


def test_tls_cert_without_key_is_refused_at_start(tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_bytes(make_tls().cert_pem)
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo",
                          str(tmp_path), "--listen", "127.0.0.1:0", "--tls-cert", str(cert)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr


async def test_controller_serves_its_api_over_tls_to_token_holders_only(
        tmp_path: Path) -> None:
    tls = make_tls()
    (tmp_path / "tls.crt").write_bytes(tls.cert_pem)
    (tmp_path / "tls.key").write_bytes(tls.key_pem)
    (tmp_path / "ca.crt").write_bytes(tls.ca_pem)
    (tmp_path / "tokens").write_text(f"# who may read\nread {READ}\noperate {OPERATE}\n")
    (tmp_path / "token").write_text(READ + "\n")
    ca = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    async with sandbox(tmp_path) as box, box.controller(fast_settings(
            box, api_tokens_file=tmp_path / "tokens", tls_cert=tmp_path / "tls.crt",
            tls_key=tmp_path / "tls.key"), adapter_options=FAST) as m:
        await rolled_out(m, box)
        url = f"https://127.0.0.1:{m.port}"
        async with httpx.AsyncClient(base_url=url, verify=ca) as c:
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
            assert (await c.get("/api/v1/status")).status_code == 401
            assert (await c.get("/metrics")).status_code == 401
            r = await c.get("/api/v1/status", headers={"Authorization": f"Bearer {READ}"})
            assert r.status_code == 200 and r.json()["kind"] == "FleetStatus"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as plain:
            with pytest.raises(httpx.HTTPError):  # no plaintext on a TLS listener
                await plain.get("/healthz")

        env = {**os.environ, "SSL_CERT_FILE": str(tmp_path / "ca.crt")}
        env.pop("FLEET_TOKEN", None)

        def status(*extra: str, **more: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "controllers.cli", "status", "--server", url,
                 "-o", "json", *extra], cwd=ROOT, capture_output=True, text=True,
                timeout=60, env={**env, **more})

        without = await anyio.to_thread.run_sync(status)
        with_file = await anyio.to_thread.run_sync(
            lambda: status("--token-file", str(tmp_path / "token")))
        with_env = await anyio.to_thread.run_sync(lambda: status(FLEET_TOKEN=READ))
    assert without.returncode == 2, without.stderr
    assert "refused the request (401)" in without.stderr
    assert "--token-file" in without.stderr and "Traceback" not in without.stderr
    assert with_file.returncode == 0, with_file.stderr
    assert '"kind": "FleetStatus"' in with_file.stdout
    assert with_env.returncode == 0, with_env.stderr
    assert READ not in with_file.stderr + with_env.stderr + without.stderr


def _run_until_listening(tmp: Path, *flags: str) -> str:
    """`fleet run` in a subprocess until it listens; its log (stderr), then SIGTERM."""
    import signal
    import time

    import pygit2

    repo = tmp / "repo.git"
    pygit2.init_repository(str(repo), bare=True)
    log = tmp / "run.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controllers.cli", "run", "--repo", str(repo),
             "--listen", "127.0.0.1:0", "--state-dir", str(tmp / "state"), *flags],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60
            while "http_listening" not in log.read_text() and proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return log.read_text()


def test_fleet_run_warns_when_its_api_is_open_and_not_when_tokens_are_given(
        tmp_path: Path) -> None:
    open_log = _run_until_listening(tmp_path / "open")
    assert "http_listening" in open_log and "api_unauthenticated" in open_log
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {READ}\n")
    closed_log = _run_until_listening(tmp_path / "closed", "--api-tokens-file", str(tokens))
    assert "http_listening" in closed_log and "api_unauthenticated" not in closed_log
    assert READ not in closed_log


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    (tmp_path / "tls.crt").write_bytes(make_tls().cert_pem)
    (tmp_path / "other.key").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo",
                          str(tmp_path), "--listen", "127.0.0.1:0", "--tls-cert",
                          str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "other.key")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "cannot be used" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


async def test_a_rotated_tokens_file_takes_effect_without_a_restart(tmp_path: Path) -> None:
    from controllers.apiauth import TokensFile

    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {READ}\n")
    ep = Endpoints(status=lambda: {"kind": "FleetStatus"}, capacity=lambda: {},
                   metrics=lambda: "", ready=lambda: (True, "ok"),
                   on_git_hook=lambda: anyio.lowlevel.checkpoint())
    runner = await serve(build_app(ep, None, TokensFile(tokens)), "127.0.0.1", 0)
    new = "rotated-read-token-0123456789"

    async def code(token: str) -> int:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound_port(runner)}") as c:
            r = await c.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
            return r.status_code

    try:
        assert (await code(READ), await code(new)) == (200, 401)
        tokens.write_text(f"# rotated\nread {new}\n")
        os.utime(tokens, ns=(tokens.stat().st_atime_ns, tokens.stat().st_mtime_ns + 10**9))
        assert (await code(READ), await code(new)) == (401, 200)
        tokens.write_text("read\n")  # a broken rotation keeps the tokens in force
        os.utime(tokens, ns=(tokens.stat().st_atime_ns, tokens.stat().st_mtime_ns + 2 * 10**9))
        assert (await code(READ), await code(new)) == (401, 200)
    finally:
        await runner.cleanup()
