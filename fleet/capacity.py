"""The fleet's capacity: free GPUs per cluster, per node and per flavour. Pure.

A `CapacitySnapshot` is what placement consumes besides the repo. It comes from one of
two places:
- `declared_capacity(spec)`: the Cluster files' `gpus` (count / perNode whole nodes, all
  free, every cluster Healthy) -- what `fleet plan` uses without `--capacity`;
- the controller, which folds the live Nodes and Pods of each cluster into it and
  publishes it at `GET /api/v1/capacity`; `fleet plan --capacity FILE` reads that JSON.

Per node, GPUs held by pods that are *not* the fleet's (`usedByOthers`) are gone; GPUs
held by the fleet's own workloads (`usedByFleet`) are not subtracted, because a plan
places every fleet workload again (sticky first) and consumes capacity as it goes: a
running workload keeps its GPUs and nobody else can take them (no double booking).

JSON form (`kind: CapacitySnapshot`), camelCase like everything else we publish:

    {"apiVersion": "aifleet.dev/v1alpha1", "kind": "CapacitySnapshot",
     "clusters": [{"name": "eu-fra-1", "health": "Healthy", "unreachableSeconds": null,
                   "nodes": [{"name": "eu-fra-1-h100-0", "flavour": "h100-80gb",
                              "gpus": 8, "usedByOthers": 0, "usedByFleet": 8,
                              "schedulable": true}]}]}

A cluster of the repo that the snapshot does not list has no known capacity: health
`Unknown`, no nodes, so nothing new is placed there (fail closed).

A cluster that runs Kueue also says, under `kueue`, each ClusterQueue's `nvidia.com/gpu`
quota per flavour (`nominalQuota`, `borrowingLimit`, `lendingLimit`, its cohort) with
what Workloads that are not the fleet's reserve of it (`usedByOthers`; the fleet's own,
`usedByFleet`, are placed again by a plan, as on nodes), and which LocalQueue (namespace,
name) points to which ClusterQueue. Placement bounds a queued workload by the free quota
of its team's queue there (`fleet.placement.queues`):

    "kueue": {"clusterQueues": [{"name": "nlp-team", "cohort": "ai",
                                 "flavours": [{"flavour": "h100-80gb", "nominalQuota": 16,
                                               "borrowingLimit": null, "lendingLimit": null,
                                               "usedByOthers": 0, "usedByFleet": 8}]}],
              "localQueues": [{"namespace": "nlp-team", "name": "nlp-team",
                               "clusterQueue": "nlp-team"}]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from fleet.ids import ClusterName, Flavour
from fleet.models import API_VERSION

ClusterHealth = Literal["Healthy", "Degraded", "Unreachable", "Unknown"]
HEALTH_STATES: tuple[ClusterHealth, ...] = ("Healthy", "Degraded", "Unreachable", "Unknown")
KIND = "CapacitySnapshot"


class CapacityFormatError(ValueError):
    """A capacity document that does not have the CapacitySnapshot shape; says where."""


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    name: str
    flavour: Flavour
    gpus: int
    """Allocatable GPUs of the node."""
    used_by_others: int = 0
    """GPUs held by non-terminal pods that are not the fleet's own."""
    used_by_fleet: int = 0
    """GPUs held by the fleet's own workloads (informational; not subtracted)."""
    schedulable: bool = True
    """Ready and not cordoned; an unschedulable node offers nothing new."""

    @property
    def free(self) -> int:
        """GPUs the fleet may place on: allocatable minus what others hold."""
        if not self.schedulable:
            return 0
        return max(0, self.gpus - self.used_by_others)


@dataclass(frozen=True, slots=True)
class QueueQuota:
    """One flavour of a Kueue ClusterQueue, in GPUs (`nvidia.com/gpu`)."""

    nominal: int
    borrowing_limit: int | None = None
    """None: no limit (Kueue's `borrowingLimit` unset)."""
    lending_limit: int | None = None
    used_by_others: int = 0
    """Quota reserved (`status.flavorsReservation`) by Workloads that are not the fleet's."""
    used_by_fleet: int = 0
    """Reserved by the fleet's own admitted Workloads (informational; a plan charges
    them again, like `NodeCapacity.used_by_fleet`)."""


@dataclass(frozen=True, slots=True)
class ClusterQueueCapacity:
    name: str
    cohort: str | None = None
    flavours: Mapping[Flavour, QueueQuota] = field(default_factory=dict)
    """Per fleet flavour (the ResourceFlavor of its product); a flavour it does not list
    has no quota in it."""


