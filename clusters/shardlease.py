"""The shard Leases in the home cluster: read them, hold them, let one go, ask for one.

One coordination.k8s.io/v1 Lease per shard, `aifleet-shard-<i>` in `aifleet-system`
(beside the leader's). Holding one is exactly holding the leader Lease
(`clusters.leader.LeaderElector`, with the Lease's name): renewed every third of its
duration, taken over only once expired (its generation, `spec.leaseTransitions`, bumped),
and the fence of every write to a cluster of that shard (`confirm`).

Two additions, both for balancing (decided by `fleet.shards.lease_moves`):
- `release`: the holder empties `holderIdentity` (client-go's ReleaseOnCancel does the
  same), so the Lease is free at once instead of after its duration;
- `want`: a replica below its share writes the annotation `aifleet.dev/shard-wanted-by`
  ("IDENTITY TIME") on a Lease someone else holds; the holder reads it at its next
  round. The holder's renew rewrites the Lease without it, so a mark lasts at most one
  renew unless the asker repeats it; a mark older than the Lease's duration is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from clusters.client import JSON, LEASE, KubeClient
from clusters.errors import ClusterError, Conflict, NotFound
from clusters.leader import LEASE_NAMESPACE, LeaderElector, _fmt, _parse
from fleet.shards import LeaseView, lease_name

log = structlog.get_logger()

WANTED_BY = "aifleet.dev/shard-wanted-by"


def _now() -> datetime:
    return datetime.now(UTC)


class ShardLease(LeaderElector):
    """One shard's Lease, held like the leader's."""

    def __init__(self, client: KubeClient, identity: str, shard: int, *,
                 duration: float, margin: float) -> None:
        super().__init__(client, identity, duration=duration, margin=margin,
                         name=lease_name(shard))
        self.shard = shard

    async def release(self) -> bool:
        """Let the Lease go now (holder emptied; a wanted mark kept, so the asker takes
        it). Stops acting on it first: no write of ours goes out after this starts."""
        self._deadline = 0.0
        self._confirmed = None
        path = LEASE.item(self.name, LEASE_NAMESPACE)
        try:
            lease = await self.client.request("GET", path, verb="get", retry=False)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return False
            spec["holderIdentity"] = ""
            spec["renewTime"] = _fmt(_now())
            await self.client.request("PUT", path, verb="update",
                                      body={**lease, "spec": spec}, retry=False)
        except (ClusterError, TimeoutError) as e:
            log.warning("shard_release_failed", shard=self.shard, error=str(e))
            return False
        log.info("shard_released", shard=self.shard, identity=self.identity)
        return True


def view_of(shard: int, lease: JSON | None, now: datetime, default_duration: float
            ) -> LeaseView:
    """A Lease as `fleet.shards.lease_moves` reads it: its holder while valid, a recent
    wanted mark."""
    if lease is None:
        return LeaseView(shard, None)
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or None
    renewed = _parse(spec.get("renewTime"))
    duration = float(spec.get("leaseDurationSeconds") or default_duration)
    if renewed is None or now > renewed + timedelta(seconds=duration):
        holder = None
    wanted = ((lease.get("metadata") or {}).get("annotations") or {}).get(WANTED_BY, "")
    who, _, when = str(wanted).partition(" ")
    at = _parse(when)
    fresh = at is not None and now <= at + timedelta(seconds=duration)
    return LeaseView(shard, holder, who if who and fresh else None)


async def read_views(client: KubeClient, shards: int, default_duration: float,
                     now: Callable[[], datetime] = _now) -> list[LeaseView] | None:
    """Every shard Lease as it is now, or None when one cannot be read (decide nothing
    on a partial view)."""
    out: list[LeaseView] = []
    for shard in range(shards):
        try:
            lease = await client.request("GET", LEASE.item(lease_name(shard), LEASE_NAMESPACE),
                                         verb="get", retry=False)
        except NotFound:
            lease = None
        except (ClusterError, TimeoutError) as e:
            log.warning("shard_leases_unreadable", shard=shard, error=str(e))
            return None
        out.append(view_of(shard, lease, now(), default_duration))
    return out


async def want(client: KubeClient, shard: int, identity: str) -> None:
    """Ask the holder of `shard` to let it go (the annotation; a lost race is fine: the
    asker asks again next round)."""
    path = LEASE.item(lease_name(shard), LEASE_NAMESPACE)
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
