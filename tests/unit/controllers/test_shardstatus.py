"""`controllers.persist.shardstatus`: a shard's reconcile results, as published."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import asdict, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.capacity import NodeState
from controllers.persist import shardstatus
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId

Key = tuple[ClusterName, WorkloadId]


def test_results_round_trip_with_their_owner() -> None:
    live = {
        (ClusterName("eu-fra-1"), WorkloadId("t/a")): PlacementLive("Synced", "Healthy", "c1"),
        (ClusterName("eu-fra-1"), WorkloadId("t/b")): PlacementLive(
            "Failed", "Unknown", None, message="422: spec.replicas", recreate=True),
        (ClusterName("us-east-1"), WorkloadId("t/a")): PlacementLive(
            "Synced", "Progressing", "c0", queued="queued by Kueue"),
    }
    owner, back = shardstatus.decode(shardstatus.encode("replica-1", live))
    assert owner == "replica-1"
    assert back == live
    assert shardstatus.encode("replica-1", live) == shardstatus.encode("replica-1", live)
    assert shardstatus.name_of(2) == "aifleet-shard-2-status"


def test_health_and_nodes_round_trip_with_when_they_were_observed() -> None:
    """What the other shards plan and show from (issue 22): the nodes come back as
    the capacity snapshot reads them, taints included; an old document has none."""
    node = NodeState("n1", "NVIDIA-H100", 8, True, False,
                     (("gpu-maint", None, "NoSchedule"),), used=3, used_ours=2)
    views = {"eu-fra-1": shardstatus.ClusterNews("Healthy", None, (node,)),
             "us-east-1": shardstatus.ClusterNews("Unreachable", 42.5, ())}
    doc = shardstatus.decode_doc(shardstatus.encode("r1", {}, views,
                                                    "2026-12-03T19:00:00.000+00:00"))
    assert (doc.owner, doc.at) == ("r1", "2026-12-03T19:00:00.000+00:00")
    assert doc.views == views
    assert doc.views[ClusterName("eu-fra-1")].nodes[0].held_ours == 2
    old = shardstatus.decode_doc(shardstatus.encode("r1", {}))
    assert (old.views, old.at) == ({}, None)


@pytest.mark.parametrize("data", [
    "not base64!",
    base64.b64encode(b"not gzip").decode(),
    base64.b64encode(gzip.compress(b'{"version": 99, "owner": "x", "clusters": {}}')).decode(),
    base64.b64encode(gzip.compress(b'["a list"]')).decode(),
], ids=["not-base64", "not-gzip", "other-version", "not-a-document"])
def test_what_is_not_a_shard_status_is_refused(data: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError, OSError, EOFError)):
        shardstatus.decode(data)


# -- issue 22: parts kept between publications and between reads ----------------------

def old_raw(owner: str, live: dict[Key, PlacementLive],
            views: dict[str, shardstatus.ClusterNews] | None, at: str | None) -> bytes:
    """What the previous version wrote (`dataclasses.asdict` per row and node): the
    text a replica of it reads, and writes for this one to read."""
    rows: dict[str, dict[str, Any]] = {}
    for (cluster, wid), pl in sorted(live.items()):
        rows.setdefault(cluster, {})[wid] = asdict(pl)
    doc: dict[str, Any] = {"version": 1, "owner": owner, "clusters": rows}
    if views is not None:
        doc["views"] = {name: {"health": v.health, "unreachableFor": v.unreachable_for,
                               "nodes": [asdict(n) for n in v.nodes]}
                        for name, v in sorted(views.items())}
    if at is not None:
        doc["at"] = at
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def old_encode(*args: Any) -> str:
    return base64.b64encode(gzip.compress(old_raw(*args), mtime=0)).decode("ascii")


text = st.text(max_size=6)
optional = st.none() | text
placement = st.builds(PlacementLive, st.sampled_from(["Synced", "Failed", "Applying"]),
                      st.sampled_from(["Healthy", "Progressing"]), optional,
                      optional, optional, optional, st.booleans(), optional)
key = st.tuples(st.sampled_from(["a", "b", "c\"}", "é"]).map(ClusterName),
                text.map(WorkloadId))
node = st.builds(NodeState, text, optional, st.integers(0, 8), st.booleans(),
                 st.booleans(), st.lists(st.tuples(text, optional, text), max_size=2
                                         ).map(tuple), st.integers(0, 8))
news = st.builds(shardstatus.ClusterNews, st.sampled_from(["Healthy", "Unreachable"]),
                 st.none() | st.floats(0, 1e6), st.lists(node, max_size=2).map(tuple))
rows = st.dictionaries(key, placement, max_size=12)
views_ = st.none() | st.dictionaries(st.sampled_from(["a", "b", "c\"}"]), news, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(rows, views_, optional), min_size=1, max_size=4))
def test_publications_with_kept_parts_are_the_previous_versions_text_and_read_back(
        publications: list[tuple[dict[Key, PlacementLive],
                                 dict[str, shardstatus.ClusterNews] | None, str | None]]
        ) -> None:
    """One encoder and one decoder through a run of publications (each some rows
    changed, added or gone from the last): each text is byte for byte the one the
    previous version's encoder made (so a replica of either reads the other's), and
    decodes, with the parts kept or whole, to what was published."""
    encoder, decoder = shardstatus.Encoder(), shardstatus.Decoder()
    for live, views, at in publications:
        raw = encoder.raw("r1", live, views, at)
        assert raw == old_raw("r1", live, views, at)
        data = shardstatus.encode_raw(raw)
        kept = shardstatus.decode_doc(data, decoder)
        whole = shardstatus.decode_doc(old_encode("r1", live, views, at))
        assert kept == whole
        assert (kept.owner, kept.live, kept.at) == ("r1", live, at)
        assert kept.views == (views or {})


def many(n: int = 300) -> dict[Key, PlacementLive]:
    return {(ClusterName(f"c{i % 7}"), WorkloadId(f"t/w{i:04d}")):
            PlacementLive("Synced", "Healthy", "c1") for i in range(n)}


def test_a_publication_re_encodes_only_the_rows_that_changed() -> None:
    live = many()
    encoder = shardstatus.Encoder()
    encoder.encode("r1", live, {}, "t0")
    assert encoder.encoded == len(live)
    encoder.encode("r1", live, {}, "t1")  # only `at` moved
    assert encoder.encoded == len(live)
    one = (ClusterName("c3"), WorkloadId("t/w0003"))
    live[one] = PlacementLive("Failed", "Unknown", "c2", message="refused")
    del live[(ClusterName("c4"), WorkloadId("t/w0004"))]
    data = encoder.encode("r1", live, {}, "t2")
    assert encoder.encoded == len(many()) + 1
    assert shardstatus.decode_doc(data).live == live


def test_a_peers_next_document_builds_only_the_rows_that_changed() -> None:
    """Reading a peer's re-publication (only `at` moved) builds no row and gives the
    very rows of the last read (which `ShardRows.merge` then finds by identity); one
    changed row builds one row, and a row removed is gone."""
    live = many()
    decoder = shardstatus.Decoder()
    first = shardstatus.decode_doc(shardstatus.encode("r1", live, {}, "t0"), decoder)
    assert decoder.built == len(live)
    again = shardstatus.decode_doc(shardstatus.encode("r1", live, {}, "t1"), decoder)
    assert decoder.built == len(live) and again.at == "t1"
    assert all(again.live[k] is v for k, v in first.live.items())
    one = (ClusterName("c3"), WorkloadId("t/w0003"))
    gone = (ClusterName("c3"), WorkloadId("t/w0010"))
    live[one] = PlacementLive("Failed", "Unknown", "c2", message="refused")
    del live[gone]
    third = shardstatus.decode_doc(shardstatus.encode("r1", live, {}, "t2"), decoder)
    assert decoder.built == len(many()) + 1
    assert third.live == live and gone not in third.live
    assert all(third.live[k] is v for k, v in first.live.items() if k not in (one, gone))


def test_a_document_that_cannot_be_read_leaves_the_parts_as_they_were() -> None:
    """A torn document, or one of a version this reader does not know (a newer
    replica's, mid rolling upgrade), is refused whole: nothing of it is half-taken,
    and the next good one still reuses what the last good one built."""
    live = many()
    decoder = shardstatus.Decoder()
    shardstatus.decode_doc(shardstatus.encode("r1", live), decoder)
    newer = base64.b64encode(gzip.compress(json.dumps(
        {"version": 2, "owner": "r2", "clusters": {"c3": []}}).encode())).decode()
    broken = base64.b64encode(gzip.compress(json.dumps(
        {"version": 1, "owner": "r2", "clusters": {"c0": {}, "c3": ["torn"]}}).encode())
    ).decode()
    for data in (newer, broken, "not base64!"):
        with pytest.raises((ValueError, KeyError, TypeError, OSError, EOFError)):
            shardstatus.decode_doc(data, decoder)
    assert shardstatus.decode_doc(shardstatus.encode("r1", live), decoder).live == live
    assert decoder.built == len(live)


def test_a_cluster_of_another_shard_is_not_taken_from_a_document() -> None:
    live = many(20)
    doc = shardstatus.decode_doc(shardstatus.encode("r1", live, {
        "c1": shardstatus.ClusterNews("Healthy", None, ()),
        "c2": shardstatus.ClusterNews("Healthy", None, ())}), keep=lambda c: c != "c2")
    assert {k[0] for k in doc.live} == {f"c{i}" for i in range(7)} - {"c2"}
    assert set(doc.views) == {"c1"}


# -- a peer's rows read late, its news at once (`shardstatus.NEWS`) -------------------

@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["r1", "r2"]), views_, rows, optional,
       st.sampled_from(["r1", "r2"]), views_, rows, optional)
def test_equal_news_digests_are_equal_owners_and_views(
        owner1: str, views1: dict[str, shardstatus.ClusterNews] | None,
        live1: dict[Key, PlacementLive], at1: str | None,
        owner2: str, views2: dict[str, shardstatus.ClusterNews] | None,
        live2: dict[Key, PlacementLive], at2: str | None) -> None:
    """The digest a publication carries is equal to another's exactly when their
    owner and views (health, how long Unreachable, nodes) are: rows and `at` do not
    count, and each news parses back to its document's owner, views and `at`."""
    first, second = shardstatus.Encoder(), shardstatus.Encoder()
    data1 = first.encode(owner1, live1, views1, at1)
    data2 = second.encode(owner2, live2, views2, at2)
    news1, news2 = first.news, second.news
    assert news1 is not None and news2 is not None
    same = owner1 == owner2 and (views1 or {}) == (views2 or {}) and \
        (views1 is None) == (views2 is None)
    assert (news1.digest == news2.digest) == same
    # the health digest: equal exactly when owner, health and unreachable times are
    def healths(views: dict[str, shardstatus.ClusterNews] | None) -> object:
        return None if views is None else {
            n: (v.health, v.unreachable_for) for n, v in views.items()}
    same_health = owner1 == owner2 and healths(views1) == healths(views2)
    assert (news1.health == news2.health) == same_health
    assert news1.health == shardstatus.health_digest(owner1, views1)
    if same:
        assert same_health
    for data, said, owner, views, at in ((data1, news1, owner1, views1, at1),
                                         (data2, news2, owner2, views2, at2)):
        assert shardstatus.news_of({shardstatus.NEWS: said.text()}) == said
        decoder = shardstatus.Decoder()
        rows_of = shardstatus.decode_doc(shardstatus.encode(owner, {}, None, None), decoder)
        by_news = decoder.decode_news(shardstatus.parse_news(data, said), None, rows_of)
        assert (by_news.owner, by_news.views, by_news.at) == (owner, views or {}, at)
        assert by_news.views == shardstatus.decode_doc(data).views
        assert by_news.live is rows_of.live


def test_a_news_annotation_that_does_not_match_its_document_is_refused() -> None:
    """Parsed by its news alone, a document is checked against the digest: another
    document's annotation (never written so, but garbled or a foreign writer's) is
    refused whole, as a torn document is."""
    views = {"a": shardstatus.ClusterNews("Healthy", None, ())}
    first, second = shardstatus.Encoder(), shardstatus.Encoder()
    data = first.encode("r1", many(20), views, "t0")
    second.encode("r1", many(20), views | {"b": views["a"]}, "t0")
    assert first.news is not None and second.news is not None
    for news in (second.news, shardstatus.News(first.news.digest, first.news.tail + 1, "t0")):
        with pytest.raises(ValueError):
            shardstatus.parse_news(data, news)


@pytest.mark.parametrize("annotations", [
    None, {}, {"other": "x"}, {shardstatus.NEWS: "not json"},
    {shardstatus.NEWS: '{"digest":"","tail":3,"at":null}'},
    {shardstatus.NEWS: '{"digest":"ab","tail":"3","at":null}'},
    {shardstatus.NEWS: '{"digest":"ab","tail":true,"at":null}'},
    {shardstatus.NEWS: '["ab",3]'},
    {shardstatus.NEWS: '{"digest":"ab","tail":3,"at":null,"views":[3,true]}'},
    {shardstatus.NEWS: '{"digest":"ab","tail":3,"at":null,"views":[3,-1]}'},
    {shardstatus.NEWS: '{"digest":"ab","tail":3,"at":null,"health":""}'},
    {shardstatus.NEWS: '{"digest":"ab","tail":3,"at":null,"health":3}'},
], ids=["none", "empty", "other", "not-json", "no-digest", "tail-text", "tail-bool", "list",
        "views-bool", "views-negative", "health-empty", "health-number"])
def test_no_news_or_garbled_news_is_none_so_the_publication_is_read_at_once(
        annotations: Any) -> None:
    assert shardstatus.news_of(annotations) is None
    held = shardstatus.News("ab", 3, None, (), "h")
    for nodes_now in (True, False):
        assert shardstatus.read_now(shardstatus.news_of(annotations), held, 0.0, 50_000,
                                    nodes_now)


def test_an_older_writers_news_without_health_are_read_as_before() -> None:
    """The previous version's annotation (no `health`) reads back with none, and
    this version's with its health reads back whole; an older reader's `news_of`
    looked at `digest`, `tail`, `at` and `views` only, which are as they were."""
    old = '{"at":"t","digest":"ab","tail":3,"views":[5,7]}'
    got = shardstatus.news_of({shardstatus.NEWS: old})
    assert got == shardstatus.News("ab", 3, "t", (5, 7)) and got.health is None
    assert got.text() == old
    new = shardstatus.News("ab", 3, "t", (5, 7), "cd")
    assert shardstatus.news_of({shardstatus.NEWS: new.text()}) == new
    assert {k: v for k, v in json.loads(new.text()).items() if k != "health"} == \
        json.loads(old)


@pytest.mark.parametrize(("rows", "late"), [
    (0, 0.0), (1_000, 0.5), (2_000, 1.0), (12_500, 6.25), (20_000, 10.0), (50_000, 10.0)])
def test_rows_may_be_read_1_s_per_2000_rows_late_at_most_10_s(rows: int, late: float
                                                              ) -> None:
    assert shardstatus.rows_late(rows) == late


digests = st.none() | st.tuples(st.sampled_from(["d1", "d2"]),
                                 st.none() | st.sampled_from(["h1", "h2"]))


@settings(max_examples=400, deadline=None)
@given(digests, digests, st.none() | st.floats(0, 30), st.integers(0, 60_000),
       st.booleans())
def test_a_publication_is_read_now_unless_its_news_are_held_and_its_rows_young(
        said: tuple[str, str | None] | None, holds: tuple[str, str | None] | None,
        age: float | None, rows: int, nodes_now: bool) -> None:
    """Left unread exactly when it carries news (a writer of this version), they
    are those held, and the rows held are younger than the bound for their number;
    under 2,000 rows the bound is under the 1 s poll, so a small fleet reads every
    publication at the next poll, as before. Without `nodes_now` (not leading), news
    that differ in nodes alone wait as the rows do: exactly when both say a health
    digest and it is the one held; a health (or owner) change, or one not said,
    is read at once whatever the rows' age."""
    news = None if said is None else shardstatus.News(said[0], 10, "t", (), said[1])
    held = None if holds is None else shardstatus.News(holds[0], 10, "t", (), holds[1])
    young = age is not None and age < min(10.0, rows / 2_000)
    same = said is not None and holds is not None and said[0] == holds[0]
    same_health = said is not None and holds is not None and said[1] is not None \
        and said[1] == holds[1]
    waits = young and (same or (not nodes_now and same_health))
    assert shardstatus.read_now(news, held, age, rows, nodes_now) == (not waits)
    if rows < 2_000 and age is not None and age >= 1.0:
        assert shardstatus.read_now(news, held, age, rows, nodes_now)
    if said is not None and holds is not None and said[1] != holds[1]:
        assert shardstatus.read_now(news, held, age, rows, nodes_now) or same


def test_read_by_news_a_peers_views_parse_only_the_clusters_whose_text_changed() -> None:
    """Nodes change in a few clusters of each publication in a cold start: reading
    by news parses those clusters' views only, and gives what a whole read gives; a
    cut that does not fall on the clusters' texts is refused whole."""
    node = NodeState("n1", "NVIDIA-H100", 8, True, False, ())
    views = {f"c{i}": shardstatus.ClusterNews("Healthy", None, (node,)) for i in range(7)}
    encoder, decoder = shardstatus.Encoder(), shardstatus.Decoder()
    rows_of = shardstatus.decode_doc(encoder.encode("r1", many(50), views, "t0"), decoder)
    for n, at in enumerate(("t1", "t2")):
        views["c3"] = shardstatus.ClusterNews("Healthy", None, (
            NodeState("n1", "NVIDIA-H100", 8, True, False, (), used=n + 1),))
        data = encoder.encode("r1", many(50), views, at)
        assert encoder.news is not None and len(encoder.news.views) == 8
        before = decoder.views_parsed
        doc = decoder.decode_news(shardstatus.parse_news(data, encoder.news), None, rows_of)
        assert decoder.views_parsed - before == (7 if n == 0 else 1)
        assert doc.views == shardstatus.decode_doc(data).views and doc.at == at
        assert doc.live is rows_of.live
    news = encoder.news
    assert news is not None
    for views_ in ((news.views[0] + 1, *news.views[1:]),
                   (*news.views[:3], news.views[3] - 1, *news.views[4:]),
                   news.views[:-1]):
        with pytest.raises(ValueError):
            decoder.decode_news(shardstatus.parse_news(data, shardstatus.News(
                news.digest, news.tail, news.at, views_)), None, rows_of)


# -- a whole read parses only the clusters whose text changed (`News.rows`) -----------

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r1", "r2"]), rows, views_, optional),
                min_size=1, max_size=5))
