"""Kueue and JobSet in the simulator, seen over HTTP as a MultiKueue worker's API shows
them: CRDs installed per cluster, Workloads with Kueue's conditions, admission by
ClusterQueue quota per flavour with cohort borrowing, JobSets creating their Jobs and
headless Service. Simulator-only (a real cluster would need Kueue and JobSet
installed); the behaviours pinned are upstream's (see clusters/sim/stacks/).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from clusters.sim import SimClusterSpec, SimFleet, SimNode, start_sim
from clusters.sim.stacks.kueue import QUEUE_LABEL
from tests.contract.k8s import eventually, job, raw

KUEUE = "kueue.x-k8s.io/v1beta2"
PRODUCT = "NVIDIA-H100-80GB-HBM3"
NS = "team-a"


def _spec(name: str, stack: frozenset[str]) -> SimClusterSpec:
    labels = {"nvidia.com/gpu.product": PRODUCT, "nvidia.com/gpu.count": "8"}
    return SimClusterSpec(name, tuple(SimNode(f"{name}-h100-{i}", PRODUCT, 8, labels)
                                      for i in range(2)), stack=stack)


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    sim = await start_sim([_spec("ai", frozenset({"kueue", "jobset"})),
                           _spec("plain", frozenset())],
                          job_seconds=60.0, pod_start_seconds=0.01)
    async with sim:
        yield sim


@pytest.fixture
async def api(fleet: SimFleet, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    path = fleet.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = await config.new_client_from_config(config_file=str(path), context="ai")
    async with api_client:
        status, out, _ = await raw(api_client, "POST", "/api/v1/namespaces",
                                   body={"metadata": {"name": NS}})
        assert status == 201, out
        yield api_client


async def _post(api: client.ApiClient, path: str, body: dict[str, Any]) -> Any:
    status, out, _ = await raw(api, "POST", path, body=body)
    assert status == 201, out
    return out


async def _get(api: client.ApiClient, path: str) -> Any:
    status, out, _ = await raw(api, "GET", path)
    assert status == 200, out
    return out


def cluster_queue(name: str, gpus: int, cohort: str | None = None,
                  borrowing_limit: int | None = None) -> dict[str, Any]:
    quota: dict[str, Any] = {"name": "nvidia.com/gpu", "nominalQuota": gpus}
    if borrowing_limit is not None:
        quota["borrowingLimit"] = borrowing_limit
    spec: dict[str, Any] = {"namespaceSelector": {}, "resourceGroups": [{
        "coveredResources": ["nvidia.com/gpu"],
        "flavors": [{"name": "h100", "resources": [quota]}]}]}
    if cohort:
        spec["cohortName"] = cohort
    return {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": spec}


async def _queues(api: client.ApiClient, *queues: dict[str, Any],
                  local: str = "team-a") -> None:
    await _post(api, f"/apis/{KUEUE}/resourceflavors", {
        "apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "h100"},
        "spec": {"nodeLabels": {"nvidia.com/gpu.product": PRODUCT}}})
    for q in queues:
        await _post(api, f"/apis/{KUEUE}/clusterqueues", q)
    await _post(api, f"/apis/{KUEUE}/namespaces/{NS}/localqueues", {
        "apiVersion": KUEUE, "kind": "LocalQueue",
        "metadata": {"name": "team-a", "namespace": NS},
        "spec": {"clusterQueue": local}})


def queued_job(name: str, gpus: int, pods: int = 1) -> dict[str, Any]:
    j = job(name, gpus, completions=pods, parallelism=pods, indexed=pods > 1)
    j["metadata"].update(namespace=NS, labels={QUEUE_LABEL: "team-a"})
    return j


async def _workload(api: client.ApiClient, job_name: str) -> dict[str, Any] | None:
    wls = await _get(api, f"/apis/{KUEUE}/namespaces/{NS}/workloads")
    found = [w for w in wls["items"]
             if w["metadata"]["ownerReferences"][0]["name"] == job_name]
    return found[0] if found else None


def _condition(wl: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    conds = ((wl or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == kind), None)


async def test_the_crds_are_served_only_where_the_stack_is_installed(
        fleet: SimFleet, api: client.ApiClient, tmp_path: Path) -> None:
    kueue = await _get(api, f"/apis/{KUEUE}")
    assert {r["name"] for r in kueue["resources"] if "/" not in r["name"]} == {
        "clusterqueues", "localqueues", "resourceflavors", "workloads"}
    jobsets = await _get(api, "/apis/jobset.x-k8s.io/v1alpha2")
    assert [r["name"] for r in jobsets["resources"] if "/" not in r["name"]] == ["jobsets"]
    crd = await _get(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                          "clusterqueues.kueue.x-k8s.io")
    assert crd["spec"]["scope"] == "Cluster"
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] \
        == "True"
    path = fleet.write_kubeconfig(tmp_path / "kc2")
    async with await config.new_client_from_config(config_file=str(path),
                                                   context="plain") as plain:
        status, _, _ = await raw(plain, "GET", f"/apis/{KUEUE}")
        assert status == 404


async def test_a_queued_job_is_suspended_until_its_quota_is_free(
        api: client.ApiClient) -> None:
    await _queues(api, cluster_queue("team-a", 8))
    await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs", queued_job("first", 8))
    created = await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs",
                          queued_job("second", 8))
    assert created["spec"]["suspend"] is True  # Kueue's job webhook

    async def admitted(name: str) -> Any:
        cond = _condition(await _workload(api, name), "Admitted")
        return cond if cond and cond["status"] == "True" else None
    assert (await admitted("first") or await eventually(lambda: admitted("first"))
            )["reason"] == "Admitted"
    first = await _get(api, f"/apis/batch/v1/namespaces/{NS}/jobs/first")
    assert first["spec"]["suspend"] is False
    wl = await _workload(api, "first")
    assert wl is not None
    assert wl["status"]["admission"]["clusterQueue"] == "team-a"
    assert wl["status"]["admission"]["podSetAssignments"][0]["flavors"] == {
        "nvidia.com/gpu": "h100"}
    assert _condition(wl, "QuotaReserved")["message"] == (  # type: ignore[index]
        "Quota reserved in ClusterQueue team-a")

    second = await eventually(lambda: _workload(api, "second"))
    reserved = _condition(second, "QuotaReserved")
    assert reserved is not None
    assert (reserved["status"], reserved["reason"]) == ("False", "Pending")
    assert reserved["message"] == ("couldn't assign flavors to pod set main: insufficient "
                                   "unused quota for nvidia.com/gpu in flavor h100, 8 more "
                                   "needed")
    job2 = await _get(api, f"/apis/batch/v1/namespaces/{NS}/jobs/second")
    assert job2["spec"]["suspend"] is True
    cq = await _get(api, f"/apis/{KUEUE}/clusterqueues/team-a")
    assert (cq["status"]["admittedWorkloads"], cq["status"]["pendingWorkloads"]) == (1, 1)
    assert cq["status"]["flavorsUsage"] == [{"name": "h100", "resources": [
        {"name": "nvidia.com/gpu", "total": "8", "borrowed": "0"}]}]

    status, _, _ = await raw(api, "DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/first",
                             body={"propagationPolicy": "Background"})
    assert status == 200
    assert (await eventually(lambda: admitted("second")))["status"] == "True"


async def test_a_queue_borrows_its_cohorts_unused_quota_within_its_limit(
        api: client.ApiClient) -> None:
    await _queues(api, cluster_queue("team-a", 8, cohort="ai"),
                  cluster_queue("team-b", 8, cohort="ai"),
                  cluster_queue("team-c", 8, cohort="lonely"))
    await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs", queued_job("big", 8, pods=2))

    async def admitted() -> Any:
        cond = _condition(await _workload(api, "big"), "Admitted")
        return cond if cond and cond["status"] == "True" else None
    await eventually(admitted)
    cq = await eventually(lambda: _borrowed(api, "team-a"))
    assert cq == [{"name": "nvidia.com/gpu", "total": "16", "borrowed": "8"}]


async def _borrowed(api: client.ApiClient, name: str) -> Any:
    cq = await _get(api, f"/apis/{KUEUE}/clusterqueues/{name}")
    usage = (cq.get("status") or {}).get("flavorsUsage") or []
    return usage[0]["resources"] if usage and usage[0]["resources"][0]["total"] != "0" \
        else None


async def test_a_borrowing_limit_keeps_a_job_pending(api: client.ApiClient) -> None:
    await _queues(api, cluster_queue("team-a", 8, cohort="ai", borrowing_limit=4),
                  cluster_queue("team-b", 8, cohort="ai"))
    await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs", queued_job("big", 8, pods=2))

    async def pending() -> Any:
        cond = _condition(await _workload(api, "big"), "QuotaReserved")
        return cond if cond and cond["status"] == "False" else None
    cond = await eventually(pending)
    assert cond["message"].endswith("in flavor h100, 4 more needed")


def jobset(name: str, *, replicas: int, pods: int, gpus: int,
           queue: str | None = None) -> dict[str, Any]:
    template = queued_job("x", gpus, pods)
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if queue:
        meta["labels"] = {QUEUE_LABEL: queue}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
            "spec": {"replicatedJobs": [{"name": "workers", "replicas": replicas,
                                         "template": {"spec": copy.deepcopy(
                                             template["spec"])}}]}}


async def test_a_jobset_makes_its_jobs_and_headless_service_once_admitted(
        api: client.ApiClient) -> None:
    await _queues(api, cluster_queue("team-a", 32))
    js = await _post(api, f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets",
                     jobset("tune", replicas=2, pods=2, gpus=4, queue="team-a"))
    assert js["spec"]["suspend"] is True
    wl = await eventually(lambda: _workload(api, "tune"))
    assert [(p["name"], p["count"]) for p in wl["spec"]["podSets"]] == [("workers", 4)]

    async def running_jobs() -> Any:
        jobs = await _get(api, f"/apis/batch/v1/namespaces/{NS}/jobs")
        names = {j["metadata"]["name"]: j["spec"]["suspend"] for j in jobs["items"]}
        return names if names and not any(names.values()) else None
    assert set(await eventually(running_jobs)) == {"tune-workers-0", "tune-workers-1"}
    svc = await _get(api, f"/api/v1/namespaces/{NS}/services/tune")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"jobset.sigs.k8s.io/jobset-name": "tune"}

    async def pods() -> Any:
        items = (await _get(api, f"/api/v1/namespaces/{NS}/pods"))["items"]
        return items if len(items) == 4 else None
    got = await eventually(pods)
    assert {p["spec"]["subdomain"] for p in got} == {"tune"}
    assert sorted(p["spec"]["hostname"] for p in got) == [  # `<job>-<index>.tune`
        "tune-workers-0-0", "tune-workers-0-1", "tune-workers-1-0", "tune-workers-1-1"]
    assert sorted(p["metadata"]["labels"]["jobset.sigs.k8s.io/job-index"] for p in got) \
        == ["0", "0", "1", "1"]
    status = (await eventually(lambda: _jobset_status(api)))
    assert status == [{"name": "workers", "ready": 2, "succeeded": 0, "failed": 0,
                       "active": 2, "suspended": 0}]


async def _jobset_status(api: client.ApiClient) -> Any:
    js = await _get(api, f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets/tune")
    rows = (js.get("status") or {}).get("replicatedJobsStatus") or []
    return rows if rows and rows[0]["ready"] == 2 else None


async def test_a_cohorts_spare_quota_is_borrowed_once_and_the_localqueue_reports_it(
        api: client.ApiClient) -> None:
    """team-a has no quota of its own, its cohort 8 to lend: the first 8-GPU Job borrows
    it all, the second waits (Kueue's `available`, pkg/cache/resource_node.go). The
    LocalQueue's status says what its Workloads reserve, in v1beta2's shape."""
    await _queues(api, cluster_queue("team-a", 0, cohort="ai"),
                  cluster_queue("lender", 8, cohort="ai"))
    await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs", queued_job("one", 8))

    async def admitted() -> Any:
        cond = _condition(await _workload(api, "one"), "Admitted")
        return cond if cond and cond["status"] == "True" else None
    await eventually(admitted)
    await _post(api, f"/apis/batch/v1/namespaces/{NS}/jobs", queued_job("two", 8))

    async def pending() -> Any:
        cond = _condition(await _workload(api, "two"), "QuotaReserved")
        return cond if cond and cond["status"] == "False" else None
    cond = await eventually(pending)
    assert cond["message"].endswith("in flavor h100, 8 more needed")
    assert await eventually(lambda: _borrowed(api, "team-a")) == [
        {"name": "nvidia.com/gpu", "total": "8", "borrowed": "8"}]

    async def lq_status() -> Any:
        lq = await _get(api, f"/apis/{KUEUE}/namespaces/{NS}/localqueues/team-a")
        st = lq.get("status") or {}
        return st if st.get("pendingWorkloads") == 1 else None
    st = await eventually(lq_status)
    assert (st["admittedWorkloads"], st["reservingWorkloads"]) == (1, 1)
    assert st["flavorsReservation"] == st["flavorsUsage"] == [
        {"name": "h100", "resources": [{"name": "nvidia.com/gpu", "total": "8"}]}]
    active = next(c for c in st["conditions"] if c["type"] == "Active")
    assert (active["status"], active["reason"], active["message"]) == (
        "True", "Ready", "Can submit new workloads to localQueue")
