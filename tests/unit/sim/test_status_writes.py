"""Writes to `/status` keep or take metadata per kind, as kube-apiserver 1.35 does.

The expectations are written out here from the upstream status strategies, apart from
`clusters/sim/status_strategy.py`'s table, so a change to that table shows up as a
failure: Deployment (`deploymentStatusStrategy`: spec, labels), Job
(`jobStatusStrategy`: spec), Pod (`podStatusStrategy`: spec, ownerReferences),
ResourceClaim (`ResetObjectMetaForStatus`), CRD (a no-op `ResetObjectMetaForStatus`
in 1.35: metadata is the request's), custom resources (the stored object but status).
Every update keeps uid, creationTimestamp, generation and deletionTimestamp
(`rest.BeforeUpdate`) and refuses a new finalizer on an object being deleted
(`ValidateNoNewFinalizers`).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.sim import SimCluster, SimClusterSpec, objects, patch, ssa
from clusters.sim.crds import CRDS
from clusters.sim.errors import SimError
from clusters.sim.resources import BY_KIND, Resource
from clusters.sim.store import Store

DEPLOY, JOB, POD, CLAIM, NS = (BY_KIND[k] for k in (
    "Deployment", "Job", "Pod", "ResourceClaim", "Namespace"))
OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-1"}
OTHER_OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "u-2"}
META = ("labels", "annotations", "finalizers", "ownerReferences")
CONTAINERS = [{"name": "c", "image": "i:1"}]


def _store() -> Store:
    s = Store("t")
    s.create(NS, {"metadata": {"name": "a"}})
    return s


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "a", "labels": {"l": "1"},
            "annotations": {"n": "1"}, "finalizers": ["example.com/keep"],
            "ownerReferences": [OWNER]}


def _deploy() -> dict[str, Any]:
    return {"metadata": _meta("d"), "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": CONTAINERS}}}}


def _job() -> dict[str, Any]:
    return {"metadata": _meta("j"), "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": CONTAINERS}}}}


def _pod() -> dict[str, Any]:
    return {"metadata": _meta("p"), "spec": {"containers": CONTAINERS}}


def _claim() -> dict[str, Any]:
    return {"metadata": _meta("c"), "spec": {"devices": {"requests": [
        {"name": "g", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}}


def _sent(live: dict[str, Any]) -> dict[str, Any]:
    """A status PUT that also changes every piece of metadata and the spec, and tries
    the server-set fields."""
    new = copy.deepcopy(live)
    meta = new["metadata"]
    meta.update(labels={"l": "2"}, annotations={"n": "2"},
                finalizers=["example.com/other"], ownerReferences=[OTHER_OWNER],
                generation=7, creationTimestamp="2001-01-01T00:00:00Z")
    new["spec"]["changed"] = True
    new["status"] = {"observedGeneration": 1}
    return new


# What each kind's 1.35 status strategy puts back from the stored object.
KEPT = {"Deployment": {"labels"}, "Job": set(), "Pod": {"ownerReferences"},
        "ResourceClaim": set(META)}


@pytest.mark.parametrize(("res", "make"), [(DEPLOY, _deploy), (JOB, _job), (POD, _pod),
                                           (CLAIM, _claim)], ids=lambda v: getattr(
                                               v, "kind", ""))
def test_a_status_write_keeps_spec_and_the_metadata_its_kind_resets(
        res: Resource, make: Any) -> None:
    s = _store()
    live = s.create(res, make())
    out = s.replace(res, _sent(live), live, manager="m", subresource="status")
    meta, sent = out["metadata"], _sent(live)["metadata"]
    for key in META:
        want = live["metadata"][key] if key in KEPT[res.kind] else sent[key]
        assert meta.get(key) == want, key
    assert out["spec"] == live["spec"]
    assert out["status"]["observedGeneration"] == 1
    for key in ("uid", "creationTimestamp", "generation"):
        assert meta.get(key) == live["metadata"].get(key), key


def test_a_deployment_status_patch_keeps_finalizers_and_owners() -> None:
    """A patch applies to the stored object, so what it does not name stays: the
    status write the deployment controller and `kubectl patch --subresource=status`
    make loses no finalizer, owner, label or annotation."""
    s = _store()
    live = s.create(DEPLOY, _deploy())
    new = patch.merge_patch(live, {"status": {"replicas": 2}})
    out = s.replace(DEPLOY, new, live, manager="m", subresource="status")
    for key in META:
        assert out["metadata"][key] == live["metadata"][key], key
    assert out["status"] == {"replicas": 2}
    assert out["metadata"]["generation"] == live["metadata"]["generation"]


def test_a_deployment_status_put_that_leaves_out_finalizers_drops_them() -> None:
    """deploymentStatusStrategy resets spec and labels only: a full PUT is the object
    the client sent, finalizers and owners included (or left out)."""
    s = _store()
    live = s.create(DEPLOY, _deploy())
    new = copy.deepcopy(live)
    del new["metadata"]["finalizers"], new["metadata"]["ownerReferences"]
    new["status"] = {"replicas": 1}
    out = s.replace(DEPLOY, new, live, manager="m", subresource="status")
    assert "finalizers" not in out["metadata"]
    assert "ownerReferences" not in out["metadata"]
    assert out["metadata"]["labels"] == {"l": "1"}


def test_a_pod_status_write_backfills_its_qos_class() -> None:
    s = _store()
    live = s.create(POD, _pod())
    out = s.replace(POD, {**live, "status": {"phase": "Running"}}, live,
                    subresource="status")
    assert out["status"] == {"phase": "Running", "qosClass": "BestEffort"}


def test_the_status_writer_owns_the_metadata_its_kind_lets_through() -> None:
    """managedFields: the reset fields (GetResetFields) are never the writer's."""
    s = _store()
    for res, make, owned in ((JOB, _job, {"f:labels", "f:annotations", "f:finalizers",
                                          "f:ownerReferences"}),
                             (DEPLOY, _deploy, {"f:annotations", "f:finalizers",
                                                "f:ownerReferences"}),
                             (CLAIM, _claim, set())):
        live = s.create(res, make())
        out = s.replace(res, _sent(live), live, manager="w", subresource="status")
        entry = next(e for e in out["metadata"]["managedFields"]
                     if e["manager"] == "w")
        assert entry["subresource"] == "status"
        assert set(entry["fieldsV1"].get("f:metadata", {})) == owned, res.kind
        assert "f:spec" not in entry["fieldsV1"]