def test_a_document_read_cut_is_the_document_read_whole(
        docs: list[tuple[str, dict[Key, PlacementLive],
                         dict[str, shardstatus.ClusterNews] | None, str | None]]) -> None:
    """Publication after publication, a reader that parses only the clusters whose
    rows' or view's text changed (`decode_published`) gets what a whole parse gets:
    owner, rows, views, `at`, and the clusters changed since the last
    (`Decoder.changed`, what a merge looks at)."""
    encoder = shardstatus.Encoder()
    cut, whole = shardstatus.Decoder(), shardstatus.Decoder()
    for owner, live, views, at in docs:
        data = encoder.encode(owner, live, views, at)
        news = encoder.news
        assert news is not None and news.rows
        got = shardstatus.decode_published(data, news, cut)
        want = shardstatus.decode_doc(data, whole)
        assert (got.owner, got.live, got.views, got.at) == \
            (want.owner, want.live, want.views, want.at)
        assert cut.changed == whole.changed
        assert shardstatus.news_of({shardstatus.NEWS: news.text()}) == news


def test_a_whole_read_parses_only_the_clusters_whose_rows_changed() -> None:
    """Rows land in a few clusters between two reads of a peer: those clusters'
    texts alone are parsed (and their rows alone built); an older writer's
    publication (no cut said) is parsed whole, as before."""
    live = {(ClusterName(f"c{i % 10}"), WorkloadId(f"t/w{i:03d}")):
            PlacementLive("Synced", "Healthy", "c0") for i in range(100)}
    views = {f"c{i}": shardstatus.ClusterNews("Healthy", None, ()) for i in range(10)}
    encoder, decoder = shardstatus.Encoder(), shardstatus.Decoder()
    data = encoder.encode("r1", live, views, "t0")
    shardstatus.decode_published(data, encoder.news, decoder)
    assert decoder.rows_parsed == 10
    live[(ClusterName("c3"), WorkloadId("t/w003"))] = PlacementLive("Failed", "Healthy", "c1")
    live[(ClusterName("c7"), WorkloadId("t/w017"))] = PlacementLive("Failed", "Healthy", "c1")
    data = encoder.encode("r1", live, views, "t1")
    built = decoder.built
    doc = shardstatus.decode_published(data, encoder.news, decoder)
    assert decoder.rows_parsed == 12 and decoder.built - built == 2
    assert set(decoder.changed) == {"c3", "c7"} and doc.live == live and doc.at == "t1"
    assert encoder.news is not None
    old = replace(encoder.news, rows=())
    assert shardstatus.decode_published(data, old, decoder).live == live
    assert shardstatus.decode_published(data, None, decoder).live == live
    assert decoder.rows_parsed == 12  # neither cut


