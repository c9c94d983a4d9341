"""The controller's HTTP server: probes, metrics, status, capacity, the Git webhook.

    GET  /healthz            200 while the process runs its loops
    GET  /readyz             200 once every cluster was listed and a plan applied on
                             each (with --shards: this replica's; one holding no
                             shard after its first Lease round is ready); else 503
    GET  /metrics            Prometheus text
    GET  /api/v1/status      FleetStatus JSON (shared/spec/status.schema.json)
    GET  /api/v1/capacity    CapacitySnapshot JSON, what `fleet plan --capacity` reads
    GET  /api/v1/events      FleetEvents JSON: the events feed (`controllers.status.eventfeed`);
                             `?since=SEQ` only newer ones, `?workload=ID` only its own
    POST /api/v1/suspend     {"workload": ID} or {"cluster": NAME}: stop reconciling it
    POST /api/v1/resume      the same body: reconcile it again, now
    POST /api/v1/sync        {} or {"workload": ID}: fetch and reconcile now
    GET  /version            {"version": ...} of this controller (`fleet version`)
    POST /hooks/git          fetch now; HMAC-SHA256 of the body with the shared secret
                             (GitHub `X-Hub-Signature-256: sha256=<hex>`, Gitea
                             `X-Gitea-Signature: <hex>`, or GitLab `X-Gitlab-Token`)

The JSON documents go out as `controllers.status.bodies.Body`: gzipped when the client
accepts it, 304 for a known ETag, encoded once per document, not per request. The
controller runs this app on a thread of its own (`controllers.serverthread`), its
endpoints' callables on its own loop (`Endpoints.dispatch`): on `--listen` with
`--serve-in-process`, else on a Unix socket behind the front process
(`controllers.front`), which serves the same `ROUTES` from an app made by the same
`new_app`, answering some itself and forwarding the others here.

Binds 127.0.0.1 by default; the webhook is refused (403) when no secret is configured,
so an exposed port cannot be used to make the controller fetch at will. With an
`Authenticator` (`--api-tokens-file`) every route but the probes, the webhook and the page's
HTML needs a bearer token (`controllers.apiauth`: 401 without a valid one, 403 for a
read token on an operate route); `serve(..., ssl_context=)` adds TLS. The POST
/api/v1/ actions take only `Content-Type: application/json` (a browser cannot send that
cross-site without a preflight, which is never answered), and answer JSON:
`{"ok": true, "message": ...}` or `{"ok": false, "error": ...}` with 400/404/415.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controllers.apiauth import Authenticator, allows, required_role
from controllers.status.bodies import Body, accepts_gzip

MAX_HOOK_BYTES = 1024 * 1024
MAX_ACTION_BYTES = 64 * 1024


@dataclass(slots=True)
class Endpoints:
    """What the server asks the manager for; plain callables keep the server testable."""

    status: Callable[[], dict[str, Any]]
    capacity: Callable[[], dict[str, Any]]
    metrics: Callable[[], str]
    ready: Callable[[], tuple[bool, str]]
    on_git_hook: Callable[[], Awaitable[None]]
    page: Callable[[], str] | None = None
    events: Callable[[int, str | None], dict[str, Any]] | None = None
    """(since, workload or None) -> FleetEvents document."""
    control: Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]] | None = None
    """`(action, body) -> (HTTP status, answer)` for suspend / resume / sync."""
    version: str | None = None
    status_body: Callable[[bool], Awaitable[Body]] | None = None
    """`GET /api/v1/status` as served, when the manager keeps it ready
    (`controllers.status.cache.StatusCache`; True: built now, not the last one); else
    `status` is serialised per request."""
    capacity_body: Callable[[], Body] | None = None
    """`GET /api/v1/capacity` from a cache (built once per change); else `capacity`."""
    events_body: Callable[[int, str | None], Body] | None = None
    """`GET /api/v1/events` from a cache (built once per new event); else `events`."""
    status_now: Callable[[bool], Awaitable[tuple[Body, float] | None]] | None = None
    """The status document and its age in seconds, without waiting for the
    controller's loop (`StatusCache.now`; True: the state of now, waited for briefly;
    None: no document yet, ask `status_body`). Awaited on the server's thread."""
    dispatch: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None
    """Runs an endpoint's callable where the controller's state lives when the server
    has a thread of its own (`controllers.serverthread.on_loop`); None: here. Every
    callable above but `on_git_hook`, `page` and `status_now` goes through it."""
    alive: Callable[[], bool] | None = None
    """`/healthz`: whether the controller's loop still runs (None: it does)."""
    observe: Callable[[str, float, float], None] | None = None
    """Each request by route: its CPU seconds on the server's thread (`time.thread_time`
    around the handler and the answer's write; what it waits for on the controller's
    loop is not in it) and its seconds from handler to answer written (wall)."""