def test_an_apply_to_status_applies_only_what_the_strategy_lets_through() -> None:
    """As `api._apply` does for `?fieldManager=x` on /status: a Deployment's labels
    and spec in the configuration are dropped, its annotations applied and owned."""
    s = _store()
    live = s.create(DEPLOY, _deploy())
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "a", "labels": {"l": "9"},
                         "annotations": {"mine": "x"}},
            "spec": {"replicas": 5}, "status": {"replicas": 3}}
    new = ssa.apply(live, body, "applier", force=False, now=objects.now(),
                    subresource="status")
    new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    out = s.replace(DEPLOY, new, live, managed=True, subresource="status")
    assert out["metadata"]["labels"] == {"l": "1"}
    assert out["metadata"]["annotations"] == {"n": "1", "mine": "x"}
    assert out["spec"] == live["spec"] and out["status"]["replicas"] == 3
    entry = next(e for e in out["metadata"]["managedFields"]
                 if e["manager"] == "applier")
    assert entry["operation"] == "Apply" and entry["subresource"] == "status"
    assert entry["fieldsV1"]["f:metadata"] == {"f:annotations": {"f:mine": {}}}


# ------------------------------------------------------------------ being deleted


def _deleting(s: Store) -> dict[str, Any]:
    s.create(DEPLOY, _deploy())
    return s.delete(DEPLOY, "a", "d")


