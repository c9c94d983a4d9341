"""Pods a cluster's scheduler refuses: kept through the pod cache, said in status."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.capacity import slim_pod
from clusters.health import unschedulable_pods

MSG = ("0/4 nodes are available: 4 Insufficient cpu. preemption: 0/4 nodes are "
       "available: 4 No preemption victims found for incoming pod.")


def pod(name: str, *, node: str | None = None, phase: str = "Pending",
        refused: bool = True) -> dict[str, Any]:
    conds = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": MSG, "lastTransitionTime": "2026-01-01T00:00:00Z"}] if refused else []
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "a"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase, "conditions": conds}}


def test_the_pod_cache_keeps_the_schedulers_refusal_and_nothing_else() -> None:
    slim = slim_pod(pod("p"))
    assert slim["status"] == {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": MSG}]}
    assert slim_pod(pod("q", refused=False))["status"] == {"phase": "Pending"}


@pytest.mark.parametrize(("pods", "expected"), [
    ([pod("a"), pod("b")], f"2 pod(s) Pending, unschedulable: {MSG}"),
    ([pod("a", node="n1")], None),
    ([pod("a", phase="Failed")], None),
    ([pod("a", refused=False)], None),
    ([], None),
], ids=["two-refused", "bound", "terminal", "not-yet-tried", "none"])
def test_unschedulable_pods_counts_only_unbound_refused_pods(
        pods: list[dict[str, Any]], expected: str | None) -> None:
    assert unschedulable_pods([slim_pod(p) for p in pods]) == expected
