"""Shared set-up of the cluster adapter's integration tests: one simulated cluster, the
real `ClusterAdapter` connected to it over HTTPS from a written kubeconfig, fast timings.

Manifests are shaped like the rendered ones (`aifleet.dev/workload: <team>.<name>`,
`aifleet.dev/managed-by: aifleet`, GPU limits and the product node selector), so the
adapter sees what it sees in production. Each test module opens its own `connected()`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.client import RetryPolicy
from clusters.kubeconfig import ConnectionSpec
from clusters.sim import SimCluster, SimClusterSpec, SimFleet, SimNode, start_sim
from fleet.render import MANAGED_BY, WORKLOAD_LABEL

NAME = "adapter-1"
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"
TEAM = "nlp-team"

FAST = AdapterOptions(qps=500, burst=1000, unreachable_after=1.0, heartbeat_interval=0.2,
                      watch_timeout=30, retry=RetryPolicy(attempts=3, base=0.02, cap=0.1))


def adapter_spec() -> SimClusterSpec:
    """Two 8-GPU H100 nodes and one 4-GPU A100 node."""
    h100 = {"nvidia.com/gpu.product": H100, "nvidia.com/gpu.count": "8"}
    a100 = {"nvidia.com/gpu.product": A100, "nvidia.com/gpu.count": "4"}
    return SimClusterSpec(NAME, (
        SimNode(f"{NAME}-a100-0", A100, 4, a100),
        SimNode(f"{NAME}-h100-0", H100, 8, h100),
        SimNode(f"{NAME}-h100-1", H100, 8, h100),
    ))


def labels(team: str, name: str) -> dict[str, str]:
    return {WORKLOAD_LABEL: f"{team}.{name}", MANAGED_BY: "aifleet"}


def namespace(team: str = TEAM) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": team, "labels": {MANAGED_BY: "aifleet"}}}


def _pod_template(team: str, name: str, image: str, gpus: int,
                  product: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {"containers": [container],
                            "nodeSelector": {"nvidia.com/gpu.product": product}}
    return {"metadata": {"labels": labels(team, name)}, "spec": spec}


def job(name: str, *, team: str = TEAM, gpus: int = 8, parallelism: int = 1,
        image: str = "registry.internal/trainer:v1", product: str = H100,
        commit: str = "c0ffee") -> dict[str, Any]:
    template = _pod_template(team, name, image, gpus, product)
    template["spec"]["restartPolicy"] = "Never"
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": team, "labels": labels(team, name),
                         "annotations": {"aifleet.dev/source-commit": commit}},
            "spec": {"parallelism": parallelism, "completions": parallelism,
                     "backoffLimit": 0, "template": template}}


def deployment(name: str, *, team: str = TEAM, replicas: int = 1, gpus: int = 1,
               image: str = "registry.internal/serve:v1", product: str = H100,
               commit: str = "c0ffee") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": team, "labels": labels(team, name),
                         "annotations": {"aifleet.dev/source-commit": commit}},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {WORKLOAD_LABEL: f"{team}.{name}"}},
                     "template": _pod_template(team, name, image, gpus, product)}}


def service(name: str, *, team: str = TEAM) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": team, "labels": labels(team, name)},
            "spec": {"selector": {WORKLOAD_LABEL: f"{team}.{name}"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def serving(name: str, *, team: str = TEAM, **kw: Any) -> list[dict[str, Any]]:
    """An inference workload as rendered: its Deployment and its Service."""
    return [deployment(name, team=team, **kw), service(name, team=team)]


@dataclass
class Connected:
    sim: SimFleet
    cluster: SimCluster
    adapter: ClusterAdapter
    kubeconfig: Path


async def until(predicate: Callable[[], bool], within: float = 10.0, *,
                what: str = "condition") -> float:
    """Wait until `predicate()` holds; the seconds it took."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > within:
            raise TimeoutError(f"{what} not reached within {within:.0f} s")
        await anyio.sleep(0.02)
    return time.perf_counter() - started


@asynccontextmanager
async def connected(tmp: Path, *, options: AdapterOptions = FAST, job_seconds: float = 1.0,
                    run: bool = True, spec: SimClusterSpec | None = None
                    ) -> AsyncIterator[Connected]:
    """A simulated cluster (`adapter_spec()` unless `spec`, named NAME) and a
    `ClusterAdapter` connected to it (informers running and synced unless `run` is
    False)."""
    async with await start_sim([spec or adapter_spec()], job_seconds=job_seconds,
                               pod_start_seconds=0.05) as sim:
        cluster = sim.clusters[NAME]
        cluster.bookmark_seconds = 0.2
        kubeconfig = sim.write_kubeconfig(tmp / "kubeconfig")
        adapter = await ClusterAdapter.connect(
            ConnectionSpec(NAME, str(kubeconfig), NAME), options)
        try:
            async with anyio.create_task_group() as tg:
                if run:
                    tg.start_soon(adapter.run)
                    await adapter.wait_synced(10.0)
                yield Connected(sim, cluster, adapter, kubeconfig)
                tg.cancel_scope.cancel()
        finally:
            await adapter.aclose()


_stamps = itertools.count(1)


async def all_seen(c: Connected, kind: str, name: str, team: str = TEAM) -> None:
    """Until the adapter has handled every event of this object made so far: what has
    not happened by then was not on its way (a known point, not a wait of some time).

    Another field manager stamps an annotation on the object (not drift: no field we
    own), and this waits until the adapter's inventory holds the stamped version. A
    watch delivers one resource's events in resourceVersion order and the adapter
    handles them one at a time, so every earlier event has been handled too: each
    drift it showed reported (and its correction started)."""
    stamp = str(next(_stamps))
    obj = await c.cluster.edit(kind, team, name, {"metadata": {"annotations": {
        "test.aifleet.dev/all-seen": stamp}}}, manager="test-barrier")
    key = (obj["apiVersion"], kind, team, name)

    def seen() -> bool:
        live = c.adapter.applier.live.get(key) or {}
        return (live.get("metadata", {}).get("annotations") or {}).get(
            "test.aifleet.dev/all-seen") == stamp
    await until(seen, what=f"the adapter saw {kind} {team}/{name} stamped {stamp}")


def stored(c: Connected, kind: str, team: str = TEAM) -> dict[str, dict[str, Any]]:
    """The simulated cluster's objects of a kind in a namespace, by name."""
    return {o["metadata"]["name"]: o for o in c.cluster.objects(kind, team)}
