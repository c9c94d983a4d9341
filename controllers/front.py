"""The front process: the controller's HTTP API, served from a process of its own.

`python -m controllers.front CHANNEL_FD LISTEN_FD`, started by `fleet run`
(`controllers.frontproc`, which says why and what crosses the channel). It serves the
routes of `controllers.server.ROUTES` with the same app (`new_app`: auth, timing,
body limit) and handlers (`handlers`) as the in-process server:

- `GET /api/v1/status`: the latest document the controller pushed (`Latest`), its age
  in `Age`; a request for the state of now (or for a document older than the status
  cache's `stale_after`) waits for a newer one at most its `fresh_wait`, as in the
  controller;
- `POST /hooks/git`: the signature checked here, the fetch asked of the controller over
  the channel, answered 202 "fetch scheduled" without waiting for it, as before;
- `GET /healthz`: 200 while the controller's heartbeat came less than `alive_limit`
  seconds ago (its loop runs); `GET /version` and `GET /`: from here;
- every other route: forwarded to the controller's in-process server (a Unix socket),
  its answer passed back as it is (504 when it does not answer in `FORWARD_TIMEOUT`).

It exits when the channel closes (the controller stopped or died).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import structlog
from aiohttp import web

from controllers.apiauth import TokensFile
from controllers.frontproc import ChannelError, Kind, body_of, frame, read_frame
from controllers.logs import configure
from controllers.server import (
    MAX_HOOK_BYTES,
    ROUTES,
    Endpoints,
    Handler,
    add_routes,
    handlers,
    new_app,
    tls_context,
)
from controllers.status.bodies import Body
from controllers.web import index_html

log = structlog.get_logger()

FORWARD_TIMEOUT = 30.0
"""Seconds a forwarded request waits for the controller's answer (then 504)."""

LOCAL = {("GET", "/healthz"), ("GET", "/api/v1/status"), ("POST", "/hooks/git"),
         ("GET", "/version"), ("GET", "/")}
"""The routes answered here; the others are forwarded."""

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
              "date", "server"}
"""Headers not passed on (RFC 9110 7.6.1), or set by each hop itself."""


class Latest:
    """The latest status document the controller pushed, when it came, and the
    requests waiting for a newer one."""

    def __init__(self, writer: asyncio.StreamWriter, body: Body, *,
                 fresh_wait: float, stale_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self.body = body
        self.clock = clock
        self.at = clock()
        self.ticked = self.at
        self.primed = True
        """The document is the one the controller primed before anything was loaded
        (a first read waits for the state of now, as in the controller)."""
        self.fresh_wait = fresh_wait
        self.stale_after = stale_after
        self._waiters: list[asyncio.Future[None]] = []

    def pushed(self, body: Body) -> None:
        self.body, self.at, self.primed = body, self.clock(), False

    def answered(self) -> None:
        """A `HURRY` answered (`FRESH` after `pushed`, or `SAME`)."""
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def now(self, fresh: bool) -> tuple[Body, float]:
        stale = self.primed or self.clock() - self.at > self.stale_after
        if fresh or stale:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self.writer.write(frame(Kind.HURRY))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, self.fresh_wait)
        else:
            self.writer.write(frame(Kind.ASKED))
        return self.body, max(0.0, self.clock() - self.at)


def _not_here() -> NoReturn:
    raise RuntimeError("forwarded to the controller, not answered by the front")


def forwarder(session: aiohttp.ClientSession) -> Handler:
    """A handler passing the request to the controller's in-process server and its
    answer back, bytes as they are (a gzipped body stays gzipped)."""

    async def forward(request: web.Request) -> web.StreamResponse:
        # as much as a handler reads at most (the controller's own limits answer the
        # rest: 413 "body too large" for an action, as they did)
        body = await request.content.read(MAX_HOOK_BYTES + 1)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with session.request(request.method, f"http://controller{request.rel_url}",
                                       headers=headers, data=body) as r:
                data = await r.read()
                out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=r.status, body=data, headers=out)
        except TimeoutError:
            return web.Response(status=504, text="the controller did not answer in "
                                                 f"{FORWARD_TIMEOUT:.0f} s\n")
        except aiohttp.ClientError as e:
            return web.Response(status=502, text=f"the controller is not reachable: {e}\n")

    return forward


async def serve(channel: socket.socket, listener: socket.socket) -> int:
    reader, writer = await asyncio.open_connection(sock=channel)
    got = await read_frame(reader)
    if got is None or got[0] is not Kind.CONFIG:
        return 2
    config: dict[str, Any] = json.loads(got[1])
    got = await read_frame(reader)
    if got is None or got[0] is not Kind.STATUS:
        return 2
    configure(config["log_level"], config["log_json"])
    # the status cache's own waits (not imported: `controllers.status.cache` would
    # load the whole controller into this process, 60 MiB more)
    latest = Latest(writer, body_of(got[1]), fresh_wait=float(config["fresh_wait"]),
                    stale_after=float(config["stale_after"]))
    alive_limit = float(config["alive_limit"])
    secret = config["webhook_secret"]
    tokens = config["api_tokens_file"]
    cert, key = config["tls_cert"], config["tls_key"]

    def observe(route: str, cpu: float, wall: float) -> None:
        writer.write(frame(Kind.OBSERVE, json.dumps([route, cpu, wall]).encode()))

    async def on_git_hook() -> None:
        writer.write(frame(Kind.HOOK))

    ep = Endpoints(status=_not_here, capacity=_not_here, metrics=_not_here,
                   ready=_not_here, on_git_hook=on_git_hook, page=index_html,
                   version=config["version"], status_now=latest.now,
                   alive=lambda: latest.clock() - latest.ticked < alive_limit,
                   observe=observe)
    auth = TokensFile(Path(tokens)) if tokens is not None else None
    tls = tls_context(cert, key) if cert is not None and key is not None else None
    session = aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=config["inner"]), auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT))
    table = handlers(ep, secret.encode() if secret is not None else None)
    forward = forwarder(session)
    for route in ROUTES:
        if route not in LOCAL:
            table[route] = forward
    runner = web.AppRunner(add_routes(new_app(observe, auth), table), access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, listener, ssl_context=tls).start()
        while True:
            try:
                got = await read_frame(reader)
            except (ChannelError, ConnectionError) as e:
                log.error("front_channel_broken", error=str(e))
                got = None
            if got is None:
                break
            kind, payload = got
            if kind is Kind.STATUS:
                latest.pushed(body_of(payload))
            elif kind is Kind.FRESH:
                latest.pushed(body_of(payload))
                latest.answered()
            elif kind is Kind.SAME:
                latest.answered()
            elif kind is Kind.TICK:
                latest.ticked = latest.clock()
    finally:
        await runner.cleanup()
        await session.close()
    log.info("front_stopping", reason="the controller closed the channel")
    return 0


def main(argv: list[str]) -> int:
    # Ctrl-C, or systemd's stop, reaches the whole process group: the controller stops,
    # closing the channel, and this process with it (never before it: the controller
    # would take that for a dead front and exit 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = socket.socket(fileno=int(argv[0]))
    listener = socket.socket(fileno=int(argv[1]))
    return asyncio.run(serve(channel, listener))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
