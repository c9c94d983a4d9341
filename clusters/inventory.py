"""The applier's inventory of live owned objects, and what runs here kept with it.

`Applier.live` is written as the informers' events come (and by our own writes'
answers); `ClusterAdapter.live_workloads()` (what runs here, per workload) is asked
for by every reconcile, placement pass, status page and drain check. It was rebuilt
from every live object per call; here it is kept as the objects change: a write
reads back the one object written, a read copies what is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clusters.client import JSON
from fleet.render import WORKLOAD_KINDS, read_back
from fleet.sync import ObjKey


@dataclass(frozen=True, slots=True)
class LivePlacement:
    workload: str
    """The `aifleet.dev/workload` label value (`team.name`)."""
    replicas: int
    product: str | None
    gpus_per_replica: int
    commit: str | None


def placement_of(obj: JSON) -> LivePlacement | None:
    """What one live object says runs (a Job, Deployment or JobSet of ours), else None."""
    if obj.get("kind") not in WORKLOAD_KINDS:
        return None
    back = read_back(obj)
    if back.workload is None:
        return None
    return LivePlacement(back.workload, back.replicas, back.product,
                         back.gpus_per_replica, back.commit)


class Inventory(dict[ObjKey, JSON]):
    """Live objects by key (a dict), keeping per workload the objects that run it.

    Every write goes through `__setitem__`, `__delitem__` or `pop` (the others are
    written with them), so what runs here is never out of step with the objects."""

    def __init__(self, items: Iterable[tuple[ObjKey, JSON]] = ()) -> None:
        super().__init__()
        self._by_workload: dict[str, dict[ObjKey, LivePlacement]] = {}
        """Per workload label, the placement each of its running objects says."""
        self._runs: dict[ObjKey, str] = {}
        """The workload label each of those objects runs."""
        self._workloads: dict[str, LivePlacement] = {}
        """Per workload label, what `workloads()` answers: the placement of its object
        with the greatest key (as a pass over the sorted objects kept the last)."""
        self.on_runs: Callable[[str], None] | None = None
        """Told a workload label that started or stopped running here by its objects
        (`ClusterAdapter` keeps `WhereRuns` with it)."""
        self.read_backs = 0
        """Objects read back (`placement_of`): one per write of a workload's object,
        none per read (tests count them)."""
        for key, obj in items:
            self[key] = obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self.items()),))  # copied: what runs is kept anew

    def workloads(self) -> dict[str, LivePlacement]:
        """What runs here by our labels: per workload label, its replicas and GPU
        product (a copy: the caller may hold it across awaits while objects change)."""
        return dict(self._workloads)

    # ---------------------------------------------------------------- the writes

    def __setitem__(self, key: ObjKey, obj: JSON) -> None:
        before = self._unlink(key)
        super().__setitem__(key, obj)
        after = None
        if obj.get("kind") in WORKLOAD_KINDS:
            self.read_backs += 1
            lp = placement_of(obj)
            if lp is not None:
                self._by_workload.setdefault(lp.workload, {})[key] = lp
                self._runs[key] = lp.workload
                after = lp.workload
        for workload in sorted(w for w in {before, after} if w is not None):
            self._settle(workload)  # once each, as it ends up

    def __delitem__(self, key: ObjKey) -> None:
        self._forget(key)
        super().__delitem__(key)

    def pop(self, key: ObjKey, *default: Any) -> Any:
        if key in self:
            self._forget(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[ObjKey, JSON]:
        key = next(reversed(self))  # LIFO, as dict.popitem
        obj = self[key]
        del self[key]
        return key, obj

    def clear(self) -> None:
        gone = sorted(self._workloads)
        super().clear()
        self._by_workload.clear()
        self._runs.clear()
        self._workloads.clear()
        for workload in gone:
            if self.on_runs is not None:
                self.on_runs(workload)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, obj in dict(*args, **kwargs).items():
            self[key] = obj

    def setdefault(self, key: ObjKey, default: JSON | None = None) -> JSON:
        if key not in self:
            self[key] = default if default is not None else {}
        return self[key]

    def _forget(self, key: ObjKey) -> None:
        """The object held at `key` is gone: it no longer says what runs."""
        workload = self._unlink(key)
        if workload is not None:
            self._settle(workload)

    def _unlink(self, key: ObjKey) -> str | None:
        """Take the object at `key` out of what runs (not settled yet); its label."""
        workload = self._runs.pop(key, None)
        if workload is None:
            return None
        held = self._by_workload[workload]
        del held[key]
        if not held:
            del self._by_workload[workload]
        return workload

    def runs(self, workload: str) -> bool:
        """Whether an object of ours runs `workload` here (no copy made)."""
        return workload in self._workloads

    def _settle(self, workload: str) -> None:
        held = self._by_workload.get(workload)
        was = workload in self._workloads
        if held:
            self._workloads[workload] = held[max(held)]
        else:
            self._workloads.pop(workload, None)
        if was != bool(held) and self.on_runs is not None:
            self.on_runs(workload)


class WhereRuns:
    """Fleet-wide: per workload label, the clusters (their adapters) holding an object
    or a pod of it, kept by each adapter as its informers' objects change
    (`ClusterAdapter.join`). A gang about to start asks it which clusters may still
    run a copy, instead of asking every cluster of the fleet."""

    def __init__(self) -> None:
        self._holders: dict[str, dict[int, Any]] = {}
        """label -> id(adapter) -> adapter."""
        self.asked = 0
        """Clusters named to a caller (`holders`): tests count them."""

    def set(self, label: str, adapter: Any, holds: bool) -> None:
        if holds:
            self._holders.setdefault(label, {})[id(adapter)] = adapter
            return
        held = self._holders.get(label)
        if held is not None:
            held.pop(id(adapter), None)
            if not held:
                del self._holders[label]

    def drop(self, adapter: Any) -> None:
        """An adapter closed: it holds nothing any more."""
        for label in [lb for lb, held in self._holders.items() if id(adapter) in held]:
            self.set(label, adapter, False)

    def holders(self, label: str) -> list[Any]:
        """The adapters holding an object or a pod of `label` (by name)."""
        found = sorted(self._holders.get(label, {}).values(), key=lambda a: a.name)
        self.asked += len(found)
        return found
