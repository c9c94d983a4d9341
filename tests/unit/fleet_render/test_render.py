"""Rendering: each workload type to its objects, valid against Kubernetes 1.35."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fleet.ids import ClusterName, Flavour
from fleet.placement import place
from fleet.placement.types import Assignment
from fleet.render import (
    intent_hash,
    pod_gpus,
    read_back,
    render,
    render_cluster,
    to_yaml,
    workload_id_of_label,
    workload_label,
)
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_render.k8s import errors

C = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8), ("l40s-48gb", 16, 4)))
A8 = Assignment(ClusterName("eu-fra-1"), Flavour("h100-80gb"), 4, 8)
A1 = Assignment(ClusterName("eu-fra-1"), Flavour("l40s-48gb"), 3, 1)

TRAIN = workload("train", wtype="training", replicas=4, count=8, env={"EPOCHS": "3"},
                 command=["torchrun", "train.py"], args=["--lr", "3e-4"],
                 resources={"gpu": {"count": 8, "flavours": ["h100-80gb"]}, "cpu": "32",
                            "memory": "512Gi"},
                 placement={"tolerations": [
                     {"key": "maintenance", "operator": "Exists"},
                     {"key": "aifleet.dev/unreachable", "operator": "Exists",
                      "tolerationSeconds": 600}]})
BATCH = workload("etl", wtype="batch", replicas=4, count=8)
SERVE = workload("serve", wtype="inference", replicas=3, count=1, flavours=("l40s-48gb",),
                 inference={"port": 9000})


def kinds(objs: tuple[dict[str, Any], ...]) -> list[str]:
    return [o["kind"] for o in objs]


@pytest.mark.parametrize(("w", "a", "expected"), [
    (TRAIN, A8, ["Service", "Job"]),
    (BATCH, A8, ["Job"]),
    (SERVE, A1, ["Service", "Deployment"]),
], ids=["training-job", "batch-job", "inference-deployment-service"])
def test_each_type_renders_valid_kubernetes_1_35_objects(
        w: Any, a: Assignment, expected: list[str]) -> None:
    objs = render(w, a, C, "abc123")
    assert kinds(objs) == expected
    for o in objs:
        assert errors(o) == [], o["kind"]
        meta = o["metadata"]
        assert meta["labels"]["aifleet.dev/workload"] == f"{w.team}.{w.metadata.name}"
        assert meta["labels"]["aifleet.dev/managed-by"] == "aifleet"
        assert meta["annotations"]["aifleet.dev/source-commit"] == "abc123"
        assert meta["annotations"]["aifleet.dev/flavour"] == a.flavour
        assert meta["annotations"]["aifleet.dev/intent-hash"] == intent_hash(w)
        assert meta["namespace"] == w.team


def test_training_job_is_indexed_with_one_pod_per_replica_that_never_restarts() -> None:
    _svc, job = render(TRAIN, A8, C, "c1")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimit"] >= 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB"}
    assert c["env"][0] == {"name": "EPOCHS", "value": "3"}
    # the fleet-level unreachable grace is not a node toleration
    assert pod["tolerations"] == [{"key": "maintenance", "operator": "Exists"}]


def test_pod_template_is_labelled_ours_but_not_stamped_with_the_commit() -> None:
    _sa, a = render(TRAIN, A8, C, "c1")
    _sb, b = render(TRAIN, A8, C, "c2")
    assert a["spec"]["template"] == b["spec"]["template"]
    labels = a["spec"]["template"]["metadata"]["labels"]
    assert labels["aifleet.dev/managed-by"] == "aifleet"


def test_inference_service_selects_the_deployments_pods_on_the_inference_port() -> None:
    svc, dep = render(SERVE, A1, C, "c1")
    assert dep["spec"]["replicas"] == 3
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["targetPort"] == 9000


def test_intent_hash_changes_with_the_spec_only() -> None:
    moved = workload("train", wtype="training", replicas=5, count=8)
    assert intent_hash(TRAIN) != intent_hash(moved)
    assert intent_hash(TRAIN) == intent_hash(TRAIN.model_copy())


def test_render_cluster_has_one_namespace_per_team_and_is_deterministic() -> None:
    spec = fleet(C, TRAIN, SERVE, workload("other", "vision-team", count=1))
    plan = place(spec, declared(spec), commit="c1")
    objs = render_cluster(spec, plan, ClusterName("eu-fra-1"), "c1")
    namespaces = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert namespaces == ["nlp-team", "vision-team"]
    assert all(o["metadata"]["labels"]["aifleet.dev/managed-by"] == "aifleet" for o in objs)
    assert kinds(tuple(objs))[:2] == ["Namespace", "Namespace"]
    for o in objs:
        assert errors(o) == []
    again = render_cluster(spec, plan, ClusterName("eu-fra-1"), "c1")
    assert to_yaml(objs) == to_yaml(again)
    assert list(yaml.safe_load_all(to_yaml(objs))) == objs


def test_the_validator_rejects_what_kubernetes_would() -> None:
    _svc, job = render(TRAIN, A8, C, "c1")
    job["spec"]["parallelism"] = "four"
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    job["spec"]["bogus"] = True
    found = errors(job)
    assert len(found) >= 2, found
    assert any("bogus" in e for e in found)


@pytest.mark.parametrize(("w", "a"), [(TRAIN, A8), (BATCH, A8), (SERVE, A1)],
                         ids=["training", "batch", "inference"])
def test_read_back_returns_what_render_wrote(w: Any, a: Assignment) -> None:
    """The inverse of the contract: what a restarted controller, live status and the
    audit read from an object is what the controller applied."""
    pods = [o for o in render(w, a, C, "c1") if o["kind"] in ("Job", "Deployment")]
    (obj,) = pods
    back = read_back(obj)
    assert back.workload == workload_label(w.id)
    assert workload_id_of_label(back.workload) == w.id
    assert (back.replicas, back.gpus_per_replica) == (a.replicas, a.gpus_per_replica)
    assert back.product == C.offer(a.flavour).product  # type: ignore[union-attr]
    assert (back.commit, back.intent_hash, back.managed) == ("c1", intent_hash(w), True)


def _pod(containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None
         ) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "spec": spec}


def _c(requests: Any = None, limits: Any = None, restart: str | None = None
       ) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = {"nvidia.com/gpu": requests}
    if limits is not None:
        res["limits"] = {"nvidia.com/gpu": limits}
    c: dict[str, Any] = {"name": "c", "resources": res}
    if restart:
        c["restartPolicy"] = restart
    return c


@pytest.mark.parametrize(("pod", "gpus"), [
    (_pod([_c("8", "8")]), 8),
    (_pod([_c(limits="4")]), 4),  # the server defaults the request to the limit
    (_pod([_c(requests=2)]), 2),  # an integer as the JSON number it may be sent as
    (_pod([_c("1", "1"), _c("2", "2")]), 3),  # containers add up
    (_pod([_c("1", "1")], [_c("4", "4")]), 4),  # an init container's peak counts
    (_pod([_c("1", "1")], [_c("2", "2", "Always"), _c("3", "3")]), 5),  # sidecar + init
    (_pod([_c("1", "1")], [_c("2", "2", "Always")]), 3),  # a sidecar runs alongside
    (_pod([_c("0.5")]), 0),  # not a whole GPU: the server refuses it, counts nothing
    (_pod([_c("lots")]), 0),
    (_pod([{"name": "c"}]), 0),
], ids=["request-and-limit", "limit-only", "json-number", "two-containers", "init-peak",
        "sidecar-then-init", "sidecar", "fractional", "not-a-quantity", "no-resources"])
def test_one_rule_for_the_gpus_of_a_pod(pod: dict[str, Any], gpus: int) -> None:
    assert pod_gpus(pod) == gpus
    assert read_back(pod).gpus_per_replica == gpus


def test_workload_label_and_its_inverse_are_one_rule() -> None:
    assert workload_label("nlp-team/train") == "nlp-team.train"
    assert workload_id_of_label("nlp-team.train") == "nlp-team/train"
    assert workload_id_of_label("nlp-team.train.v2") == "nlp-team/train.v2"
    assert workload_id_of_label("nlp-team/train") == "nlp-team/train"  # already an id
    assert workload_id_of_label("plain") == "plain"

