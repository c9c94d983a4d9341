"""Watches and GETs over anyio's TLS stream (`clusters.leanhttp`, issue 22 item 1): an
idle adapter holds none of asyncio's 256 KiB TLS read buffers (nor, a second after its
last write, one for its writes), its heartbeats reuse one
kept-alive connection, a kept connection the server closed is replaced, a server URL's
path and Host survive, watch events
split across chunks arrive whole, a cut body is a ConnectionError, and a cluster reached
through a proxy still watches and lists (through aiohttp)."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import h11
import pytest
from aiohttp.client_proto import ResponseHandler
from kubernetes_asyncio.client import Configuration

from clusters import leanhttp
from clusters.client import NODE, KubeClient
from clusters.kubeconfig import ConnectionSpec, connection_config
from clusters.sim import SimClusterSpec, SimNode, start_sim
from clusters.transport import Transport
from tests.support.adapter import FAST, connected, namespace, serving, until

Body = Callable[[anyio.abc.SocketStream, h11.Connection], Awaitable[None]]


@asynccontextmanager
async def http_server(body: Body, *, keep_alive: bool,
                      requests: list[tuple[str, str]] | None = None) -> AsyncIterator[int]:
    """A plain HTTP/1.1 server on 127.0.0.1: every request is answered by `body` (and
    its target and Host header appended to `requests`); with `keep_alive` False it
    closes the connection after each answer without saying so (as a server whose idle
    timeout fired). Yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def serve(stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    continue
                if isinstance(event, h11.Request) and requests is not None:
                    requests.append((event.target.decode(),
                                     dict(event.headers)[b"host"].decode()))
                if isinstance(event, h11.EndOfMessage):
                    await body(stream, conn)
                    if not keep_alive or conn.our_state is not h11.DONE:
                        return
                    conn.start_next_cycle()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def answer_ok(stream: anyio.abc.SocketStream, conn: h11.Connection) -> None:
    await stream.send(conn.send(h11.Response(status_code=200,
                                             headers=[("Content-Length", "2")])))
    await stream.send(conn.send(h11.Data(data=b"{}")) + conn.send(h11.EndOfMessage()))


def pool(port: int) -> leanhttp.Pool:
    return leanhttp.Pool("127.0.0.1", port, host_header=f"127.0.0.1:{port}",
                         ssl_context=None, tls_hostname=None, keepalive=60)


async def test_an_idle_adapter_holds_no_asyncio_tls_buffer_and_reuses_one_connection(
        tmp_path: Path) -> None:
    tracemalloc.start(40)  # deep enough to see who opened a connection
    try:
        async with connected(tmp_path, options=dataclasses.replace(
                FAST, heartbeat_interval=0.05)) as c:
            await until(lambda: c.adapter.watching() == ["Node", "Pod"], what="idle")
            lean = c.adapter.client.transport.lean
            assert lean is not None
            opened, beats = lean.opened, c.adapter.stats.calls["get"]
            await until(lambda: c.adapter.stats.calls["get"] >= beats + 10,
                        what="ten more heartbeats")
            assert lean.opened == opened  # on the one kept-alive connection
            assert c.adapter.health_state == "Healthy"
            snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    tls = snapshot.filter_traces([tracemalloc.Filter(True, "*/asyncio/sslproto.py")])
    # The simulated API server, in this process, holds its side's buffers; ours would
    # have been opened by aiohttp's connector.
    ours = tls.filter_traces([tracemalloc.Filter(True, "*/aiohttp/connector.py",
                                                 all_frames=True)])
    assert sum(s.size for s in tls.statistics("filename")) > 0  # the filter sees them
    # asyncio's TLS layer allocates 256 KiB per connection in its constructor: none was
    # made on our side, for the watches, the lists or the heartbeat.
    assert sum(s.size for s in ours.statistics("filename")) == 0


def aiohttp_connections() -> int:
    """aiohttp's client connections alive in this process (each a TLS connection with
    asyncio's 256 KiB buffer; the simulated API server's side is not counted)."""
    return sum(1 for o in gc.get_objects() if type(o) is ResponseHandler)


async def test_write_connections_close_once_the_writes_are_done(tmp_path: Path) -> None:
    """Each write connection holds asyncio's 256 KiB TLS buffer: the adapter's pool
    closes them `write_keepalive` after the pass's last write (at 1.5 heartbeats, the
    clusters a replica finished in the last 15 s held theirs all at once)."""
    objs: list[dict[str, object]] = [namespace()]
    for i in range(4):
        objs += serving(f"serve-{i}", gpus=0)
    async with connected(tmp_path, options=dataclasses.replace(
            FAST, write_keepalive=1.0, heartbeat_interval=30.0)) as c:
        assert aiohttp_connections() == 0  # the watches and GETs open none
        result = await c.adapter.apply(objs)
        assert len(result.applied) == len(objs) and not result.failed
        assert aiohttp_connections() > 0  # the pass's connections, idle in the pool
        await until(lambda: aiohttp_connections() == 0, within=20,
                    what="write connections closed")
        assert c.adapter.health_state == "Healthy"


async def test_a_kept_connection_is_reused_and_one_the_server_closed_is_replaced() -> None:
    async with http_server(answer_ok, keep_alive=True) as port:
        p = pool(port)
        answers = [await p.get("/version", {}, within=5) for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 200]
        assert p.opened == 1
        await p.close()
    async with http_server(answer_ok, keep_alive=False) as port:
        p = pool(port)
        answers = [await p.get("/version", {}, within=5) for _ in range(3)]
        # Each kept connection was closed by the server: the GET is sent again, on a
        # new connection, and answered.
        assert [a.body for a in answers] == [b"{}", b"{}", b"{}"]
        assert p.opened == 3
        await p.close()


async def test_gets_reuse_the_kept_connection_past_a_late_heartbeat() -> None:
    """The adapter keeps aiohttp's write connections a second, but the
    one kept GET connection a minute (under kube-apiserver's 90 s idle timeout): a
    heartbeat made 10 s late by a busy loop reuses it instead of a new TLS handshake;
    after a minute idle it is replaced."""
    now = [0.0]
    async with http_server(answer_ok, keep_alive=True) as port:
        t = Transport(Configuration(host=f"http://127.0.0.1:{port}"), keepalive=7.5,
                      clock=lambda: now[0])
        lean = t.lean
        assert lean is not None
        try:
            for advance in (0.0, 10.0, 30.0):
                now[0] += advance
                answer = await t.request("GET", "/version", query=None, headers={},
                                         body=None, within=5)
                assert answer.status == 200
            assert lean.opened == 1
            now[0] += 61.0
            await t.request("GET", "/version", query=None, headers={}, body=None, within=5)
            assert lean.opened == 2
        finally:
            await t.close()


async def test_a_server_url_with_a_path_keeps_it_and_its_host_header() -> None:
    seen: list[tuple[str, str]] = []
    async with http_server(answer_ok, keep_alive=True, requests=seen) as port:
        # A server URL with a path (a proxying front end: Rancher's `/k8s/clusters/<id>`).
        client = KubeClient("pfx", Configuration(host=f"http://127.0.0.1:{port}/k8s/c-1/"),
                            qps=0)
        try:
            await client.request("GET", NODE.collection(), verb="list",
                                 query={"labelSelector": "a in (b)"})
        finally:
            await client.close()
    assert seen == [("/k8s/c-1/api/v1/nodes?labelSelector=a+in+%28b%29",
                     f"127.0.0.1:{port}")]


async def test_a_token_that_is_not_valid_http_is_never_quoted() -> None:
    async with http_server(answer_ok, keep_alive=True) as port:
        p = pool(port)
        with pytest.raises(ConnectionError) as err:
            await p.get("/version", {"Authorization": "Bearer s3cret\nX: y"}, within=5)
        await p.close()
    assert "s3cret" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


async def test_watch_lines_split_across_chunks_arrive_whole() -> None:
    async def events(stream: anyio.abc.SocketStream, conn: h11.Connection) -> None:
        await stream.send(conn.send(h11.Response(status_code=200, headers=[
            ("Transfer-Encoding", "chunked")])))
        for part in (b'{"a":1}\n{"b"', b':2}\n\n{"c', b'":3}'):
            await stream.send(conn.send(h11.Data(data=part)))
        await stream.send(conn.send(h11.EndOfMessage()))

    async with http_server(events, keep_alive=False) as port:
        resp = await leanhttp.open_get("127.0.0.1", port, "/w?watch=true", {},
                                       host_header="x", ssl_context=None,
                                       tls_hostname=None, connect_timeout=5,
                                       read_timeout=5)
        try:
            assert resp.status == 200
            assert [line async for line in resp.lines()] == [
                b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']
        finally:
            await resp.aclose()


async def test_a_body_cut_mid_chunk_is_a_connection_error() -> None:
    async def cut(stream: anyio.abc.SocketStream, conn: h11.Connection) -> None:
        await stream.send(conn.send(h11.Response(status_code=200, headers=[
            ("Transfer-Encoding", "chunked")])))
        await stream.send(conn.send(h11.Data(data=b'{"a":1}\n')))
        await stream.send(b"40\r\n{\"half")  # a chunk of 64 bytes, 7 sent, then closed

    async with http_server(cut, keep_alive=False) as port:
        resp = await leanhttp.open_get("127.0.0.1", port, "/w", {}, host_header="x",
                                       ssl_context=None, tls_hostname=None,
                                       connect_timeout=5, read_timeout=5)
        seen: list[bytes] = []
        try:
            with pytest.raises(ConnectionError):
                async for line in resp.lines():
                    seen.append(line)
        finally:
            await resp.aclose()
        assert seen == [b'{"a":1}']


@asynccontextmanager
async def connect_proxy() -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTP CONNECT proxy on 127.0.0.1 (what aiohttp speaks to reach an https server
    through one): yields its port and the targets it was asked for."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    asked: list[str] = []

    async def pipe(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
        try:
            async for data in src:
                await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await anyio.aclose_forcefully(dst)

    async def serve(client: anyio.abc.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await client.receive()
        target = head.split(b" ")[1].decode()
        asked.append(target)
        host, port = target.rsplit(":", 1)
        upstream = await anyio.connect_tcp(host, int(port))
        await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipe, client, upstream)
            tg.start_soon(pipe, upstream, client)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port), asked
        tg.cancel_scope.cancel()


async def test_a_cluster_behind_a_proxy_lists_and_watches_through_it(
        tmp_path: Path) -> None:
    spec = SimClusterSpec("proxied", (SimNode("proxied-n0", "NVIDIA-H100-80GB-HBM3", 8),))
    async with await start_sim([spec]) as sim, connect_proxy() as (port, asked):
        path = sim.write_kubeconfig(tmp_path / "kubeconfig")
        cfg = await connection_config(ConnectionSpec("proxied", str(path), "proxied"))
        cfg.proxy = f"http://127.0.0.1:{port}"
        client = KubeClient("proxied", cfg, qps=0)
        try:
            assert client.transport.lean is None  # everything through aiohttp
            listed = await client.request("GET", NODE.collection(), verb="list")
            events = client.watch(NODE.collection(), resource_version=None,
                                  timeout_seconds=5)
            first = await anext(events)
            await events.aclose()
        finally:
            await client.close()
        assert [n["metadata"]["name"] for n in listed["items"]] == ["proxied-n0"]
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED",
                                                                        "proxied-n0")
        assert asked and all(t == sim.clusters["proxied"].url.split("//")[1].rstrip("/")
                             for t in asked)
