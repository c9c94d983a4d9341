"""Leader election on a coordination.k8s.io/v1 Lease, with fencing.

One controller is active; the others wait. The Lease lives in the home cluster
(`clusters.home`: a management cluster, or a member named with `--leader-cluster`),
in the controller's namespace (`clusters.namespace`). Taking it over bumps
`spec.leaseTransitions`, the *generation* every write of this leader carries
(annotation `aifleet.dev/lease-generation`).

Two guards against a paused old leader (GC pause, SIGSTOP, a frozen VM) undoing the new
leader's work:
- a leader acts only while its own renew deadline (last successful renew + duration -
  margin, on the monotonic clock) is in the future: after a pause the clock has moved
  on, so it stops before writing;
- a write goes out only while the Lease itself still names this leader at its
  generation (`confirm`, `fleet.safety.fence_refusal`): read from the Lease at most every
  `confirm_every` seconds of the monotonic clock (a renew counts as a read), so after
  a pause it is read again. The generation is never taken from the written objects:
  their `aifleet.dev/lease-generation` annotation is tenant-writable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio
import structlog

from clusters.client import JSON, LEASE, NAMESPACE, KubeClient
from clusters.errors import AlreadyExists, ClusterError, Conflict, Forbidden, NotFound
from fleet.safety import fence_refusal

log = structlog.get_logger()

LEASE_NAME = "aifleet-controller"

RenewOutcome = Literal["renewed", "lost", "failed", "lapsed"]


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        try:
            return datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            return None


async def ensure_namespace(client: KubeClient, name: str) -> None:
    """Create the controller's own namespace (where the Lease is) if it is not there.
    Forbidden is fine: installed by the Helm chart, the controller may only touch its
    own namespace (a Role, no cluster-wide rights), which the install created; if it
    is really missing, the write that follows says NotFound."""
    with contextlib.suppress(AlreadyExists, Forbidden):
        await client.request("POST", NAMESPACE.collection(), verb="create", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


@dataclass(frozen=True, slots=True)
class Hold:
    """What a holder knows of its hold, as one immutable value: a writer's fence reads
    one of them, never a mix of two (a shard Lease is renewed from another thread,
    `clusters.leasekeeper`, while the event loop's writers read it)."""

    generation: int = 0
    """The Lease's `leaseTransitions` when we last won or renewed it."""
    deadline: float = 0.0
    """Act only before this (monotonic): last successful renew + duration - margin."""
    confirmed: tuple[float, int] | None = None
    """(when, generation) the Lease last named us: a renew, or a `confirm` read."""
    renewed: float | None = None
    """When (monotonic) the last successful take or renew started."""
    term: int = 0
    """Bumped each time the hold is dropped (lost, fenced, let go): a renew that
    started before the drop must not bring it back (`LeaderElector._commit`)."""


class LeaderElector:
    LOST = "leader_lease_lost"
    RENEW_FAILED = "leader_renew_failed"
    """What `renew` logs (a shard Lease says so: `clusters.shardlease`)."""

    def __init__(self, client: KubeClient, identity: str, *, namespace: str,
                 duration: float = 15.0,
                 renew_every: float | None = None, margin: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, name: str = LEASE_NAME) -> None:
        self.client = client
        self.identity = identity
        self.name = name
        """The Lease: the leader's, or a shard's (`clusters.shardlease`)."""
        self.namespace = namespace
        """Where the Lease is: the controller's namespace (`clusters.namespace`)."""
        self.duration = duration
        self.renew_every = renew_every or duration / 3
        self.margin = margin
        self._hold = Hold()
        self._swapping = threading.Lock()
        """Held only to replace `_hold` (read-modify-write); readers take the reference."""
        self.confirm_every = min(1.0, self.renew_every)
        self.retry_every = 1.0
        """Seconds between attempts while the Lease cannot be renewed or taken."""
        self.look_every = LOOK_EVERY
        """Seconds between looks at a Lease another replica holds (`next_attempt`)."""
        self._clock = clock
        self._confirming = anyio.Lock()
        self.expires_in: float | None = None
        """Seconds until another holder's Lease, as last read, expires (None: no other
        live holder): the next try is then, not a whole `renew_every` later."""
        self.kept: Callable[[], bool] = lambda: False
        """True while a keeper renews this Lease from its own thread
        (`clusters.leasekeeper`): `run` then only takes it, never renews it (two
        writers of one Lease would conflict)."""

    @property
    def keeper_key(self) -> int | str:
        """How the keeper counts this Lease's renewals: the leader's by its name."""
        return self.name

    def log_fields(self) -> dict[str, object]:
        """What names this Lease in the keeper's and `renew`'s log lines."""
        return {"lease": self.name}

    @property
    def hold(self) -> Hold:
        return self._hold

    @property
    def generation(self) -> int:
        return self._hold.generation

    @generation.setter
    def generation(self, value: int) -> None:
        with self._swapping:
            self._hold = replace(self._hold, generation=value)

    @property
    def _deadline(self) -> float:
        return self._hold.deadline

    @_deadline.setter
    def _deadline(self, value: float) -> None:
        if value <= 0.0:
            self._drop()
            return
        with self._swapping:
            self._hold = replace(self._hold, deadline=value)

    @property
    def _confirmed(self) -> tuple[float, int] | None:
        return self._hold.confirmed

    @property
    def is_leader(self) -> bool:
        return self._clock() < self._hold.deadline

    def _drop(self) -> None:
        """Stop acting on the Lease at once (a new term: no renew begun before counts)."""
        with self._swapping:
            self._hold = replace(self._hold, deadline=0.0, confirmed=None,
                                 term=self._hold.term + 1)

    def _commit(self, term: int, started: float, generation: int) -> bool:
        """A renew that started at `started` (monotonic) succeeded: hold on, unless the
        hold was dropped since the renew began (`term` moved on). False then."""
        with self._swapping:
            if self._hold.term != term:
                return False
            self._hold = replace(self._hold, generation=generation,
                                 deadline=started + self.duration - self.margin,
                                 confirmed=(started, generation), renewed=started)
            return True

    async def confirm(self) -> str | None:
        """None while the Lease names us at our generation, else why not: the fence of
        every write. Reads the Lease when the last confirmation is older than
        `confirm_every` (one read at a time; concurrent writers share it)."""
        async with self._confirming:
            started = self._clock()
            hold = self._hold
            if hold.confirmed is not None and hold.confirmed[1] == hold.generation and \
                    started - hold.confirmed[0] < self.confirm_every:
                return None
            try:
                lease = await self.client.request(
                    "GET", LEASE.item(self.name, self.namespace), verb="get", retry=False)
            except ClusterError as e:
                log.warning("leader_lease_unreadable", identity=self.identity, error=str(e))
                return fence_refusal(hold.generation, None, None, self.identity)
            except Exception as e:  # noqa: BLE001 - a closed client: no Lease read, no write
                log.warning("leader_lease_unreadable", identity=self.identity,
                            error=f"{type(e).__name__}: {e}")
                return fence_refusal(hold.generation, None, None, self.identity)
            spec = lease.get("spec") or {}
            transitions = spec.get("leaseTransitions")
            why = fence_refusal(hold.generation, spec.get("holderIdentity"),
                                int(transitions) if isinstance(transitions, int) else None,
                                self.identity)
            if why is None:
                with self._swapping:  # unless the hold changed meanwhile
                    if self._hold.term == hold.term and \
                            self._hold.generation == hold.generation:
                        self._hold = replace(self._hold,
                                             confirmed=(started, hold.generation))
            else:
                self._drop()  # deposed: stop acting at once
                log.warning("leader_fenced", identity=self.identity, reason=why)
            return why

    async def try_acquire_or_renew(self) -> bool:
        """One round: take or keep the lease if we may. True while we hold it."""
        started = self._clock()
        path = LEASE.item(self.name, self.namespace)
        try:
            lease = await self.client.request("GET", path, verb="get", retry=False)
        except NotFound:
            await ensure_namespace(self.client, self.namespace)
            body = self._lease(None, transitions=1)
            try:
                await self.client.request("POST", LEASE.collection(self.namespace),
                                          verb="create", body=body, retry=False)
            except (AlreadyExists, Conflict):
                return False
            return self._won(started, 1)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        transitions = int(spec.get("leaseTransitions") or 0)
        renewed = _parse(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        now = _now()
        expired = renewed is None or now > renewed + timedelta(seconds=duration)
        self.expires_in = None if expired or renewed is None or not holder or \
            holder == self.identity else \
            (renewed + timedelta(seconds=duration) - now).total_seconds()
        # An empty holder is a Lease let go: free ("If empty, no one owns this lease
        # and all callers may acquire": client-go tools/leaderelection/resourcelock/
        # interface.go, LeaderElectionRecord.HolderIdentity).
        if holder and holder != self.identity and not expired:
            self._drop()
            return False
        if holder != self.identity:
            transitions += 1
        body = self._lease(lease, transitions)
        try:
            await self.client.request("PUT", path, verb="update", body=body, retry=False)
        except (Conflict, NotFound):
            self._drop()
            return False
        return self._won(started, transitions)

    async def renew(self, client: KubeClient) -> RenewOutcome:
        """Renew the Lease we hold, through `client` (the keeper's own, from its
        thread), at our generation: never take it. "renewed"; "lost" (it names someone
        else or another generation now, or the hold was dropped meanwhile: a release,
        a fence); "failed" (unreadable or unwritable: tried again soon, and the hold
        lapses at its deadline if that goes on); "lapsed" (not held: the event loop's
        `run` or round re-takes it, if it may)."""
        hold = self.hold
        started = self._clock()
        if started >= hold.deadline:
            return "lapsed"
        path = LEASE.item(self.name, self.namespace)
        for _ in range(2):  # a Conflict (an asker's mark written meanwhile): once more
            try:
                lease = await client.request("GET", path, verb="get", retry=False)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity or \
                        int(spec.get("leaseTransitions") or 0) != hold.generation:
                    self._drop()
                    log.warning(self.LOST, **self.log_fields(), identity=self.identity,
                                holder=spec.get("holderIdentity"))
                    return "lost"
                await client.request("PUT", path, verb="update",
                                     body=self._lease(lease, hold.generation), retry=False)
            except Conflict:
                continue
            except NotFound:
                self._drop()
                return "lost"
            except (ClusterError, TimeoutError) as e:
                log.warning(self.RENEW_FAILED, **self.log_fields(), error=str(e))
                return "failed"
            return "renewed" if self._commit(hold.term, started, hold.generation) \
                else "lost"
        return "failed"

    RELEASED = "leader_lease_released"
    RELEASE_FAILED = "leader_release_failed"

    async def release(self, client: KubeClient | None = None, *,
                      duration: int | None = None) -> bool:
        """Let the Lease go now, so another replica takes it at once instead of after
        its duration: `holderIdentity` emptied (free: see `try_acquire_or_renew`),
        `renewTime` now, `leaseTransitions` kept (the taker bumps it). `duration`: the
        `leaseDurationSeconds` to leave; a stop leaves 1, as client-go's ReleaseOnCancel
        does (`tools/leaderelection/leaderelection.go`, `release`), so a reader that
        does not take an empty holder for free still sees it lapse within a second;
        None keeps it (a shard let go to an asker: its mark stays fresh as long).

        Stops acting on the Lease first: no write of ours goes out after this starts.
        Written only while the Lease still names us at our generation, and only over
        the version just read (`resourceVersion`: a Conflict is read again), so a
        Lease another replica took meanwhile is never cleared. True when let go; any
        failure only logs (the Lease then lapses)."""
        hold = self._hold
        self._drop()
        client = client or self.client
        path = LEASE.item(self.name, self.namespace)
        for _ in range(2):  # a Conflict (a renew, an asker's mark): read it again
            try:
                lease = await client.request("GET", path, verb="get", retry=False)
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != self.identity or \
                        int(spec.get("leaseTransitions") or 0) != hold.generation:
                    return False  # not ours (any more): never touched
                now = _fmt(_now())
                spec.update(holderIdentity="", renewTime=now)
                if duration is not None:
                    spec.update(leaseDurationSeconds=duration, acquireTime=now)
                await client.request("PUT", path, verb="update",
                                     body={**lease, "spec": spec}, retry=False)
            except Conflict:
                continue
            except NotFound:
                return False
            except Exception as e:  # noqa: BLE001 - a closed client too: it lapses
                log.warning(self.RELEASE_FAILED, **self.log_fields(),
                            error=f"{type(e).__name__}: {e}")
                return False
            log.info(self.RELEASED, **self.log_fields(), identity=self.identity,
                     generation=hold.generation)
            return True
        log.warning(self.RELEASE_FAILED, **self.log_fields(), error="conflict twice")
        return False

    def _won(self, started: float, transitions: int) -> bool:
        if transitions != self.generation:
            log.info("leader_elected", identity=self.identity, generation=transitions)
        with self._swapping:
            self._hold = replace(self._hold, generation=transitions,
                                 deadline=started + self.duration - self.margin,
                                 confirmed=(started, transitions), renewed=started)
        return True

    def _lease(self, current: JSON | None, transitions: int) -> JSON:
        now = _fmt(_now())
        meta: JSON = {"name": self.name, "namespace": self.namespace}
        cur_spec: JSON = (current or {}).get("spec") or {}
        if current is not None:
            meta["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        ours = current is not None and cur_spec.get("holderIdentity") == self.identity
        spec: JSON = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "acquireTime": cur_spec.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": meta, "spec": spec}

    async def run(self, client_of: Callable[[], KubeClient | None] | None = None) -> None:
        """Renew (or try to take) the Lease every `renew_every` until cancelled.

        `client_of` gives the home cluster's client anew each time: the home may be
        disconnected (a member whose Cluster file was removed) or reconnected under a new
        client. Without one the Lease is not renewed and leadership lapses at its
        deadline; no failure to renew ever ends the loop (it is the controller's)."""
        while True:
            client = client_of() if client_of is not None else self.client
            ok = False
            if client is not None and self.is_leader and self.kept():
                self.client = client
                ok = True  # held: the keeper renews it, off this loop
                self.expires_in = None
            elif client is not None:
                self.client = client
                try:
                    await self.try_acquire_or_renew()
                    ok = True
                except ClusterError as e:
                    log.warning("leader_renew_failed", identity=self.identity, error=str(e))
                except Exception as e:  # noqa: BLE001 - a closed client, a broken session
                    log.warning("leader_renew_failed", identity=self.identity,
                                error=f"{type(e).__name__}: {e}")
            else:
                log.warning("leader_home_unavailable", identity=self.identity)
            await anyio.sleep(next_attempt(self.renew_every, self.retry_every, ok=ok,
                                           expires_in=self.expires_in if ok else None,
                                           look_every=self.look_every))


LOOK_EVERY = 2.0
"""Seconds between a candidate's looks at a Lease another replica holds: one let go
(`LeaderElector.release`, a peer's clean stop) is taken within this, not at the next
renew period. client-go's candidates look every RetryPeriod (2 s by default)."""

EXPIRY_SLACK = 0.05
"""Seconds after a Lease's expiry (renewTime + leaseDurationSeconds) to try it: it is
expired only strictly after (`try_acquire_or_renew`)."""


def next_attempt(renew_every: float, retry_every: float, *, ok: bool,
                 expires_in: float | None, look_every: float | None = None) -> float:
    """Seconds until the next try of a Lease. Every `renew_every` (a third of the
    duration); after a failure sooner, `retry_every` (client-go's RetryPeriod: a home
    cluster that answers again is led again within a second, not a whole renew
    period); and while another holder's Lease runs, just after it would expire
    (`expires_in` + `EXPIRY_SLACK`), so a dead holder's Lease is taken when it lapses,
    not up to a whole period later, and at least every `look_every` (a live holder
    may let it go on a clean stop). client-go's candidates poll every RetryPeriod
    (with jitter) and count the duration from when they saw the record change
    (observedTime: staging/src/k8s.io/client-go/tools/leaderelection/
    leaderelection.go, isLeaseValid); this elector counts it from the Lease's
    renewTime, as `try_acquire_or_renew` always has, so the replicas' clocks are
    assumed in step (NTP)."""
    wait = renew_every if ok else min(renew_every, retry_every)
    if expires_in is not None:
        wait = min(wait, max(0.0, expires_in) + EXPIRY_SLACK)
        if look_every is not None:
            wait = min(wait, look_every)
    return wait
