"""A bare Git repository of fleet files that a program commits to, as a person would.

`fleet demo`'s sandbox (`controllers.demo.sandbox`) and the end-to-end tests seed one
from a folder and commit each step's change to it; the controller fetches from it like
any fleet repo. pygit2 writes it; no git binary is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pygit2

SIGNATURE = pygit2.Signature("aifleet demo", "demo@aifleet.dev")


class FleetRepo:
    """A bare Git repository of fleet files, committed to with pygit2 (no git binary)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Bare, like a Git server's copy: the controller can push its ledger branch to it.
        self.repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
        self.files: dict[str, bytes] = {}

    def commit(self, changes: Mapping[str, str | bytes | None], message: str) -> str:
        """Commit the current tree with `changes` (None deletes a path); the new sha."""
        for rel, content in changes.items():
            if content is None:
                self.files.pop(rel, None)
            else:
                self.files[rel] = content.encode() if isinstance(content, str) else content
        index = pygit2.Index()
        for rel, data in sorted(self.files.items()):
            index.add(pygit2.IndexEntry(rel, self.repo.create_blob(data),
                                        pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(self.repo)
        ref = self.repo.references.get("refs/heads/main")
        parents = [ref.target] if ref is not None else []
        oid = self.repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, message, tree,
                                      parents)
        return str(oid)

    def force_to(self, commit: str) -> None:
        """Move main to an older commit, as a force-push rollback would."""
        self.repo.references["refs/heads/main"].set_target(commit)

    def head(self) -> str:
        return str(self.repo.references["refs/heads/main"].target)
