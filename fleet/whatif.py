"""What-if: which workloads would move where, or go Pending and why, under a change.

An SRE asks "what happens if we drain eu-fra-1", "if us-east goes down", "if half our
H100s disappear", "if this policy change merges". The answer comes from the same
placement core the controller runs (`fleet.placement.place`), on a modified copy of the
fleet spec and capacity, with the current placement as the previous plan, so stickiness
decides exactly as it would live: what can stay, stays. Nothing is touched.

A `Scenario` changes the inputs, never the rules:
- drain CLUSTER: the cluster is cordoned and every node unschedulable (what `kubectl
  drain` does), so nothing can stay or land there;
- down REGION: every cluster of the region is Unreachable past any grace period, so its
  workloads fail over as the controller would fail them over;
- capacity FLAVOUR=-50%: that share of each cluster's nodes of the flavour is removed
  (rounded to whole nodes; +N% adds nodes);
- a policy change is a different spec (the caller reads it from a branch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.capacity import CapacitySnapshot, ClusterCapacity, NodeCapacity
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement import place
from fleet.placement.types import Assignment, Plan, WorkloadPlacement, fleetwide
from fleet.planning import placements
from fleet.spec import FleetSpec
from fleet.transitions import Kind, transition


@dataclass(frozen=True, slots=True)
class Scenario:
    drain: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    """Regions."""
    capacity: Mapping[str, float] = field(default_factory=dict)
    """Flavour -> relative change, -0.5 for -50%."""

    def describe(self) -> str:
        parts = [f"drain {c}" for c in self.drain]
        parts += [f"region {r} down" for r in self.down]
        parts += [f"{f} {v:+.0%}" for f, v in sorted(self.capacity.items())]
        return ", ".join(parts) or "no change"


def check(scenario: Scenario, spec: FleetSpec) -> list[str]:
    """What the scenario names that the fleet does not have (each a line to show)."""
    errors = [f"no cluster {c}" for c in scenario.drain if c not in spec.clusters]
    regions = {c.spec.region for c in spec.clusters.values()}
    errors += [f"no region {r} (regions: {', '.join(sorted(regions))})"
               for r in scenario.down if r not in regions]
    flavours = {g.flavour for c in spec.clusters.values() for g in c.spec.gpus}
    errors += [f"no flavour {f}" for f in scenario.capacity if f not in flavours]
    errors += [f"{f}: {v:+.0%} would leave less than nothing"
               for f, v in scenario.capacity.items() if v < -1]
    return errors


def apply_scenario(scenario: Scenario, spec: FleetSpec, capacity: CapacitySnapshot
                   ) -> tuple[FleetSpec, CapacitySnapshot]:
    """The spec and capacity as the scenario would make them."""
    drained = set(scenario.drain)
    clusters = {
        name: c.model_copy(update={"spec": c.spec.model_copy(update={"cordoned": True})})
        if name in drained else c for name, c in spec.clusters.items()}
    down = {name for name, c in spec.clusters.items() if c.spec.region in scenario.down}
    # Down for just longer than the longest grace any workload tolerates: every one of
    # them fails over, and the reasons read like the controller's after that long.
    gone = 1.0 + max((w.spec.unreachable_grace_seconds for w in spec.workloads.values()),
                     default=0)
    out: dict[ClusterName, ClusterCapacity] = {}
    for name in sorted(set(capacity.clusters) | set(spec.clusters)):
        cap = capacity.get(name)
        nodes = _resize(cap.nodes, scenario.capacity, name)
        if name in drained:
            nodes = tuple(dataclasses.replace(n, schedulable=False) for n in nodes)
        if name in down:
            cap = dataclasses.replace(cap, health="Unreachable",
                                      unreachable_seconds=gone)
        out[name] = dataclasses.replace(cap, nodes=nodes)
    return dataclasses.replace(spec, clusters=clusters), CapacitySnapshot(out)


def _resize(nodes: tuple[NodeCapacity, ...], change: Mapping[str, float], cluster: str
            ) -> tuple[NodeCapacity, ...]:
    out: list[NodeCapacity] = []
    by_flavour: dict[str, list[NodeCapacity]] = {}
    for n in nodes:
        by_flavour.setdefault(n.flavour, []).append(n)
    for flavour, ns in sorted(by_flavour.items()):
        ns.sort(key=lambda n: n.name)
        delta = change.get(flavour, 0.0)
        if delta < 0:
            ns = ns[:len(ns) - math.floor(len(ns) * -delta + 1e-9)]
        elif delta > 0 and ns:
            extra = math.floor(len(ns) * delta + 1e-9)
            ns = ns + [NodeCapacity(f"{cluster}-{flavour}-whatif-{i}", Flavour(flavour),
                                    ns[0].gpus) for i in range(extra)]
        out.extend(ns)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Change:
    workload: WorkloadId
    before: tuple[Assignment, ...]
    after: WorkloadPlacement
    kind: Kind
    """`fleet.transitions.transition`'s: Pending, Moved, Resized or Placed."""

    @property
    def why(self) -> str:
        diagnosis = [r.message for r in fleetwide(self.after.reasons)]
        if diagnosis:
            return "; ".join(diagnosis)
        return "; ".join(r.message for r in self.after.reasons if r.rule != "Sticky")


@dataclass(frozen=True, slots=True)
class WhatIf:
    scenario: Scenario
    baseline: Plan
    after: Plan
    changes: tuple[Change, ...]

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)


def whatif(spec: FleetSpec, capacity: CapacitySnapshot, scenario: Scenario, *,
           current: Mapping[WorkloadId, tuple[Assignment, ...]] | None = None,
           changed_spec: FleetSpec | None = None) -> WhatIf:
    """Plan the fleet as it is, then under the scenario with that plan as what runs.

    `current` is what runs now (default: the plan of `spec` on `capacity`, as a freshly
    started controller would place it); `changed_spec` a spec from another branch.
    """
    baseline = place(spec, capacity, current)
    running = placements(baseline)
    new_spec, new_capacity = apply_scenario(scenario, changed_spec or spec, capacity)
    after = place(new_spec, new_capacity, running)
    return WhatIf(scenario, baseline, after, tuple(_changes(running, after.workloads.values())))


def _changes(running: Mapping[WorkloadId, tuple[Assignment, ...]],
             after: Iterable[WorkloadPlacement]) -> list[Change]:
    out = []
    for p in after:
        before = running.get(p.id, ())
        t = transition(before, p)
        if t.kind != "Unchanged":
            out.append(Change(p.id, before, p, t.kind))
    order = {"Pending": 0, "FailedOver": 1, "Moved": 1, "Resized": 2, "Placed": 3}
    out.sort(key=lambda c: (order.get(c.kind, 4), c.workload))
    return out
