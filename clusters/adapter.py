"""`ClusterAdapter`: everything the controllers do to and learn from one cluster.

The narrow interface:
- `await ClusterAdapter.connect(conn, ...)`: kubeconfig context -> client (exec plugins
  refused unless allowed), rate limit, retries, health tracking;
- `run()`: the informers (nodes, pods, owned objects, ResourceSlices where served) and
  a heartbeat, until cancelled; meant for the controller's task group;
- `apply(objects, ...)`, `delete_workloads(ids)`: the only writes (`clusters.apply`);
- `health`, `nodes()`, `capacity_version`, `workload_objects(id)`, `drift_log`,
  `stats`: what it has learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from clusters.apply import Applier, ApplyResult, DriftReport
from clusters.capacity import (
    CapacityTracker,
    KueueView,
    NodeState,
    slim_claim,
    slim_node,
    slim_pod,
    slim_workload,
)
from clusters.client import (
    CLUSTER_QUEUE,
    DEPLOYMENT,
    JOB,
    JOBSET,
    JSON,
    KUEUE_API,
    KUEUE_WORKLOAD,
    LOCAL_QUEUE,
    NAMESPACE,
    NODE,
    POD,
    RESOURCE_CLAIM,
    RESOURCE_CLAIM_TEMPLATE,
    RESOURCE_FLAVOR,
    RESOURCE_SLICE,
    SERVICE,
    ClientStats,
    KubeClient,
    RetryPolicy,
)
from clusters.errors import ClusterError, NotFound
from clusters.health import ClusterHealth, HealthTracker, workload_health
from clusters.informer import Informer
from clusters.inventory import LivePlacement, WhereRuns
from clusters.kubeconfig import ConnectionSpec, connection_config
from clusters.slim import metadata_only
from fleet.render import OWNED_SELECTOR, WORKLOAD_LABEL, workload_of

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    qps: float = 50.0
    burst: int = 100
    allow_exec: bool = False
    self_heal: bool = True
    unreachable_after: float = 15.0
    degraded_window: float = 60.0
    """How long API errors or unanswered requests keep the cluster Degraded."""
    heartbeat_interval: float = 5.0
    watch_timeout: int = 300
    idle_relist: float | None = 300.0
    """Kinds with nothing to watch (our own kinds before we write one, ResourceSlices
    and ResourceClaims on a cluster that publishes no DRA devices) are listed this
    often instead of watched: a watch is a TLS connection of its own (issue 22, item
    1; `clusters.informer`). None: watch every kind always."""
    list_concurrency: int = 1
    """A cluster's informers list this many at a time: a first sync of every kind
    at once opened ~12 TLS connections per cluster, and their freed buffers stay in
    the heap (issue 22, item 1: `bench.footprint`)."""
    apply_concurrency: int = 16
    """Workloads applied at once on one cluster: `bench.apply --no-pods --concurrency N`
    measured 1: 199, 2: 228, 4: 305, 8: 337, 16: 410-532, 32: 500, 64: 517 objects/s
    (issue 22; the API server, not this, is the limit from 16 on)."""
    write_keepalive: float = 1.0
    """Seconds an idle write connection (aiohttp's pool) stays open: aiohttp closes it
    between one and two of these after its last write. Each open one holds asyncio's
    256 KiB TLS read buffer, zero-filled, every page touched (`clusters.leanhttp`).
    Kept for 1.5 heartbeats (7.5 s, closed 7.5-15 s after), the clusters a replica
    finished applying in the last 15 s held theirs all at once: at the end of a
    1,000 x 50,000 rollout, 226 of them (56.5 MiB by tracemalloc, `asyncio/
    sslproto.py`, opened in the last minute alone) in replica 0, which peaked over
    1 GiB. A pass reuses its connections write after write; the next pass pays a TLS
    handshake per connection it opens."""
    retry: RetryPolicy | None = None
    clock: Callable[[], float] = time.monotonic
    """The adapter's clock (rate limit, health, drift-heal backoff): tests inject one."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How the rate limit waits for a token, on that clock."""
    stalled: Callable[[], float] | None = None
    """Seconds the controller's event loop has been late so far
    (`controllers.runtime.looplag.LoopLag.stalled`): health discounts them."""


class ClusterAdapter:
    def __init__(self, name: str, client: KubeClient, options: AdapterOptions,
                 health: HealthTracker,
                 on_drift: Callable[[DriftReport], None] | None = None) -> None:
        self.name = name
        self.client = client
        self.options = options
        self.health = health
        self.heartbeats = self.heartbeats_skipped = 0
        """`GET /version` heartbeats sent, and skipped because another request was
        answered within the beat."""
        self.capacity = CapacityTracker()
        self.applier = Applier(client, self_heal=options.self_heal, on_drift=on_drift,
                               concurrency=options.apply_concurrency,
                               clock=options.clock, sleep=options.sleep)
        idle = options.idle_relist
        gate = asyncio.Semaphore(options.list_concurrency)
        # Owned kinds: the applier's inventory holds each object (slimmed); their
        # informers keep metadata only (`clusters.slim`), so none is held twice.
        self._owned = [Informer(client, t, label_selector=OWNED_SELECTOR,
                                watch_timeout=options.watch_timeout,
                                handler=self.applier.observe, idle_relist=idle,
                                list_gate=gate, keep=metadata_only)
                       for t in (NAMESPACE, SERVICE, DEPLOYMENT, JOB)]
        self._nodes = Informer(client, NODE, watch_timeout=options.watch_timeout,
                               handler=self.capacity.on_node, transform=slim_node,
                               list_gate=gate)
        self._pods = Informer(client, POD, watch_timeout=options.watch_timeout,
                              handler=self._on_pod, transform=slim_pod,
                              list_gate=gate)
        self._pods_of: dict[str, dict[tuple[str, str], JSON]] = {}
        """Our pods by workload label, kept from the pod informer's events."""
        self._pod_label: dict[tuple[str, str], str] = {}
        self._where: WhereRuns | None = None
        self.applier.live.on_runs = self._runs_changed
        self._slices = Informer(client, RESOURCE_SLICE, watch_timeout=options.watch_timeout,
                                handler=self._on_slice, idle_relist=idle, list_gate=gate)
        self._claims = Informer(client, RESOURCE_CLAIM, watch_timeout=options.watch_timeout,
                                handler=self.capacity.on_resource_claim,
                                transform=slim_claim, idle_relist=idle, list_gate=gate)
        """Without a ResourceSlice no device can be allocated, so no claim holds one:
        claims are watched once a slice is seen (`_on_slice`)."""
        self._kueue = [
            Informer(client, RESOURCE_FLAVOR, watch_timeout=options.watch_timeout,
                     handler=self.capacity.on_resource_flavor, list_gate=gate),
            Informer(client, CLUSTER_QUEUE, watch_timeout=options.watch_timeout,
                     handler=self.capacity.on_cluster_queue, list_gate=gate),
            Informer(client, KUEUE_WORKLOAD, watch_timeout=options.watch_timeout,
                     handler=self.capacity.on_kueue_workload, transform=slim_workload,
                     list_gate=gate)]
        self._kueue_owned = [Informer(client, t, label_selector=OWNED_SELECTOR,
                                      watch_timeout=options.watch_timeout,
                                      handler=self.applier.observe if t is not LOCAL_QUEUE
                                      else self._on_local_queue, idle_relist=idle,
                                      list_gate=gate, keep=metadata_only)
                             for t in (RESOURCE_FLAVOR, CLUSTER_QUEUE, LOCAL_QUEUE)]
        """The Kueue objects we render (fleet.render.kueue): owned, so drift-checked and
        pruned like every other; our LocalQueues also tell capacity which ClusterQueue
        each team's Jobs wait in."""
        self._kueue_served = False
        self._kueue_synced = asyncio.Event()
        """Set once Kueue's quota is known: its objects listed, or Kueue not served."""
        self._claim_templates = Informer(
            client, RESOURCE_CLAIM_TEMPLATE, label_selector=OWNED_SELECTOR,
            watch_timeout=options.watch_timeout, handler=self.applier.observe,
            idle_relist=idle, list_gate=gate, keep=metadata_only)
        """Our own ResourceClaimTemplates (DRA clusters), so a restarted controller
        knows and prunes them like the other owned objects."""
        self._jobsets = Informer(client, JOBSET, label_selector=OWNED_SELECTOR,
                                 watch_timeout=options.watch_timeout,
                                 handler=self.applier.observe, idle_relist=idle,
                                 list_gate=gate, keep=metadata_only)
        """Our own JobSets (clusters that serve jobset.x-k8s.io), so a restarted
        controller knows and prunes them like the other owned objects."""
        self._jobsets_synced = asyncio.Event()
        """Set once our JobSets are listed, or JobSet is not served."""
        self._dra_synced = asyncio.Event()
        """Set once DRA capacity is known: slices and claims listed, or not served.
        Without it a first plan could count a DRA cluster's GPUs as absent."""
        self._writes: tuple[Informer, ...] = (*self._owned, *self._kueue_owned,
                                              self._claim_templates, self._jobsets)
        """The informer of each kind we write: woken before a write (drift on what we
        write is seen only through its watch)."""
        self._groups: frozenset[str] | None = None
        """The group versions /apis listed (read once, at the first `_serves`)."""
        self._groups_lock = asyncio.Lock()
        self.synced = asyncio.Event()

    def _on_slice(self, event: str, rs: JSON) -> None:
        if event != "DELETED":
            self._claims.activate()
        self.capacity.on_resource_slice(event, rs)

    def watching(self) -> list[str]:
        """The kinds watched now (each holds a connection); idle ones are not."""
        return sorted(inf.rtype.kind for inf in self._all_informers()
                      if inf.synced.is_set() and not inf.idle)

    def _all_informers(self) -> tuple[Informer, ...]:
        return (self._nodes, self._pods, *self._owned, self._slices, self._claims,
                self._claim_templates, self._jobsets, *self._kueue, *self._kueue_owned)

    @classmethod
    async def connect(cls, conn: ConnectionSpec, options: AdapterOptions | None = None,
                      on_drift: Callable[[DriftReport], None] | None = None,
                      inline: dict[str, Any] | None = None) -> ClusterAdapter:
        opts = options or AdapterOptions()
        stalled = opts.stalled or (lambda: 0.0)
        health = HealthTracker(unreachable_after=opts.unreachable_after,
                               degraded_window=opts.degraded_window, clock=opts.clock,
                               stalled=stalled)
        cfg = await connection_config(conn, allow_exec=opts.allow_exec, inline=inline)
        client = KubeClient(conn.cluster, cfg, qps=opts.qps, burst=opts.burst,
                            retry=opts.retry, on_outcome=health.record, clock=opts.clock,
                            sleep=opts.sleep, stalled=stalled,
                            keepalive=opts.write_keepalive)
        return cls(conn.cluster, client, opts, health, on_drift)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Informers and heartbeat until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            for inf in (self._nodes, self._pods, *self._owned):
                tg.start_soon(inf.run)
            tg.start_soon(self._maybe_slices)
            tg.start_soon(self._maybe_kueue)
            tg.start_soon(self._maybe_jobsets)
            tg.start_soon(self._mark_synced)

    def informers(self) -> tuple[Informer, ...]:
        """The informers that must have listed before the cluster counts as synced
        (ResourceSlices, watched only where served, are not among them)."""
        return (self._nodes, self._pods, *self._owned)

    async def _mark_synced(self) -> None:
        for inf in self.informers():
            await inf.synced.wait()
        await self._dra_synced.wait()
        await self._kueue_synced.wait()
        await self._jobsets_synced.wait()
        self.synced.set()
        log.info("cluster_synced", cluster=self.name, nodes=len(self.capacity.nodes),
                 owned=len(self.applier.owned()))

    async def _maybe_slices(self) -> None:
        """Watch ResourceSlices and ResourceClaims (what DRA devices exist, which are
        taken), and our own ResourceClaimTemplates, only where the cluster serves
        resource.k8s.io/v1."""
        while True:
            try:
                await self.client.request("GET", "/apis/resource.k8s.io/v1", verb="get")
            except NotFound:
                self._dra_synced.set()
                return
            except ClusterError:
                await anyio.sleep(self.options.heartbeat_interval)
                continue
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._slices.run)
                tg.start_soon(self._claims.run)
                tg.start_soon(self._claim_templates.run)
                await self._slices.synced.wait()
                await self._claims.synced.wait()
                await self._claim_templates.synced.wait()
                self._dra_synced.set()
            return

    async def _maybe_jobsets(self) -> None:
        """Watch our own JobSets only where the cluster serves jobset.x-k8s.io/v1alpha2
        (a JobSet is rendered only for a Cluster whose `spec.stack` says so)."""
        if await self._serves(JOBSET.api_version):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._jobsets.run)
                await self._jobsets.synced.wait()
                self._jobsets_synced.set()
        self._jobsets_synced.set()

    async def _serves(self, group_version: str) -> bool:
        """Whether the API server serves this group version, from the group list (a
        plain cluster answers it without a 404, which the client would count as an
        error); asked again until it answers."""
        async with self._groups_lock:  # one read of /apis for every caller
            while self._groups is None:
                try:
                    groups = await self.client.request("GET", "/apis", verb="get")
                except ClusterError:
                    await anyio.sleep(self.options.heartbeat_interval)
                    continue
                self._groups = frozenset(str(v.get("groupVersion"))
                                         for g in (groups or {}).get("groups") or []
                                         for v in g.get("versions") or [])
        return group_version in self._groups

    async def _maybe_kueue(self) -> None:
        """Watch ResourceFlavors, ClusterQueues and Workloads (Kueue's quota, what it
        reserves) only where the cluster serves kueue.x-k8s.io/v1beta2."""
        if await self._serves(KUEUE_API):
            self._kueue_served = True
            async with anyio.create_task_group() as tg:
                for inf in (*self._kueue, *self._kueue_owned):
                    tg.start_soon(inf.run)
                for inf in (*self._kueue, *self._kueue_owned):
                    await inf.synced.wait()
                self._kueue_synced.set()
        self._kueue_synced.set()

    async def _heartbeat(self) -> None:
        last = self.health.state
        answering = False
        beat_answer: float | None = None
        while True:
            # Only when no other request was answered within a beat: any answer tells
            # as much (`HealthTracker.heard_within`), and a busy cluster needs none.
            # The beat's own answer never counts (a loop stall shortens the health
            # clock's beat, which would otherwise skip every other one).
            if self.health.last_ok == beat_answer or \
                    not self.health.heard_within(self.options.heartbeat_interval):
                self.heartbeats += 1
                with contextlib.suppress(ClusterError):
                    await self.client.request(
                        "GET", "/version", verb="get", retry=False,
                        request_timeout=max(1.0, self.options.heartbeat_interval))
                beat_answer = self.health.last_ok
            else:
                self.heartbeats_skipped += 1
            if self.health.first_no_answer is None and not answering:
                # It answers (again): informers backing off list and watch now, so what
                # runs there -- a failed-over gang's stale copy -- is known at once.
                for inf in (*self.informers(), self._slices):
                    inf.wake()
            answering = self.health.first_no_answer is None
            state = self.health.state
            if state != last:
                log.warning("cluster_health_changed", cluster=self.name, previous=last,
                            health=state)
                last = state
            await anyio.sleep(self.options.heartbeat_interval)

    async def wait_synced(self, within: float = 30.0) -> None:
        with anyio.fail_after(within):
            await self.synced.wait()

    async def aclose(self) -> None:
        if self._where is not None:
            self._where.drop(self)
            self._where = None
        await self.applier.aclose()
        await self.client.close()

    # ------------------------------------------------------------------ writes

    async def apply(self, objects: Iterable[JSON], *, prune: bool = True,
                    allow_empty: bool = False, scope: set[str] | None = None,
                    protect: set[str] | None = None) -> ApplyResult:
        objects = list(objects)
        kinds = {(str(o.get("apiVersion")), str(o.get("kind"))) for o in objects}
        for inf in self._writes:
            if (inf.rtype.api_version, inf.rtype.kind) in kinds:
                inf.activate()
        result = await self.applier.apply(objects, prune=prune, allow_empty=allow_empty,
                                          scope=scope, protect=protect)
        log.info("cluster_applied", cluster=self.name, applied=len(result.applied),
                 unchanged=len(result.unchanged), recreated=len(result.recreated),
                 pruned=len(result.pruned), failed=len(result.failed),
                 api_calls=result.api_calls, prune_refused=result.prune_refused)
        return result

    async def delete_workloads(self, workloads: set[str]) -> int:
        deleted = await self.applier.delete_workloads(workloads)
        if deleted:
            log.info("stale_copies_deleted", cluster=self.name, objects=len(deleted),
                     workloads=sorted(workloads))
        return len(deleted)

    # ------------------------------------------------------------------ knowledge

    @property
    def health_state(self) -> ClusterHealth:
        return self.health.state

    @property
    def stats(self) -> ClientStats:
        return self.client.stats

    @property
    def capacity_version(self) -> int:
        return self.capacity.version

    def nodes(self) -> list[NodeState]:
        """The nodes, by name."""
        return self.capacity.view()

    def kueue_queues(self) -> KueueView | None:
        """Kueue's ClusterQueues (GPU quota, cohort, what others and we reserve) and our
        LocalQueues, where the cluster serves Kueue; None where it does not."""
        return self.capacity.kueue.queues() if self._kueue_served else None

    def _on_local_queue(self, event: str, lq: JSON) -> None:
        self.applier.observe(event, lq)
        self.capacity.on_local_queue(event, lq)

    def workload_objects(self, workload: str) -> list[JSON]:
        """Live owned objects of one workload (`team.name` label value)."""
        return [o for _k, o in sorted(self.applier.live.items()) if workload_of(o) == workload]

    def live_workloads(self) -> dict[str, LivePlacement]:
        """What runs here by our labels: per workload label, the replicas and GPU product.

        After a restart this is the truth the controller rebuilds its previous plan from.
        Kept as the informers' objects change (`clusters.inventory.Inventory`), not
        rebuilt from every object per call.
        """
        return self.applier.live.workloads()

    def workload_health(self, workload: str) -> str:
        return workload_health(self.workload_objects(workload))

    def pods(self, workload: str) -> list[JSON]:
        """Live pods of one workload (`team.name` label value), from the pod informer
        (kept by label: no pass over every pod)."""
        return [p for _k, p in sorted(self._pods_of.get(workload, {}).items())]

    def holds(self, workload: str) -> bool:
        """Whether an object or a pod of `workload` (its label) is here."""
        return self.applier.live.runs(workload) or workload in self._pods_of

    def join(self, where: WhereRuns) -> None:
        """Keep `where` told of what this cluster holds, from now on and as it is."""
        self._where = where
        for label in sorted(set(self.applier.live.workloads()) | set(self._pods_of)):
            where.set(label, self, True)

    def _runs_changed(self, label: str) -> None:
        if self._where is not None:
            self._where.set(label, self, self.holds(label))

    def _on_pod(self, event: str, pod: JSON) -> None:
        self.capacity.on_pod(event, pod)
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        before = self._pod_label.pop(key, None)
        if before is not None:
            held = self._pods_of[before]
            held.pop(key, None)
            if not held:
                del self._pods_of[before]
        label = (meta.get("labels") or {}).get(WORKLOAD_LABEL)
        if event != "DELETED" and label:
            self._pods_of.setdefault(str(label), {})[key] = pod
            self._pod_label[key] = str(label)
        for changed in {before, str(label) if label else None} - {None}:
            assert changed is not None
            self._runs_changed(changed)

    def objects_by_workload(self) -> dict[str, list[JSON]]:
        """Live owned objects grouped by workload label, in one pass (status pages ask
        for every workload at once: one scan per cluster, not one per workload)."""
        out: dict[str, list[JSON]] = {}
        for _k, obj in sorted(self.applier.live.items()):
            label = workload_of(obj)
            if label is not None:
                out.setdefault(label, []).append(obj)
        return out

    def kueue_workloads_by_workload(self) -> dict[str, list[JSON]]:
        """Kueue Workloads (slimmed) grouped by our workload label, which Kueue copies
        from the Job's pod template into its podSets; empty where Kueue is not served."""
        out: dict[str, list[JSON]] = {}
        for _k, wl in sorted(self._kueue[2].store.items()):
            for ps in (wl.get("spec") or {}).get("podSets") or []:
                labels = ((ps.get("template") or {}).get("metadata") or {}).get("labels")
                label = (labels or {}).get(WORKLOAD_LABEL)
                if label:
                    out.setdefault(str(label), []).append(wl)
                    break
        return out

    def pods_by_workload(self) -> dict[str, list[JSON]]:
        """Live pods grouped by workload label, in one pass over the pod informer."""
        out: dict[str, list[JSON]] = {}
        for _k, pod in sorted(self._pods.store.items()):
            label = ((pod.get("metadata") or {}).get("labels") or {}).get(WORKLOAD_LABEL)
            if label:
                out.setdefault(str(label), []).append(pod)
        return out

    @property
    def drift_log(self) -> list[DriftReport]:
        return self.applier.drift_log
