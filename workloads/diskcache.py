"""A cache in the repository's Git directory: parsed fleet files and base plans.

Every push to a pull request plans the same base again, and CI jobs plan the same pair
twice (the comment, then the JSON artifact). Parsing 10,000 YAML files costs seconds;
reading them back from this cache costs a tenth of that. Two entries, in
`<git dir>/aifleet-cache/`:

- `parsed.pickle`: the parse cache (`ParseCache.entries`). Its keys are content keys
  (the blob id of each file), so an entry can never be stale for its content;
- `base-plan.pickle`: the last base plan, under a key of the base's fleet trees, the
  capacity digest and the code.

Both carry a fingerprint of the code that produced them (the sources of `fleet/` and
`workloads/`, and the pydantic version): another aifleet version never reads them.

Trust: the cache lives in the Git directory, which is already trusted to run code (its
hooks), is never part of a checkout and is never pushed. It is read only when owned by
the current user and not writable by group or others; anything unreadable, foreign or
from other code is ignored, and a failure to write is ignored too (a read-only
repository still plans, only slower). `AIFLEET_NO_CACHE=1` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydantic
import pygit2

_FORMAT = 1
_DIR = "aifleet-cache"
_MAX_BYTES = 512 * 1024 * 1024


def enabled() -> bool:
    return os.environ.get("AIFLEET_NO_CACHE", "") in ("", "0")


@lru_cache(maxsize=1)
def fingerprint() -> str:
    """What produced a cached value: the core's and the Git side's code, and pydantic."""
    h = hashlib.sha256(f"{_FORMAT}:{pydantic.VERSION}".encode())
    root = Path(__file__).resolve().parents[1]
    for package in ("fleet", "workloads"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _path(repo: pygit2.Repository, name: str) -> Path:
    return Path(repo.path) / _DIR / f"{name}.pickle"


def _trusted(st: os.stat_result) -> bool:
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and st.st_size <= _MAX_BYTES)


def load(repo: pygit2.Repository, name: str, key: str = "") -> Any | None:
    """The value saved under `name` with this `key` and code, or None."""
    if not enabled():
        return None
    path = _path(repo, name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not _trusted(os.fstat(f.fileno())):
            return None
        try:
            stamp, value = pickle.load(f)  # trusted as .git/hooks are: see above
        except Exception:  # noqa: BLE001 - a damaged cache is a cache miss, whatever broke
            return None
    return value if stamp == (fingerprint(), key) else None


def save(repo: pygit2.Repository, name: str, value: Any, key: str = "") -> bool:
    """Save `value` atomically (private to the user); False if it cannot be written."""
    if not enabled():
        return False
    path = _path(repo, name)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(((fingerprint(), key), value), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, pickle.PicklingError):
        return False
    return True
