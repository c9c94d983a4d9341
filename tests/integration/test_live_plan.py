"""`fleet explain`, `fleet plan` and `fleet whatif` with `--server`: from what runs.

A real controller on simulated clusters fails a workload over; then the CLI (a separate
process) asked with `--server URL` agrees with `/api/v1/status` for every workload, and
`explain` says the moved workload is judged for keeping where it runs now. Planned from
scratch (no `--server`) the same commit puts it back where it was: the old answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import synced, until
from tests.support.controller import FAST, TRAIN, fast_settings, rolled_out, sandbox, where
from tests.support.status import fleet_cli


def _where_plan(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {w["id"]: sorted(p["cluster"] for p in w["placements"]) for w in doc["workloads"]}


async def test_after_a_failover_explain_plan_and_whatif_start_from_what_runs(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        assert box.sim is not None
        before = await rolled_out(m, box)
        lost = before[TRAIN][0]
        await box.sim.clusters[lost].down()
        await until(lambda: lost not in where(m.status())[TRAIN]
                    and where(m.status())[TRAIN] != [], 30, what="train failed over")
        await until(lambda: synced(m.status())[0] == synced(m.status())[1], 20,
                    what="moved workloads synced")
        status = m.status()
        runs = where(status)
        url = f"http://127.0.0.1:{m.port}"
        repo = str(box.repo.path)

        code, out, err = await fleet_cli("plan", repo, "--server", url, "-o", "json")
        assert code == 0, err
        planned = json.loads(out)
        assert _where_plan(planned) == runs
        assert planned["source"]["commit"] == status["source"]["appliedCommit"]
        assert planned["source"]["capacitySource"] == "server"

        for wid, clusters in runs.items():
            code, out, err = await fleet_cli("explain", wid, repo, "--server", url,
                                             "-o", "json")
            assert code == 0, err
            ex = json.loads(out)
            assert sorted(p["cluster"] for p in ex["placements"]) == clusters, wid
            assert sorted(r["cluster"] for r in ex["source"]["running"]) == clusters
        code, text, err = await fleet_cli("explain", TRAIN, repo, "--server", url)
        assert code == 0, err
        assert text.startswith(f"from what runs (controller {url}")
        assert "judged as running (keep)" in text
        assert f"{TRAIN}: Placed ({runs[TRAIN][0]} " in text

        # whatif from what runs: nothing changes when nothing changes
        code, out, err = await fleet_cli("whatif", repo, "--server", url, "-o", "json")
        assert code == 0, err
        assert json.loads(out)["changes"] == []

        # The old answer, from scratch: train back on the cluster it left.
        code, out, err = await fleet_cli("plan", repo, "-o", "json")
        assert _where_plan(json.loads(out))[TRAIN] == [lost]


async def test_server_flags_that_cannot_go_together_exit_2_in_one_line(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        repo = str(box.repo.path)
        code, _, err = await fleet_cli("plan", repo, "--server", "http://127.0.0.1:9",
                                       "--base", "main", "--head", "main")
        assert code == 2 and err.count("\n") == 1 and "not with --base" in err
        code, _, err = await fleet_cli("explain", "nlp-team/train", repo, "--server",
                                       "http://127.0.0.1:9")
        assert code == 2 and err.count("\n") == 1 and "cannot read" in err
        assert "Traceback" not in err


async def test_live_reads_what_runs_from_the_clusters_without_a_controller(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        async with box.controller(fast_settings(box, failover_grace=1.0),
                                  adapter_options=FAST) as m:
            before = await rolled_out(m, box)
            lost = before[TRAIN][0]
            await box.sim.clusters[lost].down()
            await until(lambda: lost not in where(m.status())[TRAIN]
                        and where(m.status())[TRAIN] != [], 30, what="train failed over")
            await until(lambda: synced(m.status())[0] == synced(m.status())[1], 20,
                        what="moved workloads synced")
            runs = where(m.status())
            # Back: the controller deletes the stale copies there, then stops.
            await box.sim.clusters[lost].up()
            await until(lambda: not workloads_on(box.sim, lost), 30,  # type: ignore[arg-type]
                        what="stale copies deleted")
            assert where(m.status()) == runs
        repo, kc = str(box.repo.path), str(box.kubeconfig)
        code, out, err = await fleet_cli("plan", repo, "--live", "--kubeconfig", kc,
                                         "--timeout", "10", "-o", "json")
        assert code == 0, err
        doc = json.loads(out)
        assert _where_plan(doc) == runs and doc["source"]["capacitySource"] == "live"
        code, text, err = await fleet_cli("explain", TRAIN, repo, "--live", "--kubeconfig",
                                          kc, "--timeout", "10")
        assert code == 0, err
        assert text.startswith("from what runs (the clusters, read live")
        assert f"{TRAIN}: Placed ({runs[TRAIN][0]} " in text

        await box.sim.clusters[runs[TRAIN][0]].down()  # what runs there: unknown
        code, out, err = await fleet_cli("whatif", repo, "--live", "--kubeconfig", kc,
                                         "--timeout", "3", "-o", "json")
        assert code == 1 and f"could not read {runs[TRAIN][0]}" in err
        assert "Traceback" not in err
