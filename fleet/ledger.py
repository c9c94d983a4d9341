"""The decision ledger: every decision the controller takes, as a hash-chained record.

Every placement, move, failover, apply, prune, drift correction and refusal (and what the
controller finds running that it did not put there) becomes one append-only `Record`:
when, at which fleet repo commit, which workload and intent, which cluster and the
jurisdiction it had at that moment, which policy version and manifest digest, the
result and the reason. Each record carries `prev`, the hash of the record before it,
and `hash`, the sha256 of its own canonical JSON without `hash`; so editing, removing
or reordering any record breaks the chain at a point `verify` names.

The record is split in two steps because the order is known only when it is written:
the controller fills an `Entry` (what happened), and the writer `seal`s entries onto the
current tip of the chain (`seq`, `prev`, `hash`). A writer that loses a push race seals
the same entries again onto the new tip.

Canonical JSON is sorted keys, no spaces, UTF-8 (non-ASCII kept as is), one record per
line (JSONL). Every key is always present (`null` when it does not apply), so a record
hashes the same whatever wrote it. The core reads no clock: the caller supplies `time`,
an RFC 3339 UTC string (`2026-11-23T19:00:00Z`), which sorts as it reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal, get_args

import msgspec

Event = Literal["Placed", "Moved", "FailedOver", "Applied", "Pruned", "DriftCorrected",
                "Refused", "Pending", "Observed", "Suspended", "Resumed"]
EVENTS: frozenset[str] = frozenset(get_args(Event))

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")

GENESIS = "0" * 64
"""`prev` of the first record (seq 1): there is nothing before it."""

# JSON key -> attribute, in one place; the JSON spelling is camelCase like the repo format.
_KEYS = {
    "seq": "seq", "time": "time", "event": "event", "commit": "commit",
    "workload": "workload", "intentHash": "intent_hash", "cluster": "cluster",
    "fromCluster": "from_cluster", "jurisdiction": "jurisdiction",
    "dataClass": "data_class", "policyVersion": "policy_version",
    "manifestDigest": "manifest_digest", "flavour": "flavour", "gpus": "gpus",
    "result": "result", "reason": "reason", "prev": "prev", "hash": "hash",
}
RECORD_KEYS: frozenset[str] = frozenset(_KEYS)


@dataclass(frozen=True, slots=True)
class Entry:
    """What happened, before it has a place in the chain.

    `cluster` is where it happened (None for Pending or a refusal that names no
    cluster); `from_cluster` is the cluster a Moved or FailedOver workload left.
    `gpus` is the workload's GPUs on `cluster` after the event (replicas x per replica).
    """

    time: str
    event: Event
    workload: str
    commit: str | None = None
    intent_hash: str | None = None
    cluster: str | None = None
    from_cluster: str | None = None
    jurisdiction: str | None = None
    data_class: str | None = None
    policy_version: str | None = None
    manifest_digest: str | None = None
    flavour: str | None = None
    gpus: int = 0
    result: str = "ok"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown ledger event {self.event!r}: one of {sorted(EVENTS)}")
        if not isinstance(self.time, str) or not _TIME.match(self.time):
            raise ValueError(f"time {self.time!r} is not RFC 3339 UTC "
                             "(YYYY-MM-DDThh:mm:ssZ)")


@dataclass(frozen=True, slots=True)
class Record:
    """An `Entry` sealed into the chain: its `seq`, the previous hash and its own."""

    seq: int
    entry: Entry
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        doc = _entry_json(self.entry)
        doc.update(seq=self.seq, prev=self.prev, hash=self.hash)
        return doc

    def line(self) -> str:
        """The record's JSONL line (no newline), exactly as it is hashed plus `hash`."""
        return canonical(self.to_json())

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Record:
        """A record from its JSON; ValueError names the first problem."""
        missing = RECORD_KEYS - doc.keys()
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        extra = doc.keys() - RECORD_KEYS
        if extra:
            raise ValueError(f"unknown field {', '.join(sorted(extra))}")
        kwargs = {_KEYS[k]: v for k, v in doc.items() if k not in ("seq", "prev", "hash")}
        for name in ("seq", "gpus"):
            if type(doc[name]) is not int:
                raise ValueError(f"{name} must be an integer, got {doc[name]!r}")
        try:
            entry = Entry(**kwargs)
        except TypeError as e:  # pragma: no cover - keys are checked above
            raise ValueError(str(e)) from e
        return cls(doc["seq"], entry, str(doc["prev"]), str(doc["hash"]))


