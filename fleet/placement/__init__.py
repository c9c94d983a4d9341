"""Placement: where every workload of a fleet runs, and why. Pure and deterministic.

`place(spec, capacity, previous)` is the entry point (`fleet.placement.core`); a
`Planner` keeps the snapshot and indexes for re-planning, and `IncrementalPlanner`
re-plans after a few workloads change (`fleet.placement.incremental`).
`explain(...)` gives every cluster's verdict per filter and score per scorer. The result
types are in `fleet.placement.types`; the rules and their order in docs/placement.md.
"""

from fleet.placement.core import Planner, place
from fleet.placement.explain import Explanation, explain
from fleet.placement.incremental import IncrementalPlanner

__all__ = ["Explanation", "IncrementalPlanner", "Planner", "explain", "place"]
