"""What makes the ledger's head trustworthy beyond its hash chain: signatures and anchors.

A hash chain shows that records were not edited, removed or reordered *since the head*;
whoever can push the branch can also re-chain it (change a record and recompute every
hash after it). Two things pin the head down:

- **Signed commits.** The controller signs every ledger commit with an SSH key (from a
  Secret), exactly as git does for `gpg.format=ssh`: `ssh-keygen -Y sign -n git` over the
  commit object without its `gpgsig` header, stored in that header. `git verify-commit`
  with `gpg.ssh.allowedSignersFile` accepts them, and so does `verify_commits` here
  (`ssh-keygen -Y find-principals`, then `-Y verify`, per commit). A rewrite needs the key.
- **An anchor.** A second Git remote (append-only on the server side: no force pushes,
  no deletes) to which the controller pushes, per interval, a small commit recording the
  ledger's head: `{"seq", "hash", "ledgerCommit", "time"}`, one JSON line appended to
  `anchors/YYYY-MM-DD.jsonl` on the branch `aifleet/anchor`. `compare_anchor` checks every
  entry against the ledger: an anchored hash that is not the ledger's hash at that seq,
  or an anchored seq beyond the ledger's head, is a rewrite.

Plain sync code (subprocesses, pygit2), for worker threads. Errors: `SigningFailed`
(the key cannot sign), `AnchorUnavailable` (transient: the anchor cannot be reached).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pygit2

from workloads.errors import SourceUnavailable, WorkloadsError
from workloads.gitauth import GitAuth, connecting

ANCHOR_BRANCH = "aifleet/anchor"
_ANCHOR_REF = f"refs/heads/{ANCHOR_BRANCH}"
_SIGNATURE = ("aifleet", "aifleet@localhost")
_TIMEOUT = 30


class SigningFailed(WorkloadsError):
    """ssh-keygen could not sign with the key (missing, wrong permissions, passphrase)."""


class AnchorUnavailable(SourceUnavailable):
    """The anchor remote could not be reached or refused the push; retry later."""


def _ssh_keygen(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise WorkloadsError("ssh-keygen is not installed: it signs and verifies SSH "
                             "signatures (package openssh-client)")
    return subprocess.run([exe, *args], input=data, capture_output=True, timeout=_TIMEOUT,
                          check=False)


def ssh_sign(data: bytes, key_path: str | os.PathLike[str]) -> str:
    """An armored SSH signature of `data` in the namespace `git`, as git makes one."""
    done = _ssh_keygen(["-Y", "sign", "-n", "git", "-f", str(key_path)], data)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        # ssh-keygen's message names the file and the problem, never the key material
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SigningFailed(f"cannot sign the ledger commit with {key_path}: "
                            f"{why[-1] if why else 'ssh-keygen failed'}")
    return done.stdout.decode()


def signed_commit(repo: pygit2.Repository, key_path: str | os.PathLike[str],
                  author: pygit2.Signature, message: str, tree: pygit2.Oid,
                  parents: list[pygit2.Oid]) -> pygit2.Oid:
    """A commit object signed as `git commit -S` with `gpg.format=ssh` makes it."""
    # pygit2's stub says Oid; it returns the commit object's text
    content: str = repo.create_commit_string(  # type: ignore[assignment]
        author, author, message, tree, list[pygit2.Oid | str](parents))
    oid: pygit2.Oid = repo.create_commit_with_signature(
        content, ssh_sign(content.encode(), key_path), "gpgsig")
    return oid


@dataclass(frozen=True, slots=True)
class BadSignature:
    commit: str
    why: str


def signer_key(signature: str) -> bytes | None:
    """The public key blob an armored SSH signature names (SSHSIG: magic, version, then
    the key as an SSH string), or None when it is not one."""
    body = "".join(ln for ln in signature.strip().splitlines() if not ln.startswith("-----"))
    try:
        blob = base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error):
        return None
    if blob[:6] != b"SSHSIG" or len(blob) < 14:
        return None
    n = int.from_bytes(blob[10:14], "big")
    return blob[14:14 + n] or None


class SignatureChecker:
    """Checks SSH signatures in the namespace `git` against an allowed-signers file, as
    `git verify-commit` does: `ssh-keygen -Y find-principals` (once per signing key:
    the answer is cached), then `ssh-keygen -Y verify` (once per signature, which checks
    the key, principal, namespace and validity window again)."""

    def __init__(self, allowed_signers: str) -> None:
        if not Path(allowed_signers).is_file():
            raise WorkloadsError(f"{allowed_signers}: no such allowed signers file")
        self.allowed = allowed_signers
        self._principals: dict[bytes, str | None] = {}
        self._lock = threading.Lock()

    def _principal(self, key: bytes | None, sig_path: str) -> str | None:
        if key is not None:
            with self._lock:
                if key in self._principals:
                    return self._principals[key]
        found = _ssh_keygen(["-Y", "find-principals", "-s", sig_path, "-f", self.allowed])
        names = found.stdout.decode().split()
        principal = names[0] if found.returncode == 0 and names else None
        if key is not None:
            with self._lock:
                self._principals[key] = principal
        return principal

    def check(self, content: bytes, signature: str) -> str | None:
        """None when an allowed signer made `signature` over `content`, else why not."""
        if "BEGIN SSH SIGNATURE" not in signature:
            return "not an SSH signature (a GPG one?)"
        with tempfile.NamedTemporaryFile("w", suffix=".sig") as sig:
            sig.write(signature)
            sig.flush()
            principal = self._principal(signer_key(signature), sig.name)
            if principal is None:
                return "signed by a key that is not in the allowed signers"
            done = _ssh_keygen(["-Y", "verify", "-f", self.allowed, "-I", principal,
                                "-n", "git", "-s", sig.name], content)
            if done.returncode != 0:
                why = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
                return "bad signature: " + (why.splitlines()[-1] if why else
                                            "ssh-keygen refused it")
        return None


def ledger_commits(repo: pygit2.Repository, tip: pygit2.Oid) -> Iterator[pygit2.Commit]:
    """Every commit reachable from `tip`, oldest first."""
    walker = repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    yield from walker


def verify_commits(repo: pygit2.Repository, tip: pygit2.Oid, allowed_signers: str
                   ) -> tuple[int, list[BadSignature]]:
    """(commits checked, those not signed by an allowed signer, oldest first).

    One `ssh-keygen -Y verify` per commit, a few at a time (they wait on processes,
    not on the GIL)."""
    checker = SignatureChecker(allowed_signers)
    signed: list[tuple[str, bytes, str]] = []
    bad: dict[str, BadSignature] = {}
    order: list[str] = []
    for commit in ledger_commits(repo, tip):
        cid = str(commit.id)
        order.append(cid)
        signature, content = commit.gpg_signature
        if signature is None or content is None:
            bad[cid] = BadSignature(cid, "unsigned")
        else:
            signed.append((cid, content, signature.decode("utf-8", "replace")))

    def one(item: tuple[str, bytes, str]) -> tuple[str, str | None]:
        return item[0], checker.check(item[1], item[2])

    with ThreadPoolExecutor(max_workers=4) as pool:
        for cid, why in pool.map(one, signed):
            if why is not None:
                bad[cid] = BadSignature(cid, why)
    return len(order), [bad[c] for c in order if c in bad]


# --------------------------------------------------------------------------- anchors


@dataclass(frozen=True, slots=True)
class Anchor:
    """The ledger's head as the anchor recorded it."""

    seq: int
    hash: str
    ledger_commit: str
    time: str

    def line(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash,
                           "ledgerCommit": self.ledger_commit, "time": self.time},
                          sort_keys=True, separators=(",", ":"))


