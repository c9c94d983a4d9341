"""The state-dir documents every replica needs, kept in the home cluster by the leader.

A decision that must survive a leader's death cannot live only in that leader's state
dir: the replica that takes over has its own (often empty: a new pod). So each such
document (`controllers.runtime.handover` lists them) is also a ConfigMap of the
controller's namespace in the home cluster (`clusters.home`), named
`aifleet-state-<name>`:

- the body is the state file's own versioned JSON, gzipped and base64-encoded in
  `binaryData` (`state.json.gz`), with its sha256 in `data.sha256`;
- a body over `CHUNK` bytes (a ConfigMap holds at most 1 MiB: `clusters.configmap`) is
  split: the head ConfigMap keeps the first chunk and names the parts
  (`data.parts`), each further chunk goes to `aifleet-state-<name>-<digest>-<i>`. The
  parts are written before the head that names them and carry the digest in their
  name, so a writer that dies half-way leaves the previous head whole (a reader checks
  the digest of what it joined); parts no head names any more are deleted afterwards;
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
GENERATION = "aifleet.dev/lease-generation"


class Unreadable(Exception):
    """The home cluster cannot be read now (or a copy is being rewritten)."""


def configmap_name(name: str) -> str:
    return PREFIX + name


def part_name(name: str, digest: str, i: int) -> str:
    return f"{PREFIX}{name}-{digest[:12]}-{i}"


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
                 fence: Callable[[], Awaitable[str | None]],
                 generation: Callable[[], int | None], chunk: int = CHUNK) -> None:
        self.home = home
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
            head = await get_configmap(client, configmap_name(name))
            if head is None:
                return None
            data = dict(head.get("data") or {})
            digest, parts = str(data.get("sha256", "")), int(data.get("parts", "1"))
            chunks = [str((head.get("binaryData") or {}).get(KEY, ""))]
            for i in range(1, parts):
                part = await get_configmap(client, part_name(name, digest, i))
                if part is None:
                    raise Unreadable(f"{configmap_name(name)}: part {i} missing")
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
        head = await get_configmap(client, configmap_name(name))
        generation = self.generation()
        old_meta = (head or {}).get("metadata") or {}
        written_by = (old_meta.get("annotations") or {}).get(GENERATION)
        if generation is not None and written_by is not None and \
                written_by.isdigit() and int(written_by) > generation:
            log.warning("shared_state_fenced", name=configmap_name(name),
                        generation=generation, written_by=int(written_by))
            return f"written by a newer leader (generation {written_by})"
        for i, piece in enumerate(chunks[1:], start=1):
            await put_configmap(client, part_name(name, digest, i), {
                "data": {"sha256": digest}, "binaryData": {KEY: piece}})
        await put_configmap(
            client, configmap_name(name),
            {"data": {"sha256": digest, "parts": str(len(chunks))},
             "binaryData": {KEY: chunks[0]}},
            annotations={GENERATION: str(generation or 0)},
            resource_version=old_meta.get("resourceVersion"))
        await self._forget_parts(client, name, head, digest)
        return None

    async def _forget_parts(self, client: KubeClient, name: str,
                            old: dict[str, Any] | None, digest: str) -> None:
        """Delete the parts the previous head named (no head names them any more)."""
        data = dict((old or {}).get("data") or {})
        old_digest, parts = str(data.get("sha256", "")), data.get("parts", "1")
        if not old_digest or old_digest == digest or not str(parts).isdigit():
            return
        for i in range(1, int(parts)):
            await delete_configmap(client, part_name(name, old_digest, i))
