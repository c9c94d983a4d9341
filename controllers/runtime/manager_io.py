"""The Manager's face: HTTP endpoints, status document, metrics, readiness.

Only reads the state the Manager's parts keep (`controllers.runtime.manager`); the
decisions they record are `controllers.runtime.records`'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog

from controllers import frontproc
from controllers.apiauth import TokensFile
from controllers.runtime.control import act
from controllers.runtime.fleetstate import (
    capacity_snapshot,
)
from controllers.server import Endpoints, build_app, tls_context
from controllers.serverthread import ServerThread, on_loop
from controllers.status import fleetdoc
from controllers.status.bodies import Body
from controllers.status.cache import Is
from controllers.version import version
from controllers.web import index_html

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


# ---------------------------------------------------------------------- documents


def status(m: Manager) -> dict[str, Any]:
    """The FleetStatus document, built now (`controllers.status.fleetdoc`; the HTTP
    endpoint serves `m.status_cache`'s pre-serialised copy instead)."""
    return fleetdoc.document(m)


def capacity_json(m: Manager) -> dict[str, Any]:
    spec = m.desired.spec
    if spec is None:
        return m.snapshot.to_json()
    return capacity_snapshot(spec.clusters, m.views(), None).to_json()


CAPACITY_MAX_AGE = 2.0
"""Seconds a capacity document is served unchanged at most (as the status cache's
`max_age`): what `capacity_key` cannot see is shown at most this late."""


def capacity_key(m: Manager) -> Hashable:
    """Changes when what `capacity_json` shows changes: the spec (or the snapshot
    before one), each adapter's health, listing, node changes (`capacity_version`) and
    unreachable time; and every `CAPACITY_MAX_AGE` seconds (work in clusters)."""
    return (Is(m.desired.spec), Is(m.snapshot),
            tuple((name, Is(a), a.health_state, a.synced.is_set(), a.capacity_version,
                   a.health.unreachable_for()) for name, a in sorted(m.adapters.items())),
            int(m.status_cache.clock() // CAPACITY_MAX_AGE))


def capacity_body(m: Manager) -> Body:
    """`GET /api/v1/capacity` as served: built once per change (`capacity_key`)."""
    return m.capacity_bodies.get(capacity_key(m), None, lambda: capacity_json(m))


def metrics_text(m: Manager) -> str:
    return m.metrics.render()


def ready(m: Manager) -> tuple[bool, str]:
    problem = m.ledger_problem()
    if problem is not None:
        return False, f"{problem[0]}: {problem[1]}"
    if m.desired.plan is None:
        return False, "no plan yet (waiting for the repo and the clusters)"
    waiting = sorted(n for n, a in m.adapters.items()
                     if not a.synced.is_set() and a.health_state != "Unreachable")
    if waiting:
        return False, f"clusters not listed yet: {', '.join(waiting)}"
    if m.applied_commit is None:
        if m.shards is not None and m.shards.rounds and not m.shards.held():
            # A spare (or one waiting for a shard to be let go) applies nothing, so it
            # says no commit applied; it serves the fleet's status all the same, and a
            # Deployment's rolling update must not wait for it to take a shard.
            return True, "holds no shard: applies nothing here"
        return False, "first plan not applied yet"
    return True, f"applied {m.applied_commit[:12]}"


# ------------------------------------------------------------------ server


ALIVE_LIMIT = 60.0
"""`/healthz` fails once the controller's loop has not run for this many seconds (its
lag monitor that overdue): a loop busy for seconds is alive, a stuck one is not."""


def _auth(m: Manager) -> TokensFile | None:
    tokens = m.settings.api_tokens_file
    auth = TokensFile(tokens) if tokens is not None else None
    if auth is None:
        log.warning("api_unauthenticated", listen=m.settings.listen,
                    hint="anyone who reaches --listen may read status and metrics and "
                         "trigger actions: give --api-tokens-file")
    return auth


def _hook_secret(m: Manager) -> bytes | None:
    secret = m.settings.webhook_secret
    return secret.get_secret_value().encode() if secret is not None else None


def _endpoints(m: Manager, *, observe: bool = True) -> Endpoints:
    loop = asyncio.get_running_loop()
    return Endpoints(
        status=m.status, capacity=m.capacity_json, metrics=m.metrics_text,
        ready=m.ready, on_git_hook=_hook(m, loop), page=index_html,
        events=lambda since, wid: m.feed.document(since, wid),
        control=lambda action, body: _acted(m, action, body), version=version(),
        status_body=lambda fresh: m.status_cache.body(fresh=fresh),
        capacity_body=lambda: capacity_body(m), events_body=m.feed.body,
        status_now=lambda fresh: m.status_cache.now(fresh=fresh), dispatch=on_loop(loop),
        alive=lambda: m.loop_lag.overdue() < ALIVE_LIMIT,
        observe=m.metrics.http_request if observe else None)


async def start_server(m: Manager) -> tuple[ServerThread, int]:
    """The HTTP server, listening on its own thread (`controllers.serverthread`): its
    thread and the port it bound (`--serve-in-process`)."""
    host, _, port = m.settings.listen.rpartition(":")
    auth = _auth(m)
    ep, hook_secret = _endpoints(m), _hook_secret(m)
    cert, key = m.settings.tls_cert, m.settings.tls_key
    tls = tls_context(str(cert), str(key)) if cert is not None and key is not None else None
    front = ServerThread(lambda: build_app(ep, hook_secret, auth), host or "127.0.0.1",
                         int(port or 0), tls)
    bound = await anyio.to_thread.run_sync(front.start)
    log.info("http_listening", host=host or "127.0.0.1", port=bound, tls=tls is not None,
             auth=auth is not None)
    return front, bound


async def start_front(m: Manager) -> frontproc.FrontProcess:
    """The API served by a process of its own (`controllers.frontproc`): the listening
    socket bound here and handed to it, the routes it forwards served by the
    in-process server on a Unix socket (same auth; timed by the front, not twice).
    Cancelled or failing halfway, it stops what of it started (the in-process server,
    the front, the port) before it raises: the caller has nothing to stop yet."""
    host, _, port = m.settings.listen.rpartition(":")
    listener = frontproc.listening_socket(host, int(port or 0))
    try:
        auth = _auth(m)
        ep = _endpoints(m, observe=False)
        hook_secret = _hook_secret(m)
        where = frontproc.inner_socket_dir()
        inner = ServerThread(lambda: build_app(ep, hook_secret, auth), "", 0,
                             unix=f"{where}/api.sock")
        s = m.settings
        secret = s.webhook_secret
        config = {
            "inner": f"{where}/api.sock", "version": version(),
            "webhook_secret": secret.get_secret_value() if secret is not None else None,
            "api_tokens_file": str(s.api_tokens_file) if s.api_tokens_file else None,
            "tls_cert": str(s.tls_cert) if s.tls_cert else None,
            "tls_key": str(s.tls_key) if s.tls_key else None,
            "log_level": s.log_level, "log_json": s.log_json, "alive_limit": ALIVE_LIMIT,
            "fresh_wait": m.status_cache.fresh_wait,
            "stale_after": m.status_cache.stale_after}
        front = frontproc.FrontProcess(m, inner, where, config)
    except BaseException:
        listener.close()
        raise
    try:
        await anyio.to_thread.run_sync(inner.start)
        bound = await front.start(listener)
    except BaseException:
        listener.close()  # (`start` closed it already if it got that far)
        with anyio.CancelScope(shield=True):
            await front.aclose()
        raise
    log.info("http_listening", host=host or "127.0.0.1", port=bound,
             tls=s.tls_cert is not None, auth=auth is not None, front=front.proc.pid
             if front.proc is not None else None)
    return front


async def _acted(m: Manager, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An operator action; answered once a status document that shows it is published
    (the next read shows it without waiting for a build)."""
    m.acting += 1  # a write of the replica's, outside its task group
    try:
        answer = await act(m, action, body)
    finally:
        m.acting -= 1
    await m.status_cache.rebuild()
    return answer


def _hook(m: Manager, loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[None]]:
    """The webhook's action, called on the server's thread: the fetch is scheduled on
    the controller's loop, not waited for (the answer says "fetch scheduled")."""
    def fetch() -> None:
        log.info("git_webhook_received")
        m.trigger_fetch()

    async def on_hook() -> None:
        loop.call_soon_threadsafe(fetch)
    return on_hook
