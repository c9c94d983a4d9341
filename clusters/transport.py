"""One cluster's HTTP transport: raw JSON bytes over aiohttp, TLS contexts shared per CA.

kubernetes-asyncio's `ApiClient.call_api` costs more than the request on our create
path (issue 22, measured with `python -m bench.apply --profile`): it deep-walks every
body (`sanitize_for_serialization`) before `json.dumps`, and its aiohttp session has
`trust_env=True`, so every request makes two thread-pool hops (a `~/.netrc` lookup and
the proxy environment), which on a loaded 2-core machine cost more CPU than the rest.
Here the body is encoded once (compact JSON bytes) and the session is ours:
`trust_env=False`, the proxy taken once from the kubeconfig's `proxy-url` or else the
environment (`HTTPS_PROXY`/`NO_PROXY`, as aiohttp reads them), and the bearer token from
`Configuration.get_api_key_with_prefix` per request, so token refresh hooks still run.

Each cluster used to build its own `ssl.SSLContext` (its CA parsed, its verify store
allocated); clusters that share a CA and client credentials now share one context, keyed
by the material's bytes (kubernetes-asyncio writes inline `*-data` to a temp file per
cluster, so its paths differ even where the content is the same).

Watches and plain GETs (the heartbeat, lists) do not go through aiohttp: asyncio's TLS
layer gives every connection a fixed 256 KiB read buffer, and a watch holds its
connection for as long as it runs, the heartbeat keeps one open, so an idle cluster held
three such buffers (issue 22, item 1). They go over anyio's TLS stream
(`clusters.leanhttp`): a connection of its own per watch, one kept-alive connection for
the GETs. Writes (apply, patch, delete: the create path, measured) stay on aiohttp's
pool, which an idle cluster then does not hold open. A cluster reached through a proxy
does everything through aiohttp, as before.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from kubernetes_asyncio.client import Configuration
from yarl import URL

from clusters import leanhttp

_CONTEXTS: dict[tuple[str, ...], ssl.SSLContext] = {}


def _digest(path: str | None) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""


def tls_context(cfg: Configuration) -> ssl.SSLContext:
    """The TLS context for `cfg`'s CA, client certificate and verify flags, shared by
    every cluster with the same material. Raises ssl.SSLError / OSError / ValueError
    for material that cannot be loaded (the caller words it without quoting it)."""
    key = (_digest(cfg.ssl_ca_cert), _digest(cfg.cert_file), _digest(cfg.key_file),
           str(bool(cfg.verify_ssl)), str(bool(cfg.disable_strict_ssl_verification)))
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        # The same construction as kubernetes-asyncio's RESTClientObject.
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
        if not cfg.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.disable_strict_ssl_verification:
            ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        _CONTEXTS[key] = ctx
    return ctx


def shared_contexts() -> int:
    """How many distinct TLS contexts exist (a test counts sharing)."""
    return len(_CONTEXTS)


def _env_proxy(host: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    try:
        return aiohttp.helpers.get_env_proxy_for_url(URL(host))
    except LookupError:
        return None, None


class WatchResponse(Protocol):
    """A watch's answer, read as it arrives (`leanhttp.StreamResponse`, or aiohttp's
    through a proxy)."""

    status: int

    async def read(self) -> bytes: ...

    def lines(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class _AiohttpWatch:
    """aiohttp's response as a `WatchResponse` (clusters reached through a proxy)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status

    async def read(self) -> bytes:
        return await self._resp.read()

    async def lines(self) -> AsyncIterator[bytes]:
        while line := await self._resp.content.readline():
            yield line

    async def aclose(self) -> None:
        self._resp.release()


