"""Shared set-up of the controller's end-to-end tests: a small fleet, fast timings.

Three clusters in three jurisdictions (two in the EU), three workloads, real Git repo,
simulated clusters over HTTP, the real Manager with short intervals. Each test module
builds its own `Sandbox` from `fleet_files()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clusters.adapter import AdapterOptions
from clusters.client import RetryPolicy
from clusters.sim import SimFleet
from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from fleet.ids import ClusterName
from fleet.safety import REACHABLE
from tests.fleetdocs import POLICY, cluster, workload

CLUSTERS = {"eu-fra-1": "DE", "eu-par-1": "FR", "us-east-1": "US"}
TRAIN, SERVE, RANK = "nlp-team/train", "nlp-team/serve", "search-team/rank"


FAST = AdapterOptions(qps=500, burst=1000, unreachable_after=1.0, heartbeat_interval=0.25,
                      retry=RetryPolicy(attempts=2, base=0.05, cap=0.2))


def serve_doc(replicas: int = 1, image: str = "registry.internal/serve:v1") -> str:
    return workload("serve", data_class="public", wtype="inference").replace(
        "  replicas: 2\n", f"  replicas: {replicas}\n").replace(
        "      count: 8\n", "      count: 1\n").replace(
        "registry.internal/trainer:v1", image)


def service_doc(i: int) -> str:
    """`nlp-team/svc-<i>`: a one-GPU public service, as `serve_doc()`."""
    return serve_doc().replace("name: serve\n", f"name: svc-{i}\n")


SERVICES = [f"nlp-team/svc-{i}" for i in range(10)]
"""The ten services `services_fleet()` adds."""


def services_fleet() -> dict[str, str | bytes]:
    """The test fleet and ten one-GPU services (`SERVICES`): 13 workloads, so that
    removing most of the services is a mass deletion."""
    files = fleet_files()
    files.update({f"workloads/nlp-team/svc-{i}.yaml": service_doc(i) for i in range(10)})
    return files


def fleet_files() -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        f"clusters/{name}.yaml": cluster(name, j, (("h100-80gb", 32, 8),))
        for name, j in CLUSTERS.items()}
    files["policies/residency.yaml"] = POLICY
    files["workloads/nlp-team/train.yaml"] = workload("train")
    files["workloads/nlp-team/serve.yaml"] = serve_doc()
    files["workloads/search-team/rank.yaml"] = workload(
        "rank", "search-team", data_class="public").replace("  replicas: 2\n",
                                                            "  replicas: 1\n")
    return files


@asynccontextmanager
async def sandbox(tmp: Path, files: dict[str, str | bytes] | None = None, *,
                  home: bool = False, **sim_options: Any) -> AsyncIterator[Sandbox]:
    """With `home`, also a management cluster (`fast_settings(box, home=True)` uses it
    for the Lease and shared state); `sim_options` go to `start_sim` (`time_scale`...)."""
    box = Sandbox(tmp, files or fleet_files())
    await box.start_clusters(**{"job_seconds": 3600.0, "pod_start_seconds": 0.05,
                                **sim_options})
    if home:
        await box.start_home()
    try:
        yield box
    finally:
        await box.close()


@asynccontextmanager
async def running(tmp: Path, files: dict[str, str | bytes] | None = None,
                  **overrides: Any) -> AsyncIterator[tuple[Sandbox, Manager, SimFleet]]:
    """The sandbox's clusters and one controller on them (`fast_settings(box,
    **overrides)`, `FAST` adapters); the sandbox, the controller, the clusters."""
    async with sandbox(tmp, files) as box, box.controller(
            fast_settings(box, **overrides), adapter_options=FAST) as m:
        assert box.sim is not None
        yield box, m, box.sim


def fast_settings(box: Sandbox, **overrides: Any) -> Any:
    values: dict[str, Any] = {"poll_interval": 0.5, "resync_interval": 30.0,
                              "unreachable_after": 1.0}
    values.update(overrides)
    return box.settings(**values)


def where(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {w["id"]: sorted(p["cluster"] for p in w["placements"]) for w in doc["workloads"]}


async def rolled_out(m: Manager, box: Sandbox) -> dict[str, list[str]]:
    """Until the test fleet's first commit runs everywhere (its 3 workloads synced);
    then where each workload runs."""
    await until(lambda: synced(m.status(), box.first_commit) == (3, 3), 20,
                what="first rollout")
    return where(m.status())


def condition(doc: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The source condition of that type in a status document, if any."""
    return next((c for c in doc["source"]["conditions"] if c["type"] == ctype), None)


async def applied_next(m: Manager, box: Sandbox, *others: Manager) -> str:
    """Commit serve x2 and wait until `m` applied it everywhere (`others`, replicas
    that read the same repo, are asked to fetch it too); the new commit."""
    newer = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                            "serve x2")
    for replica in (m, *others):
        replica.trigger_fetch()
    await until(lambda: synced(m.status(), newer) == (3, 3), 20, what="serve x2 applied")
    return newer


async def force_pushed_back(m: Manager, box: Sandbox) -> None:
    """Force-push main back to the first commit, and wait until `m` refuses it."""
    box.repo.force_to(box.first_commit)
    m.trigger_fetch()
    await until(lambda: condition(m.status(), "NonFastForwardRefused") is not None, 10,
                what="rollback refused")


def plan_applied(m: Manager) -> bool:
    """Every cluster that answers has had its turn at the current plan: what the plan
    has it run is what its last finished pass applied, and it holds no stale copy
    (nothing the placement loop would queue it for, `PlacementLoop._enqueue_changed`)."""
    for name, a in list(m.adapters.items()):
        if a.health_state not in REACHABLE:
            continue
        cluster = ClusterName(name)
        if m.reconciler.applied_signature.get(name) != m.desired.signature(cluster) or \
                m.desired.stale_on(cluster, set(a.live_workloads())):
            return False
    return True


def writes(m: Manager) -> int:
    return sum(a.stats.calls.get("apply", 0) + a.stats.calls.get("delete", 0)
               for a in m.adapters.values())
