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


def _podset_label(wl: dict[str, Any]) -> str | None:
    for ps in (wl.get("spec") or {}).get("podSets") or []:
        label = _label(ps.get("template") or {})
        if label:
            return label
    return None


def kueue_training(sim: SimFleet, which: tuple[str, str, str] | None = None
                   ) -> tuple[str, str, str] | None:
    """(cluster, namespace, workload label) of the first of our multi-pod jobs that a
    simulated Kueue manages (its Kueue Workload's podSets carry our label)."""
    for cluster in sorted(sim.clusters):
        c = sim.clusters[cluster]
        if "kueue" not in c.spec.stack:
            continue
        for wl in sorted(c.objects("Workload"), key=lambda w: (
                w["metadata"]["namespace"], w["metadata"]["name"])):
            label = _podset_label(wl)
            pods = sum(int(ps.get("count", 1)) for ps in wl["spec"].get("podSets") or [])
            if label and pods > 1:
                found = (cluster, wl["metadata"]["namespace"], label)
                if which is None or which == found:
                    return found
    return None


def kueue_admission(c: Any, ns: str, label: str) -> tuple[str, str]:
    """(LocalQueue, Kueue's QuotaReserved message once Admitted, else "")."""
    for wl in c.objects("Workload", ns):
        if _podset_label(wl) != label:
            continue
        conds = {x["type"]: x for x in (wl.get("status") or {}).get("conditions") or []}
        ok = (conds.get("Admitted") or {}).get("status") == "True"
        return (str(wl["spec"].get("queueName", "")),
                str((conds.get("QuotaReserved") or {}).get("message", "")) if ok else "")
    return "", ""


def rendezvous(c: Any, ns: str, label: str) -> list[tuple[str, str, str]]:
    """Per Running pod of the workload, by rank: (NODE_RANK from its completion index,
    `<hostname>.<subdomain>`, its MASTER_ADDR); empty until they all run."""
    pods = [p for p in c.objects("Pod", ns) if _label(p) == label]
    if not pods or any((p.get("status") or {}).get("phase") != "Running" for p in pods):
        return []
    out = []
    for p in pods:
        rank = (p["metadata"].get("annotations") or {}).get(
            "batch.kubernetes.io/job-completion-index", "?")
        spec = p["spec"]
        env = {e["name"]: e.get("value", "") for e in spec["containers"][0].get("env") or []}
        host = ".".join(x for x in (spec.get("hostname"), spec.get("subdomain")) if x)
        out.append((rank, host or p["metadata"]["name"], env.get("MASTER_ADDR", "?")))
    return sorted(out)