def verify_signature(secret: bytes, body: bytes, headers: Any) -> bool:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    gh = headers.get("X-Hub-Signature-256")
    if gh:
        return hmac.compare_digest(gh, f"sha256={digest}")
    gitea = headers.get("X-Gitea-Signature")
    if gitea:
        return hmac.compare_digest(gitea, digest)
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab:
        return hmac.compare_digest(gitlab.encode(), secret)
    return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str]
"""(method, path)."""

ROUTES: tuple[Route, ...] = (
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/api/v1/status"), ("GET", "/api/v1/capacity"), ("GET", "/api/v1/events"),
    ("POST", "/hooks/git"), ("POST", "/api/v1/suspend"), ("POST", "/api/v1/resume"),
    ("POST", "/api/v1/sync"), ("GET", "/version"), ("GET", "/"))
"""The API's routes, in the order they are added (the same for every listener)."""


def auth_middleware(auth: Authenticator) -> Any:
    """Every request through `controllers.apiauth`'s rules before its handler."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = required_role(request.method, request.path)
        if need is None:
            return await handler(request)
        have = auth.role_of(request.headers.get("Authorization"))
        if have is None:
            return web.Response(status=401, text="a valid bearer token is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="aifleet"'})
        if not allows(have, need):
            return web.Response(status=403, text=f"this token's role ({have}) may not "
                                                 f"{request.method} {request.path}\n")
        return await handler(request)

    return check


def send(request: web.Request, body: Body, age: float | None = None) -> web.Response:
    """A JSON body as the client can take it: 304 when it has these bytes already
    (`If-None-Match`, RFC 9110 13.1.2), gzipped when it accepts gzip (made once per
    body, not per request), else the bytes. `age`: seconds since the document was
    built, sent as `Age` (RFC 9111 5.1: whole seconds)."""
    headers = {"ETag": body.etag, "Vary": "Accept-Encoding"}
    if age is not None:
        headers["Age"] = str(int(age))
    if body.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if accepts_gzip(request.headers.get("Accept-Encoding")):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body.gz, headers=headers, content_type="application/json")
    return web.Response(body=body.raw, headers=headers, content_type="application/json")


def timing_middleware(observe: Callable[[str, float, float], None]) -> Any:
    """Each request's CPU seconds on this thread and wall seconds, by route ("other"
    when unrouted): the handler and the answer written (prepared and handed to the
    transport here, so it is counted; aiohttp then finds it sent)."""

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            response = await handler(request)
            if not response.prepared:
                await response.prepare(request)
                await response.write_eof()
            return response
        finally:
            info = request.match_info.route.resource
            observe(info.canonical if info is not None else "other",
                    time.thread_time() - cpu, time.perf_counter() - started)

    return timed


def handlers(ep: Endpoints, webhook_secret: bytes | None) -> dict[Route, Handler]:
    """The handler of each route in `ROUTES`, answering from `ep`."""
    async def call(f: Callable[[], Any]) -> Any:
        """`f()` (awaited if it returns an awaitable) where the state lives."""
        if ep.dispatch is not None:
            return await ep.dispatch(f)
        out = f()
        if inspect.isawaitable(out):
            out = await out
        return out

    async def healthz(_: web.Request) -> web.Response:
        if ep.alive is not None and not ep.alive():
            return web.Response(status=503, text="the controller's loop has stopped\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = await call(ep.ready)
        return web.Response(text=f"{why}\n", status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=await call(ep.metrics), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def status(request: web.Request) -> web.Response:
        # `Cache-Control: no-cache` (RFC 9111 5.2.1.4): not the last document, one
        # built now (`fleet status` sends it; a page polling every second does not)
        fresh = "no-cache" in request.headers.get("Cache-Control", "").lower()
        if ep.status_now is not None:  # never waits for the controller's loop
            now = await ep.status_now(fresh)
            if now is not None:
                return send(request, *now)
        if ep.status_body is not None:
            status_body = ep.status_body
            return send(request, await call(lambda: status_body(fresh)))
        return send(request, Body.of(await call(ep.status)))

    async def capacity(request: web.Request) -> web.Response:
        if ep.capacity_body is not None:
            return send(request, await call(ep.capacity_body))
        return send(request, Body.of(await call(ep.capacity)))

    async def events(request: web.Request) -> web.Response:
        if ep.events is None and ep.events_body is None:
            raise web.HTTPNotFound()
        raw = request.query.get("since", "0")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            return web.Response(status=400, text="since: a sequence number (0 or more)\n")
        since, workload = int(raw), request.query.get("workload") or None
        if ep.events_body is not None:
            events_body = ep.events_body
            return send(request, await call(lambda: events_body(since, workload)))
        events = ep.events
        assert events is not None
        return send(request, Body.of(await call(lambda: events(since, workload))))

    async def git_hook(request: web.Request) -> web.Response:
        if webhook_secret is None:
            return web.Response(status=403, text="webhook disabled: no secret configured\n")
        body = await request.content.read(MAX_HOOK_BYTES + 1)
        if len(body) > MAX_HOOK_BYTES:
            return web.Response(status=413, text="payload too large\n")
        if not verify_signature(webhook_secret, body, request.headers):
            return web.Response(status=401, text="bad signature\n")
        await ep.on_git_hook()
        return web.Response(status=202, text="fetch scheduled\n")

    def _answer(code: int, doc: dict[str, Any]) -> web.Response:
        return web.Response(text=json.dumps(doc, sort_keys=True) + "\n", status=code,
                            content_type="application/json")

    def action(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            if ep.control is None:
                raise web.HTTPNotFound()
            if request.content_type != "application/json":
                return _answer(415, {"ok": False,
                                     "error": "send Content-Type: application/json"})
            raw = await request.content.read(MAX_ACTION_BYTES + 1)
            if len(raw) > MAX_ACTION_BYTES:
                return _answer(413, {"ok": False, "error": "body too large"})
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _answer(400, {"ok": False, "error": "the body must be a JSON object"})
            control = ep.control
            code, answer = await call(lambda: control(name, body))
            return _answer(code, answer)
        return handle

    async def version(request: web.Request) -> web.Response:
        return send(request, Body.of({"version": ep.version or "unknown",
                                      "component": "aifleet-controller"}))

    async def page(_: web.Request) -> web.Response:
        if ep.page is None:
            raise web.HTTPNotFound()
        return web.Response(text=ep.page(), content_type="text/html")

    table: dict[Route, Handler] = {
        ("GET", "/healthz"): healthz, ("GET", "/readyz"): readyz,
        ("GET", "/metrics"): metrics, ("GET", "/api/v1/status"): status,
        ("GET", "/api/v1/capacity"): capacity, ("GET", "/api/v1/events"): events,
        ("POST", "/hooks/git"): git_hook,
        **{("POST", f"/api/v1/{name}"): action(name) for name in ("suspend", "resume", "sync")},
        ("GET", "/version"): version, ("GET", "/"): page}
    assert tuple(table) == ROUTES
    return table


def new_app(observe: Callable[[str, float, float], None] | None,
            auth: Authenticator | None) -> web.Application:
    """An application with no routes yet, as every listener of the controller's API
    has it (the in-process server's and the front process's, `controllers.front`):
    the same middlewares (timing when `observe`, then `auth`) and body limit."""
    middlewares = [timing_middleware(observe)] if observe is not None else []
    if auth is not None:
        middlewares.append(auth_middleware(auth))
    return web.Application(client_max_size=MAX_HOOK_BYTES + 1, middlewares=middlewares)


def add_routes(app: web.Application, table: dict[Route, Handler]) -> web.Application:
    for method, path in ROUTES:
        if method == "GET":  # and HEAD, as aiohttp's add_get
            app.router.add_get(path, table[(method, path)])
        else:
            app.router.add_route(method, path, table[(method, path)])
    return app


def build_app(ep: Endpoints, webhook_secret: bytes | None,
              auth: Authenticator | None = None) -> web.Application:
    """The whole API answered from `ep` (the in-process server; `controllers.front`
    serves the same routes from another process)."""
    return add_routes(new_app(ep.observe, auth), handlers(ep, webhook_secret))


async def serve(app: web.Application, host: str, port: int,
                ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner


async def serve_unix(app: web.Application, path: str) -> web.AppRunner:
    """`app` on a Unix socket at `path` (the front process forwards to it)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("server is not listening")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The listener's TLS (`--tls-cert`, `--tls-key`: PEM files), TLS 1.2 at least."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
