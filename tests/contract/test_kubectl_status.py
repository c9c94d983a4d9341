"""`kubectl patch --subresource=status`: what a write to `/status` keeps of an object.

Same server and binary as `test_kubectl.py` (its `kubectl` fixture): the simulator by
default, `FLEET_E2E_KUBECONFIG` for a real 1.35 cluster, where these pass unchanged.
The rules are the status strategies' (`clusters/sim/status_strategy.py` cites each):
a Deployment's keeps spec and labels, a Job's spec only; neither raises the
generation, and no write adds a finalizer to an object being deleted.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio import client

from tests.contract.k8s import raw
from tests.contract.test_kubectl import Kubectl, kubectl, pytestmark

__all__ = ["kubectl", "pytestmark"]

HOLD = "example.com/hold"


def _deployment(ns: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "labels": {"tier": "a"},
                         "finalizers": [HOLD]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}


async def _status_patch(kubectl: Kubectl, ns: str, what: str, patch: Any,
                        kind: str = "merge") -> Any:
    return await kubectl("-n", ns, "patch", what, "--subresource=status",
                         f"--type={kind}", "-p", json.dumps(patch), "-o", "json")


async def test_a_deployment_status_patch_keeps_spec_labels_and_finalizers(
        kubectl: Kubectl, ns: str) -> None:
    """Labels and spec sent to /status are reset, annotations taken; the finalizer the
    patch does not name stays, and one a JSON patch removes goes (a Deployment's
    status strategy resets spec and labels only)."""
    (await kubectl("create", "-f", "-", stdin=json.dumps(_deployment(ns)))).ok()
    before = await kubectl.json("-n", ns, "get", "deploy", "web")
    res = (await _status_patch(kubectl, ns, "deploy/web", {
        "metadata": {"labels": {"tier": "b"}, "annotations": {"note": "x"}},
        "spec": {"replicas": 3}})).ok()
    out = json.loads(res.out)
    assert out["metadata"]["labels"] == {"tier": "a"}
    assert out["metadata"]["annotations"]["note"] == "x"
    assert out["metadata"]["finalizers"] == [HOLD]
    assert out["spec"]["replicas"] == 0
    assert out["metadata"]["generation"] == before["metadata"]["generation"]
    res = (await _status_patch(kubectl, ns, "deploy/web", [
        {"op": "remove", "path": "/metadata/finalizers"}], kind="json")).ok()
    assert "finalizers" not in json.loads(res.out)["metadata"]


async def test_a_job_status_patch_takes_labels_but_not_spec(kubectl: Kubectl,
                                                            ns: str) -> None:
    """A Job's status strategy resets spec alone: the labels are the request's."""
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "train", "namespace": ns},
           "spec": {"suspend": True, "parallelism": 1, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}
    (await kubectl("create", "-f", "-", stdin=json.dumps(job))).ok()
    res = (await _status_patch(kubectl, ns, "job/train", {
        "metadata": {"labels": {"team": "x"}}, "spec": {"parallelism": 2}})).ok()
    out = json.loads(res.out)
    assert out["metadata"]["labels"]["team"] == "x"
    assert out["spec"]["parallelism"] == 1
    assert out["metadata"]["generation"] == 1


async def test_no_status_write_adds_a_finalizer_to_a_deployment_being_deleted(
        kubectl: Kubectl, ns: str) -> None:
    """ValidateObjectMetaAccessorUpdate: 422 Forbidden; removing the last finalizer
    through /status lets the deletion finish."""
    (await kubectl("create", "-f", "-", stdin=json.dumps(_deployment(ns)))).ok()
    (await kubectl("-n", ns, "delete", "deploy", "web", "--wait=false")).ok()
    res = await _status_patch(kubectl, ns, "deploy/web", {
        "metadata": {"finalizers": [HOLD, "example.com/new"]}})
    assert res.rc != 0
    assert "no new finalizers can be added if the object is being deleted" in res.err
    live = await kubectl.json("-n", ns, "get", "deploy", "web")
    assert live["metadata"]["finalizers"] == [HOLD]
    assert live["metadata"].get("deletionTimestamp")
    (await _status_patch(kubectl, ns, "deploy/web", {
        "metadata": {"finalizers": None}})).ok()
    gone = await kubectl("-n", ns, "get", "deploy", "web")
    assert gone.rc != 0 and "NotFound" in gone.err


async def test_an_apply_to_status_applies_annotations_not_labels(
        kubectl: Kubectl, api: client.ApiClient, ns: str) -> None:
    """`PATCH .../status?fieldManager=m` (apply): a Deployment's labels and spec in the
    configuration are reset by its status strategy, its annotations applied and owned
    by `m`'s entry with `subresource: status` (labels and spec are reset fields)."""
    dep = _deployment(ns)
    del dep["metadata"]["finalizers"]
    (await kubectl("create", "-f", "-", stdin=json.dumps(dep))).ok()
    status, out, _ = await raw(
        api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web/status",
        body={"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "labels": {"tier": "z"},
                           "annotations": {"example.com/note": "x"}},
              "spec": {"replicas": 4}},
        content_type="application/apply-patch+yaml", query=[("fieldManager", "m")])
    assert status == 200, out
    assert out["metadata"]["labels"] == {"tier": "a"}
    assert out["metadata"]["annotations"]["example.com/note"] == "x"
    assert out["spec"]["replicas"] == 0
    entry = next(e for e in out["metadata"]["managedFields"] if e["manager"] == "m")
    assert (entry["operation"], entry["subresource"]) == ("Apply", "status")
    assert entry["fieldsV1"] == {"f:metadata": {"f:annotations": {
        "f:example.com/note": {}}}}
