"""A streamed HTTP/1.1 GET over anyio's TLS stream and h11: a watch's long-held connection.

Why not aiohttp, which carries every other request: asyncio's TLS layer
(`asyncio.sslproto.SSLProtocol`, what `loop.create_connection(ssl=...)` and so aiohttp
use) allocates a fixed 256 KiB read buffer per connection (its class attribute
`max_size`, a zero-filled `bytearray` made in its constructor: every page touched), and
the standard library offers no public way to choose a smaller one. A watch holds its
connection for as long as it runs, and the two an idle cluster always holds (Nodes,
Pods) were ~500 KiB of the ~1.4 MiB it cost (issue 22, item 1: `bench.footprint`).

Here the connection is anyio's (`anyio.connect_tcp(..., ssl_context=...)`): its TLS
stream drives an `ssl.SSLObject` over memory BIOs (the public `ssl` API), reading what
arrived, at most 64 KiB at a time, into a bytes object of that size; h11 (sans-I/O
HTTP/1.1, locked with httpx) parses the status line, the headers and the chunked body.
~60 KiB per idle connection against ~330 KiB through aiohttp (docs/adapter.md, "Idle
footprint per cluster").

What it costs: a few microseconds more CPU per watch event (TLS records are handled in
Python), and a new connection (a TLS handshake) per watch instead of a pooled one; a
watch ends every `timeoutSeconds` (300 s). No proxy: a cluster reached through one
watches through aiohttp as before (`clusters.transport.Transport.watch`).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import anyio
import anyio.abc
import h11

MAX_LINE = 1 << 24
"""Bytes one watch event may take (a Kubernetes object is at most ~1.5 MiB in etcd;
JSON escaping can grow it): past this the stream is treated as broken."""

MAX_ERROR_BODY = 1 << 20
"""Bytes of a non-200 answer read for its Status (the rest is dropped)."""


class StreamResponse:
    """A response whose body is read as it arrives; `aclose()` closes the connection."""

    def __init__(self, stream: anyio.abc.ByteStream, conn: h11.Connection, status: int,
                 read_timeout: float | None) -> None:
        self._stream = stream
        self._conn = conn
        self.status = status
        self.headers: dict[str, str] = {}
        """Lower-cased names."""
        self._read_timeout = read_timeout

    async def _next(self) -> object:
        """The next body event, receiving as needed; a cut connection is a
        ConnectionError, as a reset socket is."""
        try:
            while True:
                event = self._conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                self._conn.receive_data(await self._receive())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError,
                h11.ProtocolError) as e:
            raise ConnectionError(f"{type(e).__name__}: {e}") from e

    async def _receive(self) -> bytes:
        try:
            if self._read_timeout is None:  # the caller's deadline covers the whole
                return await self._stream.receive()
            with anyio.fail_after(self._read_timeout):
                return await self._stream.receive()
        except anyio.EndOfStream:
            return b""  # h11 says whether the body was complete

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, until the server ends it."""
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return
            elif event is h11.PAUSED:  # a second response on one request: not HTTP
                raise ConnectionError("unexpected data after the response")

    async def read(self, limit: int | None = MAX_ERROR_BODY) -> bytes:
        """The whole body, up to `limit` bytes (None: all of it)."""
        parts: list[bytes] = []
        size = 0
        async for data in self.chunks():
            parts.append(data)
            size += len(data)
            if limit is not None and size >= limit:
                return b"".join(parts)[:limit]
        return b"".join(parts)

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split on newlines (a watch sends one JSON event per line), without
        the newline; a last line without one is yielded too."""
        pending: list[bytes] = []
        size = 0
        async for data in self.chunks():
            start = 0
            while (nl := data.find(b"\n", start)) >= 0:
                pending.append(data[start:nl])
                yield b"".join(pending) if len(pending) > 1 else pending[0]
                pending.clear()
                size = 0
                start = nl + 1
            if start < len(data):
                pending.append(data[start:])
                size += len(data) - start
                if size > MAX_LINE:
                    raise ConnectionError(f"a watch event over {MAX_LINE} bytes")
        if pending:
            yield b"".join(pending)

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self._stream)


async def _connect(host: str, port: int, ssl_context: ssl.SSLContext | None,
                   tls_hostname: str | None) -> anyio.abc.ByteStream:
    if ssl_context is None:
        return await anyio.connect_tcp(host, port)
    # No TLS close_notify exchange on close: the peer may be gone, and the server does
    # not need one (`tls_standard_compatible=False`).
    return await anyio.connect_tcp(host, port, tls=True, ssl_context=ssl_context,
                                   tls_hostname=tls_hostname or host,
                                   tls_standard_compatible=False)


async def _exchange(stream: anyio.abc.ByteStream, conn: h11.Connection, target: str,
                    headers: Mapping[str, str], host_header: str,
                    read_timeout: float | None) -> StreamResponse:
    """Send `GET target` on `conn` and read up to the end of the response's headers."""
    try:
        request = h11.Request(method="GET", target=target,
                              headers=[("Host", host_header), *headers.items()])
        data = conn.send(request) + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        # h11's message quotes the value, and a header may be the bearer token.
        raise ConnectionError("a request header or target is not valid HTTP "
                              "(not shown: it may be a credential)") from None
    try:
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
        raise ConnectionError(f"{type(e).__name__}: {e}") from e
    response = StreamResponse(stream, conn, 0, read_timeout)
    while True:
        event = await response._next()
        if isinstance(event, h11.Response):
            response.status = event.status_code
            response.headers = {k.decode().lower(): v.decode("latin-1")
                                for k, v in event.headers}
            return response
        if not isinstance(event, h11.InformationalResponse):
            raise ConnectionError("the connection closed before a response")


