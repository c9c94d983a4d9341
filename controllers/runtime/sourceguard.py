"""The source guard kept across restarts: the last applied commit and a refused head.

A force-push rollback is refused while its head is not a descendant of the last applied
commit (`fleet.safety.refuse_head`). Held in memory only, the refusal would be forgotten
by the next restart and the rolled-back commit applied silently. So the guard is kept:

- in the state dir, `source.json` (`controllers.persist.statefile`: versioned, atomic,
  owner-only), read at start; written by any replica whose guard changed;
- in the home cluster (`clusters.home`), ConfigMap `aifleet-source` of the controller's
  namespace (`clusters.namespace`),
  written only by a replica that may act (the leader) and read by every replica on each
  fetch: a replica with an empty state dir, and a follower about to lead, still refuse
  what the leader refused.

Neither holds a secret: two commit ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from clusters.client import KubeClient
from clusters.configmap import get_configmap, put_configmap
from clusters.errors import ClusterError
from controllers.persist import statefile

log = structlog.get_logger()

FILE = "source.json"
VERSION = 1
CONFIGMAP = "aifleet-source"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True, slots=True)
class Guard:
    applied: str | None = None
    """The last commit applied everywhere: the base every new head must descend from."""
    refused: str | None = None
    """The last head refused as a non-descendant of `applied`, while it stays refused."""


def _commit(v: object) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str) or not _SHA.match(v):
        raise ValueError(f"not a commit id: {str(v)[:60]!r}")
    return v


def from_doc(doc: dict[str, object]) -> Guard:
    """ValueError when a field is not a commit id."""
    return Guard(_commit(doc.get("applied")), _commit(doc.get("refused")))


def load(state_dir: Path) -> Guard:
    doc = statefile.read(state_dir / FILE, VERSION)
    if doc is None:
        return Guard()
    try:
        return from_doc(doc)
    except ValueError as e:
        statefile.unusable(state_dir / FILE, e)
        return Guard()


def save(state_dir: Path, guard: Guard) -> None:
    statefile.write(state_dir / FILE, VERSION,
                    {"applied": guard.applied, "refused": guard.refused})


async def read_shared(client: KubeClient, namespace: str) -> Guard | None:
    """The home cluster's copy, or None (not there, unreachable, or unusable)."""
    try:
        cm = await get_configmap(client, CONFIGMAP, namespace=namespace)
        return None if cm is None else from_doc(dict(cm.get("data") or {}))
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_source_guard_unreadable", error=f"{type(e).__name__}: {e}")
    except (ValueError, TypeError) as e:
        log.warning("shared_source_guard_unusable", error=f"{type(e).__name__}: {e}")
    return None


async def write_shared(client: KubeClient, namespace: str, guard: Guard) -> bool:
    data = {k: v for k, v in (("applied", guard.applied), ("refused", guard.refused)) if v}
    try:
        await put_configmap(client, CONFIGMAP, {"data": data}, namespace=namespace)
        return True
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_source_guard_not_saved", error=f"{type(e).__name__}: {e}")
        return False


class SourceGuard:
    """The guard in a state dir and (with `home`) the home cluster: `load()` at start,
    `shared()` before each fetch, `keep(guard)` after each fetch and each applied commit
    (writes only what changed; the home cluster's copy only while `may_write()`)."""

    def __init__(self, state_dir: Path, home: Callable[[], KubeClient | None],
                 may_write: Callable[[], bool], namespace: str) -> None:
        self.state_dir = state_dir
        self.home = home
        self.may_write = may_write
        self.namespace = namespace
        self._saved: Guard | None = None
        self._shared_saved: Guard | None = None

    def load(self) -> Guard:
        self._saved = load(self.state_dir)
        return self._saved

    async def shared(self) -> Guard | None:
        client = self.home()
        return await read_shared(client, self.namespace) if client is not None else None

    async def keep(self, guard: Guard) -> None:
        if guard != self._saved:
            try:
                await anyio.to_thread.run_sync(lambda: save(self.state_dir, guard))
                self._saved = guard
            except OSError as e:  # a full disk must not stop the controller: say it
                log.warning("source_guard_not_saved", error=f"{type(e).__name__}: {e}")
        client = self.home()
        if guard != self._shared_saved and client is not None and self.may_write() \
                and guard.applied is not None and await write_shared(client, self.namespace, guard):
            self._shared_saved = guard

