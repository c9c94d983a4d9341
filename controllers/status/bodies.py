"""A JSON document as it is served: its bytes, gzipped once, and an ETag.

`GET /api/v1/status` of 5,000 workloads is 4.5 MB of JSON. Issue 22 wants it answered
in < 200 ms throughout; the status cache (`controllers.status.cache`) keeps the bytes
so a request serialises nothing, and a `Body` adds what a request would otherwise do
per request:

- `gz`: the bytes gzipped (level `GZIP_LEVEL`), made once per document, not per
  request, and off the event loop for a big one (`Body.made_off_loop_of`: zlib releases
  the GIL while it compresses, so a worker thread truly runs beside the loop). A
  client that sends `Accept-Encoding: gzip` (httpx, curl --compressed, browsers) gets
  those: about a tenth of the bytes to write and to read;
- `etag`: a digest of the bytes (RFC 9110 8.8.3, a strong validator): a client that
  sends `If-None-Match` with it gets 304 and no body (RFC 9110 13.1.2).

`KeyedBodies` is the small cache the other documents use (`/api/v1/events`,
`/api/v1/capacity`): a body per key, built once per key, `builds` counted.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

GZIP_LEVEL = 1
"""Measured on the 4.5 MB status document of 5,000 workloads x 100 clusters: level 1
makes it 0.30 MB (6.6%) in 11 ms of CPU, level 6 0.17 MB in 24 ms: on a loopback or a
cluster network the bytes saved past level 1 cost more CPU than they save."""

OFF_LOOP_BYTES = 256 * 1024
"""Bodies at least this big are gzipped in a worker thread."""


def dumps(doc: Any) -> str:
    # Compact: with `indent`, json falls back to its pure-Python encoder (10x slower
    # on a fleet-sized document).
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


BATCH_BYTES = 1024 * 1024
"""`Body.made_of` gzips and digests a document's parts this many bytes at a time."""

KEEP_RAW_BYTES = OFF_LOOP_BYTES
"""A body's identity bytes are kept beside its gzip up to this size; a bigger one's are
made again from the gzip when a client asks for them (`Body.raw`)."""


@dataclass(frozen=True, slots=True, eq=False)
class Body:
    """`gz` and `etag` always; the identity bytes (`raw`) held only for a small body.
    At 50,000 workloads the status document is ~20 MiB of JSON and ~2 MiB gzipped,
    and every client we ship asks for gzip: holding the 20 MiB, and pushing them to
    the front process beside the gzip, put four copies of them in replica 0's heap at
    once (tracemalloc at 1,000 x 50,000: the bytes, the channel's payload and frame,
    the socket's write buffer), about 100 MiB of its peak. A client that wants
    identity bytes gets them decompressed once per body, then held."""

    gz: bytes
    etag: str
    kept: bytes | None = None

    @property
    def raw(self) -> bytes:
        raw = self.kept
        if raw is None:
            raw = zlib.decompress(self.gz, wbits=31) if self.gz else b""
            object.__setattr__(self, "kept", raw)  # once per body, for the next client
        return raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and (self.etag, self.gz) == (other.etag, other.gz)

    def __hash__(self) -> int:
        return hash(self.etag)

    @classmethod
    def made(cls, raw: bytes) -> Body:
        """The body of `raw`, gzipped and digested now (in this thread)."""
        # wbits 31: the gzip container (zlib's deflateInit2), what Content-Encoding:
        # gzip names (RFC 9110 8.4.1.3)
        gz = zlib.compress(raw, GZIP_LEVEL, wbits=31)
        etag = '"' + hashlib.blake2b(raw, digest_size=16).hexdigest() + '"'
        return cls(gz, etag, raw if len(raw) <= KEEP_RAW_BYTES else None)

    @classmethod
    def made_of(cls, parts: Sequence[bytes]) -> Body:
        """`made` of the parts' join, without the join: the parts are gzipped and
        digested in batches of `BATCH_BYTES`, so a fleet-sized document's bytes are
        never all in memory at once (tracemalloc, 1,000 x 50,000: the 29 MiB document
        was the encoding's peak). A small one is joined and kept, as `made` keeps it."""
        total = sum(len(p) for p in parts)
        if total <= KEEP_RAW_BYTES:
            return cls.made(b"".join(parts))
        z = zlib.compressobj(GZIP_LEVEL, wbits=31)
        digest = hashlib.blake2b(digest_size=16)
        out: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for i, part in enumerate(parts):
            batch.append(part)
            size += len(part)
            if size >= BATCH_BYTES or i == len(parts) - 1:
                chunk = b"".join(batch)
                digest.update(chunk)
                out.append(z.compress(chunk))
                batch, size = [], 0
        out.append(z.flush())
        return cls(b"".join(out), '"' + digest.hexdigest() + '"')

    @classmethod
    async def made_off_loop_of(cls, parts: Sequence[bytes]) -> Body:
        """`made_of`, in a worker thread when the parts are big (zlib and hashlib
        release the GIL on big buffers, so the loop runs meanwhile)."""
        if sum(len(p) for p in parts) < OFF_LOOP_BYTES:
            return cls.made_of(parts)
        return await anyio.to_thread.run_sync(cls.made_of, parts)

    @classmethod
    def of(cls, doc: Any) -> Body:
        return cls.made((dumps(doc) + "\n").encode())


def accepts_gzip(header: str | None) -> bool:
    """`Accept-Encoding` names gzip (or `*`) with a q-value above 0 (RFC 9110 12.5.3)."""
    for part in (header or "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        return True
    return False


class KeyedBodies:
    """Bodies by key, each built once; the whole cache dropped when `generation`
    (what every body depends on, e.g. the events feed's last sequence number) moves,
    and when it holds `size` keys (a key may come from a request's query)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.builds = 0
        """Bodies built (a request answered from the cache builds none)."""
        self._generation: Hashable = object()
        self._bodies: dict[Hashable, Body] = {}

    def get(self, generation: Hashable, key: Hashable, build: Callable[[], Any]) -> Body:
        if generation != self._generation:
            self._bodies.clear()
            self._generation = generation
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= self.size:
                self._bodies.clear()
            body = self._bodies[key] = Body.of(build())
            self.builds += 1
        return body
