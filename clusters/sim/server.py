"""Simulated clusters on the wire: one aiohttp app and one port per cluster.

`SimCluster` ties a store, its control plane (scheduler, kubelet, controllers) and its
faults to an HTTP listener on 127.0.0.1. One port per cluster (https, see `tls.py`), so that a
kubeconfig context is a plain URL and `down()` can really refuse connections (the listener
closes; open keep-alive connections are aborted) while `up()` listens on the same port
again. Each cluster has its own bearer token: a wrong one is a 401, no token is the
anonymous user, who may read `/version` and the health endpoints only (403 elsewhere).
`accept_tokens` changes which tokens it answers (a rotation: the new one and the old
one for a while, then the new one only).

`/_sim/...` is the admin endpoint (same token) for users of `fleet sim up`: faults,
node readiness, out-of-band edits, a timed outage. It bypasses fault injection.

`start_sim` starts a fleet of them and `SimFleet.write_kubeconfig` writes one context
per cluster, named after it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
import yaml
from aiohttp import web

from clusters.sim import api, decoding, kubectl, nodes, objects, patch, stacks, tls
from clusters.sim.controllers import ControlPlane
from clusters.sim.crds import CustomResources
from clusters.sim.dra import DynamicResources, strip_device_plugin
from clusters.sim.errors import SimError, bad_request, not_found, unauthorized
from clusters.sim.faults import Faults
from clusters.sim.leases import NodeLeases
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store

log = structlog.get_logger()
CLUSTER: web.AppKey[SimCluster] = web.AppKey("sim_cluster")
_ANONYMOUS_OK = frozenset({"/version", "/version/", "/healthz", "/readyz", "/livez"})
_SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_TIME_SCALE = 0.01
"""Real seconds per second an object declares (grace periods, minReadySeconds,
progress deadlines): a pod's default 30 s grace period takes 0.3 s. `fleet sim up`
runs in real time (1.0)."""


def _status_response(err: SimError) -> web.Response:
    return web.Response(body=json.dumps(err.status()).encode(), status=err.code,
                        content_type="application/json", headers=err.headers or None)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; aiohttp then drops the unsent response
    quietly (a premature disconnection), as a reset connection looks to a client."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cluster = request.app[CLUSTER]
    if cluster.is_down:
        return _drop(request)
    try:
        auth = request.headers.get("Authorization")
        if auth is None:
            if request.path not in _ANONYMOUS_OK:
                raise SimError(403, "Forbidden", f'forbidden: User "system:anonymous" cannot '
                               f'{request.method.lower()} path "{request.path}"', {})
        elif not any(secrets.compare_digest(auth.encode(), f"Bearer {t}".encode())
                     for t in cluster.accepted_tokens):
            # A bearer token no authenticator accepts is a 401 (kube-apiserver:
            # staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go,
            # `Unauthorized`), whatever the request.
            raise unauthorized()
        if not request.path.startswith("/_sim/"):
            faults = cluster.faults
            if faults.take_drop():
                return _drop(request)
            delay = faults.delay_for(request.path)
            if delay:
                await faults.hold(delay)
            injected = faults.error_for(request.path)
            if injected is not None:
                raise injected
            cluster.requests[(request.method, request.path, "as=PartialObjectMetadata"
                              in request.headers.get("Accept", ""))] += 1
        return await handler(request)
    except SimError as e:
        return _status_response(e)
    except Exception as e:  # noqa: BLE001 - any failure is the client's 500, logged below
        # Never the exception's text nor a traceback: either may quote the request body
        # (a Secret's data); the type and where it was raised are enough to find it.
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        log.error("sim_request_failed", cluster=cluster.name, method=request.method,
                  path=request.path, error=type(e).__name__,
                  where=f"{frame.filename}:{frame.lineno}" if frame else "")
        return _status_response(SimError(500, "InternalError",
                                         f"Internal error occurred: {type(e).__name__}: {e}"))


SIM_KUBECONFIG_MARK = "# written by `fleet sim up`: simulated clusters, rewritten on every start"
"""The first line of a kubeconfig the simulator wrote: only such a file is rewritten
without being asked (`fleet sim up --overwrite`)."""


class SimCluster:
    """One simulated cluster (see module docstring); built by `start_sim`."""

    def __init__(self, spec: nodes.SimClusterSpec, *, host: str = "127.0.0.1",
                 job_seconds: float = 5.0, pod_start_seconds: float = 0.2,
                 history: int = 1000, time_scale: float = DEFAULT_TIME_SCALE) -> None:
        self.name = spec.name
        self.spec = spec
        self.host = host
        self.port = 0
        self.token = secrets.token_urlsafe(24)
        """The bearer token written into kubeconfigs (answered with the `also` tokens
        of `accept_tokens`)."""
        self._also: tuple[str, ...] = ()
        self.store = Store(spec.name, history)
        self.faults = Faults()
        self.faults._cut = self._cut_watches
        self.faults._expire = self.store.expire
        self.bookmark_seconds = 60.0
        """Between a watch's bookmarks, as kube-apiserver's `defaultBookmarkFrequency`
        (tests that wait on bookmarks shorten it)."""
        self.open_watches: dict[int, web.Request] = {}
        self.requests: Counter[tuple[str, str, bool]] = Counter()
        """API requests answered (reached the handlers), by (method, path, metadata
        only: Accept `as=PartialObjectMetadata`): how a test counts what a client asks."""
        self.is_down = False
        self.control = ControlPlane(self.store, job_seconds=job_seconds,
                                    pod_start_seconds=pod_start_seconds,
                                    time_scale=time_scale)
        self.node_leases = NodeLeases(self.store)
        self.crds = CustomResources(self.store)
        self.dra = DynamicResources(self.store, self.control.reschedule, self.control.suffix)
        self.control.claims = self.dra
        self.kueue, self.jobsets = stacks.controllers(self.store, self.crds, spec.stack)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._seed()

    @property
    def accepted_tokens(self) -> tuple[str, ...]:
        return (self.token, *self._also)

    def accept_tokens(self, token: str, *also: str) -> None:
        """Answer these bearer tokens from now on, and no other (`token` becomes the
        one kubeconfigs get): `accept_tokens(new, old)` then `accept_tokens(new)`
        rotates a credential as revoking the old one would on a real cluster."""
        self.token, self._also = token, tuple(also)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _seed(self) -> None:
        for ns in _SYSTEM_NAMESPACES:
            self.store.create(BY_KIND["Namespace"], {"metadata": {"name": ns}})
        now = objects.now()
        for i, node in enumerate(self.spec.nodes):
            obj = nodes.node_object(node, uid=objects.new_uid(), created=now, index=i + 1)
            if self.spec.dra:
                strip_device_plugin(obj)
            self.store.create(BY_KIND["Node"], obj)
        if self.spec.dra:
            self.dra.publish(self.spec.nodes)
        stacks.install(self.store, self.spec.stack)
        self.node_leases.renew()

    def _app(self) -> web.Application:
        # Bodies stream in (other requests go on meanwhile) up to kube-apiserver's 3 MiB
        # `--max-request-body-bytes`; beyond it `api._read` answers the real 413.
        app = web.Application(middlewares=[_middleware], handler_args={"max_field_size": 65536},
                              client_max_size=api.MAX_BODY_BYTES)
        app[CLUSTER] = self
        kubectl.add_kubectl_routes(app, self)
        app.router.add_route("*", "/_sim/{action:.*}", _admin)
        app.router.add_route("*", "/{tail:.*}", _rest)
        return app

    async def start(self) -> None:
        # handler_cancellation: a watch whose client went away (or was cut) ends at once
        # instead of staying parked until its next event or its timeout.
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        """Listen (again, on the same port once one was picked)."""
        assert self._runner is not None, "start() first"
        self.is_down = False
        if self._site is None:
            self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True,
                                     ssl_context=tls.server_context())
            await self._site.start()
            self.port = self._runner.addresses[-1][1]
        self.node_leases.start()

    async def down(self) -> None:
        """Refuse connections: close the listener and abort open connections."""
        self.is_down = True
        self.node_leases.close()  # kubelets cannot reach a server that is down
        self._cut_watches()
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def close(self) -> None:
        self.control.close()
        self.node_leases.close()
        self._cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    def _cut_watches(self) -> int:
        cut = 0
        for request in list(self.open_watches.values()):
            if request.transport is not None:
                request.transport.abort()
                cut += 1
        self.open_watches.clear()
        return cut

    # ------------------------------------------------------------ test powers

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of a kind (`Job`, `jobs`, `deploy`), straight from the store."""
        res = self.store.resources.lookup(kind)
        return [copy.deepcopy(o) for o in self.store.list(res, namespace)]

    async def edit(self, kind: str, namespace: str | None, name: str, change: dict[str, Any],
                   manager: str = "kubectl-edit") -> dict[str, Any]:
        """An out-of-band change by another field manager, as `kubectl edit` makes one:
        a merge patch recorded as an Update by `manager` in managedFields."""
        res = self.store.resources.lookup(kind)
        old = self.store.get(res, namespace or "", name)
        new = patch.merge_patch(old, change)
        decoding.check_patched(res, "merge", new, change)
        return copy.deepcopy(self.store.replace(res, new, old, manager=manager))

    def set_node_ready(self, node: str, ready: bool) -> None:
        """A node goes NotReady (Ready=Unknown, not-ready taint) or comes back."""
        res = BY_KIND["Node"]
        old = self.store.get(res, "", node)
        new = copy.deepcopy(old)
        nodes.set_ready(new, ready, objects.now())
        cur = self.store.replace(res, {**new, "status": old["status"]}, old, check_rv=False)
        self.store.replace(res, {**cur, "status": new["status"]}, cur,
                           subresource="status", check_rv=False)
        self.control.node_ready_changed(node, ready)


