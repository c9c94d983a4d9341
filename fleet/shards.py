"""Shards: which replica reconciles which cluster, decided without talking to anyone.

With `fleet run --shards N` the fleet's clusters are split into N shards; each replica
holds a Lease per shard it owns (`aifleet-shard-<i>` in the home cluster) and writes
only to the clusters of those shards. Everything here is pure: the I/O (reading and
writing the Leases) is `controllers.runtime.shards`.

Which shard a cluster is in: rendezvous (highest random weight) hashing of the cluster
name over the shard ids (Thaler and Ravishankar, 1998). Each (cluster, shard) pair gets
a pseudo-random weight from SHA-256; the cluster goes to the shard of highest weight.
Growing from N to N+1 shards moves a cluster only when the new shard outbids every old
one, i.e. about 1/(N+1) of the clusters, and each of them moves *to the new shard*;
nothing moves between old shards (held by the property tests). A plain `hash % N`
would move about N/(N+1) of them. Python's `hash()` is salted per process, so SHA-256:
every replica, and every version of the controller, must agree.

Which replica holds which shard: `lease_moves`, one round's decision from the Leases as
read. A replica keeps what it holds, takes a shard whose Lease is free or expired while
it holds fewer than its fair share (`ceil(shards / replicas seen)`), and a replica
that holds two fewer than the most loaded holder, with nothing free, marks one of that
holder's shards as wanted; the holder lets it go at its next round if it still holds at
least two more than the wanter. Askers ask by their own preference (their rendezvous
weight of each shard), so several ask for different shards and get them in one round;
and a replica takes at most one free shard in its first round, so replicas started
together spread at once instead of one taking all and handing them back. A replica
started alone takes every shard from its second round, a second one gets half of them
back (a shard let go is left to the replica that asked for it), and holdings settle
within one of each other, without any shard ever being held by two. The replicas seen
are the live holders, the replicas that want a shard, and oneself.

Which placements a replica that does not lead writes: the leader's (`follow_plan`). Only
the leader plans for writing; every other replica overlays the leader's published
placements on its own plan (made for status), so two replicas never disagree about
where a workload runs.

What the leader sees of a cluster it does not connect to: its holder's publication
(`published_health`). A shard whose publication is missing or stale (no live holder,
or a holder that stopped refreshing it) says nothing about its clusters, so they are
`Unknown` with no unreachable time: placement keeps what runs there (a running
workload's Health filter fits until a failover grace that never starts counting) and
places nothing new there. Silence of a shard is never read as a cluster being away:
nothing fails over, moves or is deleted because a replica went quiet (docs/safety.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from fleet.capacity import CapacitySnapshot, ClusterHealth
from fleet.diagnostics import Diagnostic
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, FlavourUsage, Plan, Reason, WorkloadPlacement
from fleet.spec import FleetSpec

SHARD_LEASE_PREFIX = "aifleet-shard-"


def lease_name(shard: int) -> str:
    """The name of shard `shard`'s Lease: `aifleet-shard-<i>`."""
    return f"{SHARD_LEASE_PREFIX}{shard}"


def shard_index(name: str) -> int | None:
    """The shard of a Lease named `lease_name(i)`, else None."""
    rest = name.removeprefix(SHARD_LEASE_PREFIX)
    if rest == name or not rest.isdigit() or (len(rest) > 1 and rest[0] == "0"):
        return None
    return int(rest)


def weight(cluster: str, shard: int) -> int:
    """The rendezvous weight of `cluster` on `shard`: 64 bits of SHA-256."""
    digest = hashlib.sha256(f"{shard}\x00{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_of(cluster: str, shards: int) -> int:
    """The shard (0..shards-1) that reconciles `cluster`; ties (never seen in 64 bits)
    go to the lower shard id."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return max(range(shards), key=lambda s: (weight(cluster, s), -s))


class ShardOf:
    """`shard_of` for one shard count, remembered per cluster name: a replica asks it
    for every row of its results and every cluster's view each second (at 50,000 rows
    and 4 shards, ~200,000 asks a second; ~7 us each as four SHA-256s)."""

    def __init__(self, shards: int) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        self.shards = shards
        self._of: dict[str, int] = {}
        self.computed = 0
        """Names hashed (each once)."""

    def __call__(self, cluster: str) -> int:
        shard = self._of.get(cluster)
        if shard is None:
            if len(self._of) >= 100_000:  # names come from the repo: bounded anyway
                self._of.clear()
            shard = self._of[cluster] = shard_of(cluster, self.shards)
            self.computed += 1
        return shard


def assign(clusters: Iterable[str], shards: int) -> dict[int, tuple[str, ...]]:
    """Every shard (0..shards-1) -> its clusters, sorted; shards without one map to ()."""
    out: dict[int, list[str]] = {s: [] for s in range(shards)}
    for name in sorted(set(clusters)):
        out[shard_of(name, shards)].append(name)
    return {s: tuple(names) for s, names in out.items()}


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One shard Lease as a replica read it this round."""

    shard: int
    holder: str | None
    """Who holds it, or None: no Lease, an empty holder, or expired."""
    wanted_by: str | None = None
    """A replica below its share asking for it (a recent mark only), or None."""


