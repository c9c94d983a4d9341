"""The shard Leases in the home cluster: read them, hold them, let one go, ask for one.

One coordination.k8s.io/v1 Lease per shard, `aifleet-shard-<i>` in the controller's
namespace (beside the leader's). Holding one is exactly holding the leader Lease
(`clusters.leader.LeaderElector`, with the Lease's name): renewed every third of its
duration, taken over only once expired (its generation, `spec.leaseTransitions`, bumped),
and the fence of every write to a cluster of that shard (`confirm`).

Every shard Lease carries the shard count of its holder (`aifleet.dev/shards`): while
a live one says another count (a rollout changing `--shards`: the old and the new
replicas split the clusters differently, so a cluster could have one writer under each
split), a replica holds no shard at all; the old replicas keep theirs until they stop.
The Leases are read with one list of the namespace, so a shard beyond this count (left
by a larger one) is seen too.

Two additions for balancing (decided by `fleet.shards.lease_moves`):
- `release` (`LeaderElector.release`): the holder empties `holderIdentity` (client-go's
  ReleaseOnCancel does the same), so the Lease is free at once instead of after its
  duration; a wanted mark is kept, so the asker takes it;
- `want`: a replica below its share writes the annotation `aifleet.dev/shard-wanted-by`
  ("IDENTITY TIME") on a Lease someone else holds; the holder reads it at its next
  round. The holder's renews keep it (they run from the keeper's thread, between the
  holder's rounds: `renew`); a mark older than the Lease's duration is ignored, so it
  lasts a Lease duration unless the asker repeats it. A take (a new generation) drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from clusters.client import JSON, LEASE, KubeClient
from clusters.errors import ClusterError, Conflict, NotFound
from clusters.leader import LeaderElector, _fmt, _parse
from fleet.shards import LeaseView, lease_name, shard_index

log = structlog.get_logger()

WANTED_BY = "aifleet.dev/shard-wanted-by"
SHARD_COUNT = "aifleet.dev/shards"
"""On every shard Lease: the shard count its holder splits the clusters by."""


def _now() -> datetime:
    return datetime.now(UTC)


class ShardLease(LeaderElector):
    """One shard's Lease, held like the leader's (renewed by the keeper likewise:
    `LeaderElector.renew`)."""

    LOST = "shard_lease_lost"
    RENEW_FAILED = "shard_renew_failed"

    def __init__(self, client: KubeClient, identity: str, shard: int, *, count: int,
                 namespace: str, duration: float, margin: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(client, identity, namespace=namespace, duration=duration,
                         margin=margin, name=lease_name(shard), clock=clock)
        self.shard = shard
        self.count = count

    def _lease(self, current: JSON | None, transitions: int) -> JSON:
        body = super()._lease(current, transitions)
        body["metadata"]["annotations"] = {SHARD_COUNT: str(self.count)}
        wanted = _annotations(current or {}).get(WANTED_BY)
        if wanted and transitions == int(((current or {}).get("spec") or {}).get(
                "leaseTransitions") or 0):
            # a renew keeps an asker's mark for the holder's round to read: renewed
            # from another thread (`clusters.leasekeeper`), it would otherwise erase
            # marks before that round saw them (a stale one is ignored: `view_of`)
            body["metadata"]["annotations"][WANTED_BY] = wanted
        return body

    @property
    def keeper_key(self) -> int:
        return self.shard

    def log_fields(self) -> dict[str, object]:
        return {"shard": self.shard}

    RELEASED = "shard_released"
    RELEASE_FAILED = "shard_release_failed"
    """What `release` (`LeaderElector.release`) logs."""


def view_of(shard: int, lease: JSON | None, now: datetime, default_duration: float
            ) -> LeaseView:
    """A Lease as `fleet.shards.lease_moves` reads it: its holder while valid, a recent
    wanted mark."""
    if lease is None:
        return LeaseView(shard, None)
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or None
    if not _valid(lease, now, default_duration):
        holder = None
    wanted = _annotations(lease).get(WANTED_BY, "")
    who, _, when = str(wanted).partition(" ")
    at = _parse(when)
    duration = float(spec.get("leaseDurationSeconds") or default_duration)
    fresh = at is not None and now <= at + timedelta(seconds=duration)
    return LeaseView(shard, holder, who if who and fresh else None)


def _annotations(lease: JSON) -> dict[str, str]:
    return dict((lease.get("metadata") or {}).get("annotations") or {})


def _valid(lease: JSON, now: datetime, default_duration: float) -> bool:
    expiry = expiry_of(lease, default_duration)
    return expiry is not None and now <= expiry[1]


def expiry_of(lease: JSON, default_duration: float) -> tuple[str, datetime] | None:
    """(holder, when its hold ends: renewTime + leaseDurationSeconds) of a Lease that
    names a holder, expired or not; None for a free one."""
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime"))
    holder = spec.get("holderIdentity")
    if not holder or renewed is None:
        return None
    duration = float(spec.get("leaseDurationSeconds") or default_duration)
    return str(holder), renewed + timedelta(seconds=duration)


@dataclass(frozen=True, slots=True)
class ShardLeases:
    views: list[LeaseView]
    """Shards 0..count-1, as `lease_moves` reads them."""
    foreign: list[str]
    """Live shard Leases held under another shard count ("NAME (N shards, HOLDER)"):
    replicas that split the clusters differently are running (a rollout changing
    --shards). Two splits would give a cluster two writers, so nobody of this count
    holds a shard while one is live."""
    holds: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    """Shard -> (the holder its Lease names, when that hold ends or ended), for the
    Leases of this count that name one (live or expired): when to look again, and
    whose shard a take is."""
    read_at: datetime | None = None
    """When they were read (this replica's clock)."""


async def read_views(client: KubeClient, namespace: str, shards: int,
                     default_duration: float,
                     now: Callable[[], datetime] = _now, *,
                     quiet: bool = False) -> ShardLeases | None:
    """Every shard Lease as it is now (one list of the namespace's Leases), or None when
    they cannot be read (decide nothing on a partial view; `quiet`: not logged, a
    look between rounds whose round says it)."""
    try:
        listed = await client.request("GET", LEASE.collection(namespace), verb="list",
                                      retry=False)
    except (ClusterError, TimeoutError) as e:
        if not quiet:
            log.warning("shard_leases_unreadable", error=str(e))
        return None
    at = now()
    by_shard: dict[int, JSON] = {}
    foreign: list[str] = []
    for lease in listed.get("items") or []:
        name = str((lease.get("metadata") or {}).get("name") or "")
        index = shard_index(name)
        if index is None:
            continue
        count = _annotations(lease).get(SHARD_COUNT)
        if _valid(lease, at, default_duration) and (index >= shards or count != str(shards)):
            foreign.append(f"{name} ({count or '?'} shards, "
                           f"{(lease.get('spec') or {}).get('holderIdentity')})")
        if index < shards:
            by_shard[index] = lease
    holds = {s: end for s, lease in by_shard.items()
             if (end := expiry_of(lease, default_duration)) is not None}
    return ShardLeases([view_of(s, by_shard.get(s), at, default_duration)
                        for s in range(shards)], sorted(foreign), holds, at)


async def want(client: KubeClient, namespace: str, shard: int, identity: str) -> None:
    """Ask the holder of `shard` to let it go (the annotation; a lost race is fine: the
    asker asks again next round)."""
    path = LEASE.item(lease_name(shard), namespace)
    try:
        lease = await client.request("GET", path, verb="get", retry=False)
        meta = dict(lease.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               WANTED_BY: f"{identity} {_fmt(_now())}"}
        await client.request("PUT", path, verb="update", body={**lease, "metadata": meta},
                             retry=False)
        log.info("shard_wanted", shard=shard, identity=identity)
    except (NotFound, Conflict):
        return
    except (ClusterError, TimeoutError) as e:
        log.warning("shard_want_failed", shard=shard, error=str(e))
