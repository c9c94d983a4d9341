"""The front process's channel (`controllers.frontproc`): frames and documents read
back as written, a channel closed between frames is the end, anything else broken is
an error (never a frame made up)."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.frontproc import (
    HEADER,
    MAX_FRAME,
    ChannelError,
    Kind,
    body_of,
    frame,
    read_frame,
    status_payload,
)
from controllers.status import bodies
from controllers.status.bodies import Body


def reader_of(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


async def test_frames_are_read_back_in_order_then_the_end() -> None:
    r = reader_of(frame(Kind.TICK) + frame(Kind.OBSERVE, b'["/", 0.1, 0.2]')
                  + frame(Kind.HOOK))
    assert await read_frame(r) == (Kind.TICK, b"")
    assert await read_frame(r) == (Kind.OBSERVE, b'["/", 0.1, 0.2]')
    assert await read_frame(r) == (Kind.HOOK, b"")
    assert await read_frame(r) is None


async def test_a_frame_split_across_reads_is_whole() -> None:
    data = frame(Kind.CONFIG, b'{"a": 1}')
    r = reader_of(data[:3], eof=False)

    async def rest() -> None:
        await asyncio.sleep(0)
        r.feed_data(data[3:])
        r.feed_eof()

    feeding = asyncio.create_task(rest())
    assert await read_frame(r) == (Kind.CONFIG, b'{"a": 1}')
    await feeding


@pytest.mark.parametrize("data", [
    frame(Kind.TICK)[:2],  # inside the header
    frame(Kind.STATUS, b"x" * 10)[:-1],  # inside the payload
    HEADER.pack(0, 200),  # no such kind
    HEADER.pack(MAX_FRAME + 1, Kind.STATUS),  # too long to be a document
], ids=["header", "payload", "kind", "length"])
async def test_a_broken_channel_is_an_error(data: bytes) -> None:
    with pytest.raises(ChannelError):
        await read_frame(reader_of(data))


def test_a_document_crosses_with_its_gzip_and_etag() -> None:
    body = Body.of({"workloads": [{"id": "nlp-team/a"}], "x": "é"})
    assert body_of(status_payload(body)) == body
    empty = Body(gz=b"", etag="")
    assert body_of(status_payload(empty)) == empty
    assert body_of(status_payload(empty)).raw == b""


def test_a_big_document_crosses_as_its_gzip_alone_and_is_made_whole_on_demand() -> None:
    doc = {"workloads": [{"id": f"nlp-team/w{i}", "n": i} for i in range(20_000)]}
    body = Body.of(doc)
    assert body.kept is None  # the controller holds only the gzip of a big document
    payload = status_payload(body)
    assert len(payload) < len(body.gz) + 64  # no identity bytes cross the channel
    got = body_of(payload)
    assert got == body and got.kept is None
    assert json.loads(got.raw) == doc  # a client that wants them: made from the gzip
    assert got.kept is got.raw  # once


@pytest.mark.parametrize("payload", [b"\x00", struct.pack(">HI", 5, 10) + b"abc"],
                         ids=["no-lengths", "short"])
def test_a_document_shorter_than_it_says_is_an_error(payload: bytes) -> None:
    with pytest.raises(ChannelError):
        body_of(payload)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=400), st.integers(1, 5000))
def test_a_body_made_of_parts_is_the_body_of_their_join(parts: list[bytes],
                                                       batch: int) -> None:
    joined = b"".join(parts)
    with patch.object(bodies, "BATCH_BYTES", batch), \
            patch.object(bodies, "KEEP_RAW_BYTES", 1000):
        got = Body.made_of(parts)
        want = Body.made(joined)
    assert got.etag == want.etag
    assert got.raw == joined and gzip.decompress(got.gz) == joined
    assert (got.kept is None) == (len(joined) > 1000)