@dataclass(frozen=True, slots=True)
class LeaseMoves:
    """What one replica does with the shard Leases this round."""

    renew: tuple[int, ...] = ()
    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    want: int | None = None


def fair_share(shards: int, replicas: int) -> int:
    """The most shards one replica holds when `replicas` share `shards` (rounded up, so
    the shares always cover every shard)."""
    return -(-shards // max(1, replicas))


def lease_moves(views: Sequence[LeaseView], me: str, *, first: bool = False) -> LeaseMoves:
    """This round's moves for replica `me`, from every shard's Lease as read. In its
    `first` round a replica takes at most one free shard: replicas started together
    cannot see each other yet, and one taking every shard would have to hand them back
    one by one while the others wait."""
    shards = len(views)
    replicas = {v.holder for v in views if v.holder} | \
        {v.wanted_by for v in views if v.wanted_by} | {me}
    share = fair_share(shards, len(replicas))
    load: dict[str, list[int]] = {}
    for v in views:
        if v.holder:
            load.setdefault(v.holder, []).append(v.shard)
    mine = load.get(me, [])
    kept = len(mine)
    release: list[int] = []
    for v in sorted(views, key=lambda v: -v.shard):
        if v.holder == me and v.wanted_by and v.wanted_by != me:
            theirs = len(load.get(v.wanted_by, []))
            if kept >= theirs + 2:  # giving it makes the two of us closer, never swapped
                release.append(v.shard)
                kept -= 1
                load.setdefault(v.wanted_by, []).append(v.shard)
    renew = tuple(s for s in mine if s not in release)
    # A shard let go for a replica that asked for it is that replica's to take.
    free = sorted((v.shard for v in views if v.holder is None
                   and v.wanted_by in (None, me)), key=lambda s: (weight(me, s), s))
    asked = [v.shard for v in views if v.shard in free and v.wanted_by == me]  # for me
    rest = [s for s in free if s not in asked]
    room = max(0, share - len(renew) - len(asked))
    acquire = tuple(sorted(asked + rest[:min(room, 1) if first else room]))
    want = None
    if not free:
        others = [(len(held), holder) for holder, held in load.items() if holder != me]
        if others:
            most, busiest = max(others)
            if most >= len(renew) + 2:
                # by this replica's own preference: askers of one holder ask for
                # different shards, and the holder lets them all go in one round
                want = max(load[busiest], key=lambda s: (weight(me, s), s))
    return LeaseMoves(renew=renew, acquire=acquire, release=tuple(sorted(release)), want=want)


def next_round(every: float, ends_in: Iterable[tuple[str, float]], me: str, *,
               slack: float) -> float:
    """Seconds until a replica's next Lease round: every `every` (a third of the Lease
    duration, the renew period), or sooner, `slack` after the first Lease held by
    another replica would lapse (`ends_in`: (holder, seconds until its hold ends), as
    read). A live holder renews every `every`, so its Lease always ends later than
    that and changes nothing; a dead one's is taken as soon as it lapses, not up to a
    whole round later. A Lease already lapsed (negative) was dealt with by the round
    that read it."""
    soonest = min((left for holder, left in ends_in if holder != me and left >= 0),
                  default=None)
    return every if soonest is None else min(every, soonest + slack)


BY_LEADER = (Reason("placed by the leader's plan", rule="Shards"),)
NOT_BY_LEADER = (Reason("not placed by the leader's plan", rule="Shards"),)
"""The reasons of a follower's placements: one shared object each (immutable), not one
per workload."""


def leader_plan(spec: FleetSpec, leader: Mapping[WorkloadId, tuple[Assignment, ...]],
                commit: str | None, capacity: CapacitySnapshot,
                previous: Plan | None = None) -> Plan:
    """The plan a replica that does not lead writes, without placing anything itself:
    every workload of `spec` where the leader's published placements put it (Pending
    where they put it nowhere), an invalid one Invalid with its diagnostics. The same
    placements as `follow_plan` over a plan of its own, at none of the cost. A
    workload's placement in `previous` (the last plan made here) is kept when it is
    the same (its assignments the very tuple the leader's now holds: the follower's
    decoding reuses those of the workloads that did not change), so a new publication
    costs object building in what changed only."""
    last = previous.workloads if previous is not None else {}
    out: dict[WorkloadId, WorkloadPlacement] = {}
    for wid in spec.workloads:
        theirs = leader.get(wid)
        before = last.get(wid)
        if theirs:
            out[wid] = before if before is not None and before.assignments is theirs \
                and before.reasons is BY_LEADER else \
                WorkloadPlacement(wid, "Placed", tuple(theirs), BY_LEADER)
        else:
            out[wid] = before if before is not None and before.status == "Pending" \
                and before.reasons is NOT_BY_LEADER else \
                WorkloadPlacement(wid, "Pending", (), NOT_BY_LEADER)
    for wid, diags in spec.invalid.items():
        out[wid] = _invalid(wid, diags)
    return Plan(commit=commit, workloads=dict(sorted(out.items())),
                usage=_usage(capacity, _allocated(out.values())),
                capacity_digest=capacity.digest(), policy_version=spec.residency.version)


def _invalid(wid: WorkloadId, diags: Iterable[Diagnostic]) -> WorkloadPlacement:
    return WorkloadPlacement(wid, "Invalid", (), tuple(
        Reason(d.format(), None, "Invalid") for d in diags))


def _allocated(placed: Iterable[WorkloadPlacement]) -> dict[tuple[ClusterName, Flavour], int]:
    allocated: dict[tuple[ClusterName, Flavour], int] = {}
    for p in placed:
        for a in p.assignments:
            allocated[(a.cluster, a.flavour)] = allocated.get((a.cluster, a.flavour), 0) + \
                a.gpus
    return allocated


def _capacities(capacity: CapacitySnapshot) -> dict[ClusterName, dict[Flavour, int]]:
    out: dict[ClusterName, dict[Flavour, int]] = {}
    for name, c in sorted(capacity.clusters.items()):
        gpus: dict[Flavour, int] = {}
        for n in c.nodes:
            gpus[n.flavour] = gpus.get(n.flavour, 0) + n.gpus
        if gpus:
            out[name] = dict(sorted(gpus.items()))
    return out


def _usage(capacity: CapacitySnapshot | dict[ClusterName, dict[Flavour, int]],
           allocated: Mapping[tuple[ClusterName, Flavour], int]
           ) -> dict[ClusterName, dict[Flavour, FlavourUsage]]:
    caps = _capacities(capacity) if isinstance(capacity, CapacitySnapshot) else capacity
    return {name: {f: FlavourUsage(cap, allocated.get((name, f), 0))
                   for f, cap in gpus.items()} for name, gpus in caps.items()}


class LeaderPlans:
    """`leader_plan` over a follower's successive plans, at the cost of what changed.

    Told which workloads' published placements changed since its last plan (the
    parts a follower decoded, `controllers.persist.sharedplan.Reader`), it builds the
    placements of those, of the workloads that joined or left the spec or its invalid
    ones (a set difference of the keys, done in C: ~2 ms at 50,000, and none when the
    spec is the same object), and keeps every other from its last plan; the GPUs each
    cluster and flavour has allocated are kept too, less the old and plus the new
    assignments of what it rebuilt. Without `changed` (a first plan, a publication
    read whole), the whole `leader_plan`. The same plan either way (the property
    tests)."""

    def __init__(self) -> None:
        self.last: Plan | None = None
        self._spec: FleetSpec | None = None
        self._allocated: dict[tuple[ClusterName, Flavour], int] = {}
        self._caps: tuple[str, dict[ClusterName, dict[Flavour, int]]] | None = None
        self._changes: tuple[Plan, Plan, frozenset[WorkloadId]] | None = None
        """(the plan before, the plan made, the decisions it changed) of the last plan
        made by change that added or removed no workload."""
        self.full = 0
        self.incremental = 0
        self.built = 0
        """Plans made whole and by change, and workloads looked at by the latter."""

    def changes(self, old: Plan | None, new: Plan) -> frozenset[WorkloadId] | None:
        """The workloads whose decisions `new` changed from `old` (every other decision
        the same object, the same ids in the same order), when `new` is the last plan
        made here, by change, over `old`; else None (not known: look at every one)."""
        last = self._changes
        if last is None or old is None or last[0] is not old or last[1] is not new:
            return None
        return last[2]

    def plan(self, spec: FleetSpec, leader: Mapping[WorkloadId, tuple[Assignment, ...]],
             commit: str | None, capacity: CapacitySnapshot,
             changed: Collection[WorkloadId] | None) -> Plan:
        """`leader_plan(spec, leader, commit, capacity)`, where `changed` holds every
        workload whose placement in `leader` differs from the `leader` of the last call
        (None: not known)."""
        last, before = self.last, self._spec
        self._changes = None
        digest = capacity.digest()
        if self._caps is None or self._caps[0] != digest:
            self._caps = (digest, _capacities(capacity))
        if changed is None or last is None or before is None:
            plan = leader_plan(spec, leader, commit, capacity, last)
            self._allocated = _allocated(plan.workloads.values())
            self.full += 1
        else:
            look = set(changed)
            if spec is not before:
                look |= spec.workloads.keys() ^ before.workloads.keys()
                look |= spec.invalid.keys() | before.invalid.keys()
            workloads = dict(last.workloads)
            allocated = self._allocated
            resort = False
            decided: set[WorkloadId] = set()
            for wid in look:
                old = workloads.get(wid)
                new = _decision(spec, leader, wid, old)
                if old is new:
                    continue
                decided.add(wid)
                if old is not None:
                    for a in old.assignments:
                        allocated[(a.cluster, a.flavour)] -= a.gpus
                if new is None:
                    del workloads[wid]
                    resort = True  # ids gone: not a change of decisions only
                    continue
                if old is None:
                    resort = True
                workloads[wid] = new
                for a in new.assignments:
                    allocated[(a.cluster, a.flavour)] = \
                        allocated.get((a.cluster, a.flavour), 0) + a.gpus
            self.built += len(look)
            self.incremental += 1
            plan = Plan(commit=commit,
                        workloads=dict(sorted(workloads.items())) if resort else workloads,
                        usage=_usage(self._caps[1], allocated), capacity_digest=digest,
                        policy_version=spec.residency.version)
            if not resort:
                self._changes = (last, plan, frozenset(decided))
        self.last, self._spec = plan, spec
        return plan


def _decision(spec: FleetSpec, leader: Mapping[WorkloadId, tuple[Assignment, ...]],
              wid: WorkloadId, before: WorkloadPlacement | None) -> WorkloadPlacement | None:
    """One workload's placement as `leader_plan` makes it (None: not in the spec);
    `before` kept when it is the same."""
    diags = spec.invalid.get(wid)
    if diags is not None:
        return _invalid(wid, diags)
    if wid not in spec.workloads:
        return None
    theirs = leader.get(wid)
    if theirs:
        return before if before is not None and before.assignments is theirs and \
            before.reasons is BY_LEADER else \
            WorkloadPlacement(wid, "Placed", tuple(theirs), BY_LEADER)
    return before if before is not None and before.status == "Pending" and \
        before.reasons is NOT_BY_LEADER else WorkloadPlacement(wid, "Pending", (), NOT_BY_LEADER)


def follow_plan(own: Plan, leader: Mapping[WorkloadId, tuple[Assignment, ...]]) -> Plan:
    """`own` (this replica's plan of the same commit) with the leader's placements: a
    workload the leader places goes where the leader put it; one it does not place is
    Pending here too (never placed by a replica's own view). Invalid stays Invalid."""
    out: dict[WorkloadId, WorkloadPlacement] = {}
    for wid, wp in own.workloads.items():
        theirs = leader.get(wid)
        if wp.status == "Invalid":
            out[wid] = wp
        elif theirs:
            out[wid] = wp if wp.status == "Placed" and wp.assignments == theirs else \
                replace(wp, status="Placed", assignments=tuple(theirs))
        elif wp.status == "Placed":
            out[wid] = replace(wp, status="Pending", assignments=(), reasons=NOT_BY_LEADER)
        else:
            out[wid] = wp
    return replace(own, workloads=out)


@dataclass(frozen=True, slots=True)
class Published:
    """One cluster as its shard's holder last published it."""

    health: ClusterHealth
    unreachable_for: float | None
    """Seconds it had been Unreachable when observed (None while it answered)."""
    owner: str
    """The replica that published it."""


def news_counts(owner: str, *, holder: str | None, age: float | None,
                max_age: float) -> bool:
    """A shard's publication by `owner` is news: `owner` is its live holder and the
    publication changed at most `max_age` seconds ago."""
    return holder is not None and owner == holder and age is not None and \
        0 <= age <= max_age


def published_health(news: Published | None, *, holder: str | None, age: float | None,
                     max_age: float) -> tuple[ClusterHealth, float | None]:
    """(health, unreachable seconds) of a cluster of another shard, for placement and
    status. Only fresh news of the live holder counts: `news` published by `holder`
    (the shard Lease's live holder as last read), its publication refreshed `age`
    seconds ago at most `max_age`. Anything else -- no publication, no holder, a holder
    other than the publisher (taken over, not yet re-published), news too old -- is
    `Unknown` with no unreachable time, which holds every placement there."""
    if news is None or not news_counts(news.owner, holder=holder, age=age,
                                       max_age=max_age):
        return "Unknown", None
    if news.health != "Unreachable":
        return news.health, None
    return "Unreachable", max(0.0, news.unreachable_for or 0.0)
