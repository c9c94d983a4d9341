"""A plan as JSON (plan.schema.json), as a terminal table, and as Markdown. Pure.

Functions over (plan, spec), not inside the `fleet plan` command, so other views build
on them: the PR plan diff, the controller's status, the ledger. The JSON keeps exactly
to `shared/spec/plan.schema.json` and adds what other tools want to know without
recomputing it: `source.capacityDigest` and `source.policyVersion` (a saved plan can be
checked for staleness), per cluster its health, cordon and region, per workload its
team, type, dataClass (as resolved, the policy default included) and priority.

Everything is sorted (clusters and workloads by name, placements by cluster), so the
same commit and capacity always give byte-identical output.
"""

from __future__ import annotations

from typing import Any

from fleet.capacity import CapacitySnapshot
from fleet.ids import team_of
from fleet.models import API_VERSION
from fleet.placement.types import Plan, WorkloadPlacement
from fleet.spec import FleetSpec


def plan_to_json(plan: Plan, spec: FleetSpec, capacity: CapacitySnapshot | None = None,
                 *, base: str | None = None) -> dict[str, Any]:
    """The plan.schema.json document of `plan` (with extra, documented fields)."""
    clusters = []
    for name, c in sorted(spec.clusters.items()):
        usage = plan.usage.get(name, {})
        entry: dict[str, Any] = {
            "name": name, "region": c.spec.region, "jurisdiction": c.spec.jurisdiction,
            "gpus": {f: {"capacity": u.capacity, "allocated": u.allocated}
                     for f, u in sorted(usage.items())},
            "cordoned": c.spec.cordoned,
        }
        if capacity is not None:
            entry["health"] = capacity.get(name).health
        clusters.append(entry)
    workloads = [_workload(p, spec) for _, p in sorted(plan.workloads.items())]
    return {
        "apiVersion": API_VERSION,
        "kind": "Plan",
        "source": {"commit": plan.commit or "", "base": base,
                   "capacityDigest": plan.capacity_digest,
                   "policyVersion": plan.policy_version},
        "clusters": clusters,
        "workloads": workloads,
        "errors": [d.to_json() for d in spec.errors],
    }


def _workload(p: WorkloadPlacement, spec: FleetSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "status": p.status,
        "placements": [{"cluster": a.cluster, "replicas": a.replicas, "flavour": a.flavour,
                        "gpus": a.gpus} for a in sorted(p.assignments)],
        "reasons": [{"cluster": r.cluster, "rule": r.rule or "", "message": r.message}
                    for r in p.reasons],
    }
    w = spec.workloads.get(p.id)
    out["team"] = team_of(p.id)
    if w is not None:
        out["type"] = w.spec.type
        out["dataClass"] = spec.residency.data_class_of(w.spec.placement.data_class)
        out["priority"] = w.spec.priority
        out["gpus"] = sum(a.gpus for a in p.assignments)
    return out


def counts(plan: Plan) -> dict[str, int]:
    out = {"Placed": 0, "Pending": 0, "Invalid": 0}
    for p in plan.workloads.values():
        out[p.status] += 1
    return out
