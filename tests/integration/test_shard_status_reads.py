"""`fleet run --shards N`: what reading the other shards' published results costs
(issue 22), counted at the simulated home: each look at a peer's ConfigMap is a
metadata-only GET, a full GET follows only when it was written, and a document that
changed builds only its rows that changed; one a replica cannot read leaves what it had.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from clusters.capacity import NodeState
from controllers.demo.sandbox import until
from controllers.persist import shardstatus
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.shards import shard_of
from tests.integration.test_controller_shards import balanced, fleet_of, roll, start
from tests.support.home import NS
from tests.support.logs import logged


async def test_a_peers_status_is_fetched_and_built_only_where_it_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with fleet_of(tmp_path, 2) as (box, stack):
        a, b = [await start(box, stack, tmp_path, who, 2, lease=6.0) for who in "ab"]
        await until(lambda: balanced(a, b), 30, what="one shard each")
        await roll(box, "registry.internal/serve:v2", a, b)
        assert a.shards is not None and b.shards is not None and box.home is not None
        shards, theirs = a.shards, b.shards.held()[0]
        home = box.home.clusters["home"]
        path = f"/api/v1/namespaces/{NS}/configmaps/{shardstatus.name_of(theirs)}"
        # b's rows of the roll read by a (a read before b published them holds none)
        await until(lambda: theirs in shards._read and any(
            shard_of(k[0], 2) == theirs for k in a.live), 30, what="b's rows read by a")

        async def quiet(_client: object) -> None:  # b publishes nothing: the test does
            return None
        monkeypatch.setattr(b.shards, "_publish", quiet)
        io = shards._status_io
        start_looks = io.looks
        await until(lambda: io.looks >= start_looks + 2, 30, what="two looks after")
        client = a.home.client()
        assert client is not None
        full, looks = home.requests[("GET", path, False)], home.requests[("GET", path, True)]
        fetches, built, decodes = io.fetches, io.built, io.decodes
        rows = {k: v for k, v in a.live.items() if shard_of(k[0], 2) == theirs}
        for _ in range(5):  # seconds of an unchanged peer: a look each, nothing more
            await shards._read_others(client)
        assert home.requests[("GET", path, True)] >= looks + 5
        assert home.requests[("GET", path, False)] == full
        assert (io.fetches, io.built, io.decodes) == (fetches, built, decodes)
        assert rows and all(a.live[k] is v for k, v in rows.items())

        # b's shard publishes one row changed: one full GET, one row built
        one = sorted(rows)[0]
        mine = dict(rows) | {one: replace(rows[one], sync="Failed", message="the test")}
        await shardstatus.write(client, NS, theirs, shardstatus.encode(
            "b", mine, shards._read[theirs][1].views, "2026-12-04T20:00:00.000+00:00"))
        await shards._read_others(client)
        assert io.built == built + 1 and io.decodes >= decodes + 1
        assert home.requests[("GET", path, False)] <= full + 2  # the loop's look may race
        assert a.live[one].sync == "Failed"
        assert all(a.live[k] is v for k, v in rows.items() if k != one)

        # a newer replica's document (another version), mid rolling upgrade: refused,
        # logged, what was read kept; fetched once, not at every look after
        newer = shardstatus.encode_raw(b'{"version":2,"owner":"b","clusters":{}}')
        kept = shards._read[theirs]
        with structlog.testing.capture_logs() as logs:
            await shardstatus.write(client, NS, theirs, newer)
            await shards._read_others(client)
            fetched = home.requests[("GET", path, False)]
            for _ in range(4):
                await shards._read_others(client)
        assert logged(logs, "shard_status_unusable", shard=theirs) >= 1
        # (+1: a look of the loop's may have been in flight)
        assert home.requests[("GET", path, False)] <= fetched + 1
        assert shards._read[theirs] is kept and a.live[one].sync == "Failed"
        assert all(a.live[k] is v for k, v in rows.items() if k != one)


@pytest.mark.parametrize("lease", [2.0, 12.0], ids=["refresh-first", "coalesce-first"])
async def test_a_churning_shard_is_published_at_most_every_coalesce_but_health_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease: float) -> None:
    """While only its rows change, a shard is published at most every `COALESCE`
    seconds (each publication, and each read of it by every other replica, covers the
    changes of those seconds), never later than `REFRESH` (the liveness rule) asks;
    a cluster's health change is published at the next poll. On the replica's own
    clock, set by the test, which publishes: the replica's loop publishes no more,
    and the one publication of the loop's that may be under way is waited for (it
    read the clock before the test set it, and would record its publication at that
    time after one of the test's)."""
    from dataclasses import replace as with_

    from controllers.runtime.shards import Shards
    from controllers.status.statusdoc import PlacementLive
    from fleet.ids import ClusterName, WorkloadId
    from tests.integration.test_controller_shards import files, leader_elsewhere, settings
    from tests.support.controller import FAST, sandbox

    publish_now = Shards._publish  # the test's own, called directly
    loop = {"held": False, "busy": 0}

    async def loops_publish(self: Shards, client: Any) -> None:
        """The replica's loop's publication: none once held; counted while under way."""
        if loop["held"]:
            return
        loop["busy"] += 1
        try:
            await publish_now(self, client)
        finally:
            loop["busy"] -= 1

    monkeypatch.setattr(Shards, "_publish", loops_publish)
    async with sandbox(tmp_path, files(), home=True) as box:
        await leader_elsewhere(box)
        async with box.controller(settings(box, tmp_path, "a", 1), adapter_options=FAST,
                                  lease_duration=lease) as a:
            shards = a.shards
            assert shards is not None
            await until(lambda: shards.held() == [0], 30, what="the shard held")
            await until(lambda: 0 in shards._published, 30, what="a first publication")
            client = a.home.client()
            assert client is not None
            loop["held"] = True
            await until(lambda: loop["busy"] == 0, 30, what="the loop's publication done")
            now = shards.clock() + 100.0
            shards.clock = lambda: now  # the loop's and the test's: one clock
            gap = min(shardstatus.COALESCE, lease * shardstatus.REFRESH)
            key = (ClusterName(next(iter(a.clusters.views()))), WorkloadId("t/churn"))
            # The clusters' health as the test sets it: a loaded machine's watches may
            # lag, and a health change is (rightly) published at once.
            pinned = a.clusters.views()
            pinned = pinned | {key[0]: with_(pinned[key[0]], health="Healthy")}
            monkeypatch.setattr(a.clusters, "views", lambda: pinned)

            async def publish(at: float, commit: str | None) -> float:
                """When the shard was last published, after a poll at `at` (a row
                changed first unless `commit` is None)."""
                nonlocal now
                now = at
                if commit is not None:
                    a.live[key] = PlacementLive("Synced", "Healthy", commit)
                await publish_now(shards, client)
                return shards._published[0][2]
            t0 = now
            assert await publish(t0, "c1") == t0  # due: published
            assert await publish(t0 + gap / 2, "c2") == t0  # a row changed: held
            assert await publish(t0 + gap * 0.9, "c3") == t0
            t1 = t0 + gap + 0.01
            assert await publish(t1, None) == t1  # out, with c3
            name = key[0]
            monkeypatch.setattr(a.clusters, "views", lambda: pinned | {
                name: with_(pinned[name], health="Unreachable")})
            assert await publish(t1 + 0.1, "c4") == t1 + 0.1  # health: at once
            doc = shardstatus.decode_doc(await shardstatus.read(client, a.home.namespace, 0))
            assert doc.views[name].health == "Unreachable" and doc.live[key].commit == "c4"
            t2 = t1 + 0.1 + lease * shardstatus.REFRESH + 0.01
            assert await publish(t2, None) == t2  # nothing changed: REFRESH still rules


