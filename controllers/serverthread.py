"""The HTTP server on a thread of its own: answers that do not wait for the event loop.

Issue 22 wants `GET /api/v1/status` and the webhook answered in < 200 ms throughout.
With the server on the controller's event loop, a request is answered only when the
loop gets to it: measured in `bench.scale` (100 x 5,000, `AIFLEET_TRACE_BLOCKERS=1`),
the loop lags up to 2.3 s during a cold start, in many small pieces (watch events
decoded, applies, TLS handshakes, collections), none of them the status document.
Slicing all of that is not possible; not waiting for it is:

- the aiohttp server runs on its own event loop in a daemon thread (`ServerThread`);
- what needs the controller's state runs on the controller's loop (`on_loop`: the
  endpoint's callable is called there and its answer awaited), so nothing is read
  from two threads: readiness, metrics, the actions, capacity, events, a fresh status;
- what does not is answered on the server's thread: the status document the cache
  has published (`StatusCache.now`: an immutable `Body` and its age, never waiting
  for the controller's loop; the cache is told, on its loop, that it was asked for;
  one is published before the server listens, and an operator action publishes one
  before its answer; `Cache-Control: no-cache` waits at most 0.15 s for a newer one),
  the webhook (its signature checked here, the fetch scheduled on the controller's
  loop with `call_soon_threadsafe`), `/healthz` (the loop is alive when its lag
  monitor is not minutes overdue), the page.

A thread shares the GIL, so the server runs whenever the loop's thread lets the GIL go
(every `sys.getswitchinterval()`, 5 ms, while it runs Python code): a loop held for
seconds by Python code no longer holds the answers. What holds the GIL throughout (a
garbage collection, a long C call) still delays them: `fleet run` therefore serves
the API from a process of its own (`controllers.frontproc`), this thread only with
`--serve-in-process`, and otherwise behind the front, on a Unix socket, for the routes
the front forwards.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from controllers.server import bound_port, serve, serve_unix


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Any]], Awaitable[Any]]:
    """A dispatcher: `await run(f)` calls `f` on `loop` (awaiting it there if it
    returns an awaitable) and returns its answer to the caller's loop."""

    async def run(f: Callable[[], Any]) -> Any:
        async def there() -> Any:
            out = f()
            if inspect.isawaitable(out):
                out = await out
            return out
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(there(), loop))

    return run


class ServerThread:
    """`make_app()`'s server, listening on `host:port` (or the Unix socket `unix`) from a
    daemon thread's loop."""

    def __init__(self, make_app: Callable[[], web.Application], host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None, *, unix: str | None = None
                 ) -> None:
        self._make_app = make_app
        self._where = (host, port, ssl_context)
        self._unix = unix
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        """Listen (blocking until it does, or raising why not); the port bound."""
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, close the connections, end the thread (blocking)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        host, port, tls = self._where
        try:
            if self._unix is not None:
                runner = loop.run_until_complete(serve_unix(self._make_app(), self._unix))
            else:
                runner = loop.run_until_complete(serve(self._make_app(), host, port, tls))
                self.port = bound_port(runner)
        except BaseException as e:  # noqa: BLE001 (handed to start(), which raises it)
            self._error = e
            loop.close()
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()
