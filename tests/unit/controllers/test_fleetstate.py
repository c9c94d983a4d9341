"""Live cluster state folded into placement's inputs: capacity and the previous plan."""

from __future__ import annotations

import pytest
import yaml

from clusters.capacity import NodeState
from clusters.inventory import LivePlacement
from controllers.runtime.fleetstate import (
    PAST_EVERY_GRACE,
    ClusterView,
    capacity_snapshot,
    previous_from_live,
)
from fleet.ids import ClusterName, Flavour
from fleet.models import Cluster
from fleet.placement.types import Assignment
from fleet.render import workload_id_of_label, workload_label
from tests.fleetdocs import cluster

FRA = Cluster.model_validate(yaml.safe_load(
    cluster("eu-fra-1", "DE", (("h100-80gb", 16, 8), ("a100-80gb", 8, 8)))))
CLUSTERS = {ClusterName("eu-fra-1"): FRA}


def node(name: str, product: str | None, gpus: int = 8, used: int = 0, ours: int = 0,
         ready: bool = True, cordoned: bool = False) -> NodeState:
    return NodeState(name, product, gpus, ready, cordoned, (), used=used, used_ours=ours)


def test_labels_and_ids_round_trip() -> None:
    assert workload_label("nlp-team/train") == "nlp-team.train"
    assert workload_id_of_label("nlp-team.train") == "nlp-team/train"


def test_node_product_maps_to_flavour_and_our_gpus_are_never_others() -> None:
    view = ClusterView("Healthy", None, (
        node("n0", "NVIDIA-H100-80GB", used=8, ours=6),
        node("n1", "NVIDIA-A100-80GB"),
        node("cpu", None, gpus=0),
        node("odd", "NVIDIA-T4"),
    ))
    snap = capacity_snapshot(CLUSTERS, {"eu-fra-1": view})
    cap = snap.get(ClusterName("eu-fra-1"))
    by_name = {n.name: n for n in cap.nodes}
    assert sorted(by_name) == ["n0", "n1"]
    assert by_name["n0"].flavour == "h100-80gb"
    assert (by_name["n0"].used_by_others, by_name["n0"].used_by_fleet) == (2, 6)
    assert by_name["n0"].free == 6  # our 6 GPUs stay ours in a re-plan
    assert by_name["n1"].flavour == "a100-80gb"


@pytest.mark.parametrize(("ready", "cordoned", "free"), [
    (True, False, 8), (False, False, 0), (True, True, 0)],
    ids=["ready", "not-ready", "cordoned-node"])
def test_unschedulable_nodes_offer_nothing(ready: bool, cordoned: bool, free: int) -> None:
    view = ClusterView("Healthy", None, (node("n0", "NVIDIA-H100-80GB", ready=ready,
                                              cordoned=cordoned),))
    cap = capacity_snapshot(CLUSTERS, {"eu-fra-1": view}).get(ClusterName("eu-fra-1"))
    assert cap.nodes[0].free == free


def test_a_cluster_without_a_view_is_unknown_and_offers_nothing() -> None:
    cap = capacity_snapshot(CLUSTERS, {}).get(ClusterName("eu-fra-1"))
    assert (cap.health, cap.nodes) == ("Unknown", ())


@pytest.mark.parametrize(("health", "seconds", "grace", "want"), [
    ("Healthy", None, None, None),
    ("Unreachable", 12.0, None, 12.0),
    ("Unreachable", 2.0, 5.0, 0.0),
    ("Unreachable", 6.0, 5.0, PAST_EVERY_GRACE),
    ("Degraded", 3.0, 5.0, None),
], ids=["healthy", "own-tolerations", "fleet-grace-not-over", "fleet-grace-over",
        "degraded-is-not-unreachable"])
def test_unreachable_seconds_and_the_fleet_wide_grace(
        health: str, seconds: float | None, grace: float | None, want: float | None) -> None:
    view = ClusterView(health, seconds, ())  # type: ignore[arg-type]
    cap = capacity_snapshot(CLUSTERS, {"eu-fra-1": view}, grace).get(ClusterName("eu-fra-1"))
    assert cap.unreachable_seconds == want


def test_previous_plan_is_rebuilt_from_live_objects() -> None:
    live = {
        "eu-fra-1": {
            "nlp-team.train": LivePlacement("nlp-team.train", 2, "NVIDIA-H100-80GB", 8, "c1"),
            "nlp-team.odd": LivePlacement("nlp-team.odd", 1, "NVIDIA-T4", 1, "c1"),
        },
        "gone-cluster": {"x.y": LivePlacement("x.y", 1, "NVIDIA-H100-80GB", 1, "c1")},
    }
    prev = previous_from_live(CLUSTERS, live)
    assert prev == {"nlp-team/train": (
        Assignment(ClusterName("eu-fra-1"), Flavour("h100-80gb"), 2, 8),)}


def test_kueue_queues_are_read_in_fleet_flavours() -> None:
    """A ResourceFlavor named after an offered flavour is that flavour (as aifleet
    renders them); another is the flavour of the product it selects; one of neither is
    left out; of two in one queue mapping to one flavour, the first listed counts."""
    from clusters.capacity import FlavourQuota, KueueView, QueueView
    from fleet.capacity import ClusterQueueCapacity, QueueQuota

    h100 = FRA.spec.gpus[0].product
    view = KueueView((
        QueueView("nlp-team", "ai", (
            ("h100-80gb", h100, FlavourQuota(16, 4, None), 2, 8),
            ("h100", h100, FlavourQuota(99, None, None), 0, 0),
            ("tpu", "TPU-v5", FlavourQuota(8, None, None), 0, 0))),
        QueueView("other", None, (("a100", FRA.spec.gpus[1].product,
                                   FlavourQuota(8, None, 2), 8, 0),))),
        ((("nlp-team", "nlp-team"), "nlp-team"),))
    cap = capacity_snapshot(CLUSTERS, {"eu-fra-1": ClusterView("Healthy", None, (), view)})
    kueue = cap.get(ClusterName("eu-fra-1")).kueue
    assert kueue is not None
    assert kueue.cluster_queues == {
        "nlp-team": ClusterQueueCapacity("nlp-team", "ai", {
            Flavour("h100-80gb"): QueueQuota(16, 4, None, 2, 8)}),
        "other": ClusterQueueCapacity("other", None, {
            Flavour("a100-80gb"): QueueQuota(8, None, 2, 8, 0)})}
    assert kueue.local_queues == {("nlp-team", "nlp-team"): "nlp-team"}
    plain = capacity_snapshot(CLUSTERS, {"eu-fra-1": ClusterView("Healthy", None, ())})
    assert plain.get(ClusterName("eu-fra-1")).kueue is None
