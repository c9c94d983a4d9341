"""Contract: GPU nodes, scheduling and the workload controllers' status.

What a real cluster with the NVIDIA device plugin and GPU feature discovery shows,
and what the kube-scheduler, kubelet, Job and Deployment controllers do. GPU node
shapes are the simulator's (two 8-GPU H100 nodes, one tainted 4-GPU A100 node), so
these tests ask for `sim` and skip against a real cluster.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from clusters.sim import SimCluster
from tests.contract.conftest import PRODUCT
from tests.contract.k8s import GPU, deployment, eventually, job


async def test_gpu_nodes_advertise_capacity_product_and_readiness(
        api: client.ApiClient, cluster: SimCluster) -> None:
    """Nodes carry nvidia.com/gpu capacity and allocatable, the gpu.product label from
    feature discovery, a Ready=True condition, and declared taints."""
    nodes = {n.metadata.name: n for n in (await client.CoreV1Api(api).list_node()).items}
    h100 = nodes["contract-1-h100-0"]
    assert h100.status.capacity[GPU] == "8" and h100.status.allocatable[GPU] == "8"
    assert h100.metadata.labels["nvidia.com/gpu.product"] == PRODUCT
    assert any(c.type == "Ready" and c.status == "True" for c in h100.status.conditions)
    assert nodes["contract-1-a100-0"].spec.taints[0].key == "dedicated"


async def _pods(api: client.ApiClient, ns: str) -> list[Any]:
    return list((await client.CoreV1Api(api).list_namespaced_pod(ns)).items)


async def test_a_job_pod_is_bound_to_a_node_with_enough_gpus_and_runs(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """The scheduler binds a pod to a node whose free GPUs fit its request (skipping the
    tainted node it does not tolerate); the kubelet then reports it Running."""
    await client.BatchV1Api(api).create_namespaced_job(ns, job(gpus=6))

    async def running() -> Any:
        pods = await _pods(api, ns)
        return pods and pods[0].status.phase == "Running" and pods[0]
    pod = await eventually(running)
    assert pod.spec.node_name.startswith("contract-1-h100-")
    assert pod.status.container_statuses[0].ready is True


async def test_a_pod_that_fits_nowhere_stays_pending_as_unschedulable(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """No node with 16 free GPUs: Pending with PodScheduled=False, reason Unschedulable,
    and the scheduler's `0/3 nodes are available: ...` message."""
    await client.BatchV1Api(api).create_namespaced_job(ns, job(gpus=16))

    async def unschedulable() -> Any:
        pods = await _pods(api, ns)
        conds = (pods[0].status.conditions or []) if pods else []
        return next((c for c in conds if c.type == "PodScheduled" and c.status == "False"),
                    None)
    cond = await eventually(unschedulable)
    assert cond.reason == "Unschedulable"
    assert cond.message.startswith("0/3 nodes are available")
    assert f"Insufficient {GPU}" in cond.message


async def test_node_selector_and_tolerations_steer_pods_to_the_tainted_node(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """nodeSelector plus a toleration for the node's taint binds the pod there."""
    body = job(gpus=2, node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
               tolerations=[{"key": "dedicated", "operator": "Equal", "value": "batch",
                             "effect": "NoSchedule"}])
    await client.BatchV1Api(api).create_namespaced_job(ns, body)

    async def bound() -> Any:
        pods = await _pods(api, ns)
        return pods and pods[0].spec.node_name
    assert await eventually(bound) == "contract-1-a100-0"


async def test_a_job_completes_and_reports_status_as_the_job_controller_does(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """After its pods succeed: succeeded=completions, Complete=True (after
    SuccessCriteriaMet), startTime and completionTime set, no active pods."""
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job(completions=2, parallelism=2, gpus=1))

    async def complete() -> Any:
        j = await batch.read_namespaced_job("train", ns)
        conds = {c.type: c.status for c in j.status.conditions or []}
        return conds.get("Complete") == "True" and j
    j = await eventually(complete)
    assert j.status.succeeded == 2 and not j.status.active
    assert j.status.start_time is not None and j.status.completion_time is not None
    assert [c.type for c in j.status.conditions] == ["SuccessCriteriaMet", "Complete"]


async def test_an_indexed_job_labels_each_pod_with_its_completion_index(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """completionMode=Indexed: one pod per index, labelled
    batch.kubernetes.io/job-completion-index, completedIndexes at the end."""
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job(completions=3, parallelism=3, indexed=True))

    async def three() -> Any:
        pods = await _pods(api, ns)
        return len(pods) == 3 and pods
    pods = await eventually(three)
    indexes = {p.metadata.labels["batch.kubernetes.io/job-completion-index"] for p in pods}
    assert indexes == {"0", "1", "2"}

    async def done() -> Any:
        j = await batch.read_namespaced_job("train", ns)
        return j.status.completed_indexes == "0-2"
    await eventually(done)


async def test_a_deployment_reports_ready_and_available_replicas(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """The Deployment controller creates `replicas` pods (`pod-template-hash` label) and
    reports ready/available/updated replicas, observedGeneration and Available=True."""
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment(replicas=2, gpus=1))

    async def available() -> Any:
        d = await apps.read_namespaced_deployment("web", ns)
        return d.status.available_replicas == 2 and d
    d = await eventually(available)
    assert d.status.ready_replicas == 2 and d.status.updated_replicas == 2
    assert d.status.observed_generation == d.metadata.generation
    # the revision annotation written through /status (`UpdateStatus`), as the
    # deployment controller does: the generation stays 1 (a main-resource annotation
    # change raises a Deployment's)
    assert d.metadata.generation == 1
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert {c.type: c.status for c in d.status.conditions}["Available"] == "True"
    pods = await _pods(api, ns)
    assert len(pods) == 2 and all("pod-template-hash" in p.metadata.labels for p in pods)


async def test_scaling_a_deployment_down_removes_pods(api: client.ApiClient, ns: str,
                                                      cluster: SimCluster) -> None:
    """replicas 3 -> 1: the controller deletes the extra pods, status follows."""
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment(replicas=3))

    async def count(n: int) -> Any:
        d = await apps.read_namespaced_deployment("web", ns)
        return d.status.ready_replicas == n and len(await _pods(api, ns)) == n
    await eventually(lambda: count(3))
    await apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 1}})
    await eventually(lambda: count(1))
    d = await apps.read_namespaced_deployment("web", ns)
    assert d.status.observed_generation == 2


