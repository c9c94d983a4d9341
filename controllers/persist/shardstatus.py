"""Each shard's reconcile results, published in the home cluster for every replica.

With `--shards`, a replica reconciles only its shards' clusters, so only it knows how
each workload's last apply went there (`PlacementLive`: Synced / Failed, the commit,
why). So that any replica answers `/api/v1/status` for the whole fleet, the owner of
shard i keeps those results in the ConfigMap `aifleet-shard-<i>-status` of the
controller's namespace (gzipped JSON in `binaryData`, like the shared plan), written
when they change, and every replica reads the other shards' and shows them.

A replica connects only to its own shards' clusters, so the same document also carries
what the others need of them (`views`): per cluster its health, how long it has been
Unreachable, and its nodes (the capacity placement reads), with the wall time `at`
they were observed. The holder re-publishes at least every `REFRESH` of a Lease
duration even when nothing changed, so a reader tells a live shard from a silent one
by the document changing (`controllers.runtime.shards`; the rule is
`fleet.shards.published_health`). Older readers ignore the extra keys.

What it costs (issue 22). At 1,000 clusters x 50,000 workloads and 4 shards a document
holds ~12,500 rows (~1.5 MB of JSON, ~50 KB gzipped when the rows look alike), and
while workloads churn every shard's changes each second. Encoding the whole shard
(`dataclasses.asdict` per row, gzip level 9) and decoding each peer's whole (a
`PlacementLive` per row, by reflection), then comparing all of its rows, took ~490 ms
of CPU a second per replica; now ~100 ms (`bench/shardshare.py`), and a peer that did
not change costs a metadata-only GET, not a GET of its document. Now:

- `Encoder` keeps each row's JSON text and each cluster's joined text, so a
  publication re-encodes only the rows that changed and re-joins only their clusters;
  the whole is still gzipped (it is one ConfigMap value), at level 6 (`LEVEL`);
- `Decoder` keeps what the last document of a shard decoded to, per cluster and per
  row, keyed by the rows as parsed: an unchanged cluster or row is not built again
  (the same objects, which also makes `ShardRows.merge` compare them by identity).
  Decompressing and parsing the text stays: it is paid per publication read;
- a reader looks at a peer's ConfigMap by its metadata first (`published_version`),
  and GETs it whole (`read_published`) only when its resourceVersion moved;
- while only rows or nodes change, a holder publishes at most every `COALESCE`
  (health changes at once; `REFRESH` is never stretched): results reach the others
  up to that much later, and each publication and read covers its seconds' changes.

What is left of a read is `json.loads` of the whole text (~1.7 MB, ~20 ms) and one
comparison of each cluster's parsed rows with the last (since taken too: `News.rows`,
below, cuts the same text by cluster; no new `VERSION`). In a cold start rows change in every
publication, so each replica still parsed its peers' whole every ~2 s (13% of its
loop at 1,000 x 50,000): now a reader reads a peer's rows at most every `rows_late`
(1 s per 2,000 rows, at most 10 s), and its news (owner, health, nodes: what
placement needs) at once, by the `NEWS` annotation (`News`, `read_now`,
`parse_news`; `Shards._read_others`). In a cold start nodes change in every
publication too, and only the leader places: the annotation also says the owner's and
health's own digest (`News.health`), so a replica that does not lead reads a change of
nodes alone with the rows (`read_now`'s `nodes_now`). And it says where each cluster's
rows are (`News.rows`): a whole read parses only the clusters whose text changed
(`parse_split`, `decode_published`), a changed view only builds its nodes that changed.

The text is exactly the one `encode` always wrote (the same JSON, keys sorted; only
the gzip level differs, which no reader sees), so replicas of the previous version and
of this one read each other's during a rolling upgrade; the annotation's later keys
(`health`, `rows`) are ignored by older readers, and an older writer's annotation
without them is read as before (every change at once, parsed whole). A document a reader cannot
decode (another `VERSION`, torn) is refused whole: the reader keeps what it had, and
that shard's news goes stale, so its clusters turn Unknown to placement, never
failed over.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusters.capacity import NodeState
from clusters.client import KubeClient
from clusters.configmap import get_configmap, get_configmap_metadata, put_configmap
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.shards import lease_name

KEY = "status.json.gz"
NEWS = "aifleet.io/shard-news"
"""The annotation that says what of the document a reader needs promptly (`News`): a
metadata-only GET returns it. Older readers ignore it; older writers do not write it
(then every new publication is read at once, as before)."""
ROWS_PER_SECOND = 2_000
ROWS_LATE_MAX = 10.0
"""A peer's rows (the status view's alone) may be read up to `rows_late` seconds after
they changed: 1 s per `ROWS_PER_SECOND` rows, at most `ROWS_LATE_MAX`."""
VERSION = 1
LEVEL = 6
"""gzip level: zlib's default. 9 (`gzip.compress`'s) costs more for a few per cent."""
REFRESH = 1 / 3
"""The holder re-publishes at least every third of its Lease duration."""
COALESCE = 2.0
"""While only rows or nodes change, a shard is published at most this often (seconds;
never later than `REFRESH` asks): a result reaches the other replicas up to this much
later, and each publication, and each read of it, covers the changes of its seconds."""

Key = tuple[ClusterName, WorkloadId]
_TAIL = '"owner":'
_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


@dataclass(frozen=True, slots=True)
class ClusterNews:
    """One cluster as its shard's holder saw it."""

    health: str
    unreachable_for: float | None
    nodes: tuple[NodeState, ...]


