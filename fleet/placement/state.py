"""The capacity and quota a placement pass consumes as it goes, and node-level fitting.

`State` holds, per (cluster, flavour), a histogram of its nodes by free GPUs (`h[v]` =
how many nodes have exactly `v` free), and per (team, flavour) the GPUs the plan has
charged to the team's quota so far. A histogram, not a list of nodes, because which
node is which never matters to placement -- the kubelet picks the node -- only how many
replicas fit; with it every fit check costs O(GPUs per node), not O(nodes), so a
1,000-node cluster costs what an 8-node one does.

Placement reads state through `frees()` and `used()` and changes it only through
`allocate()` and `charge()`, so a pass can record exactly which keys each decision read
and wrote: that record is what the incremental planner replays.

Fitting is per node, as kube-scheduler does it: a replica needs `count` GPUs on one
node. Replicas go best-fit (the node with the fewest free GPUs that still holds one),
which fills part-used nodes first and keeps whole nodes free for big gangs -- the
node-level half of the Packing preference.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from functools import partial
from operator import add, mul, sub

from fleet.ids import ClusterName, Flavour, Team
from fleet.placement.queues import CohortKey, Member, QueueKey, queue_key, recorded_queue
from fleet.placement.snapshot import NodeKey, histogram

QuotaKey = tuple[Team, Flavour]
Hist = tuple[int, ...]
__all__ = ["Hist", "QueueKey", "State", "best_fit", "free_total", "histogram",
           "largest_free", "packing", "queue_key", "recorded_queue", "replicas_that_fit"]
Key = tuple[str, str, str]
"""A recorded key: ("n", cluster, flavour) for nodes, ("q", team, flavour) for quota,
("k", "cluster/queue", flavour) for a Kueue ClusterQueue's usage (`recorded_queue`)."""


_PER_NODE: dict[tuple[int, int], tuple[int, ...]] = {}


