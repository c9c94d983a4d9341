"""A pull request's change to the fleet repo: base and head read, and the files it touches.

`read_change(path, base, head)` answers "what would merging head into base give?":
- the *base* fleet, read at `base`;
- the *head* fleet, read at what the merge would produce: `head` itself when it already
  contains `base` (a rebased or fresh branch, the usual case), else the tree of an
  in-memory three-way merge of the two (pygit2 `merge_commits`, no checkout, nothing
  written to refs). A conflict raises `MergeConflict`: there is nothing to plan;
- the changed files, `merge-base..head` as a forge shows them on the PR (the change's
  own files, not what landed on base meanwhile), as paths relative to the fleet root
  and as displayed (relative to the repository root).

Both reads share one parse cache, so a file that did not change is parsed once: the cost
of a plan grows with the change, not with the repo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pygit2

from workloads.errors import WorkloadsError
from workloads.forkmap import Background
from workloads.history import git_history
from workloads.loader import ParseCache, Snapshot, load_entries
from workloads.source import (
    FLEET_FOLDERS,
    FileEntry,
    GitTree,
    git_files,
    open_repository,
    resolve_tree,
    subtree,
)
from workloads.source import _walk_git as walk_git

_STATUS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified",
           "C": "added"}


class MergeConflict(WorkloadsError):
    """Head does not merge cleanly into base (permanent until someone rebases)."""


@dataclass(frozen=True, slots=True, order=True)
class ChangedFile:
    path: str
    """Relative to the fleet root (`workloads/nlp-team/x.yaml`): what policies match."""
    display: str
    """Relative to the repository root: what a person opens."""
    status: str
    """added, modified, deleted or renamed."""


@dataclass(frozen=True, slots=True)
class Change:
    base: Snapshot
    head: Snapshot
    """The fleet as merging head into base would leave it; `commit` is head's commit."""
    base_commit: str
    head_commit: str
    merge_base: str | None
    merged: bool
    """True when head did not contain base and the head fleet is an in-memory merge."""
    files: tuple[ChangedFile, ...]


def read_change(path: str | os.PathLike[str], base: str, head: str,
                cache: ParseCache | None = None, *, parallel: bool = False,
                controller_namespace: str | None = None) -> Change:
    """Read base and (merged) head of a change, and its changed files. `parallel`,
    `controller_namespace`: see `load_entries`."""
    repo, prefix = open_repository(path)
    cache = cache if cache is not None else ParseCache()
    base_tree = resolve_tree(repo, base, prefix)
    head_tree = resolve_tree(repo, head, prefix)
    base_id, head_id = pygit2.Oid(hex=base_tree.commit), pygit2.Oid(hex=head_tree.commit)
    mb = repo.merge_base(base_id, head_id)
    merge_base = str(mb) if mb is not None else None

    merged = merge_base != base_tree.commit
    target = (_merged_tree(repo, base_id, head_id, prefix, head_tree.commit) if merged
              else head_tree)

    # `load_entries` keeps only what one read used; the cache ends with base's and
    # head's files, and head may still hit files of earlier reads (a PR's last push).
    earlier = dict(cache.entries)
    base_entries = list(git_files(base_tree))
    base_snap = Snapshot(base_tree.commit, load_entries(
        base_entries, cache, parallel=parallel,
        history=git_history(repo, base_tree.commit, prefix),
        controller_namespace=controller_namespace), len(base_entries))
    kept = dict(cache.entries)
    for key, parsed in earlier.items():
        cache.entries.setdefault(key, parsed)
    head_entries = _entries_after(repo, base_tree, target, base_entries)
    # as the controller reads a commit: a file head breaks keeps the workload it held
    # before Invalid, not removed
    head_spec = load_entries(head_entries, cache, parallel=parallel,
                             history=git_history(repo, head_tree.commit, prefix),
                             controller_namespace=controller_namespace)
    for key, parsed in kept.items():
        cache.entries.setdefault(key, parsed)
    head_snap = Snapshot(head_tree.commit, head_spec, len(head_entries))

    since = repo[mb].peel(pygit2.Tree) if mb is not None else None
    files = changed_files(repo, since, repo[head_id].peel(pygit2.Tree), prefix)
    return Change(base_snap, head_snap, base_tree.commit, head_tree.commit, merge_base,
                  merged, files)


def read_change_cached(path: str | os.PathLike[str], base: str, head: str, *,
                       parallel: bool = False, background: Background | None = None,
                       controller_namespace: str | None = None) -> Change:
    """`read_change` with the parse cache kept in the Git directory (`diskcache`);
    written by `background` when given, while the caller goes on."""
    repo, _ = open_repository(path)
    cache = ParseCache.stored(repo)
    change = read_change(path, base, head, cache, parallel=parallel,
                         controller_namespace=controller_namespace)
    cache.store(repo, background)
    return change


def _entries_after(repo: pygit2.Repository, base: GitTree, target: GitTree,
                   base_entries: list[FileEntry]) -> list[FileEntry]:
    """The same entries as `git_files(target)`, built from base's and the tree diff.

    A 10,000-file fleet with 50 changed files costs 50 lookups instead of a full walk.
    """
    if base.tree is None or target.tree is None:
        return list(git_files(target))
    changed: set[str] = set()
    for delta in base.tree.diff_to_tree(target.tree).deltas:
        changed.update(p for p in (delta.old_file.path, delta.new_file.path) if p)
    out = [e for e in base_entries if e.path not in changed]
    odb = repo.odb
    for path in sorted(changed):
        if path.split("/", 1)[0] not in FLEET_FOLDERS or path not in target.tree:
            continue
        out.extend(walk_git(repo, odb, target.tree[path], path, target.prefix))
    order = {f: i for i, f in enumerate(FLEET_FOLDERS)}
    out.sort(key=lambda e: (order[e.path.split("/", 1)[0]], e.path))
    return out


def changed_files(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree,
                  prefix: str = "") -> tuple[ChangedFile, ...]:
    """Files that differ between two trees, under `prefix`, sorted by path."""
    diff = old.diff_to_tree(new) if old is not None else new.diff_to_tree(swap=True)
    lead = f"{prefix}/" if prefix else ""
    out: set[ChangedFile] = set()
    for delta in diff.deltas:
        status = _STATUS.get(delta.status_char(), "modified")
        for p in {delta.old_file.path, delta.new_file.path}:
            if p and p.startswith(lead):
                out.add(ChangedFile(p[len(lead):], p, status))
    return tuple(sorted(out))


def _merged_tree(repo: pygit2.Repository, base: pygit2.Oid, head: pygit2.Oid, prefix: str,
                 head_commit: str) -> GitTree:
    try:
        index = repo.merge_commits(base, head)
    except pygit2.GitError as e:
        raise MergeConflict(f"cannot merge head into base: {e}") from e
    if index.conflicts is not None:
        paths = sorted({(e.path if e is not None else "?")
                        for c in index.conflicts for e in c[1:] if e is not None})
        raise MergeConflict(
            f"head does not merge cleanly into base: conflicts in {', '.join(paths)} "
            "(rebase the branch on base and plan again)")
    merged = repo[index.write_tree(repo)].peel(pygit2.Tree)
    return GitTree(repo, head_commit, prefix, subtree(repo, merged, prefix, "after the merge"))
