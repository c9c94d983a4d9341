"""The fleet repo on GitHub through a GitHub App: short-lived installation tokens
instead of a person's long-lived token.

For an operation on the remote, the controller signs a JSON Web Token with the App's
private key (RS256; `iat` 60 s in the past for clock drift, `exp` 9 minutes ahead,
under GitHub's 10-minute maximum; `iss` the App's id: GitHub's "Generating a JSON Web
Token (JWT) for a GitHub App"), exchanges it at `POST {api}/app/installations/{id}/
access_tokens` for an installation token, and sends that token as the HTTPS password
of the user `x-access-token` ("Authenticating as a GitHub App installation"). The token
is kept in memory until `REFRESH_BEFORE` seconds before its `expires_at` (an hour
after it was made), then exchanged again; the key file is read for each exchange, so a
rotated key Secret is used from the next one on. Neither the key, the JWT nor the token
is ever logged or put in an error: messages carry GitHub's status and message only.

Signed with `cryptography` (already a runtime dependency), not a JWT library: a
JWT is three base64url parts, and RS256 is PKCS#1 v1.5 with SHA-256 (RFC 7518 3.3).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pygit2.enums import CredentialType

from workloads.gitauth import Callbacks, Credential, GitAuthError, GitCredentials

GITHUB_API = "https://api.github.com"
REFRESH_BEFORE = 300.0
"""Seconds before `expires_at` from which a new installation token is asked for."""
TOKEN_USER = "x-access-token"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The App's JWT at `now` (seconds since the epoch)."""
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": app_id}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def load_app_key(path: Path) -> rsa.RSAPrivateKey:
    """The App's private key (the PEM file GitHub lets you download); errors name the
    file, never its content."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GitAuthError(f"cannot read --github-app-key-file {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise GitAuthError(f"--github-app-key-file {path} is not an unencrypted PEM "
                           "private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GitAuthError(f"--github-app-key-file {path} is not an RSA key (GitHub Apps "
                           "sign with RS256)")
    return key


@dataclass(slots=True)
class GithubApp:
    app_id: str
    installation_id: str
    key_file: Path
    api_url: str = GITHUB_API
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20))
    clock: Callable[[], float] = time.time
    _token: GitCredentials | None = field(default=None, repr=False)
    _expires: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    exchanges: int = 0
    """Installation tokens asked for so far."""

    @property
    def what(self) -> str:
        return f"the GitHub App {self.app_id} (installation {self.installation_id})"

    def token(self) -> GitCredentials:
        """The cached installation token, or a new one when it expires soon."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires - REFRESH_BEFORE:
                self._token, self._expires = self._exchange()
            return self._token

    def _exchange(self) -> tuple[GitCredentials, float]:
        jwt = app_jwt(self.app_id, load_app_key(self.key_file), self.clock())
        url = (f"{self.api_url.rstrip('/')}/app/installations/"
               f"{self.installation_id}/access_tokens")
        self.exchanges += 1
        try:
            r = self.client.post(url, headers={
                "Authorization": f"Bearer {jwt}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"})
        except httpx.HTTPError as e:
            raise GitAuthError(f"cannot reach {self.api_url} for an installation token of "
                               f"{self.what}: {type(e).__name__}") from None
        if r.status_code != 201:
            raise GitAuthError(f"{self.api_url} refused an installation token for "
                               f"{self.what}: HTTP {r.status_code} {_message(r)}")
        try:
            body = r.json()
            token, expires = str(body["token"]), body["expires_at"]
            at = datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            raise GitAuthError(f"{self.api_url} answered an installation token request "
                               "without a token and expires_at") from None
        return GitCredentials(TOKEN_USER, token, self.what), at

    def credential(self, username_from_url: str | None,
                   allowed: CredentialType) -> Credential:
        return self.token().credential(username_from_url, allowed)

    @contextmanager
    def connect(self, url: str) -> Iterator[Callbacks]:
        self.token()  # a refused exchange fails the operation before it connects
        yield Callbacks(url, self)


def _message(r: httpx.Response) -> str:
    """GitHub's error message (`{"message": ...}`), short; never the request."""
    try:
        return str(r.json().get("message", ""))[:200]
    except ValueError:
        return ""