_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})T")


def _remote(repo: pygit2.Repository, url: str) -> pygit2.Remote:
    if "://" not in url and not url.startswith("git@"):
        url = os.path.abspath(url)
    return repo.remotes.create_anonymous(url)


def _redact(url: str) -> str:
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _fetch_anchor(repo: pygit2.Repository, url: str, into: str,
                  credentials: GitAuth | None) -> pygit2.Commit | None:
    remote = _remote(repo, url)
    try:
        with connecting(credentials, url) as callbacks:
            heads = remote.list_heads(callbacks=callbacks)
        if _ANCHOR_REF not in {h.name for h in heads}:
            return None
        with connecting(credentials, url) as callbacks:
            remote.fetch([f"+{_ANCHOR_REF}:{into}"], callbacks=callbacks)
    except pygit2.GitError as e:
        raise AnchorUnavailable(f"cannot fetch the anchor from {_redact(url)}: {e}") from e
    ref = repo.references.get(into)
    return None if ref is None else ref.peel(pygit2.Commit)


class AnchorWriter:
    """Appends the ledger's head to the anchor remote, one small commit per call.

    Its objects live in the controller's mirror (`repo_path`) under a ref of its own;
    `key_path`, when given, signs the anchor commits too.
    """

    def __init__(self, repo_path: str | os.PathLike[str], url: str, *,
                 credentials: GitAuth | None = None,
                 key_path: str | os.PathLike[str] | None = None,
                 max_attempts: int = 3) -> None:
        self.repo = pygit2.Repository(str(repo_path))
        self.url = url
        self.credentials = credentials
        self.key_path = key_path
        self.max_attempts = max_attempts
        self.tracking = "refs/aifleet/anchor"
        self.last: Anchor | None = None

    def append(self, anchor: Anchor) -> None:
        m = _DAY.match(anchor.time)
        if m is None:
            raise ValueError(f"anchor time {anchor.time!r} is not RFC 3339")
        path = f"anchors/{m.group(1)}.jsonl"
        why = ""
        for _ in range(self.max_attempts):
            base = _fetch_anchor(self.repo, self.url, self.tracking, self.credentials)
            tb_old = base.tree if base is not None else None
            old = b""
            if tb_old is not None and path in tb_old:
                blob = self.repo[tb_old[path].id]
                assert isinstance(blob, pygit2.Blob)
                old = bytes(blob.data)
            index = pygit2.Index()
            if tb_old is not None:
                index.read_tree(tb_old)
            data = old + f"{anchor.line()}\n".encode()
            index.add(pygit2.IndexEntry(path, self.repo.create_blob(data),
                                        pygit2.enums.FileMode.BLOB))
            tree = index.write_tree(self.repo)
            sig = pygit2.Signature(*_SIGNATURE)
            message = f"anchor: ledger seq {anchor.seq}\n\nhash {anchor.hash}\n" \
                      f"ledger-commit {anchor.ledger_commit}\n"
            parents = [base.id] if base is not None else []
            if self.key_path is not None:
                commit = signed_commit(self.repo, self.key_path, sig, message, tree, parents)
            else:
                commit = self.repo.create_commit(None, sig, sig, message, tree, parents)
            pending = "refs/aifleet/anchor-pending"
            self.repo.references.create(pending, commit, force=True)
            try:
                with connecting(self.credentials, self.url) as callbacks:
                    _remote(self.repo, self.url).push([f"{pending}:{_ANCHOR_REF}"],
                                                      callbacks=callbacks)
            except pygit2.GitError as e:
                why = str(e)
                continue  # someone else pushed first (or the remote refused): try again
            self.last = anchor
            return
        raise AnchorUnavailable(f"cannot push the anchor to {_redact(self.url)}: {why}")


