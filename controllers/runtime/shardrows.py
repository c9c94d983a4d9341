"""Each shard's rows of what the reconciles recorded (`Manager.live`), for `--shards`.

A replica publishes the rows of the shards it holds and merges in the rows the other
shards' holders publish (`controllers.runtime.shards`: `_publish`, `_read_others`),
every second. Both gathered a shard's rows by a scan of the whole fleet's (`shard_of`
of every row: 50,000 rows per shard per second at 1,000 x 50,000 with 4 shards) and
compared them whole, to find nearly always that nothing had changed (issue 22).

`LiveRows` stamps each cluster when one of its rows really changes, on a counter that
only grows, so the largest stamp of a shard's clusters moves exactly when a row of the
shard changed. A shard's rows are gathered (from the per-cluster index, not by a scan)
only when its stamp moved since they were last gathered; another shard's publication
is merged only when it is a new one or a row of that shard was written since, and then
only the rows that differ are written (each write counts for the status cache).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controllers.runtime.liverows import Key, LiveRows
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName


class ShardRows:
    def __init__(self, live: LiveRows, shard_of: Callable[[str], int]) -> None:
        self.live = live
        self.shard_of = shard_of
        self.gathered = 0
        """Rows looked at while gathering a shard's rows (work in the fleet's size)."""
        self._rows: dict[int, tuple[int, dict[Key, PlacementLive]]] = {}
        """Shard -> its stamp and its rows, as last gathered."""
        self._merged: dict[int, tuple[object, int]] = {}
        """Shard (held elsewhere) -> the publication last merged, and the shard's stamp
        after that merge."""

    def stamp(self, shard: int) -> int:
        """Moves when a row of `shard`'s clusters is added, changed or removed (0: none
        ever was). In the clusters, not the rows: ~1,000 names at most."""
        return max((s for c, s in self.live.stamps().items() if self.shard_of(c) == shard),
                   default=0)

    def of(self, shard: int) -> tuple[int, Mapping[Key, PlacementLive]]:
        """The shard's stamp and rows (not to be changed: kept for the next ask),
        gathered again only when the stamp moved."""
        stamp = self.stamp(shard)
        last = self._rows.get(shard)
        if last is not None and last[0] == stamp:
            return last
        rows: dict[Key, PlacementLive] = {}
        for cluster in self.live.stamps():  # every cluster with a row was stamped
            if self.shard_of(cluster) == shard:
                for key in self.live.keys_of(cluster):
                    rows[key] = self.live[key]
        self.gathered += len(rows)
        self._rows[shard] = (stamp, rows)
        return stamp, rows

    def untouched(self, shard: int) -> bool:
        """`shard`'s rows are still those merged last from another replica's
        publication: none written since (by this replica's own reconciles, say)."""
        last = self._merged.get(shard)
        return last is not None and last[1] == self.stamp(shard)

    def merge(self, shard: int, results: Mapping[Key, PlacementLive], source: object,
              since: object = None,
              clusters: Mapping[ClusterName, Mapping[Key, PlacementLive]] | None = None
              ) -> bool:
        """Make `shard`'s rows `results`, another replica's publication `source` (kept
        and compared by identity: a decoded document reused while its text is the same).
        Nothing is looked at when `source` is the one merged last and no row of the
        shard was written since. With `since`, the publication `source` differs from
        only in `clusters` (their rows in `source`: `shardstatus.Decoder.changed`), and
        `since` the one merged last with no row of the shard written since, only those
        clusters are looked at. True when a row was written."""
        last = self._merged.get(shard)
        stamp = self.stamp(shard)
        if last is not None and last[0] is source and last[1] == stamp:
            return False
        if since is not None and clusters is not None and last is not None and \
                last[0] is since and last[1] == stamp and \
                all(self.shard_of(c) == shard for c in clusters):
            # `live`'s rows of the shard are `since`'s: only `clusters` can differ
            gone, changed = [], {}
            for cluster, rows in clusters.items():
                gone += [k for k in self.live.keys_of(cluster) if k not in rows]
                changed.update(self._differ(rows, self.live))
        else:
            _stamp, now = self.of(shard)
            gone = [k for k in now if k not in results]
            changed = self._differ(results, now)
        cached = self._rows.get(shard)
        for key in gone:
            del self.live[key]
        if changed:
            self.live.update(changed)
        if (gone or changed) and cached is not None and cached[0] == stamp and \
                all(self.shard_of(k[0]) == shard for k in changed):
            # The shard's rows are those gathered with these writes, and nothing else
            # wrote in between: kept as the next `of` would gather them (12,500 rows at
            # 50,000 workloads, gathered again after every merge that wrote one).
            kept = dict(cached[1])
            for key in gone:
                del kept[key]
            kept.update(changed)
            self._rows[shard] = (self.stamp(shard), kept)
        self._merged[shard] = (source, self.stamp(shard))
        return bool(gone or changed)

    @staticmethod
    def _differ(rows: Mapping[Key, PlacementLive], now: Mapping[Key, PlacementLive]
                ) -> dict[Key, PlacementLive]:
        # A publication decoded with the last one's parts (`shardstatus.Decoder`) has
        # the very rows merged then wherever they did not change: found by identity.
        return {k: v for k, v in rows.items() if (had := now.get(k)) is not v and had != v}
