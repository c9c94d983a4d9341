"""Benchmark: a minute of reading 3 churning peers' shard status, whole or by news.

At 1,000 clusters x 50,000 workloads over 4 shards, each peer's document holds
12,500 rows and 250 clusters' views (`--nodes` nodes each). For `SECONDS` of the
reader's clock, every peer publishes every `shardstatus.COALESCE` s with some rows
changed (a cold start: results land all the time), and, with `--nodes-churn`, a node's
`used` changed in a few of its clusters too (capacity taken as pods land), or with
`--all-nodes-churn` in every one of its clusters (a cold start's apply phase: pods bind
everywhere at once). The reader polls each second, as `Shards._read_others` does, and
reads each new publication:

- whole: decoded whole at once, as every replica did before `shardstatus.NEWS`;
- by news, before: by `shardstatus.read_now`: left unread while its news (owner,
  views) are those held and its rows younger than `shardstatus.rows_late`; parsed by
  its news alone (`parse_news`, no row) when they changed; whole once the rows are
  due (the whole text parsed). Every replica read so before `News.health` and
  `News.rows`;
- by news, leading: the same, a whole read parsing only the clusters whose text
  changed (`decode_published`): the leader's reading now;
- by news, following: that, and news that differ in nodes alone (owner, health and
  unreachable times as held) left unread as rows are (`nodes_now` False): the other
  replicas' reading now.

Prints the decodes and the reader's CPU per minute for both: decoding the API
response of each GET of a whole ConfigMap (the JSON envelope around the document, as
the client parses it), decompressing and parsing (the peers' own encodes not counted,
the network neither):

    PYTHONPATH=. python bench/shardnews.py [--nodes-churn | --all-nodes-churn]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace

from clusters.capacity import NodeState
from controllers.persist import shardstatus
from controllers.runtime.gctune import tune
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId

SECONDS = 60
PEERS = 3


class Peer:
    """One peer shard's holder: its rows and views, published every `COALESCE` s."""

    def __init__(self, shard: int, clusters: int, rows: int, nodes: int,
                 spread: bool = False) -> None:
        self.names = [f"s{shard}-c{i:03d}" for i in range(clusters)]
        self.live = {(ClusterName(self.names[i % clusters]), WorkloadId(f"t/w{i:05d}")):
                     PlacementLive("Synced", "Progressing", "c0") for i in range(rows)}
        self.views = {n: shardstatus.ClusterNews("Healthy", None, tuple(
            NodeState(f"{n}-n{j:02d}", "NVIDIA-H100-80GB", 8, True, False, (), 0, 0)
            for j in range(nodes))) for n in self.names}
        self.encoder = shardstatus.Encoder()
        self.keys = list(self.live) if spread else sorted(self.live)
        """The rows changed in turn: with `spread`, each in another cluster (results
        land everywhere at once), else a cluster's rows one after the other."""
        self.owner = f"r{shard}"

    def publish(self, n: int, at: float, nodes_churn: int
                ) -> tuple[str, shardstatus.News, str]:
        """The document, its news and the text of a GET of its ConfigMap."""
        for i in range(24):  # 12 results a second land in a shard of a cold start
            key = self.keys[(n * 24 + i) % len(self.keys)]
            self.live[key] = PlacementLive("Synced", "Healthy", f"c{n}")
        if nodes_churn:
            for i in range(nodes_churn):
                name = self.names[(n * 4 + i) % len(self.names)]
                v = self.views[name]
                first = v.nodes[0]
                self.views[name] = replace(v, nodes=(
                    replace(first, used=(first.used + 1) % 9), *v.nodes[1:]))
        data = self.encoder.encode(self.owner, self.live, self.views, f"t{at:.1f}")
        assert self.encoder.news is not None
        return data, self.encoder.news, envelope(data, self.encoder.news, n)


def envelope(data: str, news: shardstatus.News, version: int) -> str:
    """What kube-apiserver answers a GET of the ConfigMap: the document in its object."""
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "aifleet-shard-1-status", "namespace": "aifleet-system",
        "resourceVersion": str(version), "labels": {"app.kubernetes.io/managed-by": "aifleet"},
        "annotations": {shardstatus.NEWS: news.text()}},
        "binaryData": {shardstatus.KEY: data}})


def fetched(text: str) -> str:
    """The document out of a GET's answer, decoded as the client decodes it."""
    got = json.loads(text)["binaryData"][shardstatus.KEY]
    assert isinstance(got, str)
    return got


