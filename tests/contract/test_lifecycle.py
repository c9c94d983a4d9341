"""Contract: scheduling and lifecycle as a real cluster runs them.

Allocatable below capacity and the scheduler's cpu/memory fit (NodeResourcesFit),
graceful pod termination (pod strategy `CheckGracefulDelete`, the kubelet removing the
pod once its containers stopped), Deployment -> ReplicaSet -> Pod with the rollout
rules `kubectl rollout status` and `helm --wait` read, and the field managers the
control plane writes under. Written against the API only, so with
`FLEET_E2E_KUBECONFIG` they run unchanged against a real 1.35 cluster, except those
asking for `cluster` (the simulator's GPU nodes or its clock).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from clusters.sim import SimCluster
from fleet.quantity import parse
from tests.contract.k8s import GPU, deployment, eventually, raw
from tests.contract.test_kubectl import Kubectl, _binary
from tests.contract.test_kubectl import kubectl as kubectl_fixture

kubectl = kubectl_fixture  # the real kubectl on the contract cluster (test_kubectl)
needs_kubectl = pytest.mark.skipif(_binary() is None, reason="kubectl not found: run "
                                   "`make kubectl`")


def pod(name: str, *, cpu: str | None = None, gpus: int = 0, grace: int | None = None,
        node: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    if cpu is not None:
        c["resources"] = {"requests": {"cpu": cpu}}
    if gpus:
        c.setdefault("resources", {})["limits"] = {GPU: str(gpus)}
    spec: dict[str, Any] = {"containers": [c]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def _pod(api: client.ApiClient, ns: str, name: str) -> Any:
    status, body, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    return body if status == 200 else None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), None)


# ------------------------------------------------------------------ nodes, fit


async def test_allocatable_is_below_capacity_for_cpu_and_memory(api: client.ApiClient) -> None:
    """The kubelet reserves cpu and memory (system/kube reserved, eviction
    thresholds); extended resources and the pod count are not reserved."""
    for node in (await client.CoreV1Api(api).list_node()).items:
        cap, alloc = node.status.capacity, node.status.allocatable
        assert parse(alloc["cpu"]).value < parse(cap["cpu"]).value
        assert parse(alloc["memory"]).value < parse(cap["memory"]).value
        assert alloc["pods"] == cap["pods"]
        if GPU in cap:
            assert alloc[GPU] == cap[GPU]


async def test_a_pod_asking_a_whole_nodes_cpu_capacity_stays_pending(
        api: client.ApiClient, ns: str) -> None:
    """Requesting the largest node's whole cpu capacity fits no allocatable: Pending,
    PodScheduled=False/Unschedulable with FitError's message and a FailedScheduling
    event."""
    core = client.CoreV1Api(api)
    nodes = (await core.list_node()).items
    biggest = max(parse(n.status.capacity["cpu"]).value for n in nodes)
    await core.create_namespaced_pod(ns, pod("big", cpu=str(biggest)))

    async def unschedulable() -> Any:
        p = await _pod(api, ns, "big")
        c = _condition(p or {}, "PodScheduled")
        return c if c and c["status"] == "False" else None
    cond = await eventually(unschedulable)
    assert cond["reason"] == "Unschedulable"
    assert cond["message"].startswith(f"0/{len(nodes)} nodes are available: ")
    assert "Insufficient cpu" in cond["message"]
    big = await _pod(api, ns, "big")
    assert ("kube-scheduler", "Update", "status") in _entries(big)
    events = (await core.list_namespaced_event(ns)).items
    assert any(e.reason == "FailedScheduling" and e.involved_object.name == "big"
               for e in events)


# ------------------------------------------------------------------ graceful termination


async def test_deleting_a_bound_pod_is_graceful_and_zero_grace_is_immediate(
        api: client.ApiClient, ns: str) -> None:
    """DELETE answers the pod with deletionTimestamp and deletionGracePeriodSeconds
    from DeleteOptions (or terminationGracePeriodSeconds); gracePeriodSeconds=0 then
    removes it at once."""
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod(ns, pod("web", grace=600))

    async def bound() -> Any:
        p = await _pod(api, ns, "web")
        return p and p["spec"].get("nodeName")
    await eventually(bound, within=60)
    status, body, _ = await raw(api, "DELETE", f"/api/v1/namespaces/{ns}/pods/web",
                                body={"kind": "DeleteOptions", "apiVersion": "v1",
                                      "gracePeriodSeconds": 300})
    assert status == 200
    assert body["metadata"]["deletionGracePeriodSeconds"] == 300
    assert body["metadata"].get("deletionTimestamp")
    assert (await _pod(api, ns, "web")) is not None  # terminating, still there
    status, _, _ = await raw(api, "DELETE", f"/api/v1/namespaces/{ns}/pods/web",
                             query=[("gracePeriodSeconds", "0")])
    assert status == 200
    assert await eventually(lambda: _gone(api, ns, "web"))


async def _gone(api: client.ApiClient, ns: str, name: str) -> bool:
    return (await _pod(api, ns, name)) is None


async def test_a_terminating_pod_keeps_its_gpus_until_it_is_gone(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """A pod holding a node's 8 GPUs is deleted with a grace period: until the kubelet
    removes it, another 8-GPU pod for that node is Unschedulable; then it binds."""
    core = client.CoreV1Api(api)
    node = "contract-1-h100-0"
    cluster.control.time_scale = 1.0  # real seconds: the grace period is ours to end
    await core.create_namespaced_pod(ns, pod("first", gpus=8, node=node, grace=30))
    await eventually(lambda: _phase(api, ns, "first", "Running"))
    await core.delete_namespaced_pod("first", ns)
    await core.create_namespaced_pod(ns, pod("second", gpus=8, node=node))

    async def waiting() -> Any:
        c = _condition(await _pod(api, ns, "second") or {}, "PodScheduled")
        return c if c and c["status"] == "False" else None
    assert "1 Insufficient nvidia.com/gpu" in (await eventually(waiting))["message"]
    assert (await _pod(api, ns, "first"))["metadata"]["deletionGracePeriodSeconds"] == 30
    await core.delete_namespaced_pod("first", ns, grace_period_seconds=0)
    await eventually(lambda: _phase(api, ns, "second", "Running"))


async def _phase(api: client.ApiClient, ns: str, name: str, phase: str) -> bool:
    p = await _pod(api, ns, name)
    return bool(p) and p.get("status", {}).get("phase") == phase


# ------------------------------------------------------------------ Deployments


def _deploy(ns: str, name: str = "web", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    d = deployment(name, replicas)
    d["metadata"]["namespace"] = ns
    d["spec"].update(spec)
    return d


async def _rs(kubectl: Kubectl, ns: str) -> list[dict[str, Any]]:
    items = (await kubectl.json("get", "rs", "-n", ns))["items"]
    return sorted(items, key=lambda r: r["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"])


@needs_kubectl
async def test_rollout_status_follows_a_rolling_update_through_replicasets(
        kubectl: Kubectl, ns: str) -> None:
    """The Deployment owns a ReplicaSet per template (`<deploy>-<pod-template-hash>`,
    labelled and selected by the hash, revision annotations); `kubectl rollout status`
    waits for the new one and `set image` makes a second, the first going to 0."""
    (await kubectl.apply(_deploy(ns))).ok()
    out = (await kubectl("rollout", "status", "deployment/web", "-n", ns,
                         "--timeout=60s", within=90)).ok().out
    assert 'deployment "web" successfully rolled out' in out
    first = (await _rs(kubectl, ns))[0]
    hash_ = first["metadata"]["labels"]["pod-template-hash"]
    assert first["metadata"]["name"] == f"web-{hash_}"
    assert first["spec"]["selector"]["matchLabels"]["pod-template-hash"] == hash_
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    (await kubectl("set", "image", "deployment/web", "main=nginx:1.28", "-n", ns)).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    old, new = await _rs(kubectl, ns)
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 3
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    dep = await kubectl.json("get", "deployment", "web", "-n", ns)
    status = dep["status"]
    assert status["observedGeneration"] == dep["metadata"]["generation"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) \
        == (3, 3, 3)
    assert _condition(dep, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert _condition(dep, "Available")["reason"] == "MinimumReplicasAvailable"
    header = (await kubectl("get", "rs", "-n", ns)).ok().out.splitlines()[0].split()
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    # `rollout undo` reads the ReplicaSets' revisions and restores the first template
    (await kubectl("rollout", "undo", "deployment/web", "-n", ns)).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    back = {r["metadata"]["name"]: r for r in await _rs(kubectl, ns)}
    assert back[first["metadata"]["name"]]["spec"]["replicas"] == 3
    assert back[first["metadata"]["name"]]["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "3"


@needs_kubectl
async def test_a_rollout_that_cannot_progress_exceeds_its_deadline(
        kubectl: Kubectl, ns: str) -> None:
    """Pods nobody can schedule: Progressing=False, reason ProgressDeadlineExceeded,
    and `kubectl rollout status` fails saying so."""
    d = _deploy(ns, replicas=1, progressDeadlineSeconds=2)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "100000"}}
    (await kubectl.apply(d)).ok()
    result = await kubectl("rollout", "status", "deployment/web", "-n", ns,
                           "--timeout=60s", within=90)
    assert result.rc != 0
    assert 'deployment "web" exceeded its progress deadline' in result.err
    dep = await kubectl.json("get", "deployment", "web", "-n", ns)
    cond = _condition(dep, "Progressing")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert _condition(dep, "Available")["status"] == "False"


@pytest.mark.parametrize(("surge", "unavailable", "old", "new"), [
    (1, 0, 3, 1), (0, 1, 2, 1), ("50%", "50%", 2, 3)],
    ids=["surge-only", "unavailable-only", "percentages"])
@needs_kubectl
async def test_max_surge_and_max_unavailable_bound_a_stuck_rollout(
        kubectl: Kubectl, ns: str, surge: Any, unavailable: Any, old: int,
        new: int) -> None:
    """A new template whose pods never become available: the rollout stops where
    maxSurge (rounded up) and maxUnavailable (rounded down) let it, on 3 replicas."""
    strategy = {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    (await kubectl.apply(_deploy(ns, strategy=strategy))).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    stuck = _deploy(ns, strategy=strategy)
    stuck["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "100000"}}
    (await kubectl.apply(stuck)).ok()

    async def settled() -> Any:
        rss = await _rs(kubectl, ns)
        sizes = [r["spec"]["replicas"] for r in rss]
        return sizes if len(rss) == 2 and sizes == [old, new] else None
    assert await eventually(settled, within=30)
    dep = await kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["status"].get("availableReplicas", 0) == old


@needs_kubectl
async def test_recreate_starts_new_pods_only_once_every_old_pod_is_gone(
        kubectl: Kubectl, api: client.ApiClient, ns: str) -> None:
    """Recreate: the old ReplicaSet goes to 0 and no new pod exists while an old one
    (terminating included) still does (`oldPodsRunning`)."""
    (await kubectl.apply(_deploy(ns, replicas=2, strategy={"type": "Recreate"}))).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    seen: list[tuple[str, str, str]] = []

    async def record() -> None:
        w = watch.Watch()
        async for ev in w.stream(client.CoreV1Api(api).list_namespaced_pod, ns,
                                 timeout_seconds=60):
            pod_ = ev["object"]
            seen.append((ev["type"], pod_.metadata.name,
                         pod_.metadata.labels.get("pod-template-hash", "")))
    async with asyncio.timeout(90):
        task = asyncio.create_task(record())
        (await kubectl("set", "image", "deployment/web", "main=nginx:1.28", "-n",
                       ns)).ok()
        (await kubectl("rollout", "status", "deployment/web", "-n", ns,
                       "--timeout=60s", within=90)).ok()
        task.cancel()
    live: dict[str, str] = {}
    hashes_together = []
    for etype, name, hash_ in seen:
        if etype == "DELETED":
            live.pop(name, None)
        else:
            live[name] = hash_
        hashes_together.append(len(set(live.values())))
    assert len({h for _, _, h in seen}) == 2  # both templates' pods were watched
    assert max(hashes_together) == 1


@needs_kubectl
async def test_a_paused_deployment_does_not_roll_out_until_resumed(
        kubectl: Kubectl, ns: str) -> None:
    """`rollout pause`: a template change makes no ReplicaSet and Progressing says
    DeploymentPaused; `rollout resume` rolls it out."""
    (await kubectl.apply(_deploy(ns, replicas=2))).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    (await kubectl("rollout", "pause", "deployment/web", "-n", ns)).ok()
    (await kubectl("set", "image", "deployment/web", "main=nginx:1.28", "-n", ns)).ok()

    async def paused() -> Any:
        dep = await kubectl.json("get", "deployment", "web", "-n", ns)
        c = _condition(dep, "Progressing")
        return c if c and c["reason"] == "DeploymentPaused" else None
    assert (await eventually(paused))["status"] == "Unknown"
    assert len(await _rs(kubectl, ns)) == 1
    (await kubectl("rollout", "resume", "deployment/web", "-n", ns)).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    assert [r["spec"]["replicas"] for r in await _rs(kubectl, ns)] == [0, 2]


async def test_min_ready_seconds_holds_availability_back(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """Ready pods count as available only after minReadySeconds; until then the
    Deployment is not Available. (Simulator clock in real seconds, so an hour is an
    hour; lowering minReadySeconds then makes them available.)"""
    cluster.control.time_scale = 1.0
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, _deploy(ns, replicas=2,
                                                        minReadySeconds=3600,
                                                        progressDeadlineSeconds=7200))

    async def ready() -> Any:
        d = await apps.read_namespaced_deployment("web", ns)
        return d if (d.status.ready_replicas or 0) == 2 else None
    dep = await eventually(ready)
    assert not dep.status.available_replicas
    assert next(c for c in dep.status.conditions if c.type == "Available").status == "False"
    await apps.patch_namespaced_deployment("web", ns, {"spec": {"minReadySeconds": 0}})

    async def available() -> Any:
        d = await apps.read_namespaced_deployment("web", ns)
        return (d.status.available_replicas or 0) == 2
    assert await eventually(available)


# ------------------------------------------------------------------ field managers


def _entries(obj: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    return {(e["manager"], e["operation"], e.get("subresource"))
            for e in obj["metadata"].get("managedFields") or []}


@needs_kubectl
async def test_the_control_plane_writes_under_its_own_field_managers(
        kubectl: Kubectl, ns: str) -> None:
    """The Deployment and ReplicaSet controllers write as kube-controller-manager
    (status through the status subresource) and the kubelet as kubelet; the
    scheduler's binding records no manager: what a drift report reads to blame a
    writer."""
    (await kubectl.apply(_deploy(ns, replicas=1))).ok()
    (await kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                   within=90)).ok()
    dep = await kubectl.json("get", "deployment", "web", "-n", ns, "--show-managed-fields")
    assert ("kube-controller-manager", "Update", "status") in _entries(dep)
    assert ("kubectl", "Apply", None) in _entries(dep)
    rs = (await kubectl.json("get", "rs", "-n", ns, "--show-managed-fields"))["items"][0]
    assert {("kube-controller-manager", "Update", None),
            ("kube-controller-manager", "Update", "status")} <= _entries(rs)
    p = (await kubectl.json("get", "pods", "-n", ns, "--show-managed-fields"))["items"][0]
    assert {("kube-controller-manager", "Update", None),
            ("kubelet", "Update", "status")} <= _entries(p)
    status_entry = next(e for e in p["metadata"]["managedFields"]
                        if e["manager"] == "kubelet")
    assert "f:status" in json.dumps(status_entry["fieldsV1"])
    assert "f:spec" not in status_entry["fieldsV1"]
    # the binding is a storage update past the field manager: nobody owns nodeName
    assert p["spec"]["nodeName"]
    assert "f:nodeName" not in json.dumps(p["metadata"]["managedFields"])