def test_a_cut_that_does_not_match_its_document_is_refused_and_changes_nothing() -> None:
    """A rows' cut off by a byte, a length too many or too few, or the head's `at`
    not the one said: refused whole (as a torn document), and the decoder keeps
    what it had: the next good read finds its clusters as they were."""
    live = {(ClusterName(f"c{i % 4}"), WorkloadId(f"t/w{i:02d}")):
            PlacementLive("Synced", "Healthy", "c0") for i in range(20)}
    views = {f"c{i}": shardstatus.ClusterNews("Healthy", None, ()) for i in range(4)}
    encoder, decoder = shardstatus.Encoder(), shardstatus.Decoder()
    data = encoder.encode("r1", live, views, "t0")
    news = encoder.news
    assert news is not None
    first = shardstatus.decode_published(data, news, decoder)
    start, *lengths = news.rows
    for rows_ in ((start + 1, *lengths), (start - 1, *lengths), (start, *lengths[:-1]),
                  (start, *lengths, 5), (start, lengths[0] + 1, *lengths[1:]),
                  (start, lengths[0] - 1, lengths[1] + 1, *lengths[2:])):
        with pytest.raises(ValueError):
            shardstatus.decode_published(data, replace(news, rows=rows_), decoder)
    with pytest.raises(ValueError):
        shardstatus.decode_published(data, replace(news, at="t9"), decoder)
    assert decoder.last is first and decoder.rows_parsed == 4
    again = shardstatus.decode_published(data, news, decoder)
    assert again.live == live and decoder.rows_parsed == 4 and not decoder.changed


def test_a_changed_view_builds_only_the_nodes_that_changed() -> None:
    """Pods bind to a node or two of a cluster at a time: a view read again builds
    those nodes only, and reads back equal to a whole decode (a node gone or added
    too)."""
    nodes = tuple(NodeState(f"n{j}", "NVIDIA-H100", 8, True, False, ()) for j in range(5))
    views = {"c1": shardstatus.ClusterNews("Healthy", None, nodes)}
    encoder, decoder = shardstatus.Encoder(), shardstatus.Decoder()
    rows_of = shardstatus.decode_doc(encoder.encode("r1", many(10), views, "t0"), decoder)
    assert decoder.nodes_built == 5
    for changed, want in (((*nodes[:2], replace(nodes[2], used=3), *nodes[3:]), 1),
                          (nodes[:4], 1), (nodes, 1)):
        views = {"c1": shardstatus.ClusterNews("Healthy", None, changed)}
        data = encoder.encode("r1", many(10), views, "t1")
        built = decoder.nodes_built
        assert encoder.news is not None
        doc = decoder.decode_news(shardstatus.parse_news(data, encoder.news), None, rows_of)
        assert doc.views == shardstatus.decode_doc(data).views == views
        assert decoder.nodes_built - built == want
