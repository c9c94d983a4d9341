"""The Node cache keeps only what capacity reads (issue 22, item 1): a node seen through
`slim_node` must give the same capacity as the whole Node, whatever state it is in."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clusters.capacity import CapacityTracker, slim_node
from clusters.sim.nodes import SimNode, node_object

TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def _full(variant: str) -> dict[str, Any]:
    node = node_object(SimNode("n-0", "NVIDIA-H100-80GB-HBM3", 8, {"pool": "a"},
                               taints=(TAINT,) if variant == "tainted" else ()),
                       uid="u-0", created="2026-12-03T00:00:00Z", index=0)
    node["metadata"]["resourceVersion"] = "7"
    if variant == "not-ready":
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        ready["status"] = "False"
    if variant == "cordoned":
        node["spec"]["unschedulable"] = True
    if variant == "cpu-only":
        node = node_object(SimNode("n-0", None, 0), uid="u-0",
                           created="2026-12-03T00:00:00Z", index=0)
    return node


@pytest.mark.parametrize("variant", ["ready", "not-ready", "cordoned", "tainted",
                                     "cpu-only"])
def test_a_slim_node_gives_the_capacity_of_the_whole_node(variant: str) -> None:
    full, slim = CapacityTracker(), CapacityTracker()
    node = _full(variant)
    full.on_node("ADDED", copy.deepcopy(node))
    slim.on_node("ADDED", slim_node(node))
    assert slim.nodes == full.nodes
    assert slim.view() == full.view()


def test_a_slim_node_is_much_smaller_than_the_node() -> None:
    node = _full("ready")
    assert len(json.dumps(slim_node(node))) * 2 < len(json.dumps(node))