def minute(peers: list[Peer], nodes_churn: int, by_news: bool, nodes_now: bool = True,
           cut: bool = False) -> tuple[dict[str, int], float]:
    """(counts, CPU seconds) of `SECONDS` of one reader of `peers`."""
    counts = {"whole": 0, "news": 0, "unread": 0}
    keep: Callable[[str], bool] | None = None
    decoders = [shardstatus.Decoder() for _ in peers]
    held: list[shardstatus.News | None] = [None] * len(peers)
    read_at: list[float | None] = [None] * len(peers)
    latest: list[tuple[str, shardstatus.News, str] | None] = [None] * len(peers)
    behind = [False] * len(peers)
    cpu = 0.0
    for p, peer in enumerate(peers):  # what the reader holds at the start
        data, news, _text = peer.publish(0, 0.0, nodes_churn)
        shardstatus.decode_doc(data, decoders[p], keep)
        held[p], read_at[p] = news, 0.0
    for second in range(1, SECONDS + 1):
        now = float(second)
        for p, peer in enumerate(peers):
            new = None
            if (second + p) % int(shardstatus.COALESCE) == 0:  # published this second
                new = latest[p] = peer.publish(second, now, nodes_churn)
            start = time.process_time()
            last = decoders[p].last
            assert last is not None
            age = None if read_at[p] is None else now - (read_at[p] or 0.0)
            rows_due = age is None or age >= shardstatus.rows_late(len(last.live))
            if new is None and not (behind[p] and rows_due):
                pass  # the resourceVersion did not move: a metadata-only look
            elif not by_news or rows_due:
                got = latest[p]
                assert got is not None
                if cut:
                    shardstatus.decode_published(fetched(got[2]), got[1], decoders[p], keep)
                else:
                    shardstatus.decode_doc(fetched(got[2]), decoders[p], keep)
                held[p], read_at[p], behind[p] = got[1], now, False
                counts["whole"] += 1
            elif new is not None and not shardstatus.read_now(
                    new[1], held[p], age, len(last.live), nodes_now):
                behind[p] = True
                counts["unread"] += 1
            elif new is not None:
                decoders[p].decode_news(shardstatus.parse_news(fetched(new[2]), new[1]),
                                        keep, last)
                held[p], behind[p] = new[1], True
                counts["news"] += 1
            cpu += time.process_time() - start
    return counts, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12_500, help="rows per peer")
    ap.add_argument("--clusters", type=int, default=250, help="clusters per peer")
    ap.add_argument("--nodes", type=int, default=16, help="nodes per cluster")
    churn = ap.add_mutually_exclusive_group()
    churn.add_argument("--nodes-churn", action="store_const", const=4, default=0,
                       dest="churn",
                       help="a node's capacity changes in 4 clusters of each publication")
    churn.add_argument("--all-nodes-churn", action="store_const", const=-1, dest="churn",
                       help="... in every cluster of each publication (a cold start)")
    ap.add_argument("--rows-spread", action="store_true",
                    help="the rows changed in a publication each in another cluster")
    args = ap.parse_args()
    churn = args.clusters if args.churn < 0 else args.churn
    tune()
    print(f"{PEERS} peers x {args.rows} rows, {args.clusters} clusters x {args.nodes} "
          f"nodes, a publication each {shardstatus.COALESCE:.0f} s, "
          f"{f'nodes churning in {churn} clusters' if churn else 'rows only churning'}"
          f"{', rows spread' if args.rows_spread else ''}; "
          f"rows_late {shardstatus.rows_late(args.rows):.2f} s")
    for what, by_news, nodes_now, cut in (
            ("whole", False, True, False), ("by news, before", True, True, False),
            ("by news, leading", True, True, True), ("by news, following", True, False, True)):
        peers = [Peer(s, args.clusters, args.rows, args.nodes, args.rows_spread)
                 for s in range(PEERS)]
        counts, cpu = minute(peers, churn, by_news, nodes_now, cut)
        print(f"{what:18}: per minute {counts['whole']} "
              f"decoded whole, {counts['news']} by news alone, {counts['unread']} left "
              f"unread; reader CPU {cpu * 1000:.0f} ms ({cpu * 1000 / SECONDS:.1f} ms/s)")


if __name__ == "__main__":
    main()
