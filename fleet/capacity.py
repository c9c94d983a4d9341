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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
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
class ClusterCapacity:
    name: ClusterName
    health: ClusterHealth = "Healthy"
    unreachable_seconds: float | None = None
    """How long the cluster has been Unreachable (None when it answers)."""
    nodes: tuple[NodeCapacity, ...] = ()

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
            "clusters": [
                {
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
                for _, c in sorted(self.clusters.items())
            ],
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON: what a plan records to detect a stale plan.

        `usedByFleet` and `unreachableSeconds` are left out: they change as the fleet's
        own workloads start and as time passes, without changing what a plan may use.
        """
        doc = self.to_json()
        for c in doc["clusters"]:
            c.pop("unreachableSeconds", None)
            for n in c["nodes"]:
                n.pop("usedByFleet", None)
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
            clusters[cname] = ClusterCapacity(
                cname, cast(ClusterHealth, health),
                float(unreachable) if unreachable is not None else None,
                tuple(sorted(nodes, key=lambda n: n.name)))
        return cls(dict(sorted(clusters.items())))


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