@dataclass(frozen=True, slots=True)
class ShardDoc:
    owner: str
    live: dict[Key, PlacementLive]
    views: dict[ClusterName, ClusterNews]
    at: str | None
    """When the holder observed `views` (RFC 3339, its clock), None in an old document."""


@dataclass(frozen=True, slots=True)
class News:
    """What a publication carries that its readers need promptly, said in its
    `NEWS` annotation: a digest of its owner and views (health, how long Unreachable,
    nodes: the text of the document from `"owner":` on, which holds nothing else but
    `version`), where that text begins in the document's JSON (`tail`: a reader
    parses it alone), and `at`. Equal digests: equal owner and views."""

    digest: str
    tail: int
    at: str | None
    views: tuple[int, ...] = ()
    """Where in that text the views' first cluster begins, then each cluster's length
    (its `"name":{...}`, a comma between): a reader parses only the clusters whose
    text changed. Empty: not said (the text is parsed whole)."""
    health: str | None = None
    """`health_digest` of the owner and views: what of the news a replica that does
    not lead needs at once (`read_now`'s `nodes_now`). None: not said (an older
    writer's): every change of `digest` is read at once."""
    rows: tuple[int, ...] = ()
    """Where in the document the clusters' rows begin (the first cluster's
    `"name":{...}`), then each cluster's length, a comma between: a whole read parses
    only the clusters whose text changed (`parse_split`). Empty: not said (an older
    writer's: parsed whole)."""

    def text(self) -> str:
        doc: dict[str, Any] = {"at": self.at, "digest": self.digest, "tail": self.tail}
        if self.views:
            doc["views"] = list(self.views)
        if self.health is not None:
            doc["health"] = self.health
        if self.rows:
            doc["rows"] = list(self.rows)
        return _dumps(doc)


def news_of(annotations: object) -> News | None:
    """The `NEWS` annotation read back; None when there is none or it is not one (an
    older writer's, or garbled: the reader then reads the publication at once)."""
    if not isinstance(annotations, dict):
        return None
    text = annotations.get(NEWS)
    if not isinstance(text, str):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    digest, tail, at = doc.get("digest"), doc.get("tail"), doc.get("at")
    views, health, rows = doc.get("views", []), doc.get("health"), doc.get("rows", [])
    if not isinstance(digest, str) or not digest or type(tail) is not int or tail <= 0 \
            or not (at is None or isinstance(at, str)) or not isinstance(views, list) \
            or not all(type(n) is int and n > 0 for n in views) \
            or not (health is None or (isinstance(health, str) and health)) \
            or not isinstance(rows, list) or not all(type(n) is int and n > 0 for n in rows):
        return None
    return News(digest, tail, at, tuple(views), health, tuple(rows))