def replicas_that_fit(h: Hist, count: int) -> int:
    """How many replicas of `count` GPUs these nodes hold at once."""
    k = (len(h), count)
    per = _PER_NODE.get(k)
    if per is None:
        per = _PER_NODE[k] = tuple(v // count for v in range(len(h)))
    return sum(map(mul, h, per))


def largest_free(h: Hist) -> int:
    for v in range(len(h) - 1, 0, -1):
        if h[v]:
            return v
    return 0


def free_total(h: Hist) -> int:
    return sum(map(mul, h, range(len(h))))


def best_fit(h: Hist, count: int, replicas: int) -> Hist | None:
    """The change to the histogram when `replicas` replicas go best-fit, or None.

    Best-fit one replica at a time puts each on the node with the fewest free GPUs that
    holds it; that node, now emptier, stays the best fit, so it takes as many replicas
    as it can before the next node is opened.
    """
    left = list(h)
    need = replicas
    while need:
        for v in range(count, len(left)):
            if left[v]:
                k = min(need, v // count)
                left[v] -= 1
                left[v - k * count] += 1
                need -= k
                break
        else:
            return None
    return tuple(map(sub, left, h))  # same lengths: `left` is a copy of `h`


def packing(capacity: int, free: int, need: int) -> int:
    """0..100: how full a (cluster, flavour) is once `need` more GPUs are placed."""
    if capacity <= 0:
        return 0
    return max(0, min(100, (100 * (capacity - free + need)) // capacity))


class State:
    """Mutable free capacity and quota usage; optionally records what was read.

    `room()` and `total()` are cached per key until the key is next allocated: a pass
    reads each (cluster, flavour) many times between two writes to it.

    With `rank` (the weighted rank of an option given its nodes now, from the ranked
    scorers: `fleet.placement.registry.Plugins.rank`), the state also keeps, per flavour,
    its clusters sorted by that rank (`ranked()`), so the best option is found by
    walking from the top and stopping at the first cluster that cannot beat the best so
    far, instead of scoring every one.
    """

    __slots__ = ("_base", "_cohorts", "_fitters", "_free", "_queues", "_rank", "_rank_of",
                 "_room", "_total", "_used", "reads")

    def __init__(self, nodes: Mapping[NodeKey, Hist],
                 used: Mapping[QuotaKey, int] | None = None,
                 rank: Callable[[NodeKey, Hist], int] | None = None) -> None:
        self._free: dict[NodeKey, Hist] = dict(nodes)
        self._used: dict[QuotaKey, int] = dict(used or {})
        self._queues: dict[QueueKey, int] = {}
        """GPUs charged per Kueue ClusterQueue by this plan (`fleet.placement.queues`)."""
        self._cohorts: dict[tuple[ClusterName, Flavour], dict[str, int]] = {}
        """Per (cluster, flavour) and cohort, `cohort_used` until a member is charged."""
        self._room: dict[NodeKey, dict[int, int]] = {}
        """Per key, replicas that fit by GPUs per replica (dropped when the key changes)."""
        self._total: dict[NodeKey, int] = {}
        self.reads: set[Key] | None = None
        self._rank_of = rank
        self._fitters: dict[int, Callable[[NodeKey], int]] = {}
        self._base: dict[NodeKey, int] = {}
        self._rank: dict[str, list[tuple[int, ClusterName]]] = {}
        if rank is not None:
            for key in sorted(self._free):
                base = self._base[key] = rank(key, self._free[key])
                self._rank.setdefault(key[1], []).append((-base, key[0]))
        for lst in self._rank.values():
            lst.sort()

    def copy(self) -> State:
        out = State.__new__(State)
        out._free = dict(self._free)
        out._used = dict(self._used)
        out._queues = dict(self._queues)
        out._cohorts = {}
        out._room = {k: dict(v) for k, v in self._room.items()}
        out._total = dict(self._total)
        out.reads = None
        out._rank_of = self._rank_of
        out._fitters = {}
        out._base = dict(self._base)
        out._rank = {f: list(v) for f, v in self._rank.items()}
        return out

    def ranked(self, flavour: Flavour) -> list[tuple[int, ClusterName]]:
        """(-rank, cluster) of every cluster offering the flavour, best first. Reading
        it reads the whole flavour (recorded as ("f", flavour, ""))."""
        if self.reads is not None:
            self.reads.add(("f", flavour, ""))
        return self._rank.get(flavour, [])

    def frees(self, key: NodeKey) -> Hist:
        if self.reads is not None:
            self.reads.add(("n", key[0], key[1]))
        return self._free.get(key, ())

    def room(self, key: NodeKey, count: int) -> int:
        """Replicas of `count` GPUs that fit on this (cluster, flavour) now."""
        return self.fit(count, key)

    def fitter(self, count: int) -> Callable[[NodeKey], int]:
        """`room(key, count)` as a function of the key, for a fast path that asks it of
        every option: a positional partial (a C call), one per count."""
        found = self._fitters.get(count)
        if found is None:
            found = self._fitters[count] = partial(self.fit, count)
        return found

    def fit(self, count: int, key: NodeKey) -> int:
        """`room(key, count)`, arguments swapped for `fitter`."""
        if self.reads is not None:
            self.reads.add(("n", key[0], key[1]))
        per = self._room.get(key)
        if per is None:
            per = self._room[key] = {}
        found = per.get(count)
        if found is None:
            found = per[count] = replicas_that_fit(self._free.get(key, ()), count)
        return found

    def total(self, key: NodeKey) -> int:
        """Free GPUs on this (cluster, flavour) now."""
        if self.reads is not None:
            self.reads.add(("n", key[0], key[1]))
        found = self._total.get(key)
        if found is None:
            found = self._total[key] = free_total(self._free.get(key, ()))
        return found

    def used(self, team: Team, flavour: Flavour) -> int:
        if self.reads is not None:
            self.reads.add(("q", team, flavour))
        return self._used.get((team, flavour), 0)

    def queue_used(self, key: QueueKey) -> int:
        """GPUs this plan has charged to a Kueue ClusterQueue so far."""
        if self.reads is not None:
            self.reads.add(recorded_queue(key))
        return self._queues.get(key, 0)

    def cohort_used(self, key: CohortKey, members: tuple[Member, ...],
                    recorded: tuple[Key, ...]) -> int:
        """What a cohort's members (`Queues` gives them: queue key, guaranteed quota,
        others' usage) use past their guaranteed quota, with this plan's charges:
        Kueue's cohort usage. Cached per cohort until one of its cluster's queues of
        the flavour is charged; reading it reads every member's usage."""
        if self.reads is not None:
            self.reads.update(recorded)
        per = self._cohorts.get((key[0], key[1]))
        if per is None:
            per = self._cohorts[(key[0], key[1])] = {}
        found = per.get(key[2])
        if found is None:
            charged = self._queues
            found = 0
            for qk, g, others in members:
                over = others + charged.get(qk, 0) - g
                if over > 0:
                    found += over
            per[key[2]] = found
        return found

    def charge_queue(self, key: QueueKey, gpus: int) -> None:
        self._queues[key] = self._queues.get(key, 0) + gpus
        self._cohorts.pop((key[0], key[2]), None)

    def set_queue_used(self, key: QueueKey, gpus: int) -> None:
        self._queues[key] = gpus
        self._cohorts.pop((key[0], key[2]), None)

    def allocate(self, key: NodeKey, delta: Hist) -> None:
        cur = self._free[key]
        if len(cur) != len(delta):
            raise ValueError(f"histogram of {key} has {len(cur)} sizes, change has {len(delta)}")
        self.put(key, tuple(map(add, cur, delta)))

    def put(self, key: NodeKey, hist: Hist) -> None:
        self._free[key] = hist
        self._total.pop(key, None)
        self._room.pop(key, None)
        if self._rank_of is not None and key in self._base:
            lst = self._rank[key[1]]
            old = (-self._base[key], key[0])
            del lst[bisect.bisect_left(lst, old)]
            base = self._base[key] = self._rank_of(key, hist)
            bisect.insort(lst, (-base, key[0]))

    def hist(self, key: NodeKey) -> Hist:
        """Unrecorded: for the incremental planner and reports."""
        return self._free.get(key, ())

    def usage(self) -> dict[QuotaKey, int]:
        """Unrecorded: for the incremental planner and reports."""
        return dict(self._used)

    def set_used(self, team: Team, flavour: Flavour, gpus: int) -> None:
        self._used[(team, flavour)] = gpus

    def charge(self, team: Team, flavour: Flavour, gpus: int) -> None:
        k = (team, flavour)
        self._used[k] = self._used.get(k, 0) + gpus
