"""A workload placed on GPUs whose pods ask a node for more cpu than it allocates.

Placement counts GPUs; a cluster's scheduler also fits cpu and memory against each
node's allocatable (capacity minus the kubelet's reservations). An 8-GPU simulated
node has 192 cores of capacity and 191.45 allocatable, so a replica asking 192 cores
is Placed by the fleet and Pending on the cluster. The controller's status must say
so (health not Running, a reason with the scheduler's message), and `fleet status
--live` too: never a silent "Placed and fine".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import jsonschema

from controllers.demo.sandbox import until
from tests.specs import load_schema
from tests.support.controller import (
    FAST,
    SERVE,
    fast_settings,
    fleet_files,
    sandbox,
)


def _unschedulable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    row = next((w for w in doc["workloads"] if w["id"] == SERVE), {})
    return _unschedulable_of(row)


async def test_a_replica_asking_a_nodes_whole_cpu_is_reported_unschedulable(
        tmp_path: Path) -> None:
    files = fleet_files()
    files["workloads/nlp-team/serve.yaml"] = str(files["workloads/nlp-team/serve.yaml"]
                                                 ).replace(
        "      flavours: [h100-80gb]\n", "      flavours: [h100-80gb]\n    cpu: \"192\"\n")
    async with sandbox(tmp_path, files) as box:
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: bool(_unschedulable(m.status())), 30,
                        what="serve's pods reported unschedulable")
            doc = m.status()
            jsonschema.validate(doc, load_schema("status.schema.json"))
            row = next(w for w in doc["workloads"] if w["id"] == SERVE)
            assert row["status"] == "Placed" and row["health"] == "Progressing"
            reason = _unschedulable(doc)[0]
            assert reason["cluster"] == row["placements"][0]["cluster"]
            # four 8-GPU nodes; other workloads may hold some nodes' GPUs as well
            assert reason["message"].startswith("1 pod(s) Pending, unschedulable: 0/4 "
                                                "nodes are available: ")
            assert "4 Insufficient cpu" in reason["message"]
            others = [w for w in doc["workloads"] if w["id"] != SERVE and w["placements"]]
            assert others and not any(_unschedulable_of(w) for w in others)

        proc = await anyio.run_process(
            [sys.executable, "-m", "controllers.cli", "status", "--live", "--repo",
             str(box.repo.path), "--kubeconfig", str(box.kubeconfig), "--timeout", "10",
             "--format", "json"], check=False)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        live = json.loads(proc.stdout)
        assert "Insufficient cpu" in _unschedulable(live)[0]["message"]


def _unschedulable_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in row.get("reasons") or [] if r.get("rule") == "Unschedulable"]
