"""`fleet status --live`: what runs, read straight from the clusters, no controller.

A real controller rolls a small fleet out to simulated clusters and stops; then the
`fleet` CLI (a separate process) connects to the clusters with the sandbox's kubeconfig
and reports. A later commit that the controller never applied shows as OutOfSync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from controllers.demo.sandbox import until
from tests.fleetdocs import workload
from tests.specs import load_schema
from tests.support.controller import (
    FAST,
    RANK,
    TRAIN,
    fast_settings,
    fleet_files,
    rolled_out,
    sandbox,
    where,
)
from tests.support.status import fleet_cli

STUCK = "latam-team/br-scoring"




async def live_json(repo: Path, kubeconfig: Path) -> dict[str, Any]:
    code, out, err = await fleet_cli("status", "--live", "--repo", str(repo), "--kubeconfig",
                                     str(kubeconfig), "--timeout", "10", "--format", "json")
    assert code == 0, err[-2000:]
    doc: dict[str, Any] = json.loads(out)
    return doc


async def test_live_status_reports_what_runs_without_a_controller(tmp_path: Path) -> None:
    files = fleet_files()
    files[f"workloads/{STUCK}.yaml"] = workload("br-scoring", "latam-team",
                                                data_class="br-personal")
    async with sandbox(tmp_path, files) as box:
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await rolled_out(m, box)
            await until(lambda: all(w["health"] == "Running" for w in m.status()["workloads"]
                                    if w["status"] == "Placed"), 20, what="pods running")
            expected = where(m.status())
            # The controller's own document carries pods and since too.
            ctrl = {w["id"]: w for w in m.status()["workloads"]}
            assert {p["phase"] for p in ctrl[TRAIN]["pods"]} == {"Running"}
            assert ctrl[TRAIN]["since"]

        doc = await live_json(box.repo.path, box.kubeconfig)
        jsonschema.validate(doc, load_schema("status.schema.json"))
        rows = {w["id"]: w for w in doc["workloads"]}
        assert where(doc) == expected
        assert {w["sync"] for w in doc["workloads"] if w["placements"]} == {"Synced"}
        train = rows[TRAIN]
        assert train["health"] == "Running" and train["since"]
        assert len(train["pods"]) == 2
        assert {p["phase"] for p in train["pods"]} == {"Running"}
        assert {p["cluster"] for p in train["pods"]} == set(expected[TRAIN])
        assert rows[STUCK]["status"] == "Pending"
        assert "0/3 clusters: 3 residency(br-personal)" in rows[STUCK]["reasons"][0]["message"]

        # A commit nobody applied: the live copy of that workload is no longer current.
        box.repo.commit({"workloads/search-team/rank.yaml": files[
            "workloads/search-team/rank.yaml"].replace("trainer:v1", "trainer:v2")},
            "rank v2")
        rows = {w["id"]: w for w in (await live_json(box.repo.path, box.kubeconfig))[
            "workloads"]}
        assert rows[RANK]["sync"] == "OutOfSync"
        assert rows[TRAIN]["sync"] == "Synced"

        code, text, _ = await fleet_cli("status", "--live", "--repo", str(box.repo.path),
                                        "--kubeconfig", str(box.kubeconfig), TRAIN)
        assert code == 0
        assert text.startswith(f"{TRAIN}: Placed · sync Synced · health Running")
        assert "POD" in text and "Running" in text
