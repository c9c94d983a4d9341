"""The front process's channel (`controllers.frontproc`): frames and documents read
back as written, a channel closed between frames is the end, anything else broken is
an error (never a frame made up)."""

from __future__ import annotations

import asyncio
import struct

import pytest

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
    empty = Body(raw=b"", gz=b"", etag="")
    assert body_of(status_payload(empty)) == empty


@pytest.mark.parametrize("payload", [b"\x00", struct.pack(">HI", 5, 10) + b"abc"],
                         ids=["no-lengths", "short"])
def test_a_document_shorter_than_it_says_is_an_error(payload: bytes) -> None:
    with pytest.raises(ChannelError):
        body_of(payload)