def digest_of(tail: str) -> str:
    """The digest of a document's text from `"owner":` on (`News.digest`)."""
    return hashlib.blake2b(tail.encode(), digest_size=12).hexdigest()


def health_digest(owner: str, views: Mapping[str, ClusterNews] | None) -> str:
    """The digest of a publication's owner and, per cluster of its views, its health
    and how long it has been Unreachable (`News.health`): equal exactly when those
    are, whatever the nodes. A holder computes it from what it publishes; a reader
    only compares it with the one it holds (the document's own `digest` is the one
    checked against the text read)."""
    said = [owner, None if views is None else [
        [name, views[name].health, views[name].unreachable_for] for name in sorted(views)]]
    return hashlib.blake2b(_dumps(said).encode(), digest_size=12).hexdigest()


def rows_late(rows: int) -> float:
    """How long a peer's rows may stay unread after they changed: 1 s per
    `ROWS_PER_SECOND` rows, at most `ROWS_LATE_MAX` (under `ROWS_PER_SECOND` rows,
    under a second: read at the next poll, as every publication was)."""
    return min(ROWS_LATE_MAX, rows / ROWS_PER_SECOND)


def read_now(news: News | None, held: News | None, rows_age: float | None,
             rows: int, nodes_now: bool = True) -> bool:
    """Whether a reader fetches a peer's new publication now, or leaves it unread for
    a while: now when its news is unknown (an older writer's: no `NEWS`) or differs
    from the news held (`held`, None when none is), or when the rows held were read
    (`rows_age` seconds ago; None: never) at least `rows_late(rows)` ago. Without
    `nodes_now` (a replica that does not lead: its nodes of the others feed its status
    alone, placement is the leader's), news that differ only in nodes wait as rows
    do: read now only when the owner or a cluster's health or unreachable time
    differs (`News.health`; not said by either: read now)."""
    if news is None or held is None:
        return True
    if news.digest != held.digest and (
            nodes_now or news.health is None or news.health != held.health):
        return True
    return rows_age is None or rows_age >= rows_late(rows)


def name_of(shard: int) -> str:
    return f"{lease_name(shard)}-status"


def row_doc(pl: PlacementLive) -> dict[str, Any]:
    """One row as stored: every field of `PlacementLive` by its name (as
    `dataclasses.asdict` had it), spelt out: asdict walks and deep-copies by reflection."""
    return {"sync": pl.sync, "health": pl.health, "commit": pl.commit,
            "message": pl.message, "unschedulable": pl.unschedulable,
            "queued": pl.queued, "recreate": pl.recreate, "waiting": pl.waiting}


def _row(row: Mapping[str, Any]) -> PlacementLive:
    """`row_doc` read back; keys it does not know (a newer writer's) are ignored."""
    return PlacementLive(row["sync"], row["health"], row.get("commit"),
                         row.get("message"), row.get("unschedulable"), row.get("queued"),
                         row.get("recreate", False), row.get("waiting"))


def node_doc(n: NodeState) -> dict[str, Any]:
    return {"name": n.name, "product": n.product, "allocatable": n.allocatable,
            "ready": n.ready, "unschedulable": n.unschedulable,
            "taints": [list(t) for t in n.taints], "used": n.used,
            "used_ours": n.used_ours, "dra_devices": n.dra_devices,
            "dra_product": n.dra_product, "dra_used": n.dra_used,
            "dra_used_ours": n.dra_used_ours}


def _node(row: Mapping[str, Any]) -> NodeState:
    return NodeState(
        row["name"], row.get("product"), row["allocatable"], row["ready"],
        row["unschedulable"], tuple(tuple(t) for t in row.get("taints") or ()),
        row.get("used", 0), row.get("used_ours", 0), row.get("dra_devices", 0),
        row.get("dra_product"), row.get("dra_used", 0), row.get("dra_used_ours", 0))


def view_doc(v: ClusterNews) -> dict[str, Any]:
    return {"health": v.health, "unreachableFor": v.unreachable_for,
            "nodes": [node_doc(n) for n in v.nodes]}


