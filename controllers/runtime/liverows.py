"""What each reconcile recorded (`Manager.live`), indexed by cluster.

A cluster's pass forgets the rows of workloads that no longer run there. It found them
by scanning every row of the fleet (`k[0] == cluster`): O(placements of the fleet) per
pass, O(clusters x placements) per round of passes (issue 22, item 2: work
proportional to change). `LiveRows` keeps the keys of each cluster's rows beside the
rows, updated by every write whoever makes it (the reconciler, a refused twin's
clean-up, the other shards' status with `--shards`), so `keys_of` answers in
O(rows of that cluster) (the reconciler asks it when its `live` has it). It is the
status cache's `Versioned` dict still: its writes are counted.

It also stamps each cluster when one of its rows really changes (`stamps`: a write of
the row already there, which every reconcile pass makes for every workload, is not a
change). With `--shards` a replica publishes its shards' rows and merges the others'
(`controllers.runtime.shards`); it gathered every shard's rows out of the whole fleet's
every second to find that nothing had changed. It now compares the shard's stamps and
gathers only when they moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.status.cache import Versioned
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId

Key = tuple[ClusterName, WorkloadId]


class LiveRows(Versioned[Key, PlacementLive]):
    """A dict of (cluster, workload) -> row that also knows each cluster's keys."""

    def __init__(self, rows: Mapping[Key, PlacementLive] | None = None) -> None:
        super().__init__()
        self._by: dict[str, set[Key]] = {}
        self._stamps: dict[str, int] = {}
        self._changes = 0
        if rows:
            self.update(rows)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))  # the index is rebuilt, not pickled

    def _add(self, key: Key) -> None:
        self._by.setdefault(key[0], set()).add(key)

    def _drop(self, key: Key) -> None:
        self._changed(key[0])
        keys = self._by.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by[key[0]]

    def _changed(self, cluster: str) -> None:
        self._changes += 1
        self._stamps[cluster] = self._changes

    def __setitem__(self, key: Key, value: PlacementLive) -> None:
        if dict.get(self, key) != value:
            self._changed(key[0])
        super().__setitem__(key, value)
        self._add(key)

    def __delitem__(self, key: Key) -> None:
        super().__delitem__(key)
        self._drop(key)

    def pop(self, key: Key, *default: Any) -> Any:
        if key in self:
            self._drop(key)
        return super().pop(key, *default)

    def clear(self) -> None:
        for cluster in self._by:
            self._changed(cluster)
        super().clear()
        self._by.clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        rows = dict(*args, **kwargs)
        for key, value in rows.items():
            if dict.get(self, key) != value:
                self._changed(key[0])
        super().update(rows)
        for key in rows:
            self._add(key)

    def __ior__(self, other: Any) -> LiveRows:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: Key, default: Any = None) -> Any:
        if key not in self:
            self._changed(key[0])
        self._add(key)
        return super().setdefault(key, default)

    def popitem(self) -> tuple[Key, PlacementLive]:
        key, value = super().popitem()
        self._drop(key)
        return key, value

    def keys_of(self, cluster: str) -> list[Key]:
        """The keys of this cluster's rows (a copy: the caller may delete them)."""
        return list(self._by.get(cluster, ()))

    def stamps(self) -> Mapping[str, int]:
        """Cluster -> when one of its rows last changed (added, changed or removed), on
        a counter that only grows: the largest stamp of a set of clusters moves exactly
        when one of their rows changed. A cluster never written has none (read-only)."""
        return self._stamps