async def _rest(request: web.Request) -> web.StreamResponse:
    return await api.handle(request, request.app[CLUSTER])


async def _admin(request: web.Request) -> web.StreamResponse:
    cluster = request.app[CLUSTER]
    action = request.match_info["action"].strip("/")
    body: dict[str, Any] = {}
    if request.method == "POST" and request.can_read_body:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as e:
            raise bad_request(f"admin request body is not JSON: {e}") from e
    if action == "" and request.method == "GET":
        return web.json_response({"name": cluster.name, "resourceVersion": cluster.store.rv,
                                  "nodes": [n.name for n in cluster.spec.nodes],
                                  "openWatches": len(cluster.open_watches)})
    if request.method != "POST":
        raise SimError(405, "MethodNotAllowed", "admin actions are POST requests")
    if action == "faults":
        return web.json_response(cluster.faults.configure(body))
    if action.startswith("nodes/") and action.endswith("/ready"):
        cluster.set_node_ready(action.split("/")[1], bool(body.get("ready", True)))
        return web.json_response({"ready": bool(body.get("ready", True))})
    if action == "edit":
        out = await cluster.edit(str(body["kind"]), body.get("namespace"), str(body["name"]),
                                 dict(body.get("patch") or {}),
                                 str(body.get("manager", "kubectl-edit")))
        return web.json_response(out)
    if action == "down":
        seconds = float(body.get("seconds", 10))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: asyncio.ensure_future(_outage(cluster, seconds)))
        return web.json_response({"down": seconds})
    raise not_found("_sim", action)