class RecordRow(msgspec.Struct, rename="camel", gc=False):
    """The fields of a record that the reports (audit, cost) fold.

    Bulk readers (`workloads.ledger_store.LedgerReader.rows`) decode only these from
    each line, with msgspec, straight into this small struct, skipping the other keys
    (hashes, digests, reasons) without building them: over a million records, building
    and freeing a dict of all 18 keys per record cost more than the audit. Types are
    checked as it decodes. `gc=False`: rows hold only strings and ints, so the cyclic
    collector never needs to see them. `rows_of` makes them from records already parsed
    as JSON objects.
    """

    time: str
    event: str
    commit: str | None
    workload: str
    cluster: str | None
    from_cluster: str | None
    jurisdiction: str | None
    data_class: str | None
    flavour: str | None
    gpus: int
    seq: int
    hash: str
    prev: str


def rows_of(docs: Iterable[Mapping[str, Any]]) -> list[RecordRow]:
    """Rows from records' JSON objects (as `Record.to_json` makes them)."""
    return [msgspec.convert(d, RecordRow) for d in docs]


def _entry_json(e: Entry) -> dict[str, Any]:
    return {key: getattr(e, attr) for key, attr in _KEYS.items()
            if attr not in ("seq", "prev", "hash")}


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(doc: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a record without its `hash` key."""
    body = {k: v for k, v in doc.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Tip:
    """The end of a chain: the last seq and hash (seq 0 and GENESIS when empty)."""

    seq: int = 0
    hash: str = GENESIS


def seal(entries: Iterable[Entry], tip: Tip = Tip()) -> list[Record]:
    """Chain `entries` onto `tip`, in order."""
    out: list[Record] = []
    seq, prev = tip.seq, tip.hash
    for e in entries:
        seq += 1
        doc = _entry_json(e)
        doc.update(seq=seq, prev=prev)
        h = record_hash(doc)
        out.append(Record(seq, e, prev, h))
        prev = h
    return out


def tip_of(records: Iterable[Record]) -> Tip:
    tip = Tip()
    for r in records:
        tip = Tip(r.seq, r.hash)
    return tip


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain stops being trustworthy: the index of the first bad record, and why."""

    index: int
    seq: int | None
    why: str
    where: str = ""
    """Set by readers that know it: `segment-file:line`."""


def verify(docs: Iterable[Mapping[str, Any] | str], *,
           where: Callable[[int], str] | None = None) -> Break | None:
    """Check a whole chain; the first broken record, or None when the chain holds.

    `docs` are records as JSON objects or JSONL lines, in stored order. Checks, per
    record: it parses and has exactly the record's fields; its hash matches its content
    (else it was edited); `seq` follows the previous one (a gap: records removed; going
    back: reordered); `prev` is the previous record's hash (the first one: GENESIS).
    `where(index)` names a record's location for the Break (called only on a break).
    """
    chain = Chain()
    for raw in docs:
        broken = chain.check(raw, where)
        if broken is not None:
            return broken
    return None


_HASH_KEY = b',"hash":"'


def hashes_match(data: bytes) -> bool:
    """Whether every line of a stored segment holds the hash of its own bytes without
    `,"hash":"..."`: what the writer hashed, so true of every intact record it wrote.

    No parsing: a partition, a sha256 and a compare per line (~1 us), so a read-ahead
    child can run it on each segment as it reads it. False says only "look closer"
    (`Chain.feed` then checks record by record, as `verify`; a reformatted but unchanged
    record passes there). A value cannot hide a `,"hash":"` before the real one:
    canonical JSON escapes `"` in strings. A line without the key has an empty `after`,
    which no digest equals.
    """
    if not data.strip():
        return True
    sha = hashlib.sha256
    return all(sha(before + after[65:]).hexdigest().encode() == after[:64]
               for before, _, after in map(bytes.partition, data.rstrip(b"\n").split(b"\n"),
                                           repeat(_HASH_KEY)))


class Chain:
    """`verify`, one record or one stored segment at a time, for readers that stream.

    The state is the number of records checked, the last seq and hash, and the first
    break (once broken, it stays broken and ignores the rest). The reports check in
    the pass they already make: the read-ahead child runs `hashes_match` on each
    segment's bytes as it reads it (the sha256 work, on the second core), and the
    reader `follow`s the rows it decoded anyway (the links).
    """

    __slots__ = ("broken", "hash", "index", "seq")

    def __init__(self) -> None:
        self.index = 0
        self.seq = 0
        self.hash = GENESIS
        self.broken: Break | None = None

    def check(self, raw: Mapping[str, Any] | str,
              where: Callable[[int], str] | None = None) -> Break | None:
        """Check the next record (a JSON object or a JSONL line), exactly as `verify`."""
        if self.broken is not None:
            return self.broken
        i = self.index

        def broken(seq: int | None, why: str) -> Break:
            self.broken = Break(i, seq, why, where(i) if where is not None else "")
            return self.broken

        doc: Any = raw
        if isinstance(raw, str):
            try:
                doc = json.loads(raw)
            except ValueError as e:
                return broken(None, f"not a JSON record: {e}")
        if not isinstance(doc, Mapping):
            return broken(None, "not a JSON object")
        seq = doc.get("seq")
        seq_n = seq if type(seq) is int else None
        problem = _malformed(doc)
        if problem is not None:
            return broken(seq_n, f"malformed record: {problem}")
        assert seq_n is not None
        h = doc["hash"]
        prev_seq = self.seq
        if not (isinstance(raw, str) and _line_hash(raw, h) == h) and record_hash(doc) != h:
            return broken(seq_n, "edited: its content does not match its hash")
        if i == 0 and (seq_n != 1 or doc["prev"] != GENESIS):
            return broken(seq_n, f"bad genesis: the first record must have seq 1 and prev "
                                 f"{GENESIS[:12]}..., has seq {seq_n}")
        if seq_n <= prev_seq:
            return broken(seq_n, f"reordered: seq {seq_n} comes after seq {prev_seq}")
        if seq_n != prev_seq + 1:
            gap = seq_n - prev_seq - 1
            return broken(seq_n, f"removed: seq {seq_n} follows seq {prev_seq} "
                                 f"({gap} record{'s' if gap > 1 else ''} missing)")
        if doc["prev"] != self.hash:
            return broken(seq_n, f"prev does not match the hash of seq {prev_seq}: "
                                 "that record was edited and re-hashed, or replaced")
        self.index, self.seq, self.hash = i + 1, seq_n, h
        return None

    def follow(self, rows: Sequence[RecordRow], hashes_ok: bool, data: bytes | memoryview,
               path: str = "") -> Break | None:
        """Check a segment the reports already decoded: `rows` are its records, `hashes_ok`
        what `hashes_match` said of its bytes (`data`). The seq and prev links are
        compared list against list; anything short of all good is checked again record
        by record from the segment's start (`feed`), for `verify`'s exact verdict.

        What this accepts, `verify` accepts, except a line crafted with a correct hash
        and links but fields a record does not have (extra keys, an unknown event):
        fields no report reads, and forging them takes what a re-chained ledger takes
        (see `fleet ledger verify --signed-by / --anchor`).
        """
        if self.broken is not None:
            return self.broken
        if hashes_ok and rows:
            hashes = [r.hash for r in rows]
            if ([r.seq for r in rows] == list(range(self.seq + 1, self.seq + 1 + len(rows)))
                    and [r.prev for r in rows] == [self.hash, *hashes[:-1]]):
                self.index += len(rows)
                self.seq, self.hash = rows[-1].seq, hashes[-1]
                return None
        return self.feed(bytes(data), path)

    def feed(self, data: bytes, path: str = "") -> Break | None:
        """Check a stored segment's bytes (JSONL) record by record, as `verify` does;
        the first break so far (named `path:line`), or None."""
        if self.broken is not None or not data.strip():
            return self.broken
        first = self.index
        for line in data.decode("utf-8", "replace").rstrip("\n").split("\n"):
            broken = self.check(line, lambda i: f"{path}:{i - first + 1}")
            if broken is not None:
                return broken
        return None



def _malformed(doc: Mapping[str, Any]) -> str | None:
    """What makes `doc` not a record (fields, types of seq/gpus/hash, event), or None."""
    if doc.keys() != RECORD_KEYS:
        missing = RECORD_KEYS - doc.keys()
        if missing:
            return f"missing {', '.join(sorted(missing))}"
        return f"unknown field {', '.join(sorted(doc.keys() - RECORD_KEYS))}"
    for name in ("seq", "gpus"):
        if type(doc[name]) is not int:
            return f"{name} must be an integer, got {doc[name]!r}"
    if doc["event"] not in EVENTS:
        return f"unknown event {doc['event']!r}"
    if not isinstance(doc["hash"], str) or not isinstance(doc["prev"], str):
        return "hash and prev must be strings"
    return None


def _line_hash(line: str, h: str) -> str | None:
    """The hash of a canonical line, from its bytes: the line without `,"hash":"..."`.

    The writer only writes canonical lines, so for an intact record this equals
    `record_hash` without parsing and re-serialising it; anything else falls back to
    the full canonical hash.
    """
    body = line.replace(f',"hash":"{h}"', "", 1)
    if len(body) == len(line):
        return None
    return hashlib.sha256(body.encode()).hexdigest()