@dataclass(frozen=True, slots=True)
class KueueCapacity:
    """A Kueue cluster's queues, as placement reads them (`fleet.placement.queues`)."""

    cluster_queues: Mapping[str, ClusterQueueCapacity] = field(default_factory=dict)
    local_queues: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, name) of a LocalQueue -> the ClusterQueue it points to."""


@dataclass(frozen=True, slots=True)
class ClusterCapacity:
    name: ClusterName
    health: ClusterHealth = "Healthy"
    unreachable_seconds: float | None = None
    """How long the cluster has been Unreachable (None when it answers)."""
    nodes: tuple[NodeCapacity, ...] = ()
    kueue: KueueCapacity | None = None
    """Its Kueue queues where it runs Kueue (None: no Kueue, nothing queues there)."""

    def flavours(self) -> dict[Flavour, tuple[NodeCapacity, ...]]:
        out: dict[Flavour, list[NodeCapacity]] = {}
        for n in self.nodes:
            out.setdefault(n.flavour, []).append(n)
        return {f: tuple(sorted(ns, key=lambda n: n.name)) for f, ns in sorted(out.items())}


@dataclass(frozen=True, slots=True)
class CapacitySnapshot:
    clusters: Mapping[ClusterName, ClusterCapacity]

    def get(self, name: ClusterName) -> ClusterCapacity:
        found = self.clusters.get(name)
        return found if found is not None else ClusterCapacity(name, "Unknown", None, ())

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "clusters": [_cluster_json(c) for _, c in sorted(self.clusters.items())],
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON: what a plan records to detect a stale plan.

        `usedByFleet` and `unreachableSeconds` are left out: they change as the fleet's
        own workloads start and as time passes, without changing what a plan may use;
        and a Degraded cluster counts as Healthy (its nodes are seen: placement reads
        both alike, `fleet.planning.placement_key`).
        """
        doc = self.to_json()
        for c in doc["clusters"]:
            c.pop("unreachableSeconds", None)
            if c.get("health") == "Degraded":
                c["health"] = "Healthy"
            for n in c["nodes"]:
                n.pop("usedByFleet", None)
            for q in (c.get("kueue") or {}).get("clusterQueues", ()):
                for f in q["flavours"]:
                    f.pop("usedByFleet", None)
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_json(cls, doc: Any) -> CapacitySnapshot:
        """Parse the JSON form; `CapacityFormatError` names the first bad field."""
        if not isinstance(doc, dict):
            raise CapacityFormatError("capacity: the document must be a JSON object")
        if doc.get("kind") != KIND:
            raise CapacityFormatError(f"capacity: kind must be {KIND}, got {doc.get('kind')!r}")
        if doc.get("apiVersion") != API_VERSION:
            raise CapacityFormatError(
                f"capacity: apiVersion must be {API_VERSION}, got {doc.get('apiVersion')!r}")
        raw_clusters = doc.get("clusters")
        if not isinstance(raw_clusters, list):
            raise CapacityFormatError("capacity: clusters must be a list")
        clusters: dict[ClusterName, ClusterCapacity] = {}
        for i, rc in enumerate(raw_clusters):
            where = f"capacity: clusters[{i}]"
            if not isinstance(rc, dict):
                raise CapacityFormatError(f"{where} must be an object")
            name = _str(rc, "name", where)
            health = rc.get("health", "Healthy")
            if health not in HEALTH_STATES:
                raise CapacityFormatError(
                    f"{where}.health must be one of {', '.join(HEALTH_STATES)}, got {health!r}")
            unreachable = rc.get("unreachableSeconds")
            if unreachable is not None and (
                    isinstance(unreachable, bool) or not isinstance(unreachable, int | float)
                    or unreachable < 0):
                raise CapacityFormatError(f"{where}.unreachableSeconds must be a number >= 0")
            raw_nodes = rc.get("nodes", [])
            if not isinstance(raw_nodes, list):
                raise CapacityFormatError(f"{where}.nodes must be a list")
            nodes = []
            for j, rn in enumerate(raw_nodes):
                nwhere = f"{where}.nodes[{j}]"
                if not isinstance(rn, dict):
                    raise CapacityFormatError(f"{nwhere} must be an object")
                schedulable = rn.get("schedulable", True)
                if not isinstance(schedulable, bool):
                    raise CapacityFormatError(f"{nwhere}.schedulable must be true or false")
                nodes.append(NodeCapacity(
                    name=_str(rn, "name", nwhere),
                    flavour=Flavour(_str(rn, "flavour", nwhere)),
                    gpus=_int(rn, "gpus", nwhere),
                    used_by_others=_int(rn, "usedByOthers", nwhere, 0),
                    used_by_fleet=_int(rn, "usedByFleet", nwhere, 0),
                    schedulable=schedulable,
                ))
            cname = ClusterName(name)
            if cname in clusters:
                raise CapacityFormatError(f"{where}: cluster {name} is listed twice")
            kueue = rc.get("kueue")
            clusters[cname] = ClusterCapacity(
                cname, cast(ClusterHealth, health),
                float(unreachable) if unreachable is not None else None,
                tuple(sorted(nodes, key=lambda n: n.name)),
                _kueue_from_json(kueue, f"{where}.kueue") if kueue is not None else None)
        return cls(dict(sorted(clusters.items())))


