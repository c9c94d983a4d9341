"""The capacity and quota a placement pass consumes as it goes, and node-level fitting.

`State` holds, per (cluster, flavour), the free GPUs of each node, and per (team,
flavour) the GPUs the plan has charged to the team's quota so far. Placement reads it
through `frees()` and `used()` and changes it only through `allocate()` and `charge()`,
so a pass can record exactly which keys each decision read and wrote: that record is
what the incremental planner (`fleet.placement.incremental`) replays.

Fitting is per node, as kube-scheduler does it: a replica needs `count` GPUs on one
node. Replicas go best-fit (the node with the fewest free GPUs that still holds one,
lowest index on ties), which fills part-used nodes first and keeps whole nodes free for
big gangs -- the node-level half of the Packing preference.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleet.ids import Flavour, Team
from fleet.placement.snapshot import NodeKey

QuotaKey = tuple[Team, Flavour]
Key = tuple[str, str, str]
"""A recorded key: ("n", cluster, flavour) for nodes, ("q", team, flavour) for quota."""


def replicas_that_fit(frees: tuple[int, ...] | list[int], count: int) -> int:
    """How many replicas of `count` GPUs these nodes hold at once."""
    return sum(f // count for f in frees)


def best_fit(frees: tuple[int, ...] | list[int], count: int, replicas: int
             ) -> list[int] | None:
    """Per node, the GPUs `replicas` replicas take (best-fit), or None if they do not fit."""
    left = list(frees)
    taken = [0] * len(left)
    for _ in range(replicas):
        best = -1
        for i, f in enumerate(left):
            if f >= count and (best < 0 or f < left[best]):
                best = i
                if f == count:
                    break
        if best < 0:
            return None
        left[best] -= count
        taken[best] += count
    return taken


class State:
    """Mutable free capacity and quota usage; optionally records what was read."""

    __slots__ = ("_free", "_used", "reads")

    def __init__(self, nodes: Mapping[NodeKey, tuple[int, ...]]) -> None:
        self._free: dict[NodeKey, tuple[int, ...]] = dict(nodes)
        self._used: dict[QuotaKey, int] = {}
        self.reads: set[Key] | None = None

    def frees(self, key: NodeKey) -> tuple[int, ...]:
        if self.reads is not None:
            self.reads.add(("n", key[0], key[1]))
        return self._free.get(key, ())

    def used(self, team: Team, flavour: Flavour) -> int:
        if self.reads is not None:
            self.reads.add(("q", team, flavour))
        return self._used.get((team, flavour), 0)

    def allocate(self, key: NodeKey, taken: list[int] | tuple[int, ...]) -> None:
        cur = self._free[key]
        self._free[key] = tuple(f - t for f, t in zip(cur, taken, strict=True))

    def charge(self, team: Team, flavour: Flavour, gpus: int) -> None:
        k = (team, flavour)
        self._used[k] = self._used.get(k, 0) + gpus

    def free_total(self, key: NodeKey) -> int:
        """Unrecorded: for reports after the pass."""
        return sum(self._free.get(key, ()))

    def largest_free(self, key: NodeKey) -> int:
        """Unrecorded: for reports after the pass."""
        return max(self._free.get(key, ()), default=0)
