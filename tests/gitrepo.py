"""Real Git repositories for tests, built with pygit2 in a temp dir (no `git` binary).

`GitRepo.commit({...})` writes a whole tree as one commit: values are file contents
(str or bytes), `Link(target)` for a symlink, or None to delete a path that the
previous commit had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

SIGNATURE = pygit2.Signature("Test Author", "test@aifleet.dev", 1_700_000_000, 0)


@dataclass(frozen=True)
class Link:
    target: str


Content = str | bytes | Link | None


class GitRepo:
    def __init__(self, path: Path, *, bare: bool = False) -> None:
        self.path = path
        self.repo = pygit2.init_repository(str(path), bare=bare, initial_head="main")
        self.files: dict[str, str | bytes | Link] = {}

    def commit(self, files: dict[str, Content], message: str = "change",
               *, replace: bool = False, branch: str = "main") -> str:
        """Commit the previous tree updated with `files` (or only `files` if replace)."""
        tree_files: dict[str, str | bytes | Link] = {} if replace else dict(self.files)
        for path, content in files.items():
            if content is None:
                tree_files.pop(path, None)
            else:
                tree_files[path] = content
        index = pygit2.Index()
        for path, content in sorted(tree_files.items()):
            if isinstance(content, Link):
                oid = self.repo.create_blob(content.target.encode())
                mode = pygit2.enums.FileMode.LINK
            else:
                data = content.encode() if isinstance(content, str) else content
                oid = self.repo.create_blob(data)
                mode = pygit2.enums.FileMode.BLOB
            index.add(pygit2.IndexEntry(path, oid, mode))
        tree = index.write_tree(self.repo)
        ref = f"refs/heads/{branch}"
        existing = self.repo.references.get(ref)
        parents = [existing.target] if existing is not None else []
        oid = self.repo.create_commit(ref, SIGNATURE, SIGNATURE, message, tree, parents)
        self.files = tree_files
        if not self.repo.is_bare and branch == self.repo.head.shorthand:
            self.repo.checkout_tree(self.repo[tree], strategy=pygit2.enums.CheckoutStrategy.FORCE)
        return str(oid)
