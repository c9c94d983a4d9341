"""The fleet's cluster set: one connected `ClusterAdapter` per Cluster file.

A Manager-owned part. `sync(spec)` follows the repo: it connects the clusters a commit
names (TLS set-up in parallel; a failure is a per-cluster error retried on the next
commit or poll, and a `ClusterConnectionFailed` event once per new error), hands each
new adapter to `prepare` (the fence, what not to heal) and runs it in the Manager's
task group; a cluster the repo no longer names is queued for its drain
(`controllers.runtime.retirement`) and disconnected when drained. Cluster files whose
contexts reach one API server are refused together (`refuse_twins`).

A cluster reached through its credentials Secret (`ConnectionSpec.secret`, with
`--cluster-secrets`) has that Secret read from the management cluster before its
identity is checked and before it connects (`_credentials`); a missing, unlabelled or
unusable Secret is that cluster's connection error, retried like any other, and names
the Secret and key, never a value. The resourceVersion of the Secret each cluster was
last reached with is kept (`versions`): `controllers.runtime.credwatch` compares it with
the Secrets on the management cluster, `reconnect`s a cluster whose Secret changed and
`cut`s off one whose Secret is gone (Unreachable, never drained).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import anyio
import anyio.abc
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.apply import DriftReport
from clusters.client import KubeClient
from clusters.credentials import kubeconfig_of_secret, read_credentials, version_of
from clusters.errors import ClusterError, KubeconfigError
from clusters.inventory import LivePlacement
from clusters.kubeconfig import ConnectionSpec, server_of
from controllers.runtime.fleetstate import ClusterView
from controllers.runtime.retirement import Retirement
from controllers.runtime.workqueue import WorkQueue
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.models import Cluster
from fleet.placement.types import Assignment, Plan
from fleet.render import placed_by_cluster, workload_id_of_label
from fleet.safety import shared_servers
from fleet.spec import FleetSpec

log = structlog.get_logger()


class ClusterSet:
    def __init__(self, *, adapters: dict[str, ClusterAdapter], options: AdapterOptions,
                 allow_exec: bool, retirement: Retirement, queue: WorkQueue[str],
                 feed: EventFeed,
                 live: MutableMapping[tuple[ClusterName, WorkloadId], PlacementLive],
                 may_act: Callable[[], bool],
                 connection_of: Callable[[Cluster], ConnectionSpec],
                 on_drift: Callable[[str], Callable[[DriftReport], None]],
                 prepare: Callable[[str, ClusterAdapter], None],
                 task_group: Callable[[], anyio.abc.TaskGroup | None],
                 namespace: str,
                 home_client: Callable[[], Awaitable[KubeClient | None]] | None = None
                 ) -> None:
        self.adapters = adapters
        self.options = options
        self.allow_exec = allow_exec
        self.retirement = retirement
        self.queue = queue
        self.feed = feed
        self.live = live
        """What runs where; a refused twin's rows go (no longer known to be synced)."""
        self.may_act = may_act
        self.connection_of = connection_of
        self.on_drift = on_drift
        self.prepare = prepare
        self.task_group = task_group
        self.connect_errors: dict[str, str] = {}
        self.twins: dict[str, tuple[str, ...]] = {}
        """Clusters refused because another Cluster file reaches the same API server."""
        self.home_client = home_client
        """The management cluster's client (waited for a while), where credentials
        Secrets are read; None: no management cluster."""
        self.namespace = namespace
        """The controller's namespace there, which holds the credentials Secrets."""
        self.inline: dict[str, dict[str, Any]] = {}
        """The kubeconfig each Secret-reached cluster's credentials Secret made (in
        memory only: never saved, logged or shown)."""
        self.versions: dict[str, str] = {}
        """The resourceVersion of the credentials Secret each Secret-reached cluster was
        last read from (for its connection, or for the error that stopped it)."""
        self._planned_ids: dict[str, tuple[Mapping[WorkloadId, Assignment],
                                           frozenset[str]]] = {}
        """`running`'s ids of each unlisted cluster, with the plan index entry they were
        made of (held: its identity is not reused while kept)."""
        self.cut_off: set[str] = set()
        """Clusters whose credentials Secret went away while connected: their adapter
        stays, closed and Unreachable (`cut`), until the Secret is back."""
        self.lock = anyio.Lock()
        """Held while the set changes (`sync`, `cut`, `reconnect`): never two adapters
        for one cluster."""
        self._identity_of: dict[ClusterName, ConnectionSpec] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._stopped: dict[str, anyio.Event] = {}
        """Set once a cluster's adapter run (informers, heartbeat) has ended."""
        self.wanted: Callable[[str], bool] = lambda _name: True
        """Which clusters this replica connects to: all, or with --shards those of the
        shards it holds (`controllers.runtime.shards`); `release` lets the others go."""

    async def sync(self, spec: FleetSpec) -> None:
        """Connect what the repo names and is not connected, retire what it no longer
        names, refuse twins; each new adapter is prepared, then run in the task group."""
        async with self.lock:
            await self._sync(spec)

    async def _sync(self, spec: FleetSpec) -> None:
        tg = self.task_group()
        assert tg is not None
        in_repo = set(spec.clusters)
        reach = self.retirement.restore(in_repo)
        # Removed from the repo: the reconciler drains it (deletes what we run there)
        # and the Manager disconnects it; its workloads are re-placed by the next plan.
        for name in self.retirement.update(set(self.adapters), in_repo):
            self.queue.add(name)
        for name in set(self.connect_errors) - in_repo - self.retirement.names:
            del self.connect_errors[name]
        await self._prefetch(spec)
        twins = self.refuse_twins(spec)
        for name in [n for n in reach if not self.wanted(n)]:
            del reach[name]  # a retiring cluster of another shard: its holder drains it
        for name in sorted(in_repo - set(self.adapters) - set(twins)):
            if not self.wanted(name):
                self.connect_errors.pop(name, None)
                continue
            reach[name] = self.connection_of(spec.clusters[ClusterName(name)])
        connected: dict[str, ClusterAdapter] = {}

        async def connect(name: str) -> None:
            try:
                inline = await self._credentials(reach[name])
                connected[name] = await ClusterAdapter.connect(
                    reach[name], self.options, on_drift=self.on_drift(name),
                    inline=inline)
            except ClusterError as e:
                if self.connect_errors.get(name) != str(e):  # once per new error, not per try
                    self.feed.note("ClusterConnectionFailed", cluster=name, reason=str(e),
                                   acting=self.may_act())
                self.connect_errors[name] = str(e)
                log.error("cluster_connect_failed", cluster=name, error=str(e))

        async with anyio.create_task_group() as connecting:  # TLS set-up in parallel
            for name in sorted(reach):
                connecting.start_soon(connect, name)
        for name, adapter in sorted(connected.items()):
            self.connect_errors.pop(name, None)
            self.adapters[name] = adapter
            self.retirement.reach[name] = reach[name]
            self.prepare(name, adapter)
            await tg.start(self._run, adapter)
            if name in self.retirement.names:
                self.queue.add(name)
        self.retirement.save()

    def refuse_twins(self, spec: FleetSpec) -> dict[str, tuple[str, ...]]:
        """Cluster files whose contexts reach the same API server are one cluster under
        several names (`fleet.safety.shared_servers`): refuse them all -- not connected
        (disconnected if they were), nothing written there, nothing new placed there
        (placement sees them Unknown), a condition naming the files. A retiring
        cluster's drain is never stopped here."""
        conns = {name: self.connection_of(c)
                 for name, c in sorted(spec.clusters.items())}
        if conns == self._identity_of:
            return self.twins  # no Cluster file's connection changed: same answer
        servers: dict[str, str] = {}
        for cname, conn in conns.items():
            inline = self.inline.get(cname)
            if conn.secret and inline is None:
                continue  # its Secret could not be read: connecting says why
            try:
                servers[cname] = server_of(conn, allow_exec=self.allow_exec, inline=inline)
            except KubeconfigError:
                continue  # connecting says why, per cluster
        # Ask again next time unless every cluster's server was known: one that could
        # not be read now may connect later, and must not do so unchecked.
        self._identity_of = conns if len(servers) == len(conns) else {}
        twins = shared_servers(servers)
        for gone in sorted(set(self.twins) - set(twins)):
            self.connect_errors.pop(gone, None)  # connected again below
        for name, names in sorted(twins.items()):
            files = [_file_of(spec, n) for n in names]
            self.connect_errors[name] = (
                f"refused: {' and '.join(files)} reach the same API server (a cluster is "
                "its server; one of them is mislabelled): nothing is written there until "
                "only one Cluster file does")
            if name not in self.twins:
                log.error("cluster_identity_refused", cluster=name, files=files)
            if name in self.adapters:
                self.disconnect(name)
                for key in [k for k in self.live if k[0] == name]:
                    del self.live[key]  # no longer known to be synced there
        self.twins = twins
        return twins

    async def _prefetch(self, spec: FleetSpec) -> None:
        """Read the credentials Secret of each Secret-reached cluster not connected
        yet (or not read yet), so that its server is known to `refuse_twins`."""
        for name, cluster in sorted(spec.clusters.items()):
            conn = self.connection_of(cluster)
            if conn.secret and (name not in self.adapters or name not in self.inline):
                try:
                    await self._credentials(conn)
                except ClusterError:
                    continue  # said when it connects

    async def _credentials(self, conn: ConnectionSpec) -> dict[str, Any] | None:
        """The kubeconfig a cluster's credentials Secret makes (None: not Secret-reached);
        `KubeconfigError` or another ClusterError when it cannot be had now."""
        if not conn.secret:
            return None
        self.inline.pop(conn.cluster, None)
        self.versions.pop(conn.cluster, None)
        where = f"{self.namespace}/{conn.secret}"
        client = await self.home_client() if self.home_client is not None else None
        if client is None:
            raise KubeconfigError(f"credentials Secret {where} cannot be read: the "
                                  "management cluster is not connected", cluster=conn.cluster)
        try:
            secret = await read_credentials(client, self.namespace, conn.secret)
        except TimeoutError:
            raise KubeconfigError(f"credentials Secret {where} cannot be read: the "
                                  "management cluster did not answer",
                                  cluster=conn.cluster) from None
        except ClusterError as e:
            raise KubeconfigError(f"credentials Secret {where} cannot be read: "
                                  f"{e.reason or type(e).__name__}",
                                  cluster=conn.cluster) from None
        if secret is None:
            raise KubeconfigError(f"no credentials Secret {where} (make it with `fleet "
                                  f"cluster add {conn.cluster}`)", cluster=conn.cluster)
        self.versions[conn.cluster] = version_of(secret)
        doc = kubeconfig_of_secret(secret, conn.cluster)
        self.inline[conn.cluster] = doc
        return doc

    def views(self) -> dict[str, ClusterView]:
        """What placement sees of each connected cluster: its health (Unknown until it
        listed, unless Unreachable), how long it has been away, its nodes."""
        out: dict[str, ClusterView] = {}
        for name, a in self.adapters.items():
            health = a.health_state if a.synced.is_set() or a.health_state == \
                "Unreachable" else "Unknown"
            # loop-available seconds: a stalled controller does not age a failover grace
            out[name] = ClusterView(health, a.health.unreachable_for(), tuple(a.nodes()),
                                    a.kueue_queues())
        return out

    def not_listed(self, expected: Iterable[str] = ()) -> list[str]:
        """Clusters that have not listed what runs there yet: connected ones that answer
        (not Unreachable), and those of `expected` (the spec's) this replica wants but
        has not connected yet, unless connecting failed (said in status) or they are
        refused twins. Without the latter, a plan asked while the clusters were still
        being connected (1,000 of them take minutes under load) waited for none: it saw
        every cluster Unknown and made every workload Pending (the 1,000 x 50,000 run)."""
        waiting = {n for n, a in self.adapters.items()
                   if not a.synced.is_set() and a.health_state != "Unreachable"}
        waiting.update(n for n in expected if n not in self.adapters and self.wanted(n)
                       and n not in self.connect_errors and n not in self.twins)
        return sorted(waiting)

    async def wait_listed(self, *, tick: float, say_every: float,
                          expected: Callable[[], Iterable[str]] = tuple) -> None:
        """Until every cluster (of the `expected` names too) has listed what runs there,
        or is Unreachable, or could not be connected: a plan on a partial view would take
        a slow-listing cluster's workloads for missing and move them. Says every
        `say_every` seconds which clusters it waits for."""
        waited = 0.0
        while True:
            waiting = self.not_listed(expected())
            if not waiting:
                return
            if waited >= say_every:
                log.warning("waiting_for_clusters_to_list", waiting=len(waiting),
                            clusters=waiting[:20])  # a count: not 1,000 names a line
                waited = 0.0
            await anyio.sleep(tick)
            waited += tick

    def live_workloads(self, only: Callable[[str], bool] = lambda _: True
                       ) -> dict[str, dict[str, LivePlacement]]:
        """Per listed cluster (of those `only` keeps), the workloads running there."""
        return {n: a.live_workloads() for n, a in self.adapters.items()
                if only(n) and a.synced.is_set()}

    def running(self, spec: FleetSpec, plan: Plan,
                placed: Mapping[ClusterName, Mapping[WorkloadId, Assignment]] | None = None
                ) -> dict[str, set[str]]:
        """Every cluster of `spec` -> the workload ids running there: what its informers
        list, or for a cluster not listed (down, or with --shards another shard's) the
        plan's placements, from `placed` (the plan's index by cluster, as
        `DesiredState.placed_index` keeps it) or else an index made here. Never a pass
        over the plan per such cluster: a replica with --shards lists a quarter of
        1,000 clusters, and the other 750 each walked the 50,000 workloads at every
        fetch (issue 22)."""
        out: dict[str, set[str]] = {}
        kept, self._planned_ids = self._planned_ids, {}
        for name in sorted(spec.clusters):
            a = self.adapters.get(name)
            if a is not None and a.synced.is_set():
                out[name] = {str(workload_id_of_label(lbl)) for lbl in a.live_workloads()}
                continue
            if placed is None:
                placed = placed_by_cluster(plan)
            entry = placed.get(ClusterName(name))
            if not entry:
                out[name] = set()
                continue
            # An index entry a new plan did not touch is the very object it was
            # (`DesiredState.set_plan`, copy-on-write; never changed in place): its
            # ids are the same, kept rather than made anew at every fetch (issue 22).
            was = kept.get(name)
            ids = was[1] if was is not None and was[0] is entry else \
                frozenset(str(wid) for wid in entry)
            self._planned_ids[name] = (entry, ids)
            out[name] = set(ids)
        return out

    def retired(self, name: str) -> bool:
        """A removed cluster whose drain is done is disconnected (True); what waited
        for the drain is queued."""
        if self.task_group() is None or not self.retirement.done(name):
            return False
        self.disconnect(name)
        for other in self.adapters:  # what waited for the drain starts now
            self.queue.add(other)
        return True

    def disconnect(self, name: str) -> None:
        tg = self.task_group()
        assert tg is not None
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()
        adapter = self.adapters.pop(name, None)
        if adapter is not None and name not in self.cut_off:
            tg.start_soon(adapter.aclose)
        self.cut_off.discard(name)

    async def cut(self, name: str, reason: str, message: str) -> None:
        """Stop talking to a connected cluster whose credentials are gone: its informers
        and heartbeat stop, its client is closed, and it stays in the set Unreachable
        with this cause (`HealthTracker.cut_off`), so placement, the failover grace and
        the reconciler treat it as any cluster that stopped answering: nothing is
        written or deleted there, nothing is drained. `reconnect` ends it."""
        async with self.lock:
            adapter = self.adapters.get(name)
            if adapter is None or name in self.cut_off:
                return
            scope = self._scopes.pop(name, None)
            if scope is not None:
                scope.cancel()
            adapter.health.cut_off(reason, message)
            self.cut_off.add(name)
            self.inline.pop(name, None)
            self.versions.pop(name, None)
            with anyio.CancelScope(shield=True):
                await adapter.aclose()

    async def reconnect(self, name: str) -> None:
        """Drop a cluster's connection (its old client closed) so that the next `sync`
        reads its credentials Secret again and connects with it -- after the same
        identity check as any new connection. Only that cluster is touched."""
        async with self.lock:
            self.disconnect(name)
            self.inline.pop(name, None)
            self._identity_of = {}  # its server may have changed: check twins again

    async def release(self) -> list[str]:
        """Disconnect every connected cluster no longer `wanted` (a shard let go or
        taken: its writes are already fenced off); what it recorded is left for the
        shard's next holder to publish. The clusters let go, sorted."""
        async with self.lock:
            gone = sorted(n for n in self.adapters if not self.wanted(n))
            for name in gone:
                scope = self._scopes.pop(name, None)
                adapter = self.adapters.pop(name)
                self.connect_errors.pop(name, None)
                if scope is not None:
                    scope.cancel()
                    # its informers stopped before the session closes: one woken in
                    # between would meet a closed session ("Session is closed")
                    with anyio.move_on_after(10):
                        await self._stopped[name].wait()
                self._stopped.pop(name, None)
                if name not in self.cut_off:
                    with anyio.CancelScope(shield=True):
                        await adapter.aclose()
                self.cut_off.discard(name)
            return gone

    def unconnected(self, spec: FleetSpec) -> list[str]:
        """Clusters of `spec` this replica wants and has not connected (nor refused)."""
        return sorted(n for n in spec.clusters if self.wanted(n) and n not in self.adapters
                      and n not in self.twins)

    async def _run(self, adapter: ClusterAdapter, *,
                   task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                   ) -> None:
        stopped = self._stopped[adapter.name] = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scopes[adapter.name] = scope
                task_status.started()
                await adapter.run()
        finally:
            stopped.set()


def connection_of(settings: Settings, cluster: Cluster) -> ConnectionSpec:
    """The Cluster file's connection; `--kubeconfig` and the cluster's name as context
    when it names none, or, with `--cluster-secrets`, its credentials Secret when it
    names no kubeconfig (`clusters.credentials`)."""
    conn = cluster.spec.connection
    if settings.cluster_secrets and not conn.kubeconfig:
        return ConnectionSpec(cluster.name, None, cluster.name, secret=cluster.name)
    return ConnectionSpec(cluster.name, conn.kubeconfig or settings.kubeconfig,
                          conn.context or cluster.name)


def _file_of(spec: FleetSpec, cluster: str) -> str:
    src = spec.source_of("Cluster", cluster)
    return src.file if src is not None else f"clusters/{cluster}.yaml"
