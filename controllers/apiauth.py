"""Who may call the controller's HTTP API: bearer tokens with a role, from a file.

The tokens file (`--api-tokens-file`, typically a mounted Kubernetes Secret) has one
token per line, `ROLE TOKEN`; blank lines and `#` comments are ignored:

    read    r-3f9c...      # status, capacity, events, metrics, the page's data
    operate o-81aa...      # also every POST under /api/v1/ (sync, suspend, resume...)

What each request needs (`required_role`):
- open: `/healthz`, `/readyz` (probes) and `/hooks/git` (its own HMAC secret), and the
  page's HTML at `/` (it holds no data; the page asks for a token and sends it with
  every API call it makes);
- `operate`: any method other than GET/HEAD/OPTIONS (a trigger changes what runs);
- `read`: everything else (`/metrics`, `/api/...`), including routes added later: an
  unknown route is closed by default, never open by default.

`TokensFile` re-reads the file when it changes (a rotated Secret takes effect without
a restart); a change that does not parse keeps the tokens in force and is logged.

A missing or unknown token is 401 (with `WWW-Authenticate: Bearer`), a `read` token on
an operate route 403. Tokens are compared in constant time, as SHA-256 digests (equal
length whatever was sent), and never logged. Without a tokens file the API is open as
before; `fleet run` then logs a warning at start.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import structlog

log = structlog.get_logger()

Role = Literal["read", "operate"]
ROLES: tuple[Role, ...] = ("read", "operate")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/hooks/git", "/"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokensFileError(ValueError):
    """The tokens file cannot be read or has a bad line (its text is never quoted)."""


@dataclass(frozen=True, slots=True)
class ApiAuth:
    digests: tuple[tuple[Role, bytes], ...]
    """(role, SHA-256 of the token) per token: the tokens themselves are not kept."""

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Role]) -> ApiAuth:
        return cls(tuple((role, _digest(tok)) for tok, role in sorted(tokens.items())))

    @classmethod
    def from_file(cls, path: Path) -> ApiAuth:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokensFileError(f"cannot read tokens file {path}: "
                                  f"{getattr(e, 'strerror', None) or type(e).__name__}"
                                  ) from e
        tokens: dict[str, Role] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in ROLES:
                # Never echo the line: it may hold a token.
                raise TokensFileError(f"{path}:{n}: expected 'ROLE TOKEN' with ROLE one of "
                                      f"{', '.join(ROLES)}")
            role: Role = "read" if parts[0] == "read" else "operate"
            if len(parts[1]) < 16:
                raise TokensFileError(f"{path}:{n}: token shorter than 16 characters")
            tokens[parts[1]] = role
        if not tokens:
            raise TokensFileError(f"{path}: no tokens (an empty file would leave the API "
                                  "closed to everyone; remove --api-tokens-file to open it)")
        return cls.from_tokens(tokens)

    def role_of(self, authorization: str | None) -> Role | None:
        """The role of `Authorization: Bearer <token>`, or None. Every known token is
        compared, in constant time, whatever matches first."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        sent = _digest(authorization[len("Bearer "):].strip())
        found: Role | None = None
        for role, digest in self.digests:
            if hmac.compare_digest(sent, digest):
                found = role
        return found


class Authenticator(Protocol):
    def role_of(self, authorization: str | None) -> Role | None: ...


class TokensFile:
    """`ApiAuth.from_file`, read again whenever the file's mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self.auth = ApiAuth.from_file(path)  # a bad file at start is an error

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def role_of(self, authorization: str | None) -> Role | None:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self.auth = ApiAuth.from_file(self.path)
                log.info("api_tokens_reloaded", file=str(self.path),
                         tokens=len(self.auth.digests))
            except TokensFileError as e:
                log.error("api_tokens_reload_failed", error=str(e),
                          kept=len(self.auth.digests))
        return self.auth.role_of(authorization)


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs, or None when the route is open (module docstring)."""
    if path in OPEN_PATHS:
        return None
    return "read" if method.upper() in SAFE_METHODS else "operate"


def allows(have: Role, need: Role) -> bool:
    return have == "operate" or need == "read"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