class Transport:
    """Requests to one cluster's API server; responses are aiohttp's, bodies raw."""

    def __init__(self, cfg: Configuration, *, limit: int = 100,
                 keepalive: float = 15.0, get_keepalive: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.host = str(cfg.host or "").rstrip("/")
        self._ssl = tls_context(cfg) if self.host.startswith("https") else False
        self._server_hostname = cfg.tls_server_name or None
        if cfg.proxy:
            self._proxy: URL | None = URL(cfg.proxy)
            self._proxy_auth: aiohttp.BasicAuth | None = None
        else:
            self._proxy, self._proxy_auth = _env_proxy(self.host)
        self._proxy_headers = cfg.proxy_headers or None
        self.lean: leanhttp.Pool | None = None
        """The kept-alive connection(s) for GETs; None through a proxy."""
        if self._proxy is None:
            url = URL(self.host)
            self._where = (str(url.raw_host), int(url.port or 443),
                           url.raw_path.rstrip("/"),
                           url.host_port_subcomponent or str(url.raw_host))
            self.lean = leanhttp.Pool(
                self._where[0], self._where[1], host_header=self._where[3],
                ssl_context=self._tls(), tls_hostname=self._server_hostname,
                keepalive=get_keepalive, clock=clock)
        self._limit = limit
        self._keepalive = keepalive
        """Seconds an idle connection is kept in aiohttp's pool (writes). The adapter
        passes `AdapterOptions.write_keepalive` (1 s), so aiohttp's close once the
        writes are done (issue 22: each costs ~330 KiB). The lean pool (GETs) keeps at
        most one idle connection whatever its keep-alive, so it keeps it
        `get_keepalive` (60 s, under kube-apiserver's 90 s `IdleTimeout` in
        `secure_serving.go`): at 1.5 heartbeats, a heartbeat late by a busy loop found
        it expired and paid a new TLS handshake on both sides (py-spy, 1,000
        clusters: 6-9% of a replica's loop during a cold start)."""
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp wants one).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl,
                                               keepalive_timeout=self._keepalive),
                trust_env=False, read_bufsize=2**21)  # watch events can be large
        return self._session

    def _tls(self) -> ssl.SSLContext | None:
        return self._ssl if isinstance(self._ssl, ssl.SSLContext) else None

    def _target(self, path: str, query: dict[str, str] | None) -> str:
        # `path` is quoted already (`ResourceType.item`) and the query is encoded here
        # once: yarl's re-quoting of both was the costliest step left per request.
        return path + ("?" + urlencode(query) if query else "")

    async def close(self) -> None:
        if self.lean is not None:
            await self.lean.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def headers(self, accept: str = "application/json") -> dict[str, str]:
        out = {"Accept": accept}
        token = await self.cfg.get_api_key_with_prefix("BearerToken")
        if token:
            out["Authorization"] = token
        return out

    async def send(self, method: str, path: str, *, query: dict[str, str] | None,
                   headers: dict[str, str], body: bytes | None,
                   limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        kwargs: dict[str, Any] = {"headers": headers, "data": body, "timeout": limits}
        if self._proxy is not None:
            kwargs.update(proxy=self._proxy, proxy_auth=self._proxy_auth,
                          proxy_headers=self._proxy_headers)
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        url = self.host + self._target(path, query)
        return await self._open().request(method, URL(url, encoded=True), **kwargs)

    async def request(self, method: str, path: str, *, query: dict[str, str] | None,
                      headers: dict[str, str], body: bytes | None,
                      within: float) -> leanhttp.Answer:
        """One request, its whole answer read: a GET over the kept-alive lean
        connection, anything else (or anything through a proxy) over aiohttp's pool.
        Raises OSError, TimeoutError or aiohttp.ClientError where it got no answer."""
        if self.lean is not None and method == "GET" and body is None:
            return await self.lean.get(self._where[2] + self._target(path, query),
                                        headers, within=within)
        resp = await self.send(method, path, query=query, headers=headers, body=body,
                               limits=aiohttp.ClientTimeout(total=within))
        async with resp:
            data = await resp.read()
            return leanhttp.Answer(resp.status, data, resp.headers.get("Retry-After"))

    async def watch(self, path: str, *, query: dict[str, str], headers: dict[str, str],
                    connect_timeout: float, read_timeout: float) -> WatchResponse:
        """`GET path?query` on a connection of its own, its body read as it arrives.
        Raises OSError, TimeoutError or aiohttp.ClientError where the request failed."""
        if self._proxy is not None:
            resp = await self.send("GET", path, query=query, headers=headers, body=None,
                                   limits=aiohttp.ClientTimeout(
                                       total=None, sock_connect=connect_timeout,
                                       sock_read=read_timeout))
            return _AiohttpWatch(resp)
        host, port, prefix, host_header = self._where
        return await leanhttp.open_get(
            host, port, prefix + self._target(path, query), headers,
            host_header=host_header, ssl_context=self._tls(),
            tls_hostname=self._server_hostname, connect_timeout=connect_timeout,
            read_timeout=read_timeout)
