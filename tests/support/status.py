"""A status document as a controller serves it, and `fleet` in a subprocess: what the
status CLI tests share."""

from __future__ import annotations

import sys
from typing import Any

import anyio

DOC: dict[str, Any] = {
    "apiVersion": "aifleet.dev/v1alpha1", "kind": "FleetStatus",
    "source": {"observedCommit": "a" * 40, "appliedCommit": "a" * 40, "conditions": [
        {"type": "SourceUnavailable", "status": "True", "reason": "FetchFailed",
         "message": "fetch failed; serving aaaaaaaaaaaa"}]},
    "clusters": [
        {"name": "eu-fra-1", "region": "eu-central-1", "jurisdiction": "DE",
         "health": "Healthy", "cordoned": False,
         "gpus": {"h100-80gb": {"capacity": 64, "allocated": 48, "free": 16,
                                "largestFreeBlock": 8}}},
        {"name": "us-east-1", "region": "us-east-1", "jurisdiction": "US",
         "health": "Unreachable", "gpus": {}},
    ],
    "workloads": [
        {"id": "nlp-team/llama-finetune", "status": "Placed", "sync": "Synced",
         "health": "Running", "commit": "a" * 40,
         "placements": [{"cluster": "eu-fra-1", "replicas": 4, "flavour": "h100-80gb",
                         "gpus": 32}], "reasons": [],
         "drift": [{"cluster": "eu-fra-1", "paths": ["spec.parallelism"],
                    "manager": "kubectl-edit", "corrected": True}]},
        {"id": "vision-team/detector", "status": "Pending", "sync": "Unknown",
         "placements": [], "reasons": [{"message": "0/2 clusters: 1 residency(eu-personal), "
                                                   "1 capacity"}]},
        {"id": "search-team/ranker", "status": "Placed", "sync": "OutOfSync",
         "placements": [{"cluster": "eu-fra-1", "replicas": 1, "flavour": "h100-80gb",
                         "gpus": 8}], "reasons": [],
         "drift": [{"cluster": "eu-fra-1",
                    "paths": ["spec.template.spec.containers[name=main].image"],
                    "manager": "kubectl-edit", "corrected": False}]},
    ],
}


async def fleet_cli(*args: str) -> tuple[int, str, str]:
    proc = await anyio.run_process([sys.executable, "-m", "controllers.cli", *args],
                                   check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()
