"""What the demo and the end-to-end tests do to, and read from, the simulated clusters.

Reads go straight to a simulated API server's store (`SimCluster.objects`), not through
the controller: the point is to check what the controller did, from the cluster's side.
"""

from __future__ import annotations

from typing import Any

from clusters.sim import SimFleet
from fleet.render import WORKLOAD_LABEL, workload_id_of_label


def _label(obj: dict[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(WORKLOAD_LABEL)
    return str(value) if value else None


def owned(sim: SimFleet, cluster: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in sim.clusters[cluster].objects(kind) if _label(o)]


def workloads_on(sim: SimFleet, cluster: str) -> set[str]:
    """Workload ids (`team/name`) with a Job or Deployment on `cluster`."""
    out: set[str] = set()
    for kind in ("Job", "Deployment"):
        for o in owned(sim, cluster, kind):
            label = _label(o)
            if label:
                out.add(workload_id_of_label(label))
    return out


def find_deployment(sim: SimFleet, which: tuple[str, str, str] | None = None
                    ) -> tuple[str, str, str, int]:
    """(cluster, namespace, name, replicas) of `which`, or of the first owned Deployment."""
    for cluster in sorted(sim.clusters):
        if which is not None and cluster != which[0]:
            continue
        for o in sorted(owned(sim, cluster, "Deployment"),
                        key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
            meta = o["metadata"]
            if which is not None and (meta["namespace"], meta["name"]) != which[1:]:
                continue
            return cluster, meta["namespace"], meta["name"], int(o["spec"]["replicas"])
    raise LookupError(f"no owned Deployment {which or ''} in the simulated clusters")


async def inject_replica_drift(sim: SimFleet, cluster: str, namespace: str, name: str,
                               replicas: int) -> None:
    """`kubectl edit`-style: another field manager changes a field we own."""
    await sim.clusters[cluster].edit("Deployment", namespace, name,
                                     {"spec": {"replicas": replicas}}, manager="kubectl-edit")