async def _outage(cluster: SimCluster, seconds: float) -> None:
    await cluster.down()
    await asyncio.sleep(seconds)
    await cluster.up()


class SimFleet:
    """Running simulated clusters, by name; an async context manager."""

    def __init__(self, clusters: dict[str, SimCluster]) -> None:
        self.clusters = clusters

    def write_kubeconfig(self, path: Path) -> Path:
        """One context per cluster, named after it, with its bearer token (mode 0600)."""
        names = sorted(self.clusters)
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "current-context": names[0] if names else "",
            "clusters": [{"name": n, "cluster": {
                "server": self.clusters[n].url,
                "certificate-authority-data": tls.make_tls().ca_data}} for n in names],
            "users": [{"name": f"{n}-admin", "user": {"token": self.clusters[n].token}}
                      for n in names],
            "contexts": [{"name": n, "context": {"cluster": n, "user": f"{n}-admin"}}
                         for n in names],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SIM_KUBECONFIG_MARK + "\n")
            yaml.safe_dump(doc, f, sort_keys=False)
        return path

    async def close(self) -> None:
        for c in self.clusters.values():
            await c.close()

    async def __aenter__(self) -> SimFleet:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def start_sim(clusters: Sequence[nodes.SimClusterSpec], *, host: str = "127.0.0.1",
                    job_seconds: float = 5.0, pod_start_seconds: float = 0.2,
                    ports: Mapping[str, int] | None = None,
                    time_scale: float = DEFAULT_TIME_SCALE) -> SimFleet:
    """Start one simulated cluster per spec, each on its own port of `host` (a free
    one, or `ports[name]` when given, so a written kubeconfig stays valid across runs)."""
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate cluster names in {names}")
    fleet = SimFleet({})
    try:
        for spec in clusters:
            c = SimCluster(spec, host=host, job_seconds=job_seconds,
                           pod_start_seconds=pod_start_seconds, time_scale=time_scale)
            c.port = (ports or {}).get(spec.name, 0)
            await c.start()
            fleet.clusters[spec.name] = c
    except BaseException:
        await fleet.close()
        raise
    return fleet
