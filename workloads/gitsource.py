"""The fleet repo as the controller sees it: fetched into a local bare mirror.

Any URL pygit2 can fetch (a path, file://, https, ssh) is mirrored into
`<state-dir>/mirror.git`; fetches run in worker threads (pygit2 blocks). The parse
cache survives across commits, so work per commit grows with the files that changed.
The mirror is owner-only (0700, its config 0600) and its remote URL never holds the
credentials of `--repo`: each fetch runs inside `credentials.connect(url)`
(`workloads.gitauth`: a token file, an SSH key with known_hosts, a GitHub App, or the
user and password split off the URL), which makes the credential for that fetch in
memory, so a rotated Secret is read again before the next fetch.

Safety rules, each visible as a status condition and a log line:
- a failed fetch, or a commit that cannot be read at all, keeps the last good commit
  (`SourceUnavailable`); nothing is pruned on its account;
- with a `SignatureVerifier` (`--verify-signatures`), a head that is not signed by an
  allowed key is not read at all (`SourceUnverified`, reason Unsigned / UntrustedKey /
  BadSignature / NoVerifier); the last good commit keeps being served;
- a new head that is not a descendant of the last applied commit (a force-push
  rollback) is refused (`NonFastForwardRefused`) unless `allow_non_fast_forward`
  (`fleet.safety.refuse_head`). The base survives restarts and is shared by replicas:
  the manager loads it from the state dir and from the home cluster
  (`controllers.runtime.sourceguard`) into `applied` and `shared_applied`. A restarted
  controller that refuses its first head serves the base commit, when its mirror still
  has it, so what runs keeps being reconciled.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import anyio
import pygit2
import structlog

from fleet.safety import fast_forward_base, refuse_head
from workloads.errors import WorkloadsError
from workloads.gitauth import GitAuth, connecting, split_credentials
from workloads.history import git_history
from workloads.loader import (
    ParseCache,
    Snapshot,
    git_changes,
    load_changed,
    load_entries,
    read_fleet,
)
from workloads.signatures import SignatureVerifier, Verdict
from workloads.source import git_files, resolve_tree

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class SourceResult:
    snapshot: Snapshot | None
    """A newly accepted commit to plan, or None when nothing new is to be planned."""
    observed: str | None
    conditions: tuple[Condition, ...]


class GitSource:
    def __init__(self, url: str, branch: str, state_dir: Path, *, subdir: str = "",
                 allow_non_fast_forward: bool = False,
                 verifier: SignatureVerifier | None = None,
                 credentials: GitAuth | None = None,
                 controller_namespace: str | None = None) -> None:
        self.url = url
        self.remote_url, in_url = split_credentials(_url(url))
        self.credentials: GitAuth | None = credentials or in_url
        """The remote as stored in the mirror (no userinfo); the credentials given
        (`--git-token-file`, `--git-ssh-key`, a GitHub App), else those the URL held."""
        self.branch = branch
        self.subdir = subdir.strip("/")
        self.allow_non_fast_forward = allow_non_fast_forward
        self.mirror_path = state_dir / "mirror.git"
        self.controller_namespace = controller_namespace
        """The controller's own namespace: no team folder may use it (`load_entries`)."""
        self.cache = ParseCache()
        self._last_read: Snapshot | None = None
        """The snapshot `cache` was last read into: the next commit is diffed against it."""
        self.observed: str | None = None
        self.last_good: Snapshot | None = None
        self.applied: str | None = None
        """The commit whose plan is applied (set by the manager): the fast-forward base."""
        self.shared_applied: str | None = None
        """The applied commit the leader keeps in the home cluster (set by the manager):
        becomes the base when it is newer than `applied`."""
        self.refused: str | None = None
        """The last head refused as a non-descendant of the base, until one is accepted."""
        self.holding = False
        """The commit served (`last_good`) is not a descendant of the base and the base
        cannot be read: nothing may be applied from it (the manager stops acting)."""
        self._passed: tuple[str, str | None] | None = None
        """(head, base) last found a fast-forward: not checked again until one changes."""
        self._repo: pygit2.Repository | None = None
        self.verifier = verifier
        self.unverified: tuple[str, Verdict] | None = None
        """The head last refused for its signature, and why, until one verifies."""

    def _open(self) -> pygit2.Repository:
        if self._repo is None:
            if self.mirror_path.exists():
                self._clear_stale_lock()
                self._repo = pygit2.Repository(str(self.mirror_path))
                if self._repo.remotes["origin"].url != self.remote_url:
                    # A mirror made before credentials were kept out of it, or --repo
                    # changed: the remote is what --repo says, without its userinfo.
                    self._repo.remotes.set_url("origin", self.remote_url)
            else:
                self.mirror_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._repo = pygit2.init_repository(str(self.mirror_path), bare=True)
                self._repo.remotes.create("origin", self.remote_url)
            _owner_only(self.mirror_path)
        return self._repo

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _clear_stale_lock(self) -> None:
        """The lock file of the mirror's ref left by a process killed while a fetch
        moved it (SIGKILL, the OOM killer). Left there, every later fetch that brings a
        new commit fails ("failed to lock file ... for writing"), and the restarted
        controller serves nothing, for good. The mirror is this controller's own (in
        its state dir, opened once per process), so no one else holds that lock: as
        `workloads.ledger_store.LedgerWriter` does for its refs."""
        ref = Path(self.mirror_path, *self.ref.split("/"))
        ref.with_name(ref.name + ".lock").unlink(missing_ok=True)

    def _fetch_sync(self) -> str:
        repo = self._open()
        with connecting(self.credentials, self.remote_url) as callbacks:
            repo.remotes["origin"].fetch([f"+refs/heads/{self.branch}:{self.ref}"],
                                         callbacks=callbacks)
        found = repo.references.get(self.ref)
        if found is None:  # libgit2 fetches a refspec that matches nothing without error
            raise pygit2.GitError(f"the repository has no branch {self.branch!r} "
                                  "(fleet run --branch names the one to watch)")
        return str(found.target)

    def _is_descendant(self, head: str, base: str) -> bool:
        """False too when either commit is not in the mirror (a base force-pushed away
        before this mirror was made is no ancestor of anything it fetched)."""
        repo = self._open()
        try:
            return head == base or bool(repo.descendant_of(head, base))
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def _base_sync(self) -> str | None:
        shared, local = self.shared_applied, self.applied
        newer = shared is not None and local is not None and self._is_descendant(shared, local)
        return fast_forward_base(local, shared, shared_descends_local=newer)

    def _read_sync(self, commit: str) -> Snapshot:
        snap = self._read_changed(commit) or self._read_whole(commit)
        self._last_read = snap
        return dataclasses.replace(snap, message=self._message(snap.commit or commit))

    def _read_changed(self, commit: str) -> Snapshot | None:
        """`commit` read from the last commit read, parsing only the Workload files
        it edits (`workloads.loader.load_changed`): a commit's cost grows with its
        change, not with the fleet. None: read it whole."""
        last = self._last_read
        if last is None or last.commit is None:
            return None
        repo = self._open()
        try:
            sha = str(repo[commit].peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        changes = git_changes(repo, last.commit, sha, self.subdir)
        if changes is None:
            return None
        return load_changed(last, sha, changes, self.cache,
                            controller_namespace=self.controller_namespace)

    def _read_whole(self, commit: str) -> Snapshot:
        if self.subdir:
            # A bare mirror has no folders on disk: read the subtree through the prefix.
            tree = resolve_tree(self._open(), commit, self.subdir)
            entries = list(git_files(tree))
            history = git_history(self._open(), tree.commit, self.subdir)
            snap = Snapshot(tree.commit, load_entries(
                entries, self.cache, history=history,
                controller_namespace=self.controller_namespace), len(entries))
        else:
            snap = read_fleet(self.mirror_path, commit, cache=self.cache,
                              controller_namespace=self.controller_namespace)
        return snap

    def _message(self, commit: str) -> str:
        try:
            obj = self._open()[commit]
        except (KeyError, ValueError, pygit2.GitError):
            return ""
        return str(obj.message) if isinstance(obj, pygit2.Commit) else ""

    async def descends(self, head: str, base: str) -> bool:
        """Whether `head` is `base` or a descendant of it in the mirror (read in a
        worker thread); False when either is not in the mirror."""
        return await anyio.to_thread.run_sync(self._is_descendant, head, base)

    async def read(self, commit: str) -> Snapshot | None:
        """One commit of the mirror (a held commit's base after a restart), or None
        when it cannot be read."""
        try:
            return await anyio.to_thread.run_sync(self._read_sync, commit)
        except (WorkloadsError, KeyError, ValueError, pygit2.GitError) as e:
            log.error("source_commit_unreadable", commit=commit, error=str(e)[:300])
            return None

    async def poll(self) -> SourceResult:
        """Fetch once; say whether there is a new commit to plan, and the conditions."""
        try:
            head = await anyio.to_thread.run_sync(self._fetch_sync)
        except (pygit2.GitError, KeyError, OSError) as e:
            log.warning("source_fetch_failed", url=_redact(self.url), error=str(e)[:300])
            serving = (self.last_good.commit or "")[:12] if self.last_good else ""
            return SourceResult(None, self.observed, (Condition(
                "SourceUnavailable", "True", "FetchFailed",
                f"fetch of {_redact(self.url)} failed: {str(e)[:200]}; serving "
                f"{serving or 'nothing yet'}"),))
        self.observed = head
        base = self.applied = await anyio.to_thread.run_sync(self._base_sync)
        unchanged = self.last_good is not None and head == self.last_good.commit
        if unchanged and self._passed == (head, base):
            return SourceResult(None, head, ())
        ff = base is None or self.allow_non_fast_forward or await anyio.to_thread.run_sync(
            self._is_descendant, head, base)
        why = refuse_head(head, base, descends=ff,
                          allow_non_fast_forward=self.allow_non_fast_forward)
        if why:
            assert base is not None
            if self.refused != head:
                log.error("non_fast_forward_refused", head=head, applied=base)
            self.refused = head
            refusal = Condition("NonFastForwardRefused", "True", "NotADescendant", why)
            return SourceResult(await self._serve_base(base), head, (refusal,))
        if self.verifier is not None:
            verdict = await anyio.to_thread.run_sync(self._verify_sync, head)
            if not verdict.ok:
                return await self._refuse_unverified(head, base, verdict)
            self.unverified = None
        self._passed = (head, base)
        if unchanged:
            return SourceResult(None, head, ())
        try:
            snap = await anyio.to_thread.run_sync(self._read_sync, head)
        except WorkloadsError as e:
            log.error("source_commit_unreadable", commit=head, error=str(e))
            return SourceResult(None, head, (Condition(
                "SourceUnavailable", "True", "CommitUnreadable",
                f"commit {head[:12]} cannot be read: {e}"),))
        except Exception as e:  # the loop driver: one commit never stops the controller
            # Bad content is a diagnostic by design; reaching here is a reader bug. It
            # must not stop the controller (every restart would read the same commit and
            # die again): keep serving the last good commit and say so.
            log.exception("source_commit_read_failed", commit=head, error=type(e).__name__)
            serving = (self.last_good.commit or "")[:12] if self.last_good else ""
            return SourceResult(None, head, (Condition(
                "SourceUnavailable", "True", "CommitUnreadable",
                f"commit {head[:12]} cannot be read ({type(e).__name__}); serving "
                f"{serving or 'nothing yet'}"),))
        self.last_good = snap
        self.refused = None
        self.holding = False
        log.info("source_commit_read", commit=head, files=snap.files,
                 workloads=len(snap.spec.workloads), invalid=len(snap.spec.invalid),
                 errors=len(snap.spec.errors), parsed=self.cache.misses)
        return SourceResult(snap, head, ())

    def _verify_sync(self, commit: str) -> Verdict:
        assert self.verifier is not None
        return self.verifier.verify(self._open(), commit)

    async def _refuse_unverified(self, head: str, base: str | None, verdict: Verdict
                                 ) -> SourceResult:
        """`head` is not signed by an allowed key: never read, never applied. What is
        served stays; after a restart (nothing served yet) the applied base is served
        when it verifies itself."""
        if self.unverified is None or self.unverified[0] != head:
            log.error("source_unverified", commit=head, reason=verdict.reason,
                      message=verdict.message)
        self.unverified = (head, verdict)
        served: Snapshot | None = None
        if self.last_good is None and base is not None and base != head and \
                (await anyio.to_thread.run_sync(self._verify_sync, base)).ok:
            served = await self._serve_base(base)
        serving = (self.last_good.commit or "")[:12] if self.last_good else ""
        return SourceResult(served, head, (Condition(
            "SourceUnverified", "True", verdict.reason,
            f"{verdict.message}: not applied; serving {serving or 'nothing yet'}"),))

    async def _serve_base(self, base: str) -> Snapshot | None:
        """The base commit to serve instead of a refused head, when what is served now
        does not descend from the base (after a restart nothing is served yet; a follower
        may have read the head before it learnt the leader's base) and the mirror still
        has it, so drift correction and failover go on; else None (keep serving)."""
        served = self.last_good.commit if self.last_good is not None else None
        if served is not None and await anyio.to_thread.run_sync(
                self._is_descendant, served, base):
            self.holding = False
            return None
        try:
            snap = await anyio.to_thread.run_sync(self._read_sync, base)
        except (WorkloadsError, KeyError, ValueError, pygit2.GitError) as e:
            if not self.holding:
                log.warning("source_base_unreadable", commit=base, error=str(e)[:300],
                            holding=served)
            self.holding = served is not None
            return None
        self.last_good = snap
        self.holding = False
        log.info("source_serving_base", commit=base)
        return snap


def _owner_only(mirror: Path) -> None:
    """The mirror readable by the controller's user only: it holds the whole fleet
    repo, and its config must never be world-readable."""
    mirror.chmod(0o700)
    config = mirror / "config"
    if config.exists():
        config.chmod(0o600)


def _url(url: str) -> str:
    if "://" in url or url.startswith("git@"):
        return url
    return os.path.abspath(url)


def _redact(url: str) -> str:
    """Never log credentials embedded in a URL (https://user:token@host/...)."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
