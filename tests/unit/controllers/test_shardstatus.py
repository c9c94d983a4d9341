"""`controllers.persist.shardstatus`: a shard's reconcile results, as published."""

from __future__ import annotations

import base64
import gzip

import pytest

from clusters.capacity import NodeState
from controllers.persist import shardstatus
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId


def test_results_round_trip_with_their_owner() -> None:
    live = {
        (ClusterName("eu-fra-1"), WorkloadId("t/a")): PlacementLive("Synced", "Healthy", "c1"),
        (ClusterName("eu-fra-1"), WorkloadId("t/b")): PlacementLive(
            "Failed", "Unknown", None, message="422: spec.replicas", recreate=True),
        (ClusterName("us-east-1"), WorkloadId("t/a")): PlacementLive(
            "Synced", "Progressing", "c0", queued="queued by Kueue"),
    }
    owner, back = shardstatus.decode(shardstatus.encode("replica-1", live))
    assert owner == "replica-1"
    assert back == live
    assert shardstatus.encode("replica-1", live) == shardstatus.encode("replica-1", live)
    assert shardstatus.name_of(2) == "aifleet-shard-2-status"


def test_health_and_nodes_round_trip_with_when_they_were_observed() -> None:
    """What the other shards plan and show from (issue 22): the nodes come back as
    the capacity snapshot reads them, taints included; an old document has none."""
    node = NodeState("n1", "NVIDIA-H100", 8, True, False,
                     (("gpu-maint", None, "NoSchedule"),), used=3, used_ours=2)
    views = {"eu-fra-1": shardstatus.ClusterNews("Healthy", None, (node,)),
             "us-east-1": shardstatus.ClusterNews("Unreachable", 42.5, ())}
    doc = shardstatus.decode_doc(shardstatus.encode("r1", {}, views,
                                                    "2026-12-03T19:00:00.000+00:00"))
    assert (doc.owner, doc.at) == ("r1", "2026-12-03T19:00:00.000+00:00")
    assert doc.views == views
    assert doc.views[ClusterName("eu-fra-1")].nodes[0].held_ours == 2
    old = shardstatus.decode_doc(shardstatus.encode("r1", {}))
    assert (old.views, old.at) == ({}, None)


@pytest.mark.parametrize("data", [
    "not base64!",
    base64.b64encode(b"not gzip").decode(),
    base64.b64encode(gzip.compress(b'{"version": 99, "owner": "x", "clusters": {}}')).decode(),
    base64.b64encode(gzip.compress(b'["a list"]')).decode(),
], ids=["not-base64", "not-gzip", "other-version", "not-a-document"])
def test_what_is_not_a_shard_status_is_refused(data: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError, OSError, EOFError)):
        shardstatus.decode(data)
