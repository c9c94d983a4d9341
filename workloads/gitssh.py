"""The fleet repo over SSH: a private key (`--git-ssh-key`) and the server's host keys
(`--git-known-hosts`), both files (a mounted Secret's keys), read for every operation.

The host key is checked by libgit2 itself against `<home>/.ssh/known_hosts` (libgit2
src/libgit2/transports/ssh_libssh2.c: `load_known_hosts` reads it from
`git_sysdir_expand_homedir_file(".ssh")`, `check_against_known_hosts` matches the
server's key with libssh2_knownhost_checkp, for `[host]:port` entries too); its verdict
reaches `Callbacks.certificate_check`, which refuses an unknown or changed key. pygit2
passes no host key to Python, so the known_hosts given is copied, before each
operation, into a private folder that libgit2 takes as its home (`GIT_OPT_SET_HOMEDIR`,
a process-wide option set once; a lock held for the whole operation, so SSH operations
run one at a time and each sees its own known_hosts). Without a match nothing is sent:
the check runs before any credential.

The key is handed to libssh2 as a path (`pygit2.Keypair`, its public half derived from
it), never read into a log, a status or an error: messages name the files only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import CredentialType

from workloads.gitauth import Callbacks, Credential, GitAuthError

_HOME_LOCK = threading.Lock()
"""libgit2's home folder is process-wide: one SSH operation at a time sets it."""


@dataclass(frozen=True, slots=True)
class SshKey:
    key: Path
    known_hosts: Path
    username: str = "git"
    """The SSH user when the URL names none (`ssh://git@host/...` names one)."""

    @property
    def what(self) -> str:
        return f"--git-ssh-key {self.key}"

    def problem(self) -> str:
        """Why these files cannot be used, or "" (said by `fleet run` at start, and
        before each operation: a Secret may be rotated into something unusable)."""
        try:
            head = self.key.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            return f"cannot read --git-ssh-key {self.key}: {e.strerror}"
        if "PRIVATE KEY-----" not in head:
            return f"--git-ssh-key {self.key} is not a private key (PEM or OpenSSH format)"
        try:
            entries = parse_known_hosts(self.known_hosts.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            return (f"cannot read --git-known-hosts {self.known_hosts}: "
                    f"{getattr(e, 'strerror', None) or type(e).__name__}")
        if not entries:
            return (f"--git-known-hosts {self.known_hosts} has no host key (lines 'HOST "
                    "KEYTYPE KEY', as `ssh-keyscan HOST` prints them)")
        return ""

    def host_problem(self, url: str) -> str:
        """Why `url`'s host cannot be trusted with this known_hosts (no entry names it),
        or "": said at start, instead of a first fetch that is sure to be refused."""
        token = _host_token(_host(url), _port(url))
        try:
            entries = parse_known_hosts(self.known_hosts.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return ""  # said by `problem`
        if any(_matches(patterns, token) for patterns, _ in entries):
            return ""
        return (f"--git-known-hosts {self.known_hosts} has no entry for {token}, the host "
                "of --repo (add the lines `ssh-keyscan` prints for it)")

    def credential(self, username_from_url: str | None,
                   allowed: CredentialType) -> Credential:
        user = username_from_url or self.username
        if allowed & CredentialType.SSH_KEY:
            return pygit2.Keypair(user, None, str(self.key), "")
        if allowed & CredentialType.USERNAME:
            return pygit2.Username(user)
        raise GitAuthError(f"the remote does not take an SSH key ({self.what}); an "
                           "https URL needs --git-token-file or a GitHub App")

    def why_refused(self, url: str, host: str) -> str:
        """The message of a host key libgit2 did not find in the known_hosts given."""
        token = _host_token(host, _port(url))
        try:
            entries = parse_known_hosts(self.known_hosts.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            entries = []
        if any(_matches(patterns, token) for patterns, _ in entries):
            return (f"the SSH host key of {token} does not match its entry in "
                    f"--git-known-hosts {self.known_hosts}: the server's key changed (or "
                    "someone is in between); refused. If the change is expected, put the "
                    "new key (`ssh-keyscan`) in the known_hosts Secret")
        return (f"{token} is not in --git-known-hosts {self.known_hosts}: unknown host "
                "key, refused (add its line from `ssh-keyscan`)")

    @contextmanager
    def connect(self, url: str) -> Iterator[Callbacks]:
        problem = self.problem()
        if problem:
            raise GitAuthError(problem)
        known = self.known_hosts.read_bytes()
        with _HOME_LOCK:  # held for the whole operation: libgit2 reads the file then
            (_libgit2_home() / ".ssh" / "known_hosts").write_bytes(known)
            yield Callbacks(url, self, lambda host: self.why_refused(url, host))


_home: Path | None = None


def _libgit2_home() -> Path:
    """The private folder (0700) libgit2 takes as its home, made and set once per
    process (under `_HOME_LOCK`): setting libgit2's home again while another thread's
    libgit2 call reads it could race, so it is never changed after that."""
    global _home
    if _home is None:
        home = Path(tempfile.mkdtemp(prefix="aifleet-libgit2-home-"))
        (home / ".ssh").mkdir(mode=0o700)
        pygit2.settings.homedir = str(home)
        _home = home
    return _home


def parse_known_hosts(text: str) -> list[tuple[str, str]]:
    """(host patterns, key type) of each usable line; comments, blank lines, revoked
    and certificate-authority lines (libssh2 ignores markers it cannot use) skipped."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0].startswith("@"):
            continue
        if len(fields) >= 3:
            out.append((fields[0], fields[1]))
    return out


def _host(url: str) -> str:
    """The host of an ssh:// or scp-style (`user@host:path`) URL."""
    if "://" in url:
        return urlsplit(url).hostname or ""
    return url.split(":", 1)[0].rpartition("@")[2]


def _port(url: str) -> int:
    if "://" in url:
        return urlsplit(url).port or 22
    return 22


def _host_token(host: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, `[host]:port` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


def _matches(patterns: str, token: str) -> bool:
    """Whether a known_hosts line's host field names `token` (plain, wildcard or
    hashed `|1|salt|hash` patterns, as sshd(8) AUTHORIZED_KEYS/SSH_KNOWN_HOSTS FILE
    FORMAT says); negations never match."""
    for pattern in patterns.split(","):
        if pattern.startswith("|1|"):
            salt, _, digest = pattern[3:].partition("|")
            try:
                mac = hmac.new(base64.b64decode(salt), token.encode(), hashlib.sha1)
                if hmac.compare_digest(mac.digest(), base64.b64decode(digest)):
                    return True
            except (ValueError, TypeError):
                continue
        elif not pattern.startswith("!") and _wildcard(pattern).fullmatch(token):
            return True
    return False


def _wildcard(pattern: str) -> re.Pattern[str]:
    """ssh's host pattern: `*` and `?` are wildcards, everything else literal (the
    `[host]:port` brackets too, which fnmatch would take for a character class)."""
    return re.compile(".*".join(".".join(re.escape(p) for p in part.split("?"))
                                for part in pattern.split("*")))