def test_a_status_write_to_an_object_being_deleted_keeps_its_deletion_timestamp() -> None:
    s = _store()
    live = _deleting(s)
    new = copy.deepcopy(live)
    del new["metadata"]["deletionTimestamp"]
    new["status"] = {"replicas": 1}
    out = s.replace(DEPLOY, new, live, subresource="status")
    assert out["metadata"]["deletionTimestamp"] == live["metadata"]["deletionTimestamp"]
    assert out["metadata"]["finalizers"] == ["example.com/keep"]


@pytest.mark.parametrize("subresource", [None, "status"])
def test_no_new_finalizer_on_an_object_being_deleted(subresource: str | None) -> None:
    s = _store()
    live = _deleting(s)
    new = copy.deepcopy(live)
    new["metadata"]["finalizers"] = ["example.com/keep", "example.com/new"]
    with pytest.raises(SimError) as e:
        s.replace(DEPLOY, new, live, subresource=subresource)
    body = e.value.status()
    assert e.value.code == 422
    assert body["details"]["causes"] == [{
        "reason": "FieldValueForbidden", "field": "metadata.finalizers",
        "message": 'Forbidden: no new finalizers can be added if the object is being '
                   'deleted, found new finalizers []string{"example.com/new"}'}]
    assert s.get(DEPLOY, "a", "d") == live


def test_a_status_write_that_drops_the_last_finalizer_deletes_the_object() -> None:
    """genericregistry.Store.Update deletes an object whose last finalizer an update
    removes (zero grace), whichever strategy, status included."""
    s = _store()
    live = _deleting(s)
    new = copy.deepcopy(live)
    del new["metadata"]["finalizers"]
    s.replace(DEPLOY, new, live, subresource="status")
    assert s.find(DEPLOY, "a", "d") is None


# ------------------------------------------------------------------ CRDs, custom kinds

SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}


def _cluster() -> tuple[SimCluster, Resource]:
    c = SimCluster(SimClusterSpec("one", ()))
    c.store.create(CRDS, {"metadata": {"name": "widgets.example.aifleet.dev"}, "spec": {
        "group": "example.aifleet.dev", "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": SCHEMA}}]}})
    return c, c.store.resources.lookup("widgets")


def test_a_custom_resource_status_write_changes_status_only() -> None:
    c, res = _cluster()
    live = c.store.create(res, {"metadata": {**_meta("w"), "namespace": "default"},
                                "spec": {"size": 1}})
    new = _sent(live)
    new["status"] = {"ready": True}
    out = c.store.replace(res, new, live, manager="m", subresource="status")
    for key in META:
        assert out["metadata"][key] == live["metadata"][key], key
    assert out["spec"] == {"size": 1} and out["status"] == {"ready": True}
    entry = next(e for e in out["metadata"]["managedFields"] if e["manager"] == "m")
    assert set(entry["fieldsV1"]) == {"f:status"}
    gone = copy.deepcopy(out)
    del gone["status"]  # none sent: none stored (status_strategy.go deletes it)
    assert "status" not in c.store.replace(res, gone, out, subresource="status")


def test_a_crd_status_write_takes_the_sent_metadata() -> None:
    """1.35's CRD statusStrategy resets the new metadata to itself (kubernetes#137681):
    labels and finalizers are the request's, which is how the CRD finalizer removes
    `customresourcecleanup.apiextensions.k8s.io` through UpdateStatus; the spec and
    the generation stay."""
    c, _ = _cluster()
    live = c.store.get(CRDS, "", "widgets.example.aifleet.dev")
    new = copy.deepcopy(live)
    new["metadata"]["labels"] = {"l": "2"}
    new["metadata"]["finalizers"] = ["customresourcecleanup.apiextensions.k8s.io"]
    new["spec"]["names"]["shortNames"] = ["wd"]
    out = c.store.replace(CRDS, new, live, manager="m", subresource="status")
    assert out["metadata"]["labels"] == {"l": "2"}
    assert out["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    assert out["spec"] == live["spec"]
    assert out["metadata"]["generation"] == live["metadata"]["generation"]
