"""The fleet repo through a GitHub App (`--github-app-id`, `--github-app-installation-id`,
`--github-app-key-file`): the controller signs an RS256 JWT with the App's key, trades
it for an installation token at GitHub's API (faked with respx: only httpx traffic),
and fetches over real smart HTTP (`git http-backend` that takes only that token as the
password of `x-access-token`). The token is kept until shortly before it expires; a
refused exchange is a source error; neither the token nor the JWT is ever shown."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import respx
import structlog
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controllers.demo.sandbox import until
from tests.gitrepo import GitRepo
from tests.gitserver import git_http_server
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox
from workloads.githubapp import REFRESH_BEFORE, GithubApp, app_jwt
from workloads.gitsource import GitSource

API = "https://api.github.test"
TOKENS = f"{API}/app/installations/42/access_tokens"
TOKEN = "ghs_installationTOKEN0123456789"
T0 = 1_800_000_000.0
"""2027-01-15T08:00:00Z, the fake clock's start."""


def app_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return key


def granted(expires_at: str) -> httpx.Response:
    return httpx.Response(201, json={"token": TOKEN, "expires_at": expires_at,
                                     "permissions": {"contents": "write"}})


def claims(jwt: str, key: rsa.RSAPrivateKey) -> dict[str, object]:
    """The JWT's claims, after checking its RS256 signature with the App's public key."""
    header, payload, signature = jwt.split(".")
    pad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
    assert json.loads(pad(header)) == {"alg": "RS256", "typ": "JWT"}
    key.public_key().verify(pad(signature), f"{header}.{payload}".encode(),
                            padding.PKCS1v15(), hashes.SHA256())  # raises if forged
    parsed: dict[str, object] = json.loads(pad(payload))
    return parsed


def test_the_jwt_is_rs256_signed_with_githubs_claims(tmp_path: Path) -> None:
    key = app_key(tmp_path / "app.pem")
    assert claims(app_jwt("1234", key, T0), key) == {
        "iat": int(T0) - 60, "exp": int(T0) + 540, "iss": "1234"}


async def test_the_controller_fetches_with_an_installation_token_and_never_shows_it(
        tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key = app_key(key_file)
    async with sandbox(tmp_path) as box:
        with respx.mock(assert_all_called=True) as github, \
                git_http_server(tmp_path, "x-access-token", TOKEN) as base, \
                structlog.testing.capture_logs() as logs:
            route = github.post(TOKENS).mock(return_value=granted("2099-01-01T00:00:00Z"))
            settings = fast_settings(box, repo=f"{base}/fleet", github_app_id="1234",
                                     github_app_installation_id="42",
                                     github_app_key_file=key_file, github_api_url=API)
            async with box.controller(settings, adapter_options=FAST) as m:
                await rolled_out(m, box)
                second = box.repo.commit({"README.md": "a second commit\n"}, "docs")
                await until(lambda: m.source.observed == second, 20,
                            what="a second fetch")
                shown = json.dumps(m.status())
        request = route.calls[0].request
        jwt = request.headers["Authorization"].removeprefix("Bearer ")
        assert claims(jwt, key)["iss"] == "1234"
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert route.call_count == 1  # every fetch after the first used the cached token
        config = (settings.state_dir / "mirror.git" / "config").read_text()
        for text in (config, shown, repr(logs)):
            assert TOKEN not in text and jwt not in text


async def test_the_token_is_exchanged_again_shortly_before_it_expires(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key = app_key(key_file)
    now = [T0]
    with respx.mock() as github, git_http_server(tmp_path, "x-access-token", TOKEN) as base:
        route = github.post(TOKENS).mock(side_effect=lambda _: granted(  # an hour from now
            datetime.fromtimestamp(now[0] + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))
        app = GithubApp("1234", "42", key_file, api_url=API, clock=lambda: now[0])
        source = GitSource(f"{base}/fleet", "main", tmp_path / "state", credentials=app)
        _init_remote(tmp_path / "fleet")
        for advance, exchanges in ((0.0, 1), (3600 - REFRESH_BEFORE - 1, 1), (2.0, 2)):
            now[0] += advance
            assert (await source.poll()).observed is not None
            assert route.call_count == exchanges
    assert claims(route.calls[1].request.headers["Authorization"].split()[1], key)["iat"] == \
        int(now[0]) - 60


async def test_a_refused_exchange_is_a_source_error_that_names_no_secret(
        tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    app_key(key_file)
    with respx.mock() as github, git_http_server(tmp_path, "x-access-token", TOKEN) as base:
        route = github.post(TOKENS).mock(return_value=httpx.Response(
            401, json={"message": "A JSON web token could not be decoded"}))
        source = GitSource(f"{base}/fleet", "main", tmp_path / "state",
                           credentials=GithubApp("1234", "42", key_file, api_url=API))
        (failed,) = (await source.poll()).conditions
    jwt = route.calls[0].request.headers["Authorization"].split()[1]
    assert failed.type == "SourceUnavailable"
    assert "refused an installation token for the GitHub App 1234 (installation 42): " \
        "HTTP 401 A JSON web token could not be decoded" in failed.message
    assert jwt not in failed.message


def _init_remote(path: Path) -> None:
    GitRepo(path).commit({"README.md": "fleet\n"}, "init")
