"""Dynamic Resource Allocation, resource.k8s.io/v1 (GA since 1.34).

Each test publishes its own devices: a ResourceSlice of a driver unique to the run on
one schedulable node and a DeviceClass selecting that driver, so the same tests pass
unchanged against a real 1.35 cluster (FLEET_E2E_KUBECONFIG), whose scheduler
allocates from any published slice (the pod itself never starts there: no kubelet
plugin runs for the made-up driver; allocation is what is checked). Pinned: discovery,
v1 shapes and defaults (`exactly.allocationMode: ExactCount`, `count: 1`), the
validation causes, immutable claim specs, a claim generated from a template for a pod
(`<pod>-<claim>-<random>`, owned by the pod, annotated with the pod's claim name),
allocation (results, nodeSelector, reservedFor), Unschedulable `cannot allocate all
claims`, and the generated claim going with its pod.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.conftest import sim_only
from tests.contract.k8s import eventually, raw
from tests.contract.test_kubectl import Kubectl, _binary

V1 = "/apis/resource.k8s.io/v1"


@pytest.fixture
def driver() -> str:
    return f"ct{uuid.uuid4().hex[:8]}.aifleet.dev"


async def _schedulable_node(api: client.ApiClient) -> str:
    nodes = (await client.CoreV1Api(api).list_node()).items
    for n in sorted(nodes, key=lambda n: n.metadata.name):
        if not n.spec.unschedulable and not n.spec.taints:
            return str(n.metadata.name)
    raise AssertionError("no untainted schedulable node")


@pytest.fixture
async def devices(api: client.ApiClient, driver: str) -> AsyncIterator[dict[str, str]]:
    """Two devices of `driver` on one node, and a DeviceClass `driver` selecting them."""
    node = await _schedulable_node(api)
    rslice: dict[str, Any] = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
              "metadata": {"name": f"{driver}-{node}"},
              "spec": {"driver": driver, "nodeName": node,
                       "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                       "devices": [{"name": f"dev-{i}", "attributes": {
                           "model": {"string": "sim-accel"}, "index": {"int": i}},
                           "capacity": {"memory": {"value": "16Gi"}}} for i in range(2)]}}
    dclass = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
              "metadata": {"name": driver},
              "spec": {"selectors": [{"cel": {"expression":
                                              f'device.driver == "{driver}"'}}]}}
    for path, body in ((f"{V1}/resourceslices", rslice), (f"{V1}/deviceclasses", dclass)):
        status, out, _ = await raw(api, "POST", path, body=body)
        assert status == 201, out
    yield {"node": node, "class": driver, "slice": rslice["metadata"]["name"]}
    await raw(api, "DELETE", f"{V1}/resourceslices/{rslice['metadata']['name']}")
    await raw(api, "DELETE", f"{V1}/deviceclasses/{driver}")


def claim_spec(device_class: str, count: int | None = None) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, "selectors": [
        {"cel": {"expression": f'device.attributes["{device_class}"].model == "sim-accel"'}},
        {"cel": {"expression": f'device.capacity["{device_class}"].memory'
                               '.compareTo(quantity("8Gi")) >= 0'}}]}
    if count is not None:
        exactly["count"] = count
    return {"devices": {"requests": [{"name": "accel", "exactly": exactly}]}}


def claim_pod(ns: str, name: str, template: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "resourceClaims": [{"name": "accel",
                                         "resourceClaimTemplateName": template}],
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"claims": [{"name": "accel"}]}}]}}


async def test_resource_k8s_io_v1_serves_the_four_dra_kinds(api: client.ApiClient) -> None:
    status, doc, _ = await raw(api, "GET", V1)
    assert status == 200, doc
    kinds = {r["kind"]: r["namespaced"] for r in doc["resources"] if "/" not in r["name"]}
    assert {k: kinds.get(k) for k in ("DeviceClass", "ResourceSlice", "ResourceClaim",
                                      "ResourceClaimTemplate")} == {
        "DeviceClass": False, "ResourceSlice": False, "ResourceClaim": True,
        "ResourceClaimTemplate": True}


async def test_a_claim_is_defaulted_validated_and_its_spec_immutable(
        api: client.ApiClient, ns: str) -> None:
    base = f"{V1}/namespaces/{ns}/resourceclaims"
    body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "one"}, "spec": claim_spec("gpu.example.com")}
    status, out, _ = await raw(api, "POST", base, body=body)
    assert status == 201, out
    exactly = out["spec"]["devices"]["requests"][0]["exactly"]
    assert (exactly["allocationMode"], exactly["count"]) == ("ExactCount", 1)
    status, out, _ = await raw(api, "PATCH", f"{base}/one",
                               body={"spec": claim_spec("gpu.example.com", 2)},
                               content_type="application/merge-patch+json")
    assert status == 422, out
    assert any(c["field"] == "spec" and "immutable" in c["message"]
               for c in out["details"]["causes"])
    bad = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
           "metadata": {"name": "two"}, "spec": {"devices": {"requests": [
               {"name": "a", "exactly": {"count": 0}}, {"name": "b"}]}}}
    status, out, _ = await raw(api, "POST", base, body=bad)
    assert status == 422, out
    fields = {c["field"] for c in out["details"]["causes"]}
    assert {"spec.devices.requests[0].exactly.deviceClassName",
            "spec.devices.requests[0].exactly.count",
            "spec.devices.requests[1]"} <= fields


async def test_a_slice_must_say_which_nodes_its_devices_are_on(
        api: client.ApiClient, driver: str) -> None:
    body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"{driver}-nowhere"},
            "spec": {"driver": driver, "pool": {"name": "p", "resourceSliceCount": 1},
                     "devices": [{"name": "dev-0"}]}}
    status, out, _ = await raw(api, "POST", f"{V1}/resourceslices", body=body,
                               query=[("dryRun", "All")])
    assert status == 422, out
    assert any(c["field"] == "spec" and "exactly one of" in c["message"]
               for c in out["details"]["causes"])


async def test_a_pod_gets_a_claim_from_its_template_allocated_on_its_node(
        api: client.ApiClient, ns: str, devices: dict[str, str]) -> None:
    tmpl = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": "two-accels"},
            "spec": {"metadata": {"labels": {"team": "ct"}},
                     "spec": claim_spec(devices["class"], 2)}}
    status, out, _ = await raw(api, "POST", f"{V1}/namespaces/{ns}/resourceclaimtemplates",
                               body=tmpl)
    assert status == 201, out
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod(ns, claim_pod(ns, "worker", "two-accels"))

    async def allocated() -> dict[str, Any] | None:
        _, claims, _ = await raw(api, "GET", f"{V1}/namespaces/{ns}/resourceclaims")
        items = [c for c in claims.get("items", [])
                 if (c.get("status") or {}).get("reservedFor")]
        return items[0] if items else None
    claim = await eventually(allocated, within=30)
    meta = claim["metadata"]
    assert meta["name"].startswith("worker-accel-")
    assert meta["annotations"]["resource.kubernetes.io/pod-claim-name"] == "accel"
    assert meta["labels"] == {"team": "ct"}
    assert [(o["kind"], o["name"], o.get("controller")) for o in meta["ownerReferences"]] \
        == [("Pod", "worker", True)]
    results = claim["status"]["allocation"]["devices"]["results"]
    assert sorted(r["device"] for r in results) == ["dev-0", "dev-1"]
    assert {(r["driver"], r["pool"], r["request"]) for r in results} == {
        (devices["class"], devices["node"], "accel")}
    terms = claim["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == [devices["node"]]
    assert [r["name"] for r in claim["status"]["reservedFor"]] == ["worker"]
    pod = await core.read_namespaced_pod("worker", ns)
    assert pod.spec.node_name == devices["node"]
    assert [(s.name, s.resource_claim_name) for s in pod.status.resource_claim_statuses] \
        == [("accel", meta["name"])]

    await core.create_namespaced_pod(ns, claim_pod(ns, "second", "two-accels"))

    async def unschedulable() -> str | None:
        p = await core.read_namespaced_pod("second", ns)
        for cond in p.status.conditions or []:
            if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                return str(cond.message)
        return None
    message = await eventually(unschedulable, within=30)
    assert "cannot allocate all claims" in message

    await core.delete_namespaced_pod("worker", ns, grace_period_seconds=0)

    async def claim_gone() -> bool:
        status, _, _ = await raw(api, "GET",
                                 f"{V1}/namespaces/{ns}/resourceclaims/{meta['name']}")
        return status == 404
    assert await eventually(claim_gone, within=60)


@sim_only
async def test_a_cel_selector_outside_the_simulators_subset_is_refused_clearly(
        api: client.ApiClient, driver: str) -> None:
    """Divergence on purpose (docs/simulator.md): a real server accepts any valid CEL;
    the simulator refuses what it cannot evaluate instead of matching wrongly."""
    body = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
            "metadata": {"name": driver}, "spec": {"selectors": [{"cel": {
                "expression": 'device.attributes["x"].model.startsWith("a")'}}]}}
    status, out, _ = await raw(api, "POST", f"{V1}/deviceclasses", body=body)
    assert status == 422, out
    cause = out["details"]["causes"][0]
    assert cause["field"] == "spec.selectors[0].cel.expression"
    assert "not supported by the aifleet simulator's CEL subset" in cause["message"]


@pytest.fixture
def kubectl(kubeconfig: Path, context: str | None, tmp_path: Path) -> Kubectl:
    if _binary() is None:
        pytest.skip("kubectl not found: run `make kubectl`")
    return Kubectl(kubeconfig, context, tmp_path / "kube-cache")


async def test_kubectl_lists_claims_with_their_state_and_slices_with_their_node(
        kubectl: Kubectl, api: client.ApiClient, ns: str, devices: dict[str, str]) -> None:
    """The server-side Table columns of printers.go: NAME STATE AGE for claims (`pending`
    until allocated), NAME NODE DRIVER POOL AGE for slices."""
    body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "waiting", "namespace": ns},
            "spec": claim_spec(devices["class"])}
    status, out, _ = await raw(api, "POST", f"{V1}/namespaces/{ns}/resourceclaims", body=body)
    assert status == 201, out
    claims = (await kubectl("get", "resourceclaims", "-n", ns)).ok().out.splitlines()
    assert claims[0].split() == ["NAME", "STATE", "AGE"]
    assert claims[1].split()[:2] == ["waiting", "pending"]
    slices = (await kubectl("get", "resourceslices", devices["slice"])).ok().out.splitlines()
    assert slices[0].split() == ["NAME", "NODE", "DRIVER", "POOL", "AGE"]
    assert slices[1].split()[:4] == [devices["slice"], devices["node"], devices["class"],
                                     devices["node"]]
