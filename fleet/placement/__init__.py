"""Placement: where every workload of a fleet runs, and why. Pure and deterministic.

`place(spec, capacity, previous)` is the entry point (`fleet.placement.core`); a
`Planner` keeps the snapshot and indexes for re-planning, and `IncrementalPlanner`
re-plans after a few workloads change (`fleet.placement.incremental`).
`explain(...)` gives every cluster's verdict per filter and score per scorer. The result
types are in `fleet.placement.types`; the rules and their order in docs/placement.md.

The names are imported on first use: `fleet.placement.types` is imported by every
`fleet` command that only needs the plan types, and should not pay for the planner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.placement.core import Planner, place
    from fleet.placement.explain import Explanation, explain
    from fleet.placement.incremental import IncrementalPlanner

__all__ = ["Explanation", "IncrementalPlanner", "Planner", "explain", "place"]

_WHERE = {"Planner": "core", "place": "core", "Explanation": "explain",
          "explain": "explain", "IncrementalPlanner": "incremental"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"fleet.placement.{module}"), name)
