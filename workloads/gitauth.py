"""Credentials of the fleet repo's URL, kept out of every file the controller writes.

An operator may give the repo as `https://user:token@host/org/fleet.git`. Stored as
is in the state dir's mirror (`mirror.git/config`), the token would sit on disk in a
file readable by anyone who can read the state dir, and would be printed by anything
that lists the remote. So the URL is split once: the remote keeps the URL without
userinfo, and the user and token travel only in memory, handed to libgit2 through
`pygit2.RemoteCallbacks` on every fetch and push.

The better way to give a token is a file (`--git-token-file`, a mounted Secret's
key): then it is in no URL, no argument list and no environment (`token_credentials`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pygit2


@dataclass(frozen=True, slots=True)
class GitCredentials:
    username: str
    password: str = field(repr=False)

    def callbacks(self) -> pygit2.RemoteCallbacks:
        return pygit2.RemoteCallbacks(credentials=pygit2.UserPass(self.username,
                                                                  self.password))


def split_credentials(url: str) -> tuple[str, GitCredentials | None]:
    """(the URL without userinfo, the credentials it held); scp-style and local paths
    (`git@host:org/fleet`, `/srv/fleet`) are returned unchanged: they hold no secret."""
    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if not sep:  # a user name alone (ssh://git@host/...) is not a secret
        return url, None
    return clean, GitCredentials(unquote(user), unquote(password))


def callbacks_for(credentials: GitCredentials | None) -> pygit2.RemoteCallbacks | None:
    return credentials.callbacks() if credentials is not None else None


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file, never its content."""


def token_credentials(path: Path, username: str) -> GitCredentials:
    """HTTPS credentials from a token file (read once, at start; surrounding whitespace
    and a trailing newline, as `kubectl create secret --from-file` keeps them, dropped)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read --git-token-file {path}: "
                             f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
    if not token:
        raise TokenFileError(f"--git-token-file {path} is empty")
    return GitCredentials(username, token)
