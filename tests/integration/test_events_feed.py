"""The events feed (`GET /api/v1/events`) of a running controller, over real HTTP.

Real Git repo, simulated clusters, the real Manager: the feed holds the decisions the
ledger gets (with or without `--ledger`), health changes and held deletions; `since`
pages it; a follower keeps what it observes, marked as not acted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from controllers.demo.faults import find_deployment, inject_replica_drift
from controllers.demo.sandbox import synced, until
from controllers.runtime.manager import Manager
from tests.support.controller import (
    CLUSTERS,
    FAST,
    RANK,
    SERVE,
    TRAIN,
    fast_settings,
    rolled_out,
    sandbox,
    where,
)
from workloads.errors import WorkloadsError
from workloads.ledger_store import read_ledger


async def feed(m: Manager, **query: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as c:
        return await c.get(f"http://127.0.0.1:{m.port}/api/v1/events", params=query)


def seen(m: Manager, event: str, workload: str | None = None) -> list[dict[str, Any]]:
    return [e for e in m.feed.document()["events"]
            if e["event"] == event and (workload is None or e["workload"] == workload)]


async def test_the_feed_serves_decisions_drift_and_held_deletions_without_a_ledger(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        await until(lambda: len(seen(m, "Applied")) >= 3, 10, what="Applied events")
        r = await feed(m, since=0)
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/json")
        doc = r.json()
        assert doc["kind"] == "FleetEvents" and doc["truncated"] is False
        got = {(e["event"], e["workload"], e.get("cluster")) for e in doc["events"]}
        for wid in (TRAIN, SERVE, RANK):
            assert ("Placed", wid, placed[wid][0]) in got
            assert ("Applied", wid, placed[wid][0]) in got
        train = next(e for e in doc["events"] if e["event"] == "Placed"
                     and e["workload"] == TRAIN)
        assert train["acting"] is True and train["jurisdiction"] in ("DE", "FR")
        assert train["dataClass"] == "eu-personal" and train["gpus"] == 16
        assert train["time"].endswith("Z") and train["time"][10] == "T"
        seqs = [e["seq"] for e in doc["events"]]
        assert seqs == sorted(seqs) and seqs[-1] == doc["latestSeq"]
        # `since`: only what is newer; `workload`: only its own.
        assert (await feed(m, since=doc["latestSeq"])).json()["events"] == []
        mid = seqs[len(seqs) // 2]
        assert [e["seq"] for e in (await feed(m, since=mid)).json()["events"]] == \
            [s for s in seqs if s > mid]
        assert {e["workload"] for e in (await feed(m, workload=TRAIN)).json()["events"]} == {TRAIN}
        for bad in ("-1", "abc", "1e3", "", "\u00b2", "9" * 40):
            r = await feed(m, since=bad)
            assert r.status_code == 400, (bad, r.text)

        # Drift corrected: recorded although no ledger runs.
        assert box.sim is not None
        cluster, ns, name, replicas = find_deployment(box.sim)
        await inject_replica_drift(box.sim, cluster, ns, name, replicas + 3)
        await until(lambda: bool(seen(m, "DriftCorrected")), 15, what="drift corrected")
        drift = seen(m, "DriftCorrected")[0]
        assert drift["cluster"] == cluster and "spec.replicas" in drift["reason"]

        # A commit deleting every Cluster file is held: the feed says so.
        commit = box.repo.commit({f"clusters/{c}.yaml": None for c in CLUSTERS},
                                 "clusters are managed elsewhere now")
        m.trigger_fetch()
        await until(lambda: bool(seen(m, "DeletionsHeld")), 15, what="deletions held")
        assert "Fleet-Allow" in seen(m, "DeletionsHeld")[0]["reason"]
        assert m.source.observed == commit


async def test_the_feed_keeps_what_the_ledger_records(tmp_path: Path) -> None:
    def ledger() -> set[tuple[str, str, str | None]]:
        try:
            return {(r.entry.event, r.entry.workload, r.entry.cluster)
                    for r in read_ledger(box.repo.path)}
        except WorkloadsError:
            return set()  # no ledger branch yet

    async with sandbox(tmp_path) as box, box.controller(fast_settings(box, ledger=True),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        await until(lambda: sum(1 for e, _, _ in ledger() if e == "Applied") >= 3, 15,
                    what="Applied records pushed")
        recorded = ledger()
        shown = {(e["event"], e["workload"], e.get("cluster"))
                 for e in (await feed(m, since=0)).json()["events"]}
        assert recorded and recorded <= shown


async def test_a_follower_keeps_the_feed_of_what_it_observes(tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        a_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-a",
                                   state_dir=tmp_path / "state-a", failover_grace=1.0)
        b_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-b",
                                   state_dir=tmp_path / "state-b", failover_grace=1.0)
        async with box.controller(a_settings, adapter_options=FAST, lease_duration=2.0) as a:
            await until(lambda: synced(a.status(), box.first_commit) == (3, 3), 20,
                        what="leader rollout")
            async with box.controller(b_settings, adapter_options=FAST,
                                      lease_duration=2.0) as b:
                await until(lambda: b.desired.plan is not None, 10, what="follower planned")
                assert box.sim is not None
                lost = where(a.status())[TRAIN][0]
                await box.sim.clusters[lost].down()
                await until(lambda: bool(seen(a, "FailedOver", TRAIN))
                            and bool(seen(b, "FailedOver", TRAIN)), 20,
                            what="both saw the failover")
                assert all(e["acting"] for e in seen(a, "FailedOver"))
                follower = b.feed.document()["events"]
                assert follower and not any(e["acting"] for e in follower)
                assert {"ClusterUnreachable"} <= {e["event"] for e in follower
                                                  if e.get("cluster") == lost}
                assert not seen(b, "Applied")  # it applied nothing: it says nothing