def read_anchor(url: str, credentials: GitAuth | None = None) -> list[Anchor]:
    """Every entry of the anchor at `url`, in the order they were written."""
    tmp = tempfile.mkdtemp(prefix="aifleet-anchor-")
    try:
        repo = pygit2.init_repository(tmp, bare=True)
        tip = _fetch_anchor(repo, url, "refs/aifleet/anchor", credentials)
        if tip is None:
            raise WorkloadsError(f"no anchor at {_redact(url)} (branch {ANCHOR_BRANCH})")
        out: list[Anchor] = []
        if "anchors" not in tip.tree:
            return out
        folder = repo[tip.tree["anchors"].id]
        assert isinstance(folder, pygit2.Tree)
        for entry in sorted(folder, key=lambda e: e.name or ""):
            blob = repo[entry.id]
            if not isinstance(blob, pygit2.Blob):
                continue
            for n, line in enumerate(bytes(blob.data).decode().splitlines(), 1):
                try:
                    d = json.loads(line)
                    out.append(Anchor(int(d["seq"]), str(d["hash"]), str(d["ledgerCommit"]),
                                      str(d["time"])))
                except (ValueError, KeyError, TypeError) as e:
                    raise WorkloadsError(f"anchor anchors/{entry.name}:{n} is not an anchor "
                                         f"entry: {e}") from e
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class AnchorMismatch:
    anchor: Anchor
    why: str


def compare_anchor(anchors: list[Anchor], hashes: dict[int, str], head_seq: int
                   ) -> list[AnchorMismatch]:
    """Anchor entries the ledger contradicts: `hashes` are the ledger's hashes at the
    anchored seqs, `head_seq` its last seq."""
    out: list[AnchorMismatch] = []
    for a in anchors:
        if a.seq > head_seq:
            out.append(AnchorMismatch(a, f"the anchor recorded seq {a.seq} at {a.time} but the "
                                         f"ledger ends at seq {head_seq}: records removed "
                                         "or the branch rolled back"))
        elif hashes.get(a.seq) != a.hash:
            out.append(AnchorMismatch(a, f"the anchor recorded seq {a.seq} as {a.hash[:16]} at "
                                         f"{a.time}; the ledger has "
                                         f"{(hashes.get(a.seq) or 'nothing')[:16]}: rewritten"))
    return out