async def test_a_not_ready_node_takes_no_new_pods(api: client.ApiClient, ns: str,
                                                  cluster: SimCluster) -> None:
    """A NotReady node gets the not-ready taint: new pods go elsewhere or stay Pending."""
    cluster.set_node_ready("contract-1-h100-0", False)
    cluster.set_node_ready("contract-1-h100-1", False)
    node = await client.CoreV1Api(api).read_node("contract-1-h100-0")
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "Unknown"
    await client.BatchV1Api(api).create_namespaced_job(ns, job(gpus=1))

    async def pending() -> Any:
        pods = await _pods(api, ns)
        return pods and any(c.reason == "Unschedulable" for c in pods[0].status.conditions
                            or [])
    await eventually(pending)
    cluster.set_node_ready("contract-1-h100-1", True)

    async def bound() -> Any:
        pods = await _pods(api, ns)
        return pods[0].spec.node_name
    assert await eventually(bound) == "contract-1-h100-1"


async def test_a_running_job_counts_its_active_and_ready_pods(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """While its pods run, a Job reports active and ready counts and a startTime."""
    cluster.control.job_seconds = 30
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job(completions=2, parallelism=2))

    async def running() -> Any:
        j = await batch.read_namespaced_job("train", ns)
        return j.status.ready == 2 and j
    j = await eventually(running)
    assert j.status.active == 2 and j.status.start_time is not None
    assert not j.status.succeeded and not j.status.conditions


async def test_a_suspended_job_deletes_its_pods_and_says_suspended(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """spec.suspend=true: active pods are deleted and the Job gets Suspended=True;
    resuming creates pods again."""
    cluster.control.job_seconds = 30
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job())
    await eventually(lambda: _pods(api, ns))
    await batch.patch_namespaced_job("train", ns, {"spec": {"suspend": True}})

    async def suspended() -> Any:
        j = await batch.read_namespaced_job("train", ns)
        conds = {c.type: c.status for c in j.status.conditions or []}
        return conds.get("Suspended") == "True" and not await _pods(api, ns)
    await eventually(suspended)
    await batch.patch_namespaced_job("train", ns, {"spec": {"suspend": False}})
    await eventually(lambda: _pods(api, ns))


async def test_a_template_change_rolls_pods_to_the_new_template(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """A new pod template: new pods (new pod-template-hash) come up, the old ones go
    once the new are ready; updatedReplicas and observedGeneration follow."""
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment(replicas=2))

    async def hashes() -> set[str]:
        return {p.metadata.labels["pod-template-hash"] for p in await _pods(api, ns)}
    await eventually(lambda: _ready(apps, ns, 2))
    before = await hashes()
    await apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "nginx:1.28"}]}}}})

    async def rolled() -> Any:
        now = await hashes()
        d = await apps.read_namespaced_deployment("web", ns)
        return len(now) == 1 and now != before and d.status.updated_replicas == 2 and \
            d.status.observed_generation == 2 and d.status.replicas == 2
    await eventually(rolled)


async def _ready(apps: client.AppsV1Api, ns: str, n: int) -> bool:
    d = await apps.read_namespaced_deployment("web", ns)
    return bool(d.status.ready_replicas == n)


async def test_pods_on_a_not_ready_node_stop_counting_as_ready(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """The node lifecycle controller marks pods on a NotReady node not Ready, so the
    Deployment's readyReplicas drops; they count again when the node recovers."""
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment(replicas=1, gpus=8))
    await eventually(lambda: _ready(apps, ns, 1))
    node = (await _pods(api, ns))[0].spec.node_name
    cluster.set_node_ready(node, False)

    async def unready() -> bool:
        d = await apps.read_namespaced_deployment("web", ns)
        return not d.status.ready_replicas
    await eventually(unready)
    cluster.set_node_ready(node, True)
    await eventually(lambda: _ready(apps, ns, 1))


async def test_a_job_whose_pods_keep_failing_fails_after_its_backoff_limit(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """Failed pods are counted and replaced; past backoffLimit the Job gets
    FailureTarget then Failed with reason BackoffLimitExceeded."""
    body = job()
    body["spec"]["backoffLimit"] = 1
    body["spec"]["template"]["metadata"] = {
        "annotations": {"sim.aifleet.dev/exit-code": "1"}}
    cluster.control.job_seconds = 0.1
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, body)

    async def failed() -> Any:
        j = await batch.read_namespaced_job("train", ns)
        conds = {c.type: c for c in j.status.conditions or []}
        return "Failed" in conds and (j, conds["Failed"])
    j, cond = await eventually(failed)
    assert cond.reason == "BackoffLimitExceeded" and j.status.failed == 2
    assert [c.type for c in j.status.conditions] == ["FailureTarget", "Failed"]
    phases = [p.status.phase for p in await _pods(api, ns)]
    assert phases == ["Failed", "Failed"]
