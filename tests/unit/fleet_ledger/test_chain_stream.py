"""`Chain`, the streaming check the reports run: the same verdict as `verify`, per segment."""

from __future__ import annotations

import json
from collections.abc import Callable

import msgspec
import pytest

from fleet.ledger import Chain, RecordRow, hashes_match, verify
from tests.support.ledger import lines

Change = Callable[[list[str]], list[str]]


def _set(i: int, key: str, value: object) -> Change:
    def change(ls: list[str]) -> list[str]:
        doc = json.loads(ls[i])
        doc[key] = value
        return [*ls[:i], json.dumps(doc, sort_keys=True, separators=(",", ":")), *ls[i + 1:]]
    return change


CHANGES: dict[str, Change] = {
    "intact": lambda ls: ls,
    "reformatted-unchanged": lambda ls: [*ls[:4], json.dumps(json.loads(ls[4]), indent=1)
                                         .replace("\n", " "), *ls[5:]],
    "edited": _set(4, "jurisdiction", "US"),
    "removed": lambda ls: [*ls[:3], *ls[5:]],
    "reordered": lambda ls: [*ls[:3], ls[4], ls[3], *ls[5:]],
    "truncated-first": lambda ls: ls[1:],
    "not-json": lambda ls: [*ls[:6], "{oops", *ls[7:]],
    "blank-line": lambda ls: [*ls[:6], "", *ls[6:]],
    "extra-field": _set(2, "extra", 1),
}


def segments(ls: list[str], per: int) -> list[tuple[str, bytes]]:
    return [(f"seg{k}.jsonl", "".join(f"{ln}\n" for ln in ls[k:k + per]).encode())
            for k in range(0, len(ls), per)]


@pytest.mark.parametrize("name", sorted(CHANGES))
@pytest.mark.parametrize("per", [1, 3, 100])
def test_the_streaming_check_names_the_same_break_as_verify(name: str, per: int) -> None:
    segs = segments(CHANGES[name](lines()), per)
    # what the ledger reader hands `verify`: the lines of each segment (a blank one has none)
    places: list[tuple[str, int]] = []
    ls: list[str] = []
    for path, data in segs:
        places.append((path, len(ls)))
        ls += data.decode().rstrip("\n").split("\n") if data.strip() else []

    def where(i: int) -> str:
        path, first = next(p for p in reversed(places) if p[1] <= i)
        return f"{path}:{i - first + 1}"

    expected = verify(ls, where=where)
    fed, followed = Chain(), Chain()
    decode = msgspec.json.Decoder(RecordRow)
    for path, data in segs:
        fed.feed(data, path)
        try:
            rows = decode.decode_lines(data)
        except msgspec.MsgspecError:
            followed.feed(data, path)
            continue
        followed.follow(rows, hashes_match(data), data, path)
    assert fed.broken == expected
    assert followed.broken == expected
    if expected is None:
        assert (followed.seq, followed.index) == (len(ls), len(ls))


def test_hashes_match_only_the_bytes_the_writer_hashed() -> None:
    data = "".join(f"{ln}\n" for ln in lines()).encode()
    assert hashes_match(data) and hashes_match(b"")
    assert not hashes_match(data.replace(b'"DE"', b'"US"', 1))
    assert not hashes_match(data + b"\n\n" + data)  # a blank line: look closer
