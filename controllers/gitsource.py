"""The fleet repo as the controller sees it: fetched into a local bare mirror.

Any URL pygit2 can fetch (a path, file://, https, ssh) is mirrored into
`<state-dir>/mirror.git`; fetches run in worker threads (pygit2 blocks). The parse
cache survives across commits, so work per commit grows with the files that changed.

Safety rules, each visible as a status condition and a log line:
- a failed fetch, or a commit that cannot be read at all, keeps the last good commit
  (`SourceUnavailable`); nothing is pruned on its account;
- a new head that is not a descendant of the last applied commit (a force-push
  rollback) is refused (`NonFastForwardRefused`) unless `allow_non_fast_forward`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import anyio
import pygit2
import structlog

from workloads.errors import WorkloadsError
from workloads.loader import ParseCache, Snapshot, load_entries, read_fleet
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
                 allow_non_fast_forward: bool = False) -> None:
        self.url = url
        self.branch = branch
        self.subdir = subdir.strip("/")
        self.allow_non_fast_forward = allow_non_fast_forward
        self.mirror_path = state_dir / "mirror.git"
        self.cache = ParseCache()
        self.observed: str | None = None
        self.last_good: Snapshot | None = None
        self.applied: str | None = None
        """The commit whose plan is applied (set by the manager): the fast-forward base."""
        self._repo: pygit2.Repository | None = None

    def _open(self) -> pygit2.Repository:
        if self._repo is None:
            if self.mirror_path.exists():
                self._repo = pygit2.Repository(str(self.mirror_path))
            else:
                self.mirror_path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = pygit2.init_repository(str(self.mirror_path), bare=True)
                self._repo.remotes.create("origin", _url(self.url))
        return self._repo

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _fetch_sync(self) -> str:
        repo = self._open()
        repo.remotes["origin"].fetch([f"+refs/heads/{self.branch}:{self.ref}"])
        return str(repo.references[self.ref].target)

    def _is_descendant(self, head: str, base: str) -> bool:
        repo = self._open()
        return head == base or bool(repo.descendant_of(head, base))

    def _read_sync(self, commit: str) -> Snapshot:
        if self.subdir:
            # A bare mirror has no folders on disk: read the subtree through the prefix.
            tree = resolve_tree(self._open(), commit, self.subdir)
            entries = list(git_files(tree))
            snap = Snapshot(tree.commit, load_entries(entries, self.cache), len(entries))
        else:
            snap = read_fleet(self.mirror_path, commit, cache=self.cache)
        return dataclasses.replace(snap, message=self._message(snap.commit or commit))

    def _message(self, commit: str) -> str:
        try:
            obj = self._open()[commit]
        except (KeyError, ValueError, pygit2.GitError):
            return ""
        return str(obj.message) if isinstance(obj, pygit2.Commit) else ""

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
        if self.last_good is not None and head == self.last_good.commit:
            return SourceResult(None, head, ())
        if self.applied and not self.allow_non_fast_forward:
            ff = await anyio.to_thread.run_sync(self._is_descendant, head, self.applied)
            if not ff:
                log.error("non_fast_forward_refused", head=head, applied=self.applied)
                return SourceResult(None, head, (Condition(
                    "NonFastForwardRefused", "True", "NotADescendant",
                    f"new head {head[:12]} is not a descendant of the applied commit "
                    f"{self.applied[:12]} (force-push?); refused. Start the controller "
                    "with --allow-non-fast-forward to accept it"),))
        try:
            snap = await anyio.to_thread.run_sync(self._read_sync, head)
        except WorkloadsError as e:
            log.error("source_commit_unreadable", commit=head, error=str(e))
            return SourceResult(None, head, (Condition(
                "SourceUnavailable", "True", "CommitUnreadable",
                f"commit {head[:12]} cannot be read: {e}"),))
        self.last_good = snap
        log.info("source_commit_read", commit=head, files=snap.files,
                 workloads=len(snap.spec.workloads), invalid=len(snap.spec.invalid),
                 errors=len(snap.spec.errors), parsed=self.cache.misses)
        return SourceResult(snap, head, ())


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