async def open_get(host: str, port: int, target: str, headers: Mapping[str, str], *,
                   host_header: str, ssl_context: ssl.SSLContext | None,
                   tls_hostname: str | None, connect_timeout: float,
                   read_timeout: float) -> StreamResponse:
    """Connect (TLS when `ssl_context` is given), send `GET target`, and return once the
    status and headers are in; the connection is the response's own (a watch). Raises
    OSError (refused, reset, TLS failure), TimeoutError, or ConnectionError (the
    connection cut or not speaking HTTP)."""
    with anyio.fail_after(connect_timeout):
        stream = await _connect(host, port, ssl_context, tls_hostname)
    try:
        return await _exchange(stream, h11.Connection(h11.CLIENT), target, headers,
                               host_header, read_timeout)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None


class Pool:
    """Keep-alive connections to one server for plain GETs (the heartbeat, lists).

    At most `max_idle` connections are kept between requests (one: an idle cluster's
    heartbeat and its lists, one at a time, reuse it), each for at most `keepalive`
    seconds; a request that finds none opens one. A kept connection the server has
    closed meanwhile fails before any answer: the GET is sent again, once, on a new
    connection (a GET changes nothing)."""

    def __init__(self, host: str, port: int, *, host_header: str,
                 ssl_context: ssl.SSLContext | None, tls_hostname: str | None,
                 keepalive: float, max_idle: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._where = (host, port, ssl_context, tls_hostname)
        self._host_header = host_header
        self._keepalive = keepalive
        self._max_idle = max_idle
        self._clock = clock
        self._idle: list[tuple[float, anyio.abc.ByteStream, h11.Connection]] = []
        self.opened = 0
        """Connections opened so far (a test counts reuse)."""

    async def _take(self) -> tuple[anyio.abc.ByteStream, h11.Connection] | None:
        while self._idle:
            since, stream, conn = self._idle.pop()
            if self._clock() - since < self._keepalive:
                return stream, conn
            await anyio.aclose_forcefully(stream)
        return None

    async def get(self, target: str, headers: Mapping[str, str], *,
                  within: float) -> Answer:
        """`GET target`: the whole answer, within `within` seconds. Raises OSError,
        TimeoutError or ConnectionError as `open_get`."""
        with anyio.fail_after(within):
            kept = await self._take()
            if kept is not None:
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    return await self._get_on(*kept, target, headers)
            self.opened += 1
            stream = await _connect(*self._where)
            return await self._get_on(stream, h11.Connection(h11.CLIENT), target, headers)

    async def _get_on(self, stream: anyio.abc.ByteStream, conn: h11.Connection,
                      target: str, headers: Mapping[str, str]) -> Answer:
        try:  # within `get`'s deadline
            resp = await _exchange(stream, conn, target, headers, self._host_header, None)
            body = await resp.read(limit=None)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        if (conn.our_state is h11.DONE and conn.their_state is h11.DONE
                and len(self._idle) < self._max_idle):
            conn.start_next_cycle()
            self._idle.append((self._clock(), stream, conn))
        else:
            await anyio.aclose_forcefully(stream)
        return Answer(resp.status, body, resp.headers.get("retry-after"))

    async def close(self) -> None:
        while self._idle:
            await anyio.aclose_forcefully(self._idle.pop()[1])