def content(owner: str, live: Mapping[Key, PlacementLive],
            views: Mapping[str, ClusterNews] | None = None) -> dict[str, Any]:
    """The document but its time: what a holder compares to decide that it changed."""
    rows: dict[str, dict[str, Any]] = {}
    for (cluster, wid), pl in sorted(live.items()):
        rows.setdefault(cluster, {})[wid] = row_doc(pl)
    doc: dict[str, Any] = {"version": VERSION, "owner": owner, "clusters": rows}
    if views is not None:
        doc["views"] = {name: view_doc(v) for name, v in sorted(views.items())}
    return doc


def encode_raw(raw: bytes) -> str:
    """The stored text of `Encoder.raw`'s JSON."""
    return base64.b64encode(gzip.compress(raw, compresslevel=LEVEL, mtime=0)
                            ).decode("ascii")


def encode(owner: str, live: Mapping[Key, PlacementLive],
           views: Mapping[str, ClusterNews] | None = None, at: str | None = None) -> str:
    """The document, built whole (`Encoder` keeps its parts for the next)."""
    return Encoder().encode(owner, live, views, at)


@dataclass(frozen=True, slots=True)
class _Cluster:
    """One cluster's rows as last published, each row's text, and the whole."""

    rows: dict[WorkloadId, PlacementLive]
    texts: dict[WorkloadId, str]
    text: str


class Encoder:
    """One shard's last publication in parts: each row's JSON text, each cluster's
    rows joined, each cluster's view. The next publication re-encodes the rows that
    are not the same objects (nor equal) as then, and re-joins (and sorts) only the
    clusters they are in; a row of the live rows is replaced, never changed, when its
    cluster reconciles, so most rows are found by identity."""

    def __init__(self) -> None:
        self._clusters: dict[ClusterName, _Cluster] = {}
        self._views: dict[str, tuple[ClusterNews, str]] = {}
        self.encoded = 0
        """Rows whose text was made (not reused), over all publications."""
        self.news: News | None = None
        """The last document's `News` (for its `NEWS` annotation)."""

    def raw(self, owner: str, live: Mapping[Key, PlacementLive],
            views: Mapping[str, ClusterNews] | None = None, at: str | None = None
            ) -> bytes:
        """`json.dumps(content(...) | {"at": at}, sort_keys=True)` compactly, byte for
        byte, from the parts kept."""
        by_cluster: dict[ClusterName, dict[WorkloadId, PlacementLive]] = {}
        for (cluster, wid), pl in live.items():
            got = by_cluster.get(cluster)
            if got is None:
                got = by_cluster[cluster] = {}
            got[wid] = pl
        clusters: dict[ClusterName, _Cluster] = {}
        for cluster in sorted(by_cluster):
            mine = by_cluster[cluster]
            kept = self._clusters.get(cluster)
            if kept is not None and len(kept.rows) == len(mine) and all(
                    kept.rows.get(w) is pl for w, pl in mine.items()):
                clusters[cluster] = kept  # the same rows: the same text
                continue
            had_rows, had_texts = (kept.rows, kept.texts) if kept is not None else ({}, {})
            texts: dict[WorkloadId, str] = {}
            for wid in sorted(mine):
                pl = mine[wid]
                had = had_rows.get(wid)
                if had is None or (had is not pl and had != pl):
                    texts[wid] = _dumps(wid) + ":" + _dumps(row_doc(pl))
                    self.encoded += 1
                else:
                    texts[wid] = had_texts[wid]
            clusters[cluster] = _Cluster(
                mine, texts, _dumps(cluster) + ":{" + ",".join(texts.values()) + "}")
        out = []
        if at is not None:
            out.append('"at":' + _dumps(at))
        rows_at = 1 + sum(len(t) + 1 for t in out) + len('"clusters":{')
        out.append('"clusters":{' + ",".join(c.text for c in clusters.values()) + "}")
        head = "{" + ",".join(out) + ","
        out.append(_TAIL + _dumps(owner))
        out.append('"version":' + _dumps(VERSION))
        kept_views = {}
        spans: tuple[int, ...] = ()
        if views is not None:
            view_texts = []
            for name in sorted(views):
                v = views[name]
                part_v = self._views.get(name)
                if part_v is None or part_v[0] != v:
                    part_v = (v, _dumps(name) + ":" + _dumps(view_doc(v)))
                kept_views[name] = part_v
                view_texts.append(part_v[1])
            start = 1 + sum(len(t) + 1 for t in out) - len(head)  # "{", the commas
            spans = (start + len('"views":{'), *(len(t) for t in view_texts))
            out.append('"views":{' + ",".join(view_texts) + "}")
        text = "{" + ",".join(out) + "}"
        # only now: a publication that failed half-way leaves the parts as they were
        self._clusters, self._views = clusters, kept_views
        self.news = News(digest_of(text[len(head):]), len(head), at, spans,
                         health_digest(owner, views),
                         (rows_at, *(len(c.text) for c in clusters.values())))
        return text.encode()

    def encode(self, owner: str, live: Mapping[Key, PlacementLive],
               views: Mapping[str, ClusterNews] | None = None, at: str | None = None
               ) -> str:
        return encode_raw(self.raw(owner, live, views, at))


