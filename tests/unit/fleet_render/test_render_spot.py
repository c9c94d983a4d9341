"""Spot capacity in the render: pods placed on a cluster's `spot: true` offer get the
nodeSelector and tolerations its `spec.spot` declares; pods on on-demand offers get
neither. Through the one render contract (`fleet.render`), checked against the strict
Kubernetes 1.35 schemas."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.models import Cluster, SpotNodes
from fleet.placement import place
from fleet.placement.types import Assignment
from fleet.render import render, render_cluster
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_render.k8s import errors

GKE_SPOT = {"nodeSelector": {"cloud.google.com/gke-spot": "true"},
            "tolerations": [{"key": "cloud.google.com/gke-spot", "operator": "Equal",
                             "value": "true", "effect": "NoSchedule"}]}
SPOT_TOLERATION = {"key": "cloud.google.com/gke-spot", "operator": "Equal",
                   "value": "true", "effect": "NoSchedule"}


def with_spot(c: Cluster, spot: dict[str, Any]) -> Cluster:
    return c.model_copy(update={"spec": c.spec.model_copy(
        update={"spot": SpotNodes.model_validate(spot)})})


# h100 nodes are spot, l40s nodes on-demand: an offer is either spot or not.
MIXED = with_spot(cluster("us-west-2", "US", (("h100-80gb", 64, 8), ("l40s-48gb", 16, 4)),
                          spot=("h100-80gb",)), GKE_SPOT)
ON_SPOT = Assignment(ClusterName("us-west-2"), Flavour("h100-80gb"), 2, 8)
ON_DEMAND = Assignment(ClusterName("us-west-2"), Flavour("l40s-48gb"), 2, 4)
BATCH = workload("etl", wtype="batch", replicas=2, count=8,
                 flavours=("h100-80gb", "l40s-48gb"), placement={"spot": "prefer"})
SERVE = workload("serve", wtype="inference", replicas=2, count=4, flavours=("l40s-48gb",),
                 inference={"port": 9000})


def pod_spec(objs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    (o,) = [o for o in objs if o["kind"] in ("Job", "Deployment")]
    assert errors(o) == [], o["kind"]
    spec: dict[str, Any] = o["spec"]["template"]["spec"]
    return spec


def test_a_spot_offer_gets_the_clusters_spot_selector_and_toleration() -> None:
    pod = pod_spec(render(BATCH, ON_SPOT, MIXED, "c1"))
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true",
                                   "nvidia.com/gpu.product": "NVIDIA-H100-80GB"}
    assert pod["tolerations"] == [SPOT_TOLERATION]


@pytest.mark.parametrize(("w", "a"), [(BATCH, ON_DEMAND), (SERVE, ON_DEMAND)],
                         ids=["batch", "inference"])
def test_an_on_demand_offer_gets_neither(w: Any, a: Assignment) -> None:
    pod = pod_spec(render(w, a, MIXED, "c1"))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S-48GB"}
    assert "tolerations" not in pod


def test_a_spot_offer_without_declared_spot_nodes_selects_by_product_only() -> None:
    bare = cluster("us-west-2", "US", (("h100-80gb", 64, 8),), spot=("h100-80gb",))
    pod = pod_spec(render(BATCH, ON_SPOT, bare, "c1"))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB"}
    assert "tolerations" not in pod


def test_the_workloads_own_tolerations_come_first_and_a_same_one_is_not_repeated() -> None:
    w = workload("etl", wtype="batch", replicas=2, count=8,
                 pod={"tolerations": [SPOT_TOLERATION,
                                      {"key": "nvidia.com/gpu", "operator": "Exists",
                                       "effect": "NoSchedule"}]})
    eks = with_spot(MIXED, {"nodeSelector": {"eks.amazonaws.com/capacityType": "SPOT"},
                            "tolerations": [SPOT_TOLERATION,
                                            {"key": "spot", "operator": "Exists"}]})
    pod = pod_spec(render(w, ON_SPOT, eks, "c1"))
    assert pod["nodeSelector"]["eks.amazonaws.com/capacityType"] == "SPOT"
    assert pod["tolerations"] == [
        SPOT_TOLERATION, {"key": "nvidia.com/gpu", "operator": "Exists",
                          "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"}]


@pytest.mark.parametrize(("rule", "selected"), [("require", True), ("avoid", False)])
def test_the_placed_offer_decides_what_fleet_render_adds(rule: str, selected: bool) -> None:
    w = workload("etl", wtype="batch", replicas=2, count=8, placement={"spot": rule})
    on_demand = with_spot(cluster("us-west-2", "US", (("h100-80gb", 64, 8),)), GKE_SPOT)
    spot_h100 = with_spot(cluster("us-east-1", "US", (("h100-80gb", 64, 8),),
                                  spot=("h100-80gb",)), GKE_SPOT)
    spec = fleet(on_demand, spot_h100, w)
    plan = place(spec, declared(spec), commit="c1")
    target = ClusterName("us-east-1" if selected else "us-west-2")
    assert plan.workloads[WorkloadId("nlp-team/etl")].assignments[0].cluster == target
    pod = pod_spec(render_cluster(spec, plan, target, "c1"))
    assert ("cloud.google.com/gke-spot" in pod["nodeSelector"]) is selected
    assert ("tolerations" in pod) is selected


@pytest.mark.parametrize(("spot", "fragment"), [
    ({"nodeSelector": {"nvidia.com/gpu.product": "X"}}, "each offer's `product`"),
    ({"nodeSelector": {"cloud.google.com/gke-spot": "not a value"}}, "nodeSelector"),
    ({"tolerations": [{"operator": "Equal", "value": "true"}]}, "without a key"),
])
def test_a_wrong_spot_declaration_is_refused(spot: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        SpotNodes.model_validate(spot)


def test_a_kueue_spot_flavour_selects_the_same_nodes_as_its_pods() -> None:
    kueue = with_spot(cluster("us-west-2", "US", (("h100-80gb", 64, 8), ("l40s-48gb", 16, 4)),
                              spot=("h100-80gb",), stack={"kueue": True}), GKE_SPOT)
    w = workload("etl", wtype="batch", replicas=2, count=8, placement={"spot": "require"})
    spec = fleet(kueue, w)
    objs = render_cluster(spec, place(spec, declared(spec), commit="c1"),
                          ClusterName("us-west-2"), "c1")
    flavours = {o["metadata"]["name"]: o["spec"] for o in objs
                if o["kind"] == "ResourceFlavor"}
    assert flavours["h100-80gb"]["nodeLabels"] == {
        "cloud.google.com/gke-spot": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB"}
    assert flavours["l40s-48gb"]["nodeLabels"] == {
        "nvidia.com/gpu.product": "NVIDIA-L40S-48GB"}
    # Kueue admits a pod only if its nodeSelector agrees with the flavour's nodeLabels.
    assert pod_spec(objs)["nodeSelector"] == flavours["h100-80gb"]["nodeLabels"]
