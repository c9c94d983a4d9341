"""Benchmark: the shard status exchange of one replica, per second (issue 22).

At `--clusters` x `--workloads` (default 1,000 x 50,000) over 4 shards, with the
controller's GC thresholds, one row of every shard changes each second (one-workload
commits): the replica publishes its shard's document (`controllers.persist.
shardstatus`) and reads and merges the three others' (`ShardRows.merge`). Prints the
CPU milliseconds of each per second (the peers' own encodes are not counted), and,
with the kept parts, the rows encoded and built per second and the gzip share.

It runs against whichever `controllers` it imports, so the same file measures an
older checkout (one without `shardstatus.Encoder`: encoded and decoded whole, as it
did):

    PYTHONPATH=. python bench/shardshare.py
    PYTHONPATH=/path/to/older/checkout python bench/shardshare.py

The network is not in it: an unchanged peer costs a metadata-only GET where a full
GET of its document (~50-180 KB of base64) was made every second.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from controllers.persist import shardstatus
from controllers.runtime.gctune import tune
from controllers.runtime.liverows import LiveRows
from controllers.runtime.shardrows import ShardRows
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.shards import ShardOf

SECONDS = 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=1_000)
    ap.add_argument("--workloads", type=int, default=50_000)
    args = ap.parse_args()
    tune()
    names = [f"c{i:04d}" for i in range(args.clusters)]
    shard_of = ShardOf(4)
    every = {(ClusterName(names[i % len(names)]), WorkloadId(f"t/w{i:05d}")):
             PlacementLive("Synced", "Healthy", "c1") for i in range(args.workloads)}
    order = {s: sorted(k for k in every if shard_of(k[0]) == s) for s in range(4)}
    peers = {s: {k: every[k] for k in order[s]} for s in (1, 2, 3)}
    live = LiveRows({k: every[k] for k in order[0]})  # the others' come from them
    rows = ShardRows(live, shard_of)
    parts = hasattr(shardstatus, "Encoder")
    ours: Any = shardstatus.Encoder() if parts else None
    theirs: Any = {s: shardstatus.Decoder() for s in peers} if parts else {}

    def keep(shard: int) -> Callable[[str], bool]:
        return lambda cluster: shard_of(cluster) == shard

    def second(n: int) -> tuple[float, float]:
        at = f"2026-12-04T00:00:{n:08d}"
        live[order[0][n]] = PlacementLive("Synced", "Healthy", f"c{n}")
        start = time.process_time()
        mine = rows.of(0)[1]
        (ours.encode if parts else shardstatus.encode)("r0", mine, {}, at)
        publish = time.process_time() - start
        read = 0.0
        for s in peers:
            peers[s][order[s][n]] = PlacementLive("Synced", "Healthy", f"c{n}")
            text = shardstatus.encode(f"r{s}", peers[s], {}, at)  # their holder's
            start = time.process_time()
            if parts:  # as `Shards._read_others`
                since = theirs[s].last
                doc = shardstatus.decode_doc(text, theirs[s], keep(s))
                rows.merge(s, doc.live, doc, since, theirs[s].changed)
            else:  # as it was
                doc = shardstatus.decode_doc(text)
                doc = shardstatus.ShardDoc(doc.owner, {
                    k: v for k, v in doc.live.items() if shard_of(k[0]) == s}, {}, doc.at)
                rows.merge(s, doc.live, doc)
            read += time.process_time() - start
        return publish * 1000, read * 1000
    second(0)  # what the seconds before left
    encoded = ours.encoded if parts else 0
    built = sum(d.built for d in theirs.values())
    took = [second(n) for n in range(1, SECONDS + 1)]
    publish = sum(p for p, _ in took) / SECONDS
    read = sum(r for _, r in took) / SECONDS
    print(f"{args.clusters} clusters x {args.workloads} workloads, 4 shards, "
          f"{'parts kept' if parts else 'whole'} ({shardstatus.__file__})")
    print(f"a second of one row changed in each shard: publish {publish:.1f} ms + read "
          f"3 peers {read:.1f} ms = {publish + read:.0f} ms CPU")
    if parts:
        raw = ours.raw("r0", rows.of(0)[1], {}, "x")
        start = time.process_time()
        shardstatus.encode_raw(raw)
        gz = (time.process_time() - start) * 1000
        print(f"rows encoded {(ours.encoded - encoded) / SECONDS:.0f}, built "
              f"{(sum(d.built for d in theirs.values()) - built) / SECONDS:.0f} per "
              f"second; gzip of the {len(raw) // 1000} KB document {gz:.1f} ms")


if __name__ == "__main__":
    main()
