"""Rendering AI workloads as GPU clusters run them: multi-node training that finds its
rank 0, Kueue, JobSet, DRA, and the pod fields real jobs need (volumes, shm, Secret
references, probes, identity, scheduling, the overlay). Every object is checked against
the strict Kubernetes 1.35 schemas; through the one render contract (`fleet.render`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from fleet.ids import ClusterName, Flavour
from fleet.placement import place
from fleet.placement.types import Assignment
from fleet.plan_json import plan_to_json
from fleet.render import read_back, render, render_cluster, to_yaml
from fleet.render.admission import workload_problems
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload
from tests.unit.fleet_render.k8s import errors

A = Assignment(ClusterName("eu-fra-1"), Flavour("h100-80gb"), 4, 8)
PLAIN = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8),))
KUEUE = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8),), stack={"kueue": True})
JOBSET = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8),),
                 stack={"kueue": True, "jobset": True})
DRA = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8),), stack={"gpuAllocation": "dra"})
SECRET_REF = {"secretKeyRef": {"name": "hf", "key": "token"}}

FINETUNE = workload(
    "llama-finetune", wtype="training", replicas=4, count=8,
    command=["torchrun", "train.py"],
    env={"EPOCHS": "3", "HF_TOKEN": SECRET_REF,
         "RUN_CONFIG": {"configMapKeyRef": {"name": "runs", "key": "config"}}},
    envFrom=[{"secretRef": {"name": "wandb"}},
             {"configMapRef": {"name": "defaults", "optional": True}, "prefix": "CFG_"}],
    volumes=[{"name": "data", "mountPath": "/data", "readOnly": True,
              "persistentVolumeClaim": {"claimName": "datasets"}},
             {"name": "ckpt", "mountPath": "/ckpt",
              "persistentVolumeClaim": {"claimName": "checkpoints"}},
             {"name": "scratch", "mountPath": "/scratch",
              "emptyDir": {"sizeLimit": "100Gi"}}],
    shm="16Gi",
    pod={"serviceAccountName": "trainer", "imagePullSecrets": ["regcred"],
         "priorityClassName": "high-priority",
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                          "effect": "NoSchedule"}],
         "nodeAffinity": {"required": [{"key": "topology.kubernetes.io/zone",
                                        "operator": "In", "values": ["eu-central-1a"]}],
                          "preferred": [{"weight": 50, "matchExpressions": [
                              {"key": "network", "operator": "Exists"}]}]},
         "overlay": {"metadata": {"annotations": {"team.example/owner": "nlp"}},
                     "spec": {"terminationGracePeriodSeconds": 120,
                              "containers": [
                                  {"name": "main", "securityContext": {"runAsNonRoot": True},
                                   "resources": {"limits": {"memory": "600Gi"}}},
                                  {"name": "logs", "image": "registry.internal/fluent:1",
                                   "restartPolicy": "Always"}]}}})
SERVE = workload(
    "llama-serve", wtype="inference", replicas=2, count=1,
    inference={"port": 8000,
               "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 10},
               "livenessProbe": {"tcpSocket": {}, "initialDelaySeconds": 300}},
    volumes=[{"name": "weights", "mountPath": "/models", "readOnly": True,
              "persistentVolumeClaim": {"claimName": "llama-weights"}}])


def by_kind(objs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_an_indexed_training_job_finds_its_rank_0_through_a_headless_service() -> None:
    objs = render(FINETUNE, A, PLAIN, "c1")
    assert [o["kind"] for o in objs] == ["Service", "Job"]
    for o in objs:
        assert errors(o) == [], o["kind"]
    svc, job = objs
    assert svc["metadata"]["name"] == job["metadata"]["name"] == "llama-finetune"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "llama-finetune"
    assert svc["spec"]["selector"].items() <= job["spec"]["template"]["metadata"][
        "labels"].items()
    env = env_of(pod)
    assert env["MASTER_ADDR"]["value"] == "llama-finetune-0.llama-finetune.nlp-team.svc"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["WORLD_SIZE"]["value"] == "4"
    assert env["NODE_RANK"]["valueFrom"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and pod["restartPolicy"] == "Never"
    assert spec["backoffLimitPerIndex"] >= 0
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    assert "suspend" not in spec and "kueue.x-k8s.io/queue-name" not in job["metadata"][
        "labels"]


def test_the_pod_gets_volumes_shm_secret_references_identity_and_scheduling() -> None:
    _svc, job = render(FINETUNE, A, PLAIN, "c1")
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert pod["volumes"][0] == {"name": "dshm", "emptyDir": {"medium": "Memory",
                                                               "sizeLimit": "16Gi"}}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "datasets",
                                                      "readOnly": True}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in main["volumeMounts"]
    env = env_of(pod)
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": SECRET_REF}
    assert env["RUN_CONFIG"]["valueFrom"]["configMapKeyRef"]["name"] == "runs"
    assert main["envFrom"] == [{"secretRef": {"name": "wandb"}},
                               {"configMapRef": {"name": "defaults", "optional": True},
                                "prefix": "CFG_"}]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "high-priority"
    assert {"key": "nvidia.com/gpu", "operator": "Exists",
            "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]
    assert terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["key"] == "topology.kubernetes.io/zone"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB"}


def test_the_overlay_merges_into_the_rendered_pod_and_keeps_what_aifleet_owns() -> None:
    _svc, job = render(FINETUNE, A, PLAIN, "c1")
    template = job["spec"]["template"]
    pod = template["spec"]
    main, logs = pod["containers"]
    assert main["name"] == "main" and main["securityContext"] == {"runAsNonRoot": True}
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "8", "memory": "600Gi"}
    assert main["image"] == "registry.internal/x:1"  # merged by name, not replaced
    assert logs["image"] == "registry.internal/fluent:1"
    assert pod["terminationGracePeriodSeconds"] == 120
    assert template["metadata"]["annotations"] == {"team.example/owner": "nlp"}
    assert template["metadata"]["labels"]["aifleet.dev/managed-by"] == "aifleet"
    assert errors(job) == []
    back = read_back(job)
    assert (back.replicas, back.gpus_per_replica) == (4, 8)


@pytest.mark.parametrize(("overlay", "path"), [
    ({"metadata": {"labels": {"aifleet.dev/workload": "x.y"}}},
     ("metadata", "labels", "aifleet.dev/workload")),
    ({"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "other"}}},
     ("metadata", "labels", "kueue.x-k8s.io/queue-name")),
    ({"spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-B200"}}},
     ("spec", "nodeSelector", "nvidia.com/gpu.product")),
    ({"spec": {"nodeSelector": None}}, ("spec", "nodeSelector")),
    ({"spec": {"containers": [{"name": "main", "resources": {
        "limits": {"nvidia.com/gpu": "16"}}}]}},
     ("spec", "containers", 0, "resources", "limits")),
    ({"spec": {"containers": [{"name": "main", "env": [
        {"name": "MASTER_ADDR", "value": "elsewhere"}]}]}},
     ("spec", "containers", 0, "env", 0)),
    ({"spec": {"subdomain": "other"}}, ("spec", "subdomain")),
    ({"spec": {"resourceClaims": []}}, ("spec", "resourceClaims")),
    ({"spec": {"containers": [{"image": "x:1"}]}}, ("spec", "containers", 0)),
    ({"spec": {"containers": [{"name": "side"}]}}, ("spec", "containers", 0)),
    ({"spec": {"containers": [{"name": "main", "imagePullPolice": "Always"}]}},
     ("spec", "containers", 0, "imagePullPolice")),
    ({"spec": {"nodeSelectr": {"a": "b"}}}, ("spec", "nodeSelectr")),
    ({"spec": {"volumes": {"name": "x"}}}, ("spec", "volumes")),
    ({"spec": {"$patch": "replace"}}, ("spec", "$patch")),
    ({"status": {}}, ("status",)),
], ids=["contract-label", "queue-name", "product-selector", "selector-removed",
        "gpu-limit", "rendezvous-env", "subdomain", "resource-claims", "no-merge-key",
        "sidecar-without-image", "container-typo", "podspec-typo", "volumes-not-list",
        "directive", "not-a-template-field"])
def test_an_overlay_touching_what_aifleet_owns_or_not_a_pod_field_is_refused_at_its_path(
        overlay: dict[str, Any], path: tuple[str | int, ...]) -> None:
    w = workload("t", wtype="training", pod={"overlay": overlay})
    problems = workload_problems(w)
    assert [p.path for p in problems] == [("spec", "pod", "overlay", *path)], problems


def test_kueue_clusters_get_jobs_with_the_team_queue_created_suspended() -> None:
    for w in (FINETUNE, workload("etl", wtype="batch", replicas=4, count=8)):
        job = by_kind(render(w, A, KUEUE, "c1"))["Job"]
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "nlp-team"
        assert job["spec"]["suspend"] is True
        assert errors(job) == []
    dep = by_kind(render(SERVE, A, KUEUE, "c1"))["Deployment"]
    assert "kueue.x-k8s.io/queue-name" not in dep["metadata"]["labels"]


def test_a_jobset_cluster_gets_a_jobset_whose_pods_find_worker_0_0() -> None:
    objs = render(FINETUNE, A, JOBSET, "c1")
    assert [o["kind"] for o in objs] == ["JobSet"]  # the JobSet makes its own Service
    (js,) = objs
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "nlp-team"
    assert js["spec"]["suspend"] is True
    assert js["spec"]["network"] == {"enableDNSHostnames": True,
                                     "subdomain": "llama-finetune"}
    (rj,) = js["spec"]["replicatedJobs"]
    job_spec = rj["template"]["spec"]
    pod = job_spec["template"]["spec"]
    assert "subdomain" not in pod  # the JobSet controller sets it
    env = env_of(pod)
    assert env["MASTER_ADDR"]["value"] == (
        "llama-finetune-worker-0-0.llama-finetune.nlp-team.svc")
    assert env["WORLD_SIZE"]["value"] == "4"
    as_job = {"apiVersion": "batch/v1", "kind": "Job",
              "metadata": {"name": "llama-finetune-worker-0"}, "spec": job_spec}
    assert errors(as_job) == []
    back = read_back(js)
    assert (back.kind, back.replicas, back.gpus_per_replica) == ("JobSet", 4, 8)


def test_a_dra_cluster_gets_a_claim_template_instead_of_the_extended_resource() -> None:
    objs = render(FINETUNE, A, DRA, "c1")
    assert [o["kind"] for o in objs] == ["ResourceClaimTemplate", "Service", "Job"]
    for o in objs:
        assert errors(o) == [], o["kind"]
    rct, _svc, job = objs
    assert rct["apiVersion"] == "resource.k8s.io/v1"
    assert rct["metadata"]["name"] == "llama-finetune-gpu"
    (req,) = rct["spec"]["spec"]["devices"]["requests"]
    assert req["name"] == "gpu"
    assert req["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert req["exactly"]["count"] == 8
    assert req["exactly"]["selectors"] == [{"cel": {"expression": (
        'device.attributes["gpu.nvidia.com"].productName == "NVIDIA-H100-80GB"')}}]
    pod = job["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [{"name": "gpu",
                                      "resourceClaimTemplateName": "llama-finetune-gpu"}]
    res = pod["containers"][0]["resources"]
    assert res["claims"] == [{"name": "gpu"}]
    assert "nvidia.com/gpu" not in json.dumps(res)
    back = read_back(job)  # a restarted controller still knows the GPUs per pod
    assert (back.replicas, back.gpus_per_replica) == (4, 8)


def test_inference_gets_probes_on_its_port_and_its_model_volume() -> None:
    a = Assignment(ClusterName("eu-fra-1"), Flavour("h100-80gb"), 2, 1)
    svc, dep = render(SERVE, a, PLAIN, "c1")
    assert errors(svc) == [] and errors(dep) == []
    main = dep["spec"]["template"]["spec"]["containers"][0]
    assert main["readinessProbe"] == {"httpGet": {"path": "/health", "port": 8000},
                                      "periodSeconds": 10}
    assert main["livenessProbe"] == {"tcpSocket": {"port": 8000},
                                     "initialDelaySeconds": 300}
    assert main["volumeMounts"] == [{"name": "weights", "mountPath": "/models",
                                     "readOnly": True}]


def test_a_secret_reference_puts_only_the_reference_in_the_render_and_the_plan() -> None:
    # The value never exists in aifleet: what it writes can only name the Secret.
    spec = fleet(PLAIN, FINETUNE)
    plan = place(spec, declared(spec), commit="c1")
    objs = render_cluster(spec, plan, ClusterName("eu-fra-1"), "c1")
    (job,) = [o for o in objs if o["kind"] == "Job"]
    token = env_of(job["spec"]["template"]["spec"])["HF_TOKEN"]
    assert token == {"name": "HF_TOKEN", "valueFrom": SECRET_REF}  # no `value` at all
    assert list(yaml.safe_load_all(to_yaml(objs))) == objs
    planned = json.dumps(plan_to_json(plan, spec))
    assert "HF_TOKEN" not in planned and "secretKeyRef" not in planned


SECRETISH = [
    ("HF_TOKEN", "abc", "by its name"),
    ("DB_PASSWORD", "hunter2", "by its name"),
    ("WANDB_API_KEY", "0123456789", "by its name"),
    ("aws_secret", "x", "by its name"),
    ("GIT_URL", "https://ghp_" + "a" * 36 + "@github.com/x", "a GitHub token"),
    ("AWS_ID", "AKIA" + "A" * 16, "an AWS access key id"),
    ("HUB", "hf_" + "b" * 34, "a Hugging Face token"),
]


@pytest.mark.parametrize(("name", "value", "why"), SECRETISH,
                         ids=[n for n, _v, _w in SECRETISH])
def test_a_credential_in_plain_env_is_refused_without_printing_it(
        name: str, value: str, why: str) -> None:
    w = workload("t", wtype="batch", env={name: value})
    (problem,) = workload_problems(w)
    assert problem.path == ("spec", "env", name)
    assert why in problem.message and "secretKeyRef" in problem.message
    assert value not in problem.message


def test_references_and_ordinary_values_are_not_credentials() -> None:
    w = workload("t", wtype="batch", env={"HF_TOKEN": SECRET_REF, "EPOCHS": "3",
                                          "TOKENIZERS_PARALLELISM": "false", "KEYBOARD": "us",
                                          "EMPTY_TOKEN": "", "MODEL": "llama"})
    assert workload_problems(w) == []


def test_training_env_may_not_set_the_rendezvous_variables() -> None:
    w = workload("t", wtype="training", env={"WORLD_SIZE": "8"})
    (problem,) = workload_problems(w)
    assert problem.path == ("spec", "env", "WORLD_SIZE")
    assert workload_problems(workload("t", wtype="batch", env={"WORLD_SIZE": "8"})) == []


def test_the_overlay_knows_exactly_the_fields_of_the_1_35_pod_spec_and_container() -> None:
    # The runtime ships no Kubernetes schema: its field lists are held to the strict
    # 1.35 OpenAPI schema here (kubernetes-validate, a dev dependency).
    from fleet.render.overlay import CONTAINER_FIELDS, POD_FIELDS
    from tests.unit.fleet_render.k8s import _definition_docs

    defs = _definition_docs()["$defs"]
    assert set(defs["io.k8s.api.core.v1.PodSpec"]["properties"]) == POD_FIELDS
    assert set(defs["io.k8s.api.core.v1.Container"]["properties"]) == CONTAINER_FIELDS