def _cluster_json(c: ClusterCapacity) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "health": c.health,
        "unreachableSeconds": c.unreachable_seconds,
        "nodes": [
            {
                "name": n.name,
                "flavour": n.flavour,
                "gpus": n.gpus,
                "usedByOthers": n.used_by_others,
                "usedByFleet": n.used_by_fleet,
                "schedulable": n.schedulable,
            }
            for n in sorted(c.nodes, key=lambda n: n.name)
        ],
    }
    if c.kueue is not None:
        out["kueue"] = {
            "clusterQueues": [
                {"name": q.name, "cohort": q.cohort, "flavours": [
                    {"flavour": f, "nominalQuota": v.nominal,
                     "borrowingLimit": v.borrowing_limit, "lendingLimit": v.lending_limit,
                     "usedByOthers": v.used_by_others, "usedByFleet": v.used_by_fleet}
                    for f, v in sorted(q.flavours.items())]}
                for _, q in sorted(c.kueue.cluster_queues.items())],
            "localQueues": [{"namespace": ns, "name": n, "clusterQueue": cq}
                            for (ns, n), cq in sorted(c.kueue.local_queues.items())],
        }
    return out


def _kueue_from_json(doc: Any, where: str) -> KueueCapacity:
    if not isinstance(doc, dict):
        raise CapacityFormatError(f"{where} must be an object")
    cqs: dict[str, ClusterQueueCapacity] = {}
    raw = doc.get("clusterQueues", [])
    if not isinstance(raw, list):
        raise CapacityFormatError(f"{where}.clusterQueues must be a list")
    for i, rq in enumerate(raw):
        qwhere = f"{where}.clusterQueues[{i}]"
        if not isinstance(rq, dict):
            raise CapacityFormatError(f"{qwhere} must be an object")
        name = _str(rq, "name", qwhere)
        cohort = rq.get("cohort")
        if cohort is not None and (not isinstance(cohort, str) or not cohort):
            raise CapacityFormatError(f"{qwhere}.cohort must be a non-empty string or null")
        flavours: dict[Flavour, QueueQuota] = {}
        rfs = rq.get("flavours", [])
        if not isinstance(rfs, list):
            raise CapacityFormatError(f"{qwhere}.flavours must be a list")
        for j, rf in enumerate(rfs):
            fwhere = f"{qwhere}.flavours[{j}]"
            if not isinstance(rf, dict):
                raise CapacityFormatError(f"{fwhere} must be an object")
            flavours[Flavour(_str(rf, "flavour", fwhere))] = QueueQuota(
                _int(rf, "nominalQuota", fwhere), _opt_int(rf, "borrowingLimit", fwhere),
                _opt_int(rf, "lendingLimit", fwhere), _int(rf, "usedByOthers", fwhere, 0),
                _int(rf, "usedByFleet", fwhere, 0))
        if name in cqs:
            raise CapacityFormatError(f"{qwhere}: ClusterQueue {name} is listed twice")
        cqs[name] = ClusterQueueCapacity(name, cohort, dict(sorted(flavours.items())))
    lqs: dict[tuple[str, str], str] = {}
    raw = doc.get("localQueues", [])
    if not isinstance(raw, list):
        raise CapacityFormatError(f"{where}.localQueues must be a list")
    for i, rl in enumerate(raw):
        lwhere = f"{where}.localQueues[{i}]"
        if not isinstance(rl, dict):
            raise CapacityFormatError(f"{lwhere} must be an object")
        lqs[(_str(rl, "namespace", lwhere), _str(rl, "name", lwhere))] = _str(
            rl, "clusterQueue", lwhere)
    return KueueCapacity(dict(sorted(cqs.items())), dict(sorted(lqs.items())))


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise CapacityFormatError(f"{where}.{key} must be a non-empty string")
    return v


def _int(d: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CapacityFormatError(f"{where}.{key} must be a whole number >= 0")
    return v


def _opt_int(d: dict[str, Any], key: str, where: str) -> int | None:
    return None if d.get(key) is None else _int(d, key, where)


def declared_nodes(cluster: str, flavour: str, count: int, per_node: int
                   ) -> tuple[NodeCapacity, ...]:
    """The whole nodes a Cluster file declares for one flavour, all free.

    Node names are `<cluster>-<flavour>-<i>`; the simulated clusters name their nodes
    the same way, so declared and live capacity line up node for node.
    """
    return tuple(
        NodeCapacity(f"{cluster}-{flavour}-{i}", Flavour(flavour), per_node)
        for i in range(count // per_node)
    )


def declared_capacity(clusters: Mapping[ClusterName, Any]) -> CapacitySnapshot:
    """Capacity as the Cluster files declare it (`spec.gpus`), every cluster Healthy.

    Takes `FleetSpec.clusters` (name -> Cluster); typed loosely to keep this module free
    of the spec's imports.
    """
    out: dict[ClusterName, ClusterCapacity] = {}
    for name, c in sorted(clusters.items()):
        nodes: list[NodeCapacity] = []
        for g in c.spec.gpus:
            nodes.extend(declared_nodes(name, g.flavour, g.count, g.per_node))
        out[name] = ClusterCapacity(name, "Healthy", None,
                                    tuple(sorted(nodes, key=lambda n: n.name)))
    return CapacitySnapshot(out)