def parse(data: str) -> dict[str, Any]:
    """The document as stored, parsed; ValueError/OSError/EOFError when it is not one
    of this `VERSION` (a newer writer's is refused whole, never half-read)."""
    doc = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} shard status document")
    return doc


def parse_news(data: str, news: News) -> dict[str, Any]:
    """Of the document as stored, what its `NEWS` says is needed promptly (`owner`,
    `version`, `views`, and `at`), parsed without its rows: the text from `news.tail`
    on, checked against `news.digest`. ValueError/OSError/EOFError when it is not that
    (torn, another `VERSION`, or the annotation does not match the data): refused
    whole, as `parse`."""
    return _parse_tail(gzip.decompress(base64.b64decode(data, validate=True)), news)


def _parse_tail(raw: bytes, news: News) -> dict[str, Any]:
    """`parse_news` of the document's text `raw`: the tail checked against the news'
    digest (once), then parsed."""
    tail = raw[news.tail:]
    if not tail.startswith(_TAIL.encode()) or digest_of(tail.decode()) != news.digest:
        raise ValueError("the shard news annotation does not match the document")
    if not news.views:
        doc = json.loads(b"{" + tail)
    else:  # the clusters' texts cut apart, each parsed by the decoder if new
        at, *lengths = news.views
        texts, end = _cut(tail, at, lengths)
        if not tail[:at].endswith(b'"views":{') or tail[end - 1:] != b"}}":
            raise ValueError("the shard news' views do not match the document")
        doc = json.loads(b"{" + tail[:at] + b"}}")
        if isinstance(doc, dict):
            doc["views"] = texts
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} shard status document")
    doc["at"] = news.at
    return doc


def _cut(text: bytes, at: int, lengths: list[int]) -> tuple[list[bytes], int]:
    """The members of an object's text cut at `at` by their `lengths`, a comma
    between each two (ValueError when one is not there), and where the cut ends (past
    the closing brace that must follow). Each member is later parsed alone: a cut
    that fell inside a string leaves one that does not parse, so members that all
    parse are the object's own."""
    texts, end = [], at
    for i, n in enumerate(lengths):
        if i and text[end - 1:end] != b",":
            raise ValueError("the shard news' cut does not match the document")
        texts.append(text[end:end + n])
        end += n + 1
    if not lengths:
        end += 1
    return texts, end


