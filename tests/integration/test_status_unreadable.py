"""`fleet status` never gives a false all-clear about clusters it cannot read.

- `--live` with a cluster down: the workload that ran there is Unknown with its last
  known placement (from the decision ledger), never Pending, and the command exits 1;
- a controller's Degraded or Unreachable cluster says why (the API errors it got, with
  their status code, or the requests nobody answered) and, Unreachable, how long until
  its workloads fail over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from controllers.demo.sandbox import until
from tests.specs import load_schema
from tests.support.controller import FAST, TRAIN, fast_settings, rolled_out, sandbox, where
from tests.support.status import fleet_cli


def _ledger_has(repo: Path, workload: str) -> bool:
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    try:
        return any(r.entry.workload == workload and r.entry.event == "Placed"
                   for r in read_ledger(repo))
    except WorkloadsError:
        return False  # no ledger branch yet


async def test_live_status_says_unknown_not_pending_for_a_cluster_it_cannot_read(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        async with box.controller(fast_settings(box, ledger=True),
                                  adapter_options=FAST) as m:
            placed = await rolled_out(m, box)
            await until(lambda: _ledger_has(box.repo.path, TRAIN), 15,
                        what="placements on the ledger")
        lost = placed[TRAIN][0]
        await box.sim.clusters[lost].down()

        code, out, err = await fleet_cli(
            "status", "--live", "--repo", str(box.repo.path), "--kubeconfig",
            str(box.kubeconfig), "--timeout", "3", "-o", "json")
        assert code == 1, err[-2000:]
        assert lost in err and "Traceback" not in err
        doc: dict[str, Any] = json.loads(out)
        jsonschema.validate(doc, load_schema("status.schema.json"))
        assert doc["source"]["unreadableClusters"] == [lost]
        row = next(w for w in doc["workloads"] if w["id"] == TRAIN)
        assert row["status"] == "Placed" and row["liveState"] == "Unknown"
        assert row["sync"] == "Unknown" and row["health"] == "Unknown"
        assert [k["cluster"] for k in row["lastKnown"]] == [lost]
        assert row["lastKnown"][0]["gpus"] == 16
        cluster = next(c for c in doc["clusters"] if c["name"] == lost)
        assert cluster["health"] == "Unknown" and cluster["reason"] == "NotListed"
        # What runs on the clusters that answered is still shown as it is.
        others = {w["id"]: w for w in doc["workloads"] if w["id"] != TRAIN}
        assert all(w["placements"] for w in others.values()
                   if lost not in placed[w["id"]])

        code, text, err = await fleet_cli(
            "status", "--live", "--repo", str(box.repo.path), "--kubeconfig",
            str(box.kubeconfig), "--timeout", "3")
        assert code == 1, err[-2000:]
        line = next(line for line in text.splitlines() if line.startswith(TRAIN))
        assert "Pending" not in line
        assert line.split()[1] == "Unknown"
        assert f"{lost} could not be read" in line and f"last known (ledger): placed on {lost}" \
            in line
        assert f"! {lost} Unknown (NotListed)" in text

        code, text, err = await fleet_cli(
            "status", "--live", "--repo", str(box.repo.path), "--kubeconfig",
            str(box.kubeconfig), "--timeout", "3", TRAIN)
        assert code == 1, err[-2000:]
        assert text.startswith(f"{TRAIN}: Unknown · sync Unknown · health Unknown")
        assert "Last known (decision ledger):" in text and lost in text


async def test_live_status_without_a_ledger_still_never_says_pending(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            placed = await rolled_out(m, box)
        lost = placed[TRAIN][0]
        await box.sim.clusters[lost].down()
        code, out, err = await fleet_cli(
            "status", "--live", "--repo", str(box.repo.path), "--kubeconfig",
            str(box.kubeconfig), "--timeout", "3", "-o", "json")
        assert code == 1, err[-2000:]
        row = next(w for w in json.loads(out)["workloads"] if w["id"] == TRAIN)
        assert row["liveState"] == "Unknown" and "lastKnown" not in row
        assert "no decision ledger" in row["reasons"][0]["message"]


async def test_a_degraded_or_unreachable_cluster_says_why_and_when_it_fails_over(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=600.0), adapter_options=FAST) as m:
        assert box.sim is not None
        placed = await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        sick, lost = "us-east-1", placed[TRAIN][0]  # train is EU data: never on sick
        box.sim.clusters[sick].faults.fail_rate(1.0, 503)

        def row(name: str) -> dict[str, Any]:
            return next(c for c in m.status()["clusters"] if c["name"] == name)

        await until(lambda: row(sick)["health"] == "Degraded", 15, what="degraded")
        assert row(sick)["reason"] in ("APIErrors", "NoAnswer")
        await until(lambda: "503" in row(sick)["message"], 15, what="503 named")
        code, text, err = await fleet_cli("status", "--server", url)
        assert code == 0, err
        line = next(x for x in text.splitlines() if x.startswith(f"  ! {sick} Degraded"))
        assert "503" in line

        await box.sim.clusters[lost].down()
        await until(lambda: row(lost)["health"] == "Unreachable", 15, what="unreachable")
        assert row(lost)["reason"] == "NoAnswer"
        assert 0 < row(lost)["failoverInSeconds"] <= 600
        code, text, err = await fleet_cli("status", "--server", url)
        assert code == 0, err
        line = next(x for x in text.splitlines() if x.startswith(f"  ! {lost} Unreachable"))
        assert "(NoAnswer): no answer for" in line and "workloads fail over in" in line
        assert where(m.status())[TRAIN] == [lost]  # within the grace: kept
