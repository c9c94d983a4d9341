"""The front process, seen from the controller: its channel and its supervision.

Issue 22 wants `GET /api/v1/status` and the webhook answered in < 200 ms throughout.
On a thread of the controller (`controllers.serverthread`) the server shares the GIL
with a loop that is busy for seconds in a cold rollout (measured: status max 1.0-1.5 s
at 100 x 5,000). `fleet run` therefore serves the API from a process of its own
(`controllers.front`, unless `--serve-in-process`):

- the controller binds the listening socket (a port in use fails `fleet run` as
  before; `--listen :0` gets its port at once) and hands it to the front, which owns
  it from then on;
- the front answers `GET /api/v1/status` from the latest document the controller
  pushed (`Kind.STATUS`, each one the status cache publishes: `StatusCache.published`),
  `/healthz` from the controller's heartbeat (`Kind.TICK`), the webhook (its signature
  checked in the front, the fetch asked for with `Kind.HOOK`, answered 202 at once as
  before), `/version` and the page;
- every other route is forwarded to the controller's own server, the in-process one
  (`build_app`) listening on a Unix socket in a private directory, with the same auth;
- the front tells the controller a document was asked for (`ASKED`) or the state of now
  was (`HURRY`, answered by `FRESH` or `SAME`), and each request's timings (`OBSERVE`),
  so the refresher and the metrics see the requests as before.

A controller that dies closes the channel: the front exits (no orphan). A front that
dies closes it too: the controller exits non-zero (`FrontExited`), and its supervisor
(Kubernetes, systemd) restarts both (docs/controller.md "The front process").

The channel is a socketpair: frames of `HEADER` (payload length, kind) then the
payload. A document is sent with its gzip and ETag (`Body`), so the front does not
compress it again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog

from controllers.status.bodies import Body

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager
    from controllers.serverthread import ServerThread

log = structlog.get_logger()

HEADER = struct.Struct(">IB")
"""A frame's header: its payload's length (bytes), its kind."""

MAX_FRAME = 1 << 30
"""A payload longer than this is a broken channel, not a document."""

TICK_EVERY = 1.0
"""Seconds between the controller's heartbeats (the front's `/healthz`)."""

STOP_WAIT = 10.0
"""Seconds the controller waits for the front to exit once the channel is closed."""


class Kind(enum.IntEnum):
    CONFIG = 1
    """controller -> front, first: JSON (`front_config`)."""
    STATUS = 2
    """controller -> front: a status document published (`status_payload`)."""
    FRESH = 3
    """controller -> front: a document built after a `HURRY`, answering it."""
    SAME = 4
    """controller -> front: a `HURRY` answered: the last document is the state of now."""
    TICK = 5
    """controller -> front: the controller's loop runs."""
    ASKED = 6
    """front -> controller: the status document was asked for."""
    HURRY = 7
    """front -> controller: the state of now was asked for (`Cache-Control: no-cache`,
    or the last document is old): build it now."""
    HOOK = 8
    """front -> controller: a webhook with a good signature: fetch now."""
    OBSERVE = 9
    """front -> controller: one request's timings, JSON `[route, cpu, wall]`."""


class ChannelError(Exception):
    """A frame that cannot be read: truncated, too long, of no known kind."""


class FrontExited(Exception):
    """The front process closed the channel: the API is no longer served."""


