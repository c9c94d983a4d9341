"""The one module that writes to a cluster: server-side apply, prune, drift correction.

What a pass does to each object is decided before any of it runs, purely, by
`fleet.sync.plan_sync` (a `SyncPlan`: unchanged, apply, recreate, prune, refused, hold);
`Applier.execute` carries a plan out. The rules below are that plan's.

Ownership: the objects we own are those labelled `aifleet.dev/managed-by: aifleet`
(the inventory, kept by informers). Nothing else is ever patched or deleted, whatever
its name.

Apply: server-side apply with field manager `aifleet` and `force=true` (the fleet repo
is the source of truth for the fields we set; other managers keep the fields they add),
Namespaces first (in parallel among themselves), then each workload's objects together
and in order (workloads in parallel, up to `concurrency`: a round trip is latency).
Every object carries a content hash annotation; an object whose live hash matches and
which shows no drift costs zero API calls. A changed object costs one PATCH. A Job whose
template changed is immutable (422): it is deleted with `propagationPolicy=Background`
(the default would orphan its pods, which keep holding GPUs) and applied again.

Prune: deletes owned objects absent from the desired set, after the applies of that
set, never the objects of a workload one of whose applies failed in that pass (nor
anything when a Namespace or unlabelled object failed), and refuses to delete all of
a cluster's owned workload objects at once unless the caller says `allow_empty` (an
empty render is far more often a bug than an intent; the cluster's own Kueue queues do
not make a render non-empty). Namespaces are never pruned: deleting one
deletes objects we do not own.

Drift: on every watch event of an owned object, the fields we last applied are compared
with the live object (`fleet.drift.diff`); drift is reported with paths and the manager
that changed them, and corrected (self-heal, the default) through a rate limit with
per-object backoff, so a fight with another controller cannot become a hot loop.

Fencing (leader election): a write goes out only while `may_write()` and while the Lease
names this writer at its generation (`lease_check`); nothing on the written objects
themselves decides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio

from clusters.client import (
    APPLY_PATCH,
    JSON,
    KubeClient,
    ResourceType,
    TokenBucket,
    count_calls,
    type_of,
)
from clusters.errors import ClusterError, Invalid, NotFound, PermanentError, RecreateNeeded
from clusters.inventory import Inventory
from clusters.slim import slim_live
from fleet.drift import DriftedField, diff
from fleet.render import MANAGED_BY, WORKLOAD_LABEL, for_existing, workload_of
from fleet.sync import (
    GENERATION_ANNOTATION,
    HASH_ANNOTATION,
    ObjKey,
    SyncPlan,
    content_hash,
    is_owned,
    obj_key,
    plan_sync,
    recreate_allowed,
    stamp,
)

__all__ = [
    "GENERATION_ANNOTATION",
    "HASH_ANNOTATION",
    "MANAGED_BY",
    "WORKLOAD_LABEL",
    "Applier",
    "ApplyResult",
    "DriftReport",
    "Fenced",
    "ObjKey",
    "content_hash",
    "obj_key",
    "stamp",
    "workload_of",
]

FIELD_MANAGER = "aifleet"


class Fenced(PermanentError):
    """A newer leader wrote this object, or we are not the leader: we must not write."""


@dataclass(slots=True)
class ApplyResult:
    applied: list[ObjKey] = field(default_factory=list)
    unchanged: list[ObjKey] = field(default_factory=list)
    recreated: list[ObjKey] = field(default_factory=list)
    pruned: list[ObjKey] = field(default_factory=list)
    failed: list[tuple[ObjKey, ClusterError]] = field(default_factory=list)
    prune_refused: str | None = None
    api_calls: int = 0
    workloads: dict[ObjKey, str | None] = field(default_factory=dict)
    """The workload label of each object the plan applied or pruned (None: a Namespace
    or an unlabelled object), as the plan saw it."""
    plan: SyncPlan | None = None
    """The decisions this result carried out."""

    @property
    def ok(self) -> bool:
        return not self.failed and self.prune_refused is None


@dataclass(frozen=True, slots=True)
class DriftReport:
    key: ObjKey
    workload: str | None
    fields: tuple[DriftedField, ...]
    corrected: bool
    at: float


class Applier:
    """Applies desired objects to one cluster and keeps them there."""

    def __init__(self, client: KubeClient, *, self_heal: bool = True,
                 heal_qps: float = 5.0, heal_burst: int = 10, concurrency: int = 8,
                 on_drift: Callable[[DriftReport], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self.generation: int | None = None
        """Lease generation of this writer (leader election); None: no election."""
        self.may_write: Callable[[], bool] = lambda: True
        """False while this controller is not the leader: no writes at all."""
        self.owns: Callable[[], bool] = lambda: True
        """False while what runs here is not this controller's to keep: leadership, or
        (--shards) the cluster's shard, let go. Another replica writes here then: its
        writes are not drift, so none is looked for, reported or corrected, and what
        was applied here is forgotten (`_let_go`): a reconcile after a re-take applies
        the head again, where a drift correction made from what was applied before
        would have written an older commit back."""
        self.lease_check: Callable[[], Awaitable[str | None]] | None = None
        """With leader election: None while the Lease still names this writer at its
        `generation`, else why not (`LeaderElector.confirm`)."""
        self.self_heal = self_heal
        self.hold_heal: Callable[[str | None], bool] = lambda _workload: False
        """True for a workload (its label) whose drift is reported but not corrected now
        (the controller's suspension of it, or of this cluster)."""
        self.concurrency = concurrency
        """Workloads applied at once (the client's QPS bucket still paces the calls)."""
        self.live = Inventory()
        """Owned objects as last seen (informer events and our own apply responses),
        slimmed (`clusters.slim.slim_live`: managedFields as drift reads them); what
        runs here kept with them (`Inventory.workloads`)."""
        self.desired: dict[ObjKey, JSON] = {}
        """What we last applied (stamped), by key: the reference for drift."""
        self.corrections = 0
        self.drift_log: list[DriftReport] = []
        self._heal_bucket = TokenBucket(heal_qps, heal_burst, clock=clock, sleep=sleep)
        self._heal_backoff: dict[ObjKey, tuple[int, float]] = {}
        self._on_drift = on_drift
        self._clock = clock
        self._sleep = sleep
        self._healing: set[ObjKey] = set()
        self._reported: dict[ObjKey, tuple[tuple[str, str], ...]] = {}
        """The drift last reported per object, until it matches again: one report per
        drift, not one per event (status writes keep coming while it lasts)."""
        self._clean: dict[ObjKey, tuple[JSON, str]] = {}
        """Per object, the desired it was last found to match and the resourceVersion
        of the live version compared: a later version that differs from that one in
        status alone matches too, and is not walked again (`_status_only`)."""
        self._writing: set[ObjKey] = set()
        """Objects with a write of ours in flight: their events are not drift (the write
        decides what the object becomes; its response is compared, not the event)."""
        self._gone: set[str] = set()
        """uids of objects we deleted, until their DELETED event: their late events must
        neither bring them back into the inventory nor remove a newer object's."""
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ inventory

    def observe(self, event: str, obj: JSON) -> None:
        """Informer handler for owned objects: keep the inventory, look for drift."""
        key = obj_key(obj)
        uid = _uid(obj)
        if uid in self._gone:
            if event == "DELETED":
                self._gone.discard(uid)
            return
        if self.desired and not self.owns():
            self._let_go()
        if is_older(obj, self.live.get(key)):
            # A late event (a version before the one we hold, e.g. from before our own
            # write, or of an incarnation we replaced): resourceVersions of one resource
            # compare as integers (KEP-5504, GA in 1.35), so no time window is needed.
            return
        if event == "DELETED":
            self._clean.pop(key, None)
            current = _uid(self.live.get(key) or {})
            if current and uid and current != uid:
                return  # an older incarnation went; the live one is newer
            self.live.pop(key, None)
            if key in self.desired and key not in self._writing and \
                    not (obj.get("metadata") or {}).get("deletionTimestamp"):
                self._report(key, (DriftedField("(object)", "present", None, None),))
            return
        held = self.live.get(key)
        if held is not None and _rv(obj) and _rv(obj) == _rv(held) and _uid(held) == uid:
            return  # the version we hold (our own write's response): compared already
        obj = self.live[key] = slim_live(obj)
        want = self.desired.get(key)
        if want is not None and key not in self._writing:
            clean = self._clean.get(key)
            if clean is not None and clean[0] is want and held is not None and \
                    clean[1] == _rv(held) and status_only(held, obj):
                self._clean[key] = (want, _rv(obj))  # matches, as `held` did
                return
            fields = tuple(diff(want, obj))
            if fields:
                self._report(key, fields)
            else:
                self._reported.pop(key, None)
                self._clean[key] = (want, _rv(obj))

    def _let_go(self) -> None:
        """Forget what was applied here (`owns` turned False): the reference for drift,
        and the drift reported. The inventory stays (a re-take lists nothing again)."""
        self.desired.clear()
        self._clean.clear()
        self._reported.clear()

    def owned(self) -> list[ObjKey]:
        return sorted(k for k, o in self.live.items() if is_owned(o))

    # ------------------------------------------------------------------ apply

    async def apply(self, desired: Iterable[JSON], *, prune: bool = True,
                    allow_empty: bool = False, scope: set[str] | None = None,
                    protect: set[str] | None = None) -> ApplyResult:
        """Apply `desired` (all owned objects of this cluster, or of `scope` workloads).

        `protect`: workloads whose live objects prune must leave alone even though they
        are not desired now (invalid in this commit: keep the last good state).
        The decisions are `fleet.sync.plan_sync`'s; this only carries them out.
        """
        desired = list(desired)
        plan = plan_sync(desired, self.live, prune=prune, allow_empty=allow_empty,
                         scope=scope, hold=frozenset(protect or ()))
        if plan.unchanged:
            # What needs no write is still what we want: the reference drift is read
            # against. A new adapter (a reconnect, a restart) whose first pass found
            # everything as wanted would otherwise see an edit's event as no drift,
            # and correct it only at the next resync.
            same = set(plan.unchanged)
            for obj in desired:
                if (key := obj_key(obj)) in same:
                    self.desired[key] = for_existing(stamp(obj))
        return await self.execute(plan)

    async def execute(self, plan: SyncPlan) -> ApplyResult:
        """Carry out a `SyncPlan`: Namespaces, then each workload's objects in order
        (workloads in parallel), then the prune the failures leave (`prune_after`)."""
        with count_calls() as calls:
            result = ApplyResult(plan=plan)
            result.workloads.update((obj_key(o), workload_of(o)) for o in plan.apply)
            result.workloads.update(plan.prune)
            for key in plan.unchanged:
                result.unchanged.append(key)
            # Namespaces first (everything else lands in them), in parallel among
            # themselves, results kept in the plan's order.
            await self._apply_groups({f"{i:08d}": [ns] for i, ns in
                                      enumerate(plan.namespaces)}, result)
            await self._apply_groups(plan.by_workload(), result)
            doomed = plan.prune_after(result.workloads.get(k) for k, _e in result.failed)
            if doomed is not None:  # one failed object does not freeze the cluster
                if plan.refused is not None and doomed:
                    result.prune_refused = plan.refused
                elif doomed:
                    await self._prune(list(doomed), result)
        result.api_calls = calls[0]
        return result

    async def _apply_groups(self, groups: dict[str, list[JSON]], result: ApplyResult) -> None:
        """Workloads in parallel (a round trip each is latency, not work), each one's
        objects in order; results merged in workload order, so they stay deterministic."""
        parts = {wl: ApplyResult() for wl in groups}
        limiter = anyio.CapacityLimiter(self.concurrency)

        async def apply_group(wl: str) -> None:
            async with limiter:
                for obj in groups[wl]:
                    await self._apply_into(obj, parts[wl])

        async with anyio.create_task_group() as tg:
            for wl in sorted(groups):
                tg.start_soon(apply_group, wl)
        for wl in sorted(parts):
            result.applied += parts[wl].applied
            result.recreated += parts[wl].recreated
            result.failed += parts[wl].failed

    async def _apply_into(self, obj: JSON, result: ApplyResult) -> None:
        key = obj_key(obj)
        try:
            recreated = await self._apply_one(key, obj)
            (result.recreated if recreated else result.applied).append(key)
        except ClusterError as e:
            result.failed.append((key, e))

    async def _fence(self, obj: JSON | None = None) -> JSON | None:
        """Refuse to write unless we lead and the Lease still names us at our generation.

        The generation is read from the Lease (`lease_check`), in the controller's own
        namespace, never from the objects we write: anyone who may edit a Deployment
        could set its `aifleet.dev/lease-generation` annotation. The annotation is still
        stamped (ours wins, server-side apply with force) to say who wrote last."""
        if not self.may_write():
            raise Fenced("not the leader (or, with --shards, not this cluster's shard "
                         "holder): write refused", cluster=self.client.name)
        if self.generation is None:
            return obj
        if self.lease_check is not None:
            why = await self.lease_check()
            if why is not None:
                raise Fenced(f"write refused: {why}", cluster=self.client.name)
        if obj is None:
            return None
        meta = dict(obj["metadata"])
        meta["annotations"] = {**meta.get("annotations", {}),
                               GENERATION_ANNOTATION: str(self.generation)}
        return {**obj, "metadata": meta}

    async def _apply_one(self, key: ObjKey, obj: JSON) -> bool:
        rtype = type_of(obj)
        before = self.desired.get(key)
        # Create-only fields (Kueue's `suspend`) are sent on create only, never compared
        # for drift (`fleet.render.keys.CREATE_ONLY`).
        reference = for_existing(obj)
        self.desired[key] = reference
        self._writing.add(key)  # from here until the response: its events are not drift
        try:
            fenced = await self._fence(reference if key in self.live else obj)
            assert fenced is not None
            try:
                live = await self._patch(rtype, fenced)
                recreated = False
            except Invalid as e:
                if obj.get("kind") != "Job" or key not in self.live or \
                        not _only_immutable(e):
                    raise
                if not recreate_allowed(obj):
                    # The running Job stays as it is, and stays the reference for drift:
                    # what the server refused is not drift of what runs.
                    if before is None:
                        self.desired.pop(key, None)
                    else:
                        self.desired[key] = before
                    refused = ", ".join(sorted({str(c.get("field")) for c in e.causes
                                                if isinstance(c, dict) and c.get("field")}))
                    raise RecreateNeeded(
                        f"Job {key[2]}/{key[3]}: {refused or 'its spec'} cannot change while "
                        "it runs; a re-create is needed and recreate is `never`, so the "
                        "running Job is kept (set spec.recreate: onChange to replace it)",
                        cluster=self.client.name, status=422, causes=e.causes) from e
                # A Job's template, selector and completions are immutable: replace it.
                await self._delete(key)
                self.desired[key] = reference  # the delete forgot it; what we want now
                created = await self._fence(obj)  # created again: create-only fields too
                assert created is not None
                live = await self._patch(rtype, created)
                recreated = True
        finally:
            self._writing.discard(key)
        if not is_older(live, self.live.get(key)):  # events may have brought a newer one
            self.live[key] = slim_live(live)
        current = self.live[key]
        fields = tuple(diff(reference, current))
        if fields:  # changed again while our write was in flight: that is drift
            self._report(key, fields)
        else:
            self._reported.pop(key, None)
            self._clean[key] = (reference, _rv(current))
        return recreated

    async def _patch(self, rtype: ResourceType, obj: JSON) -> JSON:
        meta = obj["metadata"]
        return await self.client.request(
            "PATCH", rtype.item(meta["name"], meta.get("namespace")), verb="apply",
            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=obj,
            content_type=APPLY_PATCH)

    async def _delete(self, key: ObjKey) -> None:
        await self._fence()
        api_version, kind, namespace, name = key
        rtype = type_of({"apiVersion": api_version, "kind": kind})
        uid = _uid(self.live.get(key) or {})
        if uid:
            self._gone.add(uid)
        try:
            await self.client.request(
                "DELETE", rtype.item(name, namespace or None), verb="delete",
                body={"apiVersion": "v1", "kind": "DeleteOptions",
                      "propagationPolicy": "Background"})
        except NotFound:
            self._gone.discard(uid)  # already gone is what we wanted
        except ClusterError:
            self._gone.discard(uid)
            raise
        self.live.pop(key, None)
        self.desired.pop(key, None)
        self._clean.pop(key, None)

    async def _prune(self, doomed: list[ObjKey], result: ApplyResult) -> None:
        errors = await self._delete_all(doomed)
        for key in doomed:
            err = errors.get(key)
            if err is None:
                result.pruned.append(key)
            else:
                result.failed.append((key, err))

    async def _delete_all(self, keys: list[ObjKey]) -> dict[ObjKey, ClusterError]:
        """Delete these objects, `concurrency` at a time; the errors by key."""
        errors: dict[ObjKey, ClusterError] = {}
        limiter = anyio.CapacityLimiter(self.concurrency)

        async def delete(key: ObjKey) -> None:
            async with limiter:
                try:
                    await self._delete(key)
                except ClusterError as e:
                    errors[key] = e

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(delete, key)
        return errors

    async def delete_workloads(self, workloads: set[str]) -> list[ObjKey]:
        """Delete every owned object of these workloads (stale copies after failover)."""
        doomed = [k for k in self.owned()
                  if k[1] != "Namespace" and workload_of(self.live[k]) in workloads]
        for key in doomed:
            await self._delete(key)
        return doomed

    # ------------------------------------------------------------------ drift

    def _report(self, key: ObjKey, fields: Sequence[DriftedField]) -> None:
        self._clean.pop(key, None)
        seen = tuple((f.path, repr(f.live)) for f in fields)
        if self._reported.get(key) == seen:
            return  # the same drift seen again on an unrelated event
        self._reported[key] = seen
        heal = self.self_heal and key not in self._healing and not self.hold_heal(
            workload_of(self.desired.get(key) or self.live.get(key) or {}))
        report = DriftReport(key, workload_of(self.desired.get(key) or {}), tuple(fields),
                             heal, self._clock())
        self.drift_log.append(report)
        del self.drift_log[:-200]
        if self._on_drift is not None:
            self._on_drift(report)
        if heal:
            self._healing.add(key)
            task = asyncio.get_running_loop().create_task(self._heal(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _heal(self, key: ObjKey) -> None:
        try:
            count, last = self._heal_backoff.get(key, (0, 0.0))
            now = self._clock()
            # Back off per object if it keeps drifting (another controller fighting us).
            if now - last < 60.0 and count > 0:
                await self._sleep(min(30.0, 0.5 * 2 ** min(count, 6)))
            await self._heal_bucket.acquire()
            want = self.desired.get(key)
            live = self.live.get(key)
            if want is None:
                return
            if live is not None and not diff(want, live):
                return  # healed in the meantime
            await self._apply_one(key, want)
            self.corrections += 1
            self._heal_backoff[key] = (count + 1 if now - last < 60.0 else 1, self._clock())
        except ClusterError:
            # The next event (reported again) or the periodic reconcile tries again.
            self._reported.pop(key, None)
        finally:
            self._healing.discard(key)

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _only_immutable(e: Invalid) -> bool:
    """Whether a 422 refused nothing but changes to immutable fields: only then does
    re-creating the Job help; any other cause would fail the re-create too, after the
    running Job was already deleted."""
    texts = [str(c.get("message", "")) for c in e.causes if isinstance(c, dict)] or [e.message]
    return all("field is immutable" in t for t in texts)


def compare_resource_versions(a: str, b: str) -> int | None:
    """-1, 0 or 1 as resourceVersion `a` is older than, the same as or newer than `b`;
    None where either is not a resourceVersion that compares (a positive integer in
    decimal without leading zeros, as KEP-5504 defines them for every object of one
    resource: longer is newer, then digit by digit)."""
    for rv in (a, b):
        if not rv or not rv.isdigit() or not rv.isascii() or rv[0] == "0":
            return None
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    return (a > b) - (a < b)


GENERATION_KINDS = frozenset({("apps", "Deployment"), ("batch", "Job"),
                              ("jobset.x-k8s.io", "JobSet")})
"""(API group, kind) of the kinds we apply whose `metadata.generation` rises with every
change to anything but metadata and status: the API server's update strategies for
Deployments (which count annotations too) and Jobs, and every custom resource with a
status subresource (JobSet). Two versions of one of them with the same metadata differ
in status at most."""

_VOLATILE_META = frozenset({"resourceVersion", "managedFields"})


def status_only(old: JSON, new: JSON) -> bool:
    """Whether `new` differs from `old` (versions of one object, slimmed) in status
    alone, as far as drift can see: a kind of `GENERATION_KINDS`, the same apiVersion,
    and metadata equal but for resourceVersion and managedFields, `generation`
    included (set in both). Then whatever `fleet.drift.diff` compares (metadata and
    what is not status) is unchanged, so its answer is too; the managers it would name
    differ only for drift, and a version with drift is never the base (`_clean`).
    Measured in `bench.scale`: the simulated controllers' status writes (3 per
    Deployment, 2 per Job) were most of the owned objects' watch events, and the walk
    of the desired manifest on each ~7% of a replica's CPU during a cold start."""
    version = new.get("apiVersion")
    if version != old.get("apiVersion") or not isinstance(version, str):
        return False
    group = version.rpartition("/")[0]
    if (group, new.get("kind")) not in GENERATION_KINDS:
        return False
    a, b = old.get("metadata"), new.get("metadata")
    if not isinstance(a, dict) or not isinstance(b, dict) or \
            a.get("generation") is None or a.get("generation") != b.get("generation"):
        return False
    keys = 0
    for k, v in b.items():
        if k in _VOLATILE_META:
            continue
        keys += 1
        if k not in a or a[k] != v:
            return False
    return keys == sum(1 for k in a if k not in _VOLATILE_META)


def is_older(obj: JSON, than: JSON | None) -> bool:
    """Whether `obj` is an older version (of this object, or of an incarnation that was
    replaced) than `than`, by resourceVersion; False where they do not compare."""
    if than is None:
        return False
    return compare_resource_versions(_rv(obj), _rv(than)) == -1


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _uid(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")