async def test_a_peers_rows_are_read_late_by_their_size_but_its_health_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer whose rows alone churn (6,000 rows: `shardstatus.rows_late` 3 s) is
    read whole at most once per 3 s of the reader's clock, its other publications
    left unread (a metadata-only GET each) while its news stay fresh; a health change
    is read at the next poll, by its news alone (no row parsed); an older writer's
    publication (no `NEWS` annotation) is read whole at once; the status says whose
    rows are behind. Counted at the simulated home, on a clock the test moves."""
    async with a_reads_b(tmp_path, monkeypatch) as (a, theirs, home, path):
        shards = a.shards
        assert shards is not None
        read_others = type(shards)._read_others
        client = a.home.client()
        assert client is not None
        now = shards.clock() + 100.0
        shards.clock = lambda: now
        views = {str(n): v for n, v in shards._read[theirs][1].views.items()}
        assert views
        name = sorted(views)[0]
        clusters = sorted({str(n) for n in views})
        bulk = {(ClusterName(clusters[i % len(clusters)]), WorkloadId(f"t/bulk{i:05d}")):
                PlacementLive("Synced", "Healthy", "c0") for i in range(6_000)}
        encoder = shardstatus.Encoder()
        io = shards._status_io

        async def publish(commit: str, news: dict[str, shardstatus.ClusterNews],
                          annotated: bool = True) -> None:
            one = (ClusterName(clusters[0]), WorkloadId("t/bulk00000"))
            bulk[one] = PlacementLive("Synced", "Healthy", commit)
            data = encoder.encode("b", bulk, news, f"2026-12-04T20:00:{now:09.3f}")
            await shardstatus.write(client, NS, theirs, data,
                                    encoder.news if annotated else None)

        def counts() -> tuple[int, int, int, int]:
            return (home.requests[("GET", path, False)], io.decodes, io.news_reads,
                    io.deferred)

        await publish("c1", views)
        await read_others(shards, client)
        assert a.live[(ClusterName(clusters[0]), WorkloadId("t/bulk00000"))].commit == "c1"
        full, decodes, news_reads, deferred = counts()
        behind = []
        for second in range(1, 13):  # rows only: a publication each second
            now += 1.0
            await publish(f"c{second + 1}", views)
            await read_others(shards, client)
            behind.append(io.behind == {theirs})
            assert shards._read[theirs][2] == now  # its news as fresh as it is alive
            shards.refresh_views()
            assert shards.news[name][1] is True
        got = counts()
        # read whole at seconds 3, 6, 9, 12: once per rows_late, no more
        assert got[1] - decodes == 4 and got[0] - full == 4
        assert got[3] - deferred == 8 and got[2] == news_reads
        assert behind == [True, True, False] * 4
        assert a.live[(ClusterName(clusters[0]), WorkloadId("t/bulk00000"))].commit == "c13"

        # rows changed, left unread: the status says they are behind, of an older `at`
        now += 1.0
        await publish("c14", views)
        await read_others(shards, client)
        doc: dict[str, Any] = {"clusters": []}
        shards.annotate(doc)
        other = doc["shards"]["otherRows"][str(theirs)]
        assert other["behind"] is True and other["at"].endswith(f"{now - 1.0:09.3f}")
        assert a.live[(ClusterName(clusters[0]), WorkloadId("t/bulk00000"))].commit == "c13"

        # a health change: read at the next poll, by its news alone
        full, decodes, news_reads, deferred = counts()
        now += 0.5
        await publish("c15", views | {name: replace(views[name], health="Unreachable",
                                                   unreachable_for=3.0)})
        await read_others(shards, client)
        assert counts() == (full + 1, decodes, news_reads + 1, deferred)
        assert shards._read[theirs][1].views[ClusterName(name)].health == "Unreachable"
        shards.refresh_views()
        assert shards.remote[name].health == "Unreachable"
        assert io.behind == {theirs}  # its rows still those of c13

        # rows due with nothing new published: read whole then, once
        now += 3.0
        await read_others(shards, client)
        await read_others(shards, client)
        assert counts() == (full + 2, decodes + 1, news_reads + 1, deferred)
        assert a.live[(ClusterName(clusters[0]), WorkloadId("t/bulk00000"))].commit == "c15"
        assert not io.behind

        # an older writer's publication (no annotation): read whole at once, each time
        for commit in ("c16", "c17"):
            now += 0.5
            await publish(commit, views, annotated=False)
            await read_others(shards, client)
            assert a.live[(ClusterName(clusters[0]), WorkloadId("t/bulk00000"))
                          ].commit == commit
        assert counts()[1] == decodes + 3
        # its news as published: Unreachable no more
        assert shards._read[theirs][1].views[ClusterName(name)] == views[name]

        # taken with its rows behind: read whole before the first publication of it,
        # unless a row of it was written here since (this replica's reconcile: newer)
        key = (ClusterName(clusters[0]), WorkloadId("t/bulk00000"))
        for commit in ("c18", "c19"):
            now += 0.5
            await publish(commit, views)
            await read_others(shards, client)
        # (c18 by its news alone: the news held were an older writer's, unknown)
        assert io.behind == {theirs} and a.live[key].commit == "c17"
        await shards._catch_up(client, theirs)
        assert not io.behind and a.live[key].commit == "c19"
        now += 0.5
        await publish("c20", views)
        await read_others(shards, client)
        assert io.behind == {theirs}
        a.live[key] = PlacementLive("Synced", "Healthy", "reconciled here")
        await shards._catch_up(client, theirs)
        assert not io.behind and a.live[key].commit == "reconciled here"


async def test_a_follower_reads_a_peers_node_changes_with_its_rows_and_health_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start: a peer's nodes change in every publication. A replica that does
    not lead leaves a node-only change unread (a metadata-only GET) while its rows
    are young, its news fresh and its health as held; a health change is read at the
    next poll, nodes with it; once it leads, the nodes left behind are read at the
    next poll, and each node change after that at once; the rows due, read whole.
    Counted at the simulated home, on a clock the test moves."""
    async with a_reads_b(tmp_path, monkeypatch) as (a, theirs, home, path):
        shards = a.shards
        assert shards is not None
        leading = False
        monkeypatch.setattr(shards, "leading", lambda: leading)
        read_others = type(shards)._read_others
        client = a.home.client()
        assert client is not None
        now = shards.clock() + 100.0
        shards.clock = lambda: now
        views = {str(n): v for n, v in shards._read[theirs][1].views.items()}
        name = sorted(views)[0]
        node = NodeState("n-test", "NVIDIA-H100-80GB", 8, True, False, ())
        clusters = sorted(views)
        bulk = {(ClusterName(clusters[i % len(clusters)]), WorkloadId(f"t/bulk{i:05d}")):
                PlacementLive("Synced", "Healthy", "c0") for i in range(6_000)}
        encoder = shardstatus.Encoder()
        io = shards._status_io
        used = 0

        async def publish(health: str = "Healthy") -> dict[str, shardstatus.ClusterNews]:
            nonlocal used
            used += 1
            views[name] = replace(views[name], health=health,
                                  nodes=(replace(node, used=used),))
            data = encoder.encode("b", bulk, views, f"2026-12-04T20:00:{now:09.3f}")
            await shardstatus.write(client, NS, theirs, data, encoder.news)
            return dict(views)

        def counts() -> tuple[int, int, int, int]:
            return (home.requests[("GET", path, False)], io.decodes, io.news_reads,
                    io.nodes_deferred)

        def held_used() -> int:
            return shards._read[theirs][1].views[ClusterName(name)].nodes[0].used

        await publish()
        await read_others(shards, client)  # the first read: whole
        assert held_used() == 1 and not io.nodes_behind
        full, decodes, news_reads, deferred = counts()

        # not leading: node changes left unread while the rows are young (3 s)
        for _ in range(2):
            now += 1.0
            await publish()
            await read_others(shards, client)
            assert held_used() == 1 and shards._read[theirs][2] == now  # fresh
            shards.refresh_views()
            assert shards.news[name][1] is True
        assert counts() == (full, decodes, news_reads, deferred + 2)
        assert io.nodes_behind == {theirs}
        doc: dict[str, Any] = {"clusters": []}
        shards.annotate(doc)
        assert doc["shards"]["otherRows"][str(theirs)]["nodesBehind"] is True

        # a health change: at the next poll, by news, its nodes with it
        now += 0.5
        await publish("Degraded")
        await read_others(shards, client)
        assert counts() == (full + 1, decodes, news_reads + 1, deferred + 2)
        assert held_used() == used and not io.nodes_behind
        shards.refresh_views()
        assert shards.remote[name].health == "Degraded"

        # a node change left behind, then this replica leads: read at the next poll
        now += 0.1
        await publish("Degraded")
        await read_others(shards, client)
        assert held_used() == used - 1 and io.nodes_behind == {theirs}
        leading = True
        await read_others(shards, client)  # nothing new published: the nodes behind
        assert counts() == (full + 2, decodes, news_reads + 2, deferred + 3)
        assert held_used() == used and not io.nodes_behind
        await read_others(shards, client)  # and once only
        assert counts()[0] == full + 2
        # leading: each node change at once
        now += 0.1
        await publish("Degraded")
        await read_others(shards, client)
        assert counts() == (full + 3, decodes, news_reads + 3, deferred + 3)
        assert held_used() == used

        # not leading again (2.8 s after the whole read): left; the rows due, read whole
        leading = False
        now += 0.1
        await publish("Degraded")
        await read_others(shards, client)
        assert held_used() == used - 1
        now += 3.0
        await read_others(shards, client)
        assert counts() == (full + 4, decodes + 1, news_reads + 3, deferred + 4)
        assert held_used() == used and not io.nodes_behind and not io.behind

@contextlib.asynccontextmanager
async def a_reads_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[tuple[Any, int, Any, str]]:
    """Two replicas with a shard each, `a` having read `b`'s; then neither publishes
    nor reads by itself (the test does both). Yields a, b's shard, the simulated
    home cluster and the path of b's status ConfigMap there."""
    async with fleet_of(tmp_path, 2) as (box, stack):
        a, b = [await start(box, stack, tmp_path, who, 2, lease=6.0) for who in "ab"]
        await until(lambda: balanced(a, b), 30, what="one shard each")
        assert a.shards is not None and b.shards is not None and box.home is not None
        shards, theirs = a.shards, b.shards.held()[0]
        home = box.home.clusters["home"]
        path = f"/api/v1/namespaces/{NS}/configmaps/{shardstatus.name_of(theirs)}"
        await until(lambda: theirs in shards._read and shards.owners.get(theirs) == "b",
                    30, what="b's shard read by a, b its holder to a")

        async def quiet(_client: object) -> None:  # the test publishes and reads
            return None
        monkeypatch.setattr(b.shards, "_publish", quiet)
        monkeypatch.setattr(shards, "_read_others", quiet)
        yield a, theirs, home, path