def parse_split(data: str, news: News) -> dict[str, Any]:
    """The document as stored, whole, with its clusters' rows and views left as
    their texts (lists of `"name":{...}`), cut where its `NEWS` says (`News.rows`,
    `News.views`), for `Decoder.decode_texts` to parse only those not as they were:
    the news checked as `parse_news` does, and the rows' cut against the text between
    the head and the news. ValueError/OSError/EOFError when it is not that: refused
    whole, as `parse`."""
    if not news.rows or not news.views:
        raise ValueError("the shard news say no cut")
    raw = gzip.decompress(base64.b64decode(data, validate=True))
    doc = _parse_tail(raw, news)
    start, *lengths = news.rows
    texts, end = _cut(raw, start, lengths)
    opening = start - len(b'"clusters":{')
    head = raw[:opening]
    if raw[opening:start] != b'"clusters":{' or end + 1 != news.tail or \
            raw[end - 1:end + 1] != b"}," or not head.startswith(b"{") or \
            json.loads(head[:-1] + b"}" if len(head) > 1 else b"{}") != (
                {} if news.at is None else {"at": news.at}):
        raise ValueError("the shard news' rows do not match the document")
    doc["clusters"] = texts
    return doc


def decode_doc(data: str, parts: Decoder | None = None,
               keep: Callable[[str], bool] | None = None) -> ShardDoc:
    """ValueError/KeyError/TypeError when `data` is not `encode`'s. With `parts`, what
    is as it was in the last document decoded with it is not built again; with
    `keep`, only the clusters it keeps (the shard's: a cluster moved by a resize is
    its new shard's holder's to publish)."""
    return (parts or Decoder()).decode(parse(data), keep)


def decode_published(data: str, news: News | None, parts: Decoder,
                     keep: Callable[[str], bool] | None = None) -> ShardDoc:
    """`decode_doc`, parsing only the clusters whose rows' or view's text changed
    since the last document `parts` read so, when the publication's `news` say
    where they are (`parse_split`; an older writer's: parsed whole). The same
    document either way; refused as `decode_doc`."""
    if news is not None and news.rows and news.views:
        return parts.decode_texts(parse_split(data, news), keep)
    return decode_doc(data, parts, keep)


