"""How the controller authenticates to the fleet repo's remote, kept out of every file
it writes.

Four ways, one port (`GitAuth`): a user and password split off the URL
(`GitCredentials`), an HTTPS token read from a file (`TokenFile`), an SSH key with a
known_hosts file (`workloads.gitssh.SshKey`) and a GitHub App installation token
(`workloads.githubapp.GithubApp`). Each network operation (fetch, list, push) runs
inside `auth.connect(url)`, which yields that operation's `Callbacks`: the credential
is made then, so a rotated Secret (a token file, a key) is read again before the next
fetch, not only at start.

An operator may give the repo as `https://user:token@host/org/fleet.git`. Stored as
is in the state dir's mirror (`mirror.git/config`), the token would sit on disk in a
file readable by anyone who can read the state dir, and would be printed by anything
that lists the remote. So the URL is split once: the remote keeps the URL without
userinfo, and the user and token travel only in memory.

Never trusted blindly: a credential asked for a second time in one operation means the
server refused it (libgit2 would ask again forever over SSH), and a host key or TLS
certificate the library does not find valid is refused, with a message that names the
flag or file, never a secret (`GitAuthError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import pygit2
from pygit2.enums import CredentialType

Credential = Any
"""A pygit2 credential (`pygit2.UserPass`, `pygit2.Keypair`, `pygit2.Username`)."""


class GitAuthError(pygit2.GitError):
    """A credential cannot be made or was refused, or the server's identity is not
    trusted. A `pygit2.GitError`, so every caller that handles a failed fetch or push
    handles it the same way; its message names files and flags, never a secret."""


class CredentialSource(Protocol):
    @property
    def what(self) -> str:
        """What the operator gave, for messages: `--git-ssh-key /etc/...`."""
        ...

    def credential(self, username_from_url: str | None,
                   allowed: CredentialType) -> Credential: ...


class Callbacks(pygit2.RemoteCallbacks):
    """One network operation's callbacks: its credential (given once: asked again, it
    was refused), the server's identity checked, and the refs a push was refused."""

    def __init__(self, url: str, source: CredentialSource | None = None,
                 refused_host: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.url = url
        self.source = source
        self.refused_host = refused_host
        """Why an SSH host key was refused, said by the credential (`workloads.gitssh`)."""
        self.asked = 0
        self.rejected: str | None = None
        """A ref the remote refused in a push, and why."""

    def credentials(self, url: str, username_from_url: str | None,
                    allowed_types: CredentialType) -> Credential:
        if self.source is None:
            raise GitAuthError(f"{redact(self.url)} asks for credentials and none were "
                               "given (--git-token-file, --git-ssh-key or --github-app-id)")
        if allowed_types == CredentialType.USERNAME:
            # SSH asks for the user name alone first when the URL names none: not a try
            return self.source.credential(username_from_url, allowed_types)
        self.asked += 1
        if self.asked > 1:
            raise GitAuthError(f"{redact(self.url)} refused the credentials of "
                               f"{self.source.what}")
        return self.source.credential(username_from_url, allowed_types)

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # `valid` is the TLS library's verdict, or for SSH libgit2's check of the host
        # key against known_hosts (libgit2 src/libgit2/transports/ssh_libssh2.c,
        # check_certificate). pygit2's own default accepts every SSH host key; here
        # an unknown or changed one is refused, whatever the credential.
        if valid:
            return True
        name = host.decode(errors="replace")
        if is_ssh(self.url):
            raise GitAuthError(self.refused_host(name) if self.refused_host is not None else
                               f"the SSH host key of {name} is not trusted: give "
                               "--git-known-hosts with its entry")
        raise GitAuthError(f"the TLS certificate of {name} is not valid")

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected = f"{refname}: {message}"


class GitAuth(Protocol):
    def connect(self, url: str) -> AbstractContextManager[Callbacks]:
        """The callbacks of one network operation on `url` (the remote, no userinfo)."""
        ...


@dataclass(frozen=True, slots=True)
class GitCredentials:
    """A fixed user and password (split off the URL)."""
    username: str
    password: str = field(repr=False)
    what: str = "the user and password of --repo"

    def credential(self, username_from_url: str | None,
                   allowed: CredentialType) -> Credential:
        return _user_pass(self.what, self.username, self.password, allowed)

    @contextmanager
    def connect(self, url: str) -> Iterator[Callbacks]:
        yield Callbacks(url, self)


@dataclass(frozen=True, slots=True)
class TokenFile:
    """An HTTPS token in a file (`--git-token-file`, a mounted Secret's key), read
    again for every operation: a rotated Secret is used from the next fetch on."""
    path: Path
    username: str

    @property
    def what(self) -> str:
        return f"--git-token-file {self.path}"

    def read(self) -> GitCredentials:
        try:
            return token_credentials(self.path, self.username)
        except TokenFileError as e:
            raise GitAuthError(str(e)) from None

    def credential(self, username_from_url: str | None,
                   allowed: CredentialType) -> Credential:
        creds = self.read()
        return _user_pass(self.what, creds.username, creds.password, allowed)

    @contextmanager
    def connect(self, url: str) -> Iterator[Callbacks]:
        self.read()  # an unreadable file fails the operation before it connects
        yield Callbacks(url, self)


def _user_pass(what: str, username: str, password: str,
               allowed: CredentialType) -> Credential:
    if not allowed & CredentialType.USERPASS_PLAINTEXT:
        raise GitAuthError(f"the remote does not take a user and password ({what}); "
                           "an ssh URL needs --git-ssh-key")
    return pygit2.UserPass(username, password)


@contextmanager
def connecting(auth: GitAuth | None, url: str) -> Iterator[Callbacks]:
    """`auth.connect(url)`, or without credentials callbacks that still check the
    server's identity and record push refusals."""
    if auth is None:
        yield Callbacks(url)
        return
    with auth.connect(url) as callbacks:
        yield callbacks


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


def is_ssh(url: str) -> bool:
    """ssh://host/... or scp-style user@host:path (what libgit2 sends over SSH)."""
    if "://" in url:
        return url.split("://", 1)[0] in ("ssh", "git+ssh", "ssh+git")
    head = url.split("/", 1)[0]
    return ":" in head and not url.startswith("/")


def redact(url: str) -> str:
    """Never show credentials embedded in a URL (https://user:token@host/...)."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        userinfo, _, tail = rest.partition("@")
        if ":" in userinfo:
            return f"{scheme}://***@{tail}"
    return url


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file, never its content."""


def token_credentials(path: Path, username: str) -> GitCredentials:
    """HTTPS credentials from a token file (surrounding whitespace and a trailing
    newline, as `kubectl create secret --from-file` keeps them, dropped)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read --git-token-file {path}: "
                             f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
    if not token:
        raise TokenFileError(f"--git-token-file {path} is empty")
    return GitCredentials(username, token, f"--git-token-file {path}")
