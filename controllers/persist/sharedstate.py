"""The state-dir documents every replica needs, kept in the home cluster by the leader.

A decision that must survive a leader's death cannot live only in that leader's state
dir: the replica that takes over has its own (often empty: a new pod). So each such
document (`controllers.runtime.handover` lists them) is also a ConfigMap of the
controller's namespace in the home cluster (`clusters.home`), named
`aifleet-state-<name>`:

- the body is the state file's own versioned JSON, gzipped and base64-encoded in
  `binaryData` (`state.json.gz`), with its sha256 in `data.sha256`;
- a body over `CHUNK` bytes (a ConfigMap holds at most 1 MiB: `clusters.configmap`) is
  split, into at most `MAX_PARTS` ConfigMaps: the head keeps the first chunk and names
  the others (`data.parts`, `data.slot`), which live in one of two slots,
  `aifleet-state-<name>-a<i>` or `-b<i>`, each carrying the whole body's digest. A write
  fills the slot the head does not name, then replaces the head: a writer that dies
  half-way leaves the previous head and its slot whole. The names are fixed, so the
  chart's Role can list them (`configmap_names`); a body too big for `MAX_PARTS` is not
  written (said; the state dir keeps it);
- every write is the leader's and is fenced like its cluster writes: only while it may
  act, after the Lease still names it (`Leadership.confirm_lease`), never over a head
  written by a newer generation (annotation `aifleet.dev/lease-generation`, in the
  controller's own namespace, where tenants cannot write), and as a replace of the
  version it read (`resourceVersion`: a concurrent write makes it a Conflict, tried
  again on the next round).

Reading says three things apart: a document (the home's copy, which wins over the state
dir's), `None` (no copy: the local file stands, and the leader publishes it), and
`Unreadable` (the home cannot answer now: a replica about to lead waits).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from clusters.client import KubeClient
from clusters.configmap import delete_configmap, get_configmap, put_configmap
from clusters.errors import ClusterError

log = structlog.get_logger()

PREFIX = "aifleet-state-"
KEY = "state.json.gz"
CHUNK = 512 * 1024
"""Bytes of base64 per ConfigMap: half the 1 MiB limit, leaving room for the rest."""
MAX_PARTS = 3
"""ConfigMaps per document at most (1.5 MiB of gzipped JSON: ~100,000 suspensions)."""
SLOTS = ("a", "b")
PIECES = ("suspended", "held", "adopted", "retiring")
"""The documents kept this way (`controllers.runtime.handover` says what each is)."""
GENERATION = "aifleet.dev/lease-generation"


class Unreadable(Exception):
    """The home cluster cannot be read now (or a copy is being rewritten)."""


def configmap_name(name: str) -> str:
    return PREFIX + name


def part_name(name: str, slot: str, i: int) -> str:
    return f"{PREFIX}{name}-{slot}{i}"


def configmap_names() -> list[str]:
    """Every ConfigMap name this store may use (the chart's Role lists them)."""
    return [n for name in PIECES for n in (
        configmap_name(name), *(part_name(name, slot, i) for slot in SLOTS
                                for i in range(1, MAX_PARTS)))]


def encode(doc: dict[str, Any], chunk: int = CHUNK) -> tuple[str, list[str]]:
    """(sha256 of the whole, the base64 chunks) of a document."""
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    text = base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    return digest, [text[i:i + chunk] for i in range(0, len(text), chunk)] or [""]


def decode(digest: str, chunks: list[str]) -> dict[str, Any]:
    """ValueError when the chunks are not the document `digest` names."""
    text = "".join(chunks)
    if hashlib.sha256(text.encode("ascii")).hexdigest() != digest:
        raise ValueError("digest mismatch")
    doc = json.loads(gzip.decompress(base64.b64decode(text, validate=True)))
    if not isinstance(doc, dict):
        raise ValueError(f"not a document: {type(doc).__name__}")
    return doc


class SharedStore:
    """The home cluster's copies. `home()`: its client (None while unknown or down);
    `may_write()`: this replica acts; `fence()`: None while the Lease still names it
    (else why not); `generation()`: its Lease generation, None without election."""

    def __init__(self, home: Callable[[], KubeClient | None], may_write: Callable[[], bool],
                 namespace: str, fence: Callable[[], Awaitable[str | None]],
                 generation: Callable[[], int | None], chunk: int = CHUNK) -> None:
        self.home = home
        self.namespace = namespace
        """The controller's namespace there (`clusters.namespace`)."""
        self.may_write = may_write
        self.fence = fence
        self.generation = generation
        self.chunk = chunk

    @property
    def configured(self) -> bool:
        return self.home() is not None

    async def read(self, name: str) -> dict[str, Any] | None:
        """The home's copy of `name`, or None (no copy, or one that cannot be used:
        said, and the local file stands). Unreadable while the home cannot answer."""
        client = self.home()
        if client is None:
            raise Unreadable("the home cluster is not connected")
        try:
            head = await get_configmap(client, configmap_name(name), namespace=self.namespace)
            if head is None:
                return None
            data = dict(head.get("data") or {})
            digest, parts = str(data.get("sha256", "")), int(data.get("parts", "1"))
            slot = str(data.get("slot", SLOTS[0]))
            chunks = [str((head.get("binaryData") or {}).get(KEY, ""))]
            for i in range(1, min(parts, MAX_PARTS)):
                part = await get_configmap(client, part_name(name, slot, i),
                                           namespace=self.namespace)
                if part is None or (part.get("data") or {}).get("sha256") != digest:
                    # rewritten under us (the next write fills this slot): again later
                    raise Unreadable(f"{configmap_name(name)}: part {i} is being rewritten")
                chunks.append(str((part.get("binaryData") or {}).get(KEY, "")))
            return decode(digest, chunks)
        except (ClusterError, TimeoutError) as e:
            raise Unreadable(f"{type(e).__name__}: {e}") from e
        except (ValueError, TypeError, OSError, EOFError) as e:
            log.warning("shared_state_unusable", name=configmap_name(name),
                        error=f"{type(e).__name__}: {e}")
            return None

    async def write(self, name: str, doc: dict[str, Any]) -> str | None:
        """Replace the home's copy (the leader only, fenced); None when written, else
        why not (said in a log line: the caller tries again later)."""
        client = self.home()
        if client is None:
            return "the home cluster is not connected"
        if not self.may_write():
            return "this replica may not act"
        why = await self.fence()
        if why is not None:
            return why
        try:
            return await self._write(client, name, doc)
        except (ClusterError, TimeoutError) as e:
            why = f"{type(e).__name__}: {e}"
            log.warning("shared_state_not_saved", name=configmap_name(name), error=why)
            return why

    async def _write(self, client: KubeClient, name: str, doc: dict[str, Any]) -> str | None:
        digest, chunks = encode(doc, self.chunk)
        if len(chunks) > MAX_PARTS:
            log.error("shared_state_too_big", name=configmap_name(name), parts=len(chunks))
            return f"{configmap_name(name)} would need {len(chunks)} ConfigMaps"
        head = await get_configmap(client, configmap_name(name), namespace=self.namespace)
        generation = self.generation()
        old_meta = (head or {}).get("metadata") or {}
        written_by = (old_meta.get("annotations") or {}).get(GENERATION)
        if generation is not None and written_by is not None and \
                written_by.isdigit() and int(written_by) > generation:
            log.warning("shared_state_fenced", name=configmap_name(name),
                        generation=generation, written_by=int(written_by))
            return f"written by a newer leader (generation {written_by})"
        old = dict((head or {}).get("data") or {})
        slot = SLOTS[1] if old.get("slot", SLOTS[1]) == SLOTS[0] else SLOTS[0]
        for i, piece in enumerate(chunks[1:], start=1):
            await put_configmap(client, part_name(name, slot, i), {
                "data": {"sha256": digest}, "binaryData": {KEY: piece}},
                namespace=self.namespace)
        await put_configmap(
            client, configmap_name(name),
            {"data": {"sha256": digest, "parts": str(len(chunks)), "slot": slot},
             "binaryData": {KEY: chunks[0]}},
            namespace=self.namespace, annotations={GENERATION: str(generation or 0)},
            resource_version=old_meta.get("resourceVersion"))
        # The previous slot's parts, named by no head now (a reader of the old head
        # that meets one missing reads again: Unreadable, never a wrong document).
        old_parts = str(old.get("parts", "1"))
        if old.get("slot") in SLOTS and old["slot"] != slot and old_parts.isdigit():
            for i in range(1, min(int(old_parts), MAX_PARTS)):
                await delete_configmap(client, part_name(name, str(old["slot"]), i),
                                       namespace=self.namespace)
        return None