class Decoder:
    """A peer shard's last document as this replica decoded it: per cluster its rows
    as parsed and the `PlacementLive`s built of them, per row the same, per cluster
    its view. A new publication differs from the last in the rows that changed (and
    `at`), so only those are built; an unchanged cluster is found by comparing its
    parsed rows whole (one C-level dict comparison). The key is the rows themselves:
    cheaper than any digest, and exact (the way `sharedplan.PublishedParts` does)."""

    def __init__(self) -> None:
        self._clusters: dict[str, tuple[Any, dict[Key, PlacementLive]]] = {}
        self._views: dict[str, tuple[Any, ClusterNews]] = {}
        self._texts: dict[bytes, tuple[str, Any]] = {}
        """Each cluster's view text as last read by news (`parse_news`), parsed."""
        self._row_texts: dict[bytes, tuple[str, Any]] = {}
        """Each cluster's rows' text as last read cut (`parse_split`), parsed, by the
        text's blake2b digest: a peer's rows' text is megabytes, kept a copy of per
        peer otherwise (its views' texts, a tenth of it, are kept as they are)."""
        self.rows_parsed = 0
        """Clusters' rows' texts parsed reading cut (not found as they were)."""
        self.views_parsed = 0
        """Clusters' view texts parsed reading by news (not found as they were)."""
        self.built = 0
        """Rows built (not reused), over all decodes."""
        self.nodes_built = 0
        """Nodes built (not reused), over all decodes."""
        self.last: ShardDoc | None = None
        """The document last decoded here."""
        self.changed: dict[ClusterName, dict[Key, PlacementLive]] = {}
        """The clusters whose rows the last decode found different from those of the
        document before it (`last` then), with their rows now (none: gone): all a
        merge of the new document over the one before needs to look at
        (`ShardRows.merge`)."""

    def decode_news(self, doc: Mapping[str, Any], keep: Callable[[str], bool] | None,
                    rows: ShardDoc) -> ShardDoc:
        """A publication read by its news alone (`parse_news`): its owner, views and
        `at`, with the rows of `rows` (the last document decoded whole, whose parts
        stay this decoder's: the next `decode` builds only the rows changed since
        it). Nothing is kept of `doc` but its views' parts."""
        texts = doc.get("views")
        kept_texts: dict[bytes, tuple[str, Any]] = {}
        if isinstance(texts, list):  # cut apart: only the clusters whose text changed
            doc = {**doc, "views": self._parsed(texts, self._texts, kept_texts, "views")}
        views, kept_views = self._views_of(doc, keep)
        at = doc.get("at")
        self._views, self._texts = kept_views, kept_texts
        return ShardDoc(str(doc["owner"]), rows.live, views,
                        at if isinstance(at, str) else None)

    def _parsed(self, texts: list[bytes], cache: dict[bytes, tuple[str, Any]],
                kept: dict[bytes, tuple[str, Any]], what: str) -> dict[str, Any]:
        """Members cut apart (`parse_news`, `parse_split`) parsed into one object: each
        found in `cache` as it was last read, or parsed (and counted); all of them put
        in `kept`."""
        parsed: dict[str, Any] = {}
        for text in texts:
            key = text if what == "views" else hashlib.blake2b(text, digest_size=16).digest()
            got = cache.get(key)
            if got is None:
                if what == "views":
                    self.views_parsed += 1
                else:
                    self.rows_parsed += 1
                one = json.loads(b"{" + text + b"}")
                if not isinstance(one, dict) or len(one) != 1:
                    raise ValueError(f"not one cluster's {what}")
                got = next(iter(one.items()))
            kept[key] = got
            if got[0] in parsed:
                raise ValueError(f"a cluster's {what} twice")
            parsed[got[0]] = got[1]
        return parsed

    def decode_texts(self, doc: Mapping[str, Any], keep: Callable[[str], bool] | None = None
                     ) -> ShardDoc:
        """`decode` of a document read cut (`parse_split`): only the clusters whose
        rows' or view's text is not as it was in the last one read so are parsed."""
        kept_rows: dict[bytes, tuple[str, Any]] = {}
        kept_views: dict[bytes, tuple[str, Any]] = {}
        whole = {**doc,
                 "clusters": self._parsed(doc["clusters"], self._row_texts, kept_rows,
                                          "rows"),
                 "views": self._parsed(doc["views"], self._texts, kept_views, "views")}
        shard = self.decode(whole, keep)
        self._row_texts, self._texts = kept_rows, kept_views
        return shard

    def _views_of(self, doc: Mapping[str, Any], keep: Callable[[str], bool] | None
                  ) -> tuple[dict[ClusterName, ClusterNews],
                             dict[str, tuple[Any, ClusterNews]]]:
        views: dict[ClusterName, ClusterNews] = {}
        kept_views: dict[str, tuple[Any, ClusterNews]] = {}
        for name, v in _items(doc.get("views") or {}):
            if keep is not None and not keep(name):
                continue
            _items(v)
            part_v = self._views.get(name)
            if part_v is None or (part_v[0] is not v and part_v[0] != v):
                gone = v.get("unreachableFor")
                part_v = (v, ClusterNews(
                    str(v["health"]), float(gone) if gone is not None else None,
                    self._nodes(v.get("nodes") or (), part_v)))
            kept_views[name] = part_v
            views[ClusterName(name)] = part_v[1]
        return views, kept_views

    def _nodes(self, rows: Any, before: tuple[Any, ClusterNews] | None
               ) -> tuple[NodeState, ...]:
        """A cluster's nodes: each as it was in the view before (`before`: as parsed,
        as built) where its parsed row is equal at the same place, else built. As
        pods bind, a node or two of a cluster change at a time, not all of them."""
        had_rows = before[0].get("nodes") or () if before is not None else ()
        had = before[1].nodes if before is not None else ()
        out = []
        for i, row in enumerate(rows):
            if i < len(had) and had_rows[i] == row:
                out.append(had[i])
            else:
                self.nodes_built += 1
                out.append(_node(row))
        return tuple(out)

    def decode(self, doc: Mapping[str, Any], keep: Callable[[str], bool] | None = None
               ) -> ShardDoc:
        clusters: dict[str, tuple[Any, dict[Key, PlacementLive]]] = {}
        out: dict[Key, PlacementLive] = {}
        last = self._clusters
        changed: dict[ClusterName, dict[Key, PlacementLive]] = {}
        for cluster, rows in _items(doc["clusters"]):
            if keep is not None and not keep(cluster):
                continue
            _items(rows)
            part = last.get(cluster)
            if part is None or (part[0] is not rows and part[0] != rows):
                raw, before = part if part is not None else ({}, {})
                built: dict[Key, PlacementLive] = {}
                name = ClusterName(cluster)
                for wid, row in rows.items():
                    key = (name, WorkloadId(wid))
                    had = before.get(key)
                    if had is None or raw.get(wid) != row:
                        had = _row(row)
                        self.built += 1
                    built[key] = had
                part = (rows, built)
                changed[name] = built
            clusters[cluster] = part
            out.update(part[1])
        views, kept_views = self._views_of(doc, keep)
        at = doc.get("at")
        shard = ShardDoc(str(doc["owner"]), out, views, at if isinstance(at, str) else None)
        for cluster in last.keys() - clusters.keys():
            changed[ClusterName(cluster)] = {}
        # only now: a document that failed half-way leaves the parts as they were
        self._clusters, self._views = clusters, kept_views
        self.last, self.changed = shard, changed
        return shard