def frame(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME:
        raise ChannelError(f"a {kind.name} frame of {len(payload)} bytes is too long")
    return HEADER.pack(len(payload), kind) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[Kind, bytes] | None:
    """The next frame; None when the channel closed between frames."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ChannelError("the channel closed inside a frame's header") from e
    size, kind = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ChannelError(f"a frame of {size} bytes is too long")
    try:
        which = Kind(kind)
    except ValueError as e:
        raise ChannelError(f"unknown frame kind {kind}") from e
    try:
        return which, await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise ChannelError(f"the channel closed inside a {which.name} frame") from e


_BODY = struct.Struct(">HI")
"""A document's payload: ETag length, gzip length; then the ETag, the gzip, the raw."""


def status_payload(body: Body) -> bytes:
    """The etag and the gzip only: the front makes the identity bytes from the gzip
    if a client asks for them (`Body.raw`), so the controller never copies a
    fleet-sized document into the channel (the layout keeps an identity part, empty,
    so a front that reads one still reads these)."""
    etag = body.etag.encode()
    return _BODY.pack(len(etag), len(body.gz)) + etag + body.gz


def body_of(payload: bytes) -> Body:
    if len(payload) < _BODY.size:
        raise ChannelError("a document's payload without its lengths")
    n_etag, n_gz = _BODY.unpack_from(payload)
    start = _BODY.size
    if start + n_etag + n_gz > len(payload):
        raise ChannelError("a document's payload shorter than its lengths")
    etag = payload[start:start + n_etag].decode()
    gz = payload[start + n_etag:start + n_etag + n_gz]
    raw = payload[start + n_etag + n_gz:]
    return Body(gz, etag, raw or None)


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound here (a port in use fails `fleet run` at start), not
    listening yet: the front listens once it serves (asyncio's server calls `listen`),
    so a client is refused until then rather than kept waiting in the backlog while
    the front starts (measured under load: a first read waited 4.9 s)."""
    host = host.strip("[]") or "127.0.0.1"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class FrontProcess:
    """The front process of one controller: started with `start`, kept by `run` (in
    the manager's task group; raises `FrontExited` when the front is gone), ended by
    `aclose`."""

    def __init__(self, m: Manager, inner: ServerThread, inner_dir: str,
                 config: dict[str, Any]) -> None:
        self.m = m
        self.inner = inner
        """The in-process server on a Unix socket: the forwarded routes."""
        self.inner_dir = inner_dir
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._channel: socket.socket | None = None
        """The controller's end of the channel (the stream's once `start` made it)."""
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._sent: Body | None = None
        """The last document sent (a `HURRY` that finds it the state of now: `SAME`)."""
        self._latest: Body | None = None
        self._pushed = asyncio.Event()

    async def start(self, listener: socket.socket) -> int:
        """Spawn the front with `listener` and the first document (published before:
        the front never serves without one); the port it serves."""
        self.port = int(listener.getsockname()[1])
        mine, theirs = socket.socketpair()
        self._channel = mine
        argv = [sys.executable, "-m", "controllers.front", str(theirs.fileno()),
                str(listener.fileno())]
        try:
            fds = (theirs.fileno(), listener.fileno())

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(argv, pass_fds=fds)
            proc = await anyio.to_thread.run_sync(spawn)
            self.proc = proc
        finally:
            theirs.close()  # the front holds it now: its end closes when it exits
            listener.close()
        self._reader, self._writer = await asyncio.open_connection(sock=mine)
        self._writer.write(frame(Kind.CONFIG, json.dumps(self.config).encode()))
        body = self.m.status_cache.published()
        assert body is not None, "the status cache is primed before the front starts"
        self._send(Kind.STATUS, body)
        self.m.status_cache.on_publish = self._publish
        await self._writer.drain()
        log.info("front_started", pid=proc.pid, port=self.port)
        return self.port

    def _send(self, kind: Kind, body: Body) -> None:
        assert self._writer is not None
        self._writer.write(frame(kind, status_payload(body)))
        self._sent = body

    def _publish(self, body: Body) -> None:
        """The status cache published `body` (on the loop): pushed by `_pusher`, only
        the latest when the front reads slower than documents are built."""
        self._latest = body
        self._pushed.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pusher)
            tg.start_soon(self._ticker)
            await self._read()
            tg.cancel_scope.cancel()

    async def _pusher(self) -> None:
        assert self._writer is not None
        while True:
            await self._pushed.wait()
            self._pushed.clear()
            body = self._latest
            if body is not None and body is not self._sent:
                self._send(Kind.STATUS, body)
                await self._writer.drain()

    async def _ticker(self) -> None:
        assert self._writer is not None
        while True:
            self._writer.write(frame(Kind.TICK))
            await self._writer.drain()
            await anyio.sleep(TICK_EVERY)

    async def _read(self) -> None:
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        cache = self.m.status_cache
        while True:
            try:
                got = await read_frame(self._reader)
            except (ChannelError, ConnectionError) as e:
                log.error("front_channel_broken", error=str(e))
                got = None
            if got is None:
                code = await self._exit_code()
                log.error("front_exited", returncode=code,
                          hint="the API is no longer served: the controller exits")
                raise FrontExited(f"the front process exited (returncode {code})")
            kind, payload = got
            if kind is Kind.ASKED:
                cache.ask(fresh=False)
            elif kind is Kind.HURRY:
                waiter = cache.ask(fresh=True)
                if waiter is not None:
                    waiter.add_done_callback(
                        lambda f: loop.call_soon_threadsafe(self._answer, f))
            elif kind is Kind.HOOK:
                log.info("git_webhook_received")
                self.m.trigger_fetch()
            elif kind is Kind.OBSERVE:
                route, cpu, wall = json.loads(payload)
                self.m.metrics.http_request(str(route), float(cpu), float(wall))
            else:
                log.warning("front_frame_unexpected", kind=kind.name)

    async def _exit_code(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        try:
            return await anyio.to_thread.run_sync(proc.wait, STOP_WAIT)
        except subprocess.TimeoutExpired:
            return None

    def _answer(self, done: concurrent.futures.Future[Body]) -> None:
        """A `HURRY` answered by the status cache: the document it got, sent now."""
        if self._writer is None or self._writer.is_closing() or done.cancelled():
            return
        body = done.result()
        if body is self._sent:
            self._writer.write(frame(Kind.SAME))
        else:
            self._send(Kind.FRESH, body)

    async def aclose(self) -> None:
        """Close the channel (the front exits on it), wait for the front, stop the
        in-process server, remove its socket's directory. Also after a `start` that
        was cancelled or failed halfway: whatever of it is there."""
        self.m.status_cache.on_publish = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        elif self._channel is not None:
            self._channel.close()  # no stream made on it yet
        proc = self.proc
        if proc is not None:
            try:
                await anyio.to_thread.run_sync(proc.wait, STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                await anyio.to_thread.run_sync(proc.wait)
        await anyio.to_thread.run_sync(self.inner.stop)
        shutil.rmtree(self.inner_dir, ignore_errors=True)


def inner_socket_dir() -> str:
    """A directory only this user can enter, for the in-process server's socket (the
    front's forwarded routes)."""
    path = tempfile.mkdtemp(prefix="aifleet-")
    os.chmod(path, 0o700)
    return path
