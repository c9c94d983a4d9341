"""Which workload a Workload file held before it stopped reading, from Git history.

A file that no longer parses still names a workload by its path
(`fleet.safety.path_workload_id`), but only as its file name: `workloads/nlp-team/api.yaml`
may hold `nlp-team/serve`. What it held is in the commits before: walking first parents
back from the commit being read, the last version of that path that reads says which
workload ids it declared (`fleet.safety.kept_from_previous` keeps them Invalid).

Asking Git, not the controller's memory, makes the answer the same after a restart,
for `fleet validate`, and for a PR's plan. It costs nothing while every file reads;
for a broken file, one tree lookup per commit walked (at most `MAX_COMMITS`) and one
parse per distinct version of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import pygit2

from fleet.ids import WorkloadId
from fleet.models import Workload

MAX_COMMITS = 200
"""How far back a broken file's last readable version is looked for."""

History = Callable[[Iterable[str]], Mapping[str, set[WorkloadId]]]
"""Fleet-relative paths of unreadable Workload files -> the ids each held before."""


def git_history(repo: pygit2.Repository, commit: str | None, prefix: str, *,
                inclusive: bool = False) -> History:
    """What the fleet (at `prefix` in `repo`) held at each path in the first-parent
    commits before `commit` (from `commit` itself when `inclusive`: a worktree read
    against HEAD)."""

    def held(paths: Iterable[str]) -> dict[str, set[WorkloadId]]:
        start = _commit(repo, commit)
        if start is not None and not inclusive:
            start = start.parents[0] if start.parents else None
        return held_before(repo, start, prefix, paths)

    return held


def held_before(repo: pygit2.Repository, start: pygit2.Commit | None, prefix: str,
                paths: Iterable[str], max_commits: int = MAX_COMMITS
                ) -> dict[str, set[WorkloadId]]:
    """Path -> the workload ids its last readable version declared, walking first
    parents from `start` (inclusive); a path absent from a commit has no earlier
    version that counts (it was deleted, or created later)."""
    from workloads.loader import parse_file  # the loader imports this module

    todo = set(paths)
    out: dict[str, set[WorkloadId]] = {}
    seen: dict[pygit2.Oid, set[WorkloadId]] = {}
    commit = start
    walked = 0
    while todo and commit is not None and walked < max_commits:
        walked += 1
        root = _folder(repo, commit.tree, prefix)
        for path in sorted(todo):
            blob = _blob(repo, root, path)
            if blob is None:
                todo.discard(path)
                continue
            ids = seen.get(blob.id)
            if ids is None:
                parsed = parse_file(path, path, blob.data)
                ids = {d.id for d, _ in parsed.documents if isinstance(d, Workload)}
                ids |= {wid for wid, _ in parsed.invalid}
                seen[blob.id] = ids
            if ids:
                out[path] = ids
                todo.discard(path)
        commit = commit.parents[0] if commit.parents else None
    return out


def _commit(repo: pygit2.Repository, sha: str | None) -> pygit2.Commit | None:
    if sha is None:
        return None
    try:
        obj = repo[sha]
    except (KeyError, ValueError):
        return None
    return obj if isinstance(obj, pygit2.Commit) else None


def _folder(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str) -> pygit2.Tree | None:
    return _walk(repo, tree, [p for p in prefix.split("/") if p], pygit2.Tree)


def _blob(repo: pygit2.Repository, root: pygit2.Tree | None, path: str) -> pygit2.Blob | None:
    from workloads.yamlio import MAX_FILE_BYTES

    blob = _walk(repo, root, path.split("/"), pygit2.Blob)
    return blob if blob is not None and blob.size <= MAX_FILE_BYTES else None


T = TypeVar("T")


def _walk(repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str],
             want: type[T]) -> T | None:
    """The object at `parts` under `tree`, never through a symlink, or None."""
    obj: object = tree
    for part in parts:
        if not isinstance(obj, pygit2.Tree) or part not in obj:
            return None
        entry = obj[part]
        if entry.filemode == pygit2.enums.FileMode.LINK:
            return None
        obj = repo[entry.id]
    return obj if isinstance(obj, want) else None