def _items(value: Any) -> Any:
    """`value.items()`; TypeError (a refused document) when it is not an object."""
    if not isinstance(value, dict):
        raise TypeError(f"an object expected, not {type(value).__name__}")
    return value.items()


def decode(data: str) -> tuple[str, dict[Key, PlacementLive]]:
    """(owner, results); ValueError/KeyError/TypeError when `data` is not `encode`'s."""
    doc = decode_doc(data)
    return doc.owner, doc.live


async def write(client: KubeClient, namespace: str, shard: int, data: str,
                news: News | None = None) -> None:
    """`data`, with its `news` (`Encoder.news`) in the `NEWS` annotation (the same
    object, one write: a reader never sees one without the other). ClusterError or
    TimeoutError when it cannot be written now."""
    await put_configmap(client, name_of(shard), {"binaryData": {KEY: data}},
                        namespace=namespace,
                        annotations={NEWS: news.text()} if news is not None else None)


async def read(client: KubeClient, namespace: str, shard: int) -> str | None:
    """The encoded document, None when there is none; ClusterError or TimeoutError when
    it cannot be read now."""
    return (await read_published(client, namespace, shard))[1]


async def published_version(client: KubeClient, namespace: str, shard: int
                            ) -> str | None:
    """The resourceVersion of the shard's ConfigMap, read as its metadata alone (a few
    hundred bytes, not the document); None when there is none. Every write changes
    it, so a reader fetches the document (`read_published`) only when it moved.
    ClusterError or TimeoutError when it cannot be read now."""
    return (await published_news(client, namespace, shard))[0]


async def published_news(client: KubeClient, namespace: str, shard: int
                         ) -> tuple[str | None, News | None]:
    """`published_version`, and the publication's `News` (None: an older writer's)
    from the same metadata-only GET."""
    meta = await get_configmap_metadata(client, name_of(shard), namespace=namespace)
    version = (meta or {}).get("resourceVersion")
    return (version if isinstance(version, str) and version else None,
            news_of((meta or {}).get("annotations")))


async def read_published(client: KubeClient, namespace: str, shard: int
                         ) -> tuple[str | None, str | None]:
    """(the ConfigMap's resourceVersion, the encoded document); (None, None) when
    there is none; ClusterError or TimeoutError when it cannot be read now."""
    version, data, _news = await read_with_news(client, namespace, shard)
    return version, data


async def read_with_news(client: KubeClient, namespace: str, shard: int
                         ) -> tuple[str | None, str | None, News | None]:
    """`read_published`, and the `News` written with that document."""
    cm = await get_configmap(client, name_of(shard), namespace=namespace)
    if cm is None:
        return None, None, None
    meta = cm.get("metadata") or {}
    version = meta.get("resourceVersion")
    data = (cm.get("binaryData") or {}).get(KEY)
    return (version if isinstance(version, str) and version else None,
            data if isinstance(data, str) else None, news_of(meta.get("annotations")))
