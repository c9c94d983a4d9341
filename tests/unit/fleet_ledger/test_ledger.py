"""The decision ledger's chain: sealing, canonical lines, and verify finding each break."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from fleet.ledger import GENESIS, Entry, Record, Tip, record_hash, seal, tip_of, verify
from tests.support.ledger import EVENTS, lines


def test_every_event_kind_seals_into_one_chain_that_verifies() -> None:
    records = seal(EVENTS)
    assert [r.seq for r in records] == list(range(1, len(EVENTS) + 1))
    assert records[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))
    assert {r.entry.event for r in records} == {
        "Placed", "Applied", "DriftCorrected", "Moved", "Pruned", "FailedOver", "Refused",
        "Pending", "Observed"}
    assert verify(lines()) is None
    assert verify([r.to_json() for r in records]) is None


def test_a_line_is_canonical_json_with_every_key() -> None:
    line = seal(EVENTS[:1])[0].line()
    doc = json.loads(line)
    assert line == json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert doc["fromCluster"] is None and doc["manifestDigest"] is None
    assert doc["hash"] == record_hash(doc)
    assert Record.from_json(doc).entry == EVENTS[0]


def test_sealing_onto_a_tip_continues_the_chain() -> None:
    first = seal(EVENTS[:3])
    rest = seal(EVENTS[3:], tip_of(first))
    assert rest[0].seq == 4 and rest[0].prev == first[-1].hash
    assert verify([r.line() for r in first + rest]) is None
    assert tip_of([]) == Tip(0, GENESIS)


def _edit(ls: list[str]) -> list[str]:
    doc = json.loads(ls[3])
    doc["cluster"] = "us-east-1"
    return [*ls[:3], json.dumps(doc, sort_keys=True, separators=(",", ":")), *ls[4:]]


def _edit_and_rehash(ls: list[str]) -> list[str]:
    doc = json.loads(ls[3])
    doc["jurisdiction"] = "US"
    doc["hash"] = record_hash(doc)
    return [*ls[:3], json.dumps(doc), *ls[4:]]


def _remove(ls: list[str]) -> list[str]:
    return [*ls[:3], *ls[4:]]


def _remove_last_and_first(ls: list[str]) -> list[str]:
    return ls[1:]


def _swap(ls: list[str]) -> list[str]:
    return [*ls[:3], ls[4], ls[3], *ls[5:]]


def _garbage(ls: list[str]) -> list[str]:
    return [*ls[:3], "{not json", *ls[4:]]


def _unknown_field(ls: list[str]) -> list[str]:
    doc = json.loads(ls[3])
    doc["extra"] = 1
    doc["hash"] = record_hash(doc)
    return [*ls[:3], json.dumps(doc), *ls[4:]]


def _forged_genesis(ls: list[str]) -> list[str]:
    doc: dict[str, Any] = json.loads(ls[0])
    doc["prev"] = "f" * 64
    doc["hash"] = record_hash(doc)
    return [json.dumps(doc), *ls[1:]]


@pytest.mark.parametrize(("tamper", "index", "seq", "why"), [
    (_edit, 3, 4, "edited: its content does not match its hash"),
    (_edit_and_rehash, 4, 5, "prev does not match the hash of seq 4"),
    (_remove, 3, 5, "removed: seq 5 follows seq 3 (1 record missing)"),
    (_swap, 3, 5, "removed: seq 5 follows seq 3"),
    (_garbage, 3, None, "not a JSON record"),
    (_unknown_field, 3, 4, "malformed record: unknown field extra"),
    (_remove_last_and_first, 0, 2, "bad genesis"),
    (_forged_genesis, 0, 1, "bad genesis"),
], ids=["edited", "edited-and-rehashed", "removed", "reordered", "garbage", "unknown-field",
        "first-removed", "forged-genesis"])
def test_verify_reports_the_first_broken_record(
        tamper: Callable[[list[str]], list[str]], index: int, seq: int | None,
        why: str) -> None:
    broken = verify(tamper(lines()))
    assert broken is not None
    assert (broken.index, broken.seq) == (index, seq)
    assert broken.why.startswith(why)


def test_verify_says_reordered_when_seq_goes_back() -> None:
    ls = lines()
    broken = verify([*ls[:5], ls[3], *ls[5:]])
    assert broken is not None and broken.index == 5
    assert broken.why == "reordered: seq 4 comes after seq 5"


def test_verify_names_where_the_break_is() -> None:
    broken = verify(_edit(lines()), where=lambda i: f"seg.jsonl:{i + 1}")
    assert broken is not None and broken.where == "seg.jsonl:4"


def test_an_unknown_event_is_refused_when_the_entry_is_made() -> None:
    with pytest.raises(ValueError, match="unknown ledger event 'Teleported'"):
        Entry("2026-11-23T10:00:00Z", "Teleported", "a/b")  # type: ignore[arg-type]


@pytest.mark.parametrize("time", ["2026-11-23 10:00:00", "2026-11-23T10:00:00+02:00",
                                  "yesterday", ""], ids=["space", "offset", "word", "empty"])
def test_a_time_that_is_not_rfc3339_utc_is_refused(time: str) -> None:
    with pytest.raises(ValueError, match="is not RFC 3339 UTC"):
        Entry(time, "Pending", "a/b")
