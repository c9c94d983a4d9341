"""Reading many Git blobs on the second core: a forked child inflates, this process parses.

A report over the whole ledger (`fleet audit residency`, `fleet cost`) reads a thousand
segments of ~500 kB each. Inflating them (zlib, inside libgit2) is a large part of the
command, and it holds the GIL, so a reader thread would not run beside the parser. A
forked child does: it reads the blobs in order through the parent's open repository
and streams them back through a pipe (length-prefixed), while this process decodes
and folds the ones already there. Copying through the pipe costs far less than inflating.

Plain fallbacks, never a different answer: when it cannot fork (see
`workloads.forkmap.can_fork`: no fork, one CPU, other threads running, or
`AIFLEET_NO_FORK=1`) or there are few blobs, it reads them here; if the child stops
early for any reason (a missing object, a signal), the blobs it did not send are read
here, so a read error is raised by this process, as without the child. Closing the
iterator early closes the pipe, which ends the child; it is always waited for.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import zlib
from collections.abc import Callable, Generator, Sequence
from typing import TypeVar

import pygit2

from workloads.forkmap import can_fork

K = TypeVar("K")
Check = Callable[[K, bytes | memoryview], bytes]
"""Runs on each blob where it is read; its note goes with the blob (see `read_ahead`)."""

MIN_BLOBS = 16
"""Below this many blobs (16,000 ledger records) a fork costs more than it saves."""

_PIPE_SIZE = 1 << 20
"""A bigger pipe than the 64 kB default: fewer wake-ups of either side per blob."""


def read_ahead(read: Callable[[K], bytes | memoryview], keys: Sequence[K], *,
               min_blobs: int = MIN_BLOBS, check: Check[K] | None = None,
               adopt: Callable[[bytes], None] | None = None
               ) -> Generator[bytes | memoryview, None, None]:
    """`read(k)` for every key, in order; read by a forked child ahead of the caller
    when it pays. `read` must only read (it runs in the child with the parent's state).
    A blob may be a view of a buffer that the next one reuses: use it (or copy it)
    before asking for the next.

    `check(k, blob)`, if given, runs where the blob is read, before it is handed on
    (in the child: on the second core), and returns a small note; `adopt(note)` runs
    here before that blob is yielded, wherever the check ran."""
    if len(keys) < min_blobs or not can_fork():
        yield from _here(read, keys, check, adopt)
        return
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # Linux only; a hint
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow it)
        code = 1
        try:
            os.close(r)
            with os.fdopen(w, "wb") as out:
                for k in keys:
                    data = read(k)
                    note = check(k, data) if check is not None else b""
                    out.write(len(data).to_bytes(8, "little"))
                    out.write(len(note).to_bytes(8, "little"))
                    out.write(data)
                    out.write(note)
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
    os.close(w)
    sent = 0
    buf = bytearray(_PIPE_SIZE)  # reused: no fresh pages to fault in for every blob
    try:
        with io.BufferedReader(io.FileIO(r, "rb"), buffer_size=_PIPE_SIZE) as inp:
            for _ in keys:
                head = inp.read(16)
                if len(head) < 16:
                    break
                size = int.from_bytes(head[:8], "little")
                if size > len(buf):
                    buf = bytearray(size)
                view = memoryview(buf)[:size]
                if not _fill(inp, view):
                    break
                note = inp.read(int.from_bytes(head[8:], "little"))
                if len(note) != int.from_bytes(head[8:], "little"):
                    break
                if adopt is not None:
                    adopt(note)
                sent += 1
                yield view
    finally:  # also when the caller stops early: the closed pipe ends the child
        os.waitpid(pid, 0)
    yield from _here(read, keys[sent:], check, adopt)  # what a failed child did not send


def _here(read: Callable[[K], bytes | memoryview], keys: Sequence[K], check: Check[K] | None,
          adopt: Callable[[bytes], None] | None) -> Generator[bytes | memoryview, None, None]:
    for k in keys:
        data = read(k)
        if check is not None:
            note = check(k, data)
            if adopt is not None:
                adopt(note)
        yield data


def _fill(inp: io.BufferedReader[io.FileIO], view: memoryview) -> bool:
    """Fill `view` from `inp`; False at the end of the stream before it is full."""
    got = 0
    while got < len(view):
        n = inp.readinto(view[got:])
        if not n:
            return False
        got += n
    return True


def loose_blob(repo: pygit2.Repository, oid: pygit2.Oid) -> memoryview | None:
    """A blob stored as a loose object, inflated by Python's zlib in one call into a
    buffer of the size its header gives (faster than libgit2's read for a ledger
    segment: `bench/audit.py`). None when it is not a loose blob here (packed, in an
    alternate, another type, a header that does not add up): ask libgit2 then. Skips Git's SHA-1
    like `fast_bulk_reads`; zlib's checksum still catches damaged storage."""
    hexid = str(oid)
    path = os.path.join(repo.path, "objects", hexid[:2], hexid[2:])
    try:
        with open(path, "rb") as f:
            raw = f.read()
        head = zlib.decompressobj().decompress(raw, 32)
        end = head.index(b"\0")
        kind, _, size = head[:end].partition(b" ")
        if kind != b"blob":
            return None
        data = zlib.decompress(raw, bufsize=end + 1 + int(size))
    except (OSError, ValueError, zlib.error):
        return None
    if len(data) != end + 1 + int(size):
        return None
    return memoryview(data)[end + 1:]
