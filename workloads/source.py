"""Where fleet repo files come from: a Git commit's tree, or the files on disk.

Both yield `FileEntry`s for the three folders the format defines (`clusters/`,
`workloads/`, `policies/`) and nothing else. Neither ever follows a symlink: in a Git
tree a link is an entry of mode 120000 and is reported, not read; on disk, `lstat`
tells a link from a file and a link to a folder is not descended into. A file's size is
known before it is read (the object header in Git, `lstat` on disk), so an oversized
file costs nothing.

A Git source reads the tree of a commit with pygit2, without a checkout; the repository
may be bare. REPO may be a folder inside the repository: its subtree is read, and
reported paths stay relative to the repository root, as editors and forges expect.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2

from workloads.errors import RepoNotFound, RevisionNotFound
from workloads.yamlio import MAX_FILE_BYTES

FLEET_FOLDERS = ("clusters", "workloads", "policies")
YAML_SUFFIXES = (".yaml", ".yml")


class FileTooLarge(Exception):
    """A file over `MAX_FILE_BYTES`: never read."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    """Relative to the fleet root (`workloads/nlp-team/llama.yaml`): the layout rules use it."""
    display: str
    """What diagnostics show: relative to the Git repository root when there is one."""
    size: int
    """In bytes; -1 for a Git blob, whose size `read` checks (a header read is work the
    parse does in parallel, not the walk)."""
    key: str
    """Content identity (blob id in Git); equal keys mean equal bytes, for caching."""
    read: Callable[[], bytes]
    symlink: bool = False


@dataclass(frozen=True, slots=True)
class GitTree:
    """A resolved commit of a fleet repo: the commit id and the fleet root's tree."""

    repo: pygit2.Repository
    commit: str
    prefix: str
    tree: pygit2.Tree | None


def open_repository(path: str | os.PathLike[str]) -> tuple[pygit2.Repository, str]:
    """The repository holding `path`, and `path`'s folder relative to its root ('' at root)."""
    target = Path(path).resolve()
    found = pygit2.discover_repository(str(target))
    if found is None:
        raise RepoNotFound(f"{path}: not inside a Git repository")
    try:
        repo = pygit2.Repository(found)
    except pygit2.GitError as e:
        raise RepoNotFound(f"{path}: cannot open the Git repository: {e}") from e
    root = Path(repo.path if repo.is_bare else repo.workdir).resolve()
    try:
        rel = target.relative_to(root)
    except ValueError:
        rel = Path()
    prefix = "" if str(rel) == "." else rel.as_posix()
    return repo, prefix


def resolve_tree(repo: pygit2.Repository, ref: str, prefix: str) -> GitTree:
    try:
        obj = repo.revparse_single(ref)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as e:
        raise RevisionNotFound(f"revision {ref!r} not found: {e}") from e
    tree = subtree(repo, commit.tree, prefix, f"in {ref}")
    return GitTree(repo, str(commit.id), prefix, tree)


def subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, prefix: str, where: str
            ) -> pygit2.Tree | None:
    """The folder `prefix` of `tree` (None if absent), never through a symlink: a link
    on the way is refused (`RevisionNotFound`), so a fleet cannot point outside itself."""
    for part in [p for p in prefix.split("/") if p]:
        if tree is None or part not in tree:
            return None
        entry = tree[part]
        if entry.filemode == pygit2.enums.FileMode.LINK:
            raise RevisionNotFound(f"{prefix}: is a symlink {where}; it is not followed")
        sub = repo[entry.id]
        tree = sub if isinstance(sub, pygit2.Tree) else None
    return tree


def _display(prefix: str, path: str) -> str:
    return f"{prefix}/{path}" if prefix else path


def git_files(src: GitTree) -> Iterator[FileEntry]:
    """Every YAML file under the fleet folders of a commit, sorted by path."""
    if src.tree is None:
        return
    repo = src.repo
    odb = repo.odb
    for folder in FLEET_FOLDERS:
        if folder not in src.tree:
            continue
        top = src.tree[folder]
        yield from _walk_git(repo, odb, top, folder, src.prefix)


def _walk_git(
    repo: pygit2.Repository, odb: pygit2.Odb, entry: pygit2.Object, path: str, prefix: str
) -> Iterator[FileEntry]:
    mode = entry.filemode
    if mode == pygit2.enums.FileMode.LINK:
        yield FileEntry(path, _display(prefix, path), 0, str(entry.id), _no_read, symlink=True)
        return
    if mode == pygit2.enums.FileMode.TREE:
        tree = repo[entry.id]
        assert isinstance(tree, pygit2.Tree)
        for child in sorted(tree, key=lambda e: e.name or ""):
            yield from _walk_git(repo, odb, child, f"{path}/{child.name}", prefix)
        return
    if mode not in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
        return  # submodules: not part of the fleet
    if not path.endswith(YAML_SUFFIXES):
        return
    oid = entry.id

    def read(oid: pygit2.Oid = oid) -> bytes:
        _, size = odb.read_header(oid)  # never inflate a huge blob to learn its size
        if size > MAX_FILE_BYTES:
            raise FileTooLarge(int(size))
        # The object database directly: no Blob object per file.
        return bytes(odb.read(oid)[1])

    yield FileEntry(path, _display(prefix, path), -1, str(oid), read)


def _no_read() -> bytes:
    raise AssertionError("symlinks are never read")


def worktree_files(root: str | os.PathLike[str], display_prefix: str = "") -> Iterator[FileEntry]:
    """Every YAML file under the fleet folders on disk; symlinks reported, never followed."""
    base = Path(root)
    for folder in FLEET_FOLDERS:
        yield from _walk_disk(base / folder, folder, display_prefix)


def _walk_disk(path: Path, rel: str, prefix: str) -> Iterator[FileEntry]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        yield FileEntry(rel, _display(prefix, rel), 0, "", _no_read, symlink=True)
        return
    if stat.S_ISDIR(st.st_mode):
        for child in sorted(os.listdir(path)):
            yield from _walk_disk(path / child, f"{rel}/{child}", prefix)
        return
    if not stat.S_ISREG(st.st_mode) or not rel.endswith(YAML_SUFFIXES):
        return

    def read(p: Path = path) -> bytes:
        # O_NOFOLLOW: if the file was swapped for a link since lstat, refuse to read it.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read(_READ_CAP)

    key = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    yield FileEntry(rel, _display(prefix, rel), st.st_size, key, read)


_READ_CAP = 1024 * 1024 + 1
