"""CustomResourceDefinitions (apiextensions.k8s.io/v1): installing one serves its kind.

Each test installs its own CRD under a group unique to the run and deletes it after,
so the same tests pass unchanged against a real 1.35 cluster (FLEET_E2E_KUBECONFIG).
The behaviours pinned are apiextensions-apiserver's: CRD validation, the Established
and NamesAccepted conditions, discovery, structural pruning and defaulting, schema
validation as 422 causes, strict field validation, the status subresource, and the
objects going with their CRD.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.k8s import eventually, raw
from tests.contract.test_kubectl import Kubectl, _binary


@pytest.fixture
def kubectl(kubeconfig: Path, context: str | None, tmp_path: Path) -> Kubectl:
    if _binary() is None:
        pytest.skip("kubectl not found: run `make kubectl`")
    return Kubectl(kubeconfig, context, tmp_path / "kube-cache")


def crd(group: str, *, scope: str = "Namespaced", plural: str = "widgets",
        kind: str = "Widget", status: bool = True) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1},
                "colour": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }}},
    }
    if status:
        version["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "shortNames": [f"{plural[:2]}x"]},
                     "versions": [version]}}


@pytest.fixture
def group() -> str:
    return f"ct{uuid.uuid4().hex[:8]}.aifleet.dev"


@pytest.fixture
async def widgets(api: client.ApiClient, group: str) -> AsyncIterator[str]:
    """A namespaced `Widget` CRD, installed and Established; the collection's base path."""
    body = crd(group)
    status, out, _ = await raw(api, "POST",
                               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               body=body)
    assert status == 201, out
    await _established(api, body["metadata"]["name"])
    yield f"/apis/{group}/v1"
    await raw(api, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
              f"{body['metadata']['name']}")


async def _established(api: client.ApiClient, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        _, obj, _ = await raw(api, "GET", "/apis/apiextensions.k8s.io/v1/"
                              f"customresourcedefinitions/{name}")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        ok = conds.get("Established", {}).get("status") == "True"
        return obj if ok else None
    found: dict[str, Any] = await eventually(check)
    return found


def widget(group: str, ns: str, name: str = "w1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": ns}, "spec": spec or {"size": 3}}


async def test_kubectl_applies_a_crd_then_gets_its_objects_and_deleting_it_takes_them(
        kubectl: Kubectl, api: client.ApiClient, group: str, ns: str) -> None:
    """`kubectl apply -f crd.yaml`, `wait --for condition=established`, `api-resources`,
    `apply` of an object and `get <plural>` / `get <shortname>` work as on a real cluster;
    deleting the CRD deletes its objects."""
    body = crd(group)
    name = body["metadata"]["name"]
    (await kubectl("apply", "-f", "-", stdin=json.dumps(body))).ok()
    (await kubectl("wait", "--for", "condition=established", f"crd/{name}",
                   "--timeout=20s")).ok()
    out = (await kubectl("api-resources", f"--api-group={group}")).ok().out
    row = out.splitlines()[1].split()
    assert row == ["widgets", "wix", f"{group}/v1", "true", "Widget"]
    (await kubectl("apply", "-f", "-", stdin=json.dumps(widget(group, ns)))).ok()
    got = await kubectl.json("get", f"widgets.{group}", "w1", "-n", ns)
    assert got["spec"] == {"size": 3, "colour": "red"}  # the schema's default filled in
    assert got["metadata"]["generation"] == 1
    listed = (await kubectl("get", "wix", "-n", ns)).ok().out
    assert listed.splitlines()[0].split() == ["NAME", "AGE"]
    assert listed.splitlines()[1].split()[0] == "w1"
    crd_status = (await kubectl.json("get", "crd", name))["status"]
    conds = {c["type"]: (c["status"], c["reason"]) for c in crd_status["conditions"]}
    assert conds["NamesAccepted"] == ("True", "NoConflicts")
    assert conds["Established"] == ("True", "InitialNamesAccepted")
    assert crd_status["acceptedNames"]["kind"] == "Widget"
    (await kubectl("delete", "crd", name, "--wait=true", "--timeout=30s")).ok()

    async def gone() -> bool:
        status, _, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/{ns}/widgets/w1")
        return status == 404
    assert await eventually(gone, within=30)


async def test_unknown_fields_are_pruned_unless_preserved_and_strict_refuses_them(
        api: client.ApiClient, widgets: str, group: str, ns: str) -> None:
    base = f"{widgets}/namespaces/{ns}/widgets"
    body = widget(group, ns, size=2, shape="round", extra={"free": {"form": [1, 2]}})
    status, out, _ = await raw(api, "POST", base, body=body,
                               query=[("fieldValidation", "Strict")])
    assert status == 400, out
    assert out["message"] == 'strict decoding error: unknown field "spec.shape"'
    status, out, headers = await raw(api, "POST", base, body=body)  # Warn, the default
    assert status == 201, out
    assert "unknown field" in headers.get("Warning", "")
    assert out["spec"] == {"size": 2, "colour": "red", "extra": {"free": {"form": [1, 2]}}}


async def test_schema_violations_are_422_with_one_cause_per_field(
        api: client.ApiClient, widgets: str, group: str, ns: str) -> None:
    base = f"{widgets}/namespaces/{ns}/widgets"
    status, out, _ = await raw(api, "POST", base,
                               body=widget(group, ns, size="three", colour="green"))
    assert status == 422, out
    assert out["reason"] == "Invalid"
    causes = {c["field"]: c for c in out["details"]["causes"]}
    assert causes["spec.size"]["reason"] == "FieldValueInvalid"
    assert "spec.size in body must be of type integer" in causes["spec.size"]["message"]
    assert causes["spec.colour"]["reason"] == "FieldValueNotSupported"
    status, out, _ = await raw(api, "POST", base, body=widget(group, ns, colour="blue"))
    assert status == 422, out
    assert [(c["field"], c["reason"]) for c in out["details"]["causes"]] == [
        ("spec.size", "FieldValueRequired")]
    status, _, _ = await raw(api, "POST", base, body=widget(group, ns, size=1))
    assert status == 201
    status, out, _ = await raw(api, "PATCH", f"{base}/w1", body={"spec": {"size": 0}},
                               content_type="application/merge-patch+json")
    assert status == 422, out
    assert out["details"]["causes"][0]["field"] == "spec.size"


async def test_the_status_subresource_splits_spec_and_status_writes(
        api: client.ApiClient, widgets: str, group: str, ns: str) -> None:
    base = f"{widgets}/namespaces/{ns}/widgets"
    body = {**widget(group, ns), "status": {"ready": True}}
    status, created, _ = await raw(api, "POST", base, body=body)
    assert status == 201, created
    assert "status" not in created  # the server's, not the creator's
    status, out, _ = await raw(api, "PATCH", f"{base}/w1/status",
                               body={"status": {"ready": True}, "spec": {"size": 9},
                                     "metadata": {"labels": {"x": "y"}}},
                               content_type="application/merge-patch+json")
    assert status == 200, out
    assert out["status"] == {"ready": True} and out["spec"]["size"] == 3
    # the customresource status strategy keeps all of the stored object but status
    assert "labels" not in out["metadata"]
    assert out["metadata"]["generation"] == 1
    status, out, _ = await raw(api, "PATCH", f"{base}/w1",
                               body={"spec": {"size": 4}, "status": {"ready": False}},
                               content_type="application/merge-patch+json")
    assert status == 200, out
    assert out["status"] == {"ready": True} and out["spec"]["size"] == 4
    assert out["metadata"]["generation"] == 2
    # customResourceStrategy.AllowUnconditionalUpdate is false: a PUT, of the object
    # or its status, must name the resourceVersion it replaces
    unversioned = {**out, "metadata": {k: v for k, v in out["metadata"].items()
                                       if k != "resourceVersion"}}
    for path in (f"{base}/w1", f"{base}/w1/status"):
        status, err, _ = await raw(api, "PUT", path, body=unversioned)
        assert status == 422, err
        assert err["message"] == (f'widgets.{group} "w1" is invalid: '
                                  "metadata.resourceVersion: Invalid value: 0: must be "
                                  "specified for an update")
    status, out, _ = await raw(api, "PUT", f"{base}/w1/status",
                               body={**out, "status": {"ready": False}})
    assert status == 200 and out["status"] == {"ready": False}, out


async def test_server_side_apply_and_watch_on_a_custom_kind(
        api: client.ApiClient, widgets: str, group: str, ns: str) -> None:
    path = f"{widgets}/namespaces/{ns}/widgets/w1"
    status, out, _ = await raw(api, "PATCH", path, body=widget(group, ns, size=5),
                               content_type="application/apply-patch+yaml",
                               query=[("fieldManager", "ct")])
    assert status == 201, out
    managers = [m["manager"] for m in out["metadata"]["managedFields"]]
    assert managers == ["ct"]
    status, text, _ = await raw(api, "GET", f"{widgets}/namespaces/{ns}/widgets",
                                query=[("watch", "1"), ("timeoutSeconds", "1")])
    assert status == 200
    first = json.loads(str(text).splitlines()[0]) if isinstance(text, str) else text
    assert first["type"] == "ADDED" and first["object"]["spec"]["size"] == 5


async def test_a_cluster_scoped_crd_serves_its_kind_without_namespaces(
        api: client.ApiClient, group: str) -> None:
    body = crd(group, scope="Cluster", plural="gadgets", kind="Gadget", status=False)
    name = body["metadata"]["name"]
    status, out, _ = await raw(api, "POST",
                               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               body=body)
    assert status == 201, out
    try:
        await _established(api, name)
        _, resources, _ = await raw(api, "GET", f"/apis/{group}/v1")
        assert [(r["name"], r["namespaced"]) for r in resources["resources"]] == [
            ("gadgets", False)]
        obj = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"},
               "spec": {"size": 1}}
        status, out, _ = await raw(api, "POST", f"/apis/{group}/v1/gadgets", body=obj)
        assert status == 201, out
        assert "namespace" not in out["metadata"]
        status, _, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/default/gadgets")
        assert status == 404
    finally:
        await raw(api, "DELETE",
                  f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")


async def test_an_invalid_crd_is_refused_with_the_apiextensions_causes(
        api: client.ApiClient, group: str, widgets: str) -> None:
    name = f"widgets.{group}"
    body = crd(group)
    body["metadata"]["name"] = f"gizmos.{group}"
    body["spec"]["versions"].append({**body["spec"]["versions"][0], "name": "v2"})
    status, out, _ = await raw(api, "POST",
                               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               body=body, query=[("dryRun", "All")])
    assert status == 422, out
    causes = {c["field"]: c["message"] for c in out["details"]["causes"]}
    assert 'must be spec.names.plural+"."+spec.group' in causes["metadata.name"]
    assert "must have exactly one version marked as storage version" in \
        causes["spec.versions"]
    status, out, _ = await raw(
        api, "PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
        body={"spec": {"scope": "Cluster"}}, content_type="application/merge-patch+json")
    assert status == 422, out
    assert [(c["field"], c["message"]) for c in out["details"]["causes"]] == [
        ("spec.scope", 'Invalid value: "Cluster": field is immutable')]
    nodot = crd("nodot")
    status, out, _ = await raw(api, "POST",
                               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               body=nodot, query=[("dryRun", "All")])
    assert status == 422, out
    assert any(c["field"] == "spec.group" and "at least one dot" in c["message"]
               for c in out["details"]["causes"])


async def test_kubectl_shows_printer_columns_and_explains_a_custom_kind(
        kubectl: Kubectl, api: client.ApiClient, group: str) -> None:
    """`additionalPrinterColumns` become the Table's columns (priority 1 with `-o
    wide`, type date as an age, a filter JSONPath), and the kind's schema is published
    in OpenAPI v3 for `kubectl explain`."""
    body = crd(group, scope="Cluster", plural="queues", kind="Queue")
    version = body["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Ready", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Colour", "type": "string", "jsonPath": ".spec.colour", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    version["schema"]["openAPIV3Schema"]["properties"]["status"] = {
        "type": "object", "properties": {"conditions": {"type": "array", "items": {
            "type": "object", "properties": {"type": {"type": "string"},
                                             "status": {"type": "string"}}}}}}
    name = body["metadata"]["name"]
    (await kubectl("apply", "-f", "-", stdin=json.dumps(body))).ok()
    try:
        (await kubectl("wait", "--for", "condition=established", f"crd/{name}",
                       "--timeout=20s")).ok()
        obj = {"apiVersion": f"{group}/v1", "kind": "Queue", "metadata": {"name": "q1"},
               "spec": {"size": 4, "colour": "blue"}}

        async def applied() -> bool:  # kubectl reads the new kind's OpenAPI first
            return (await kubectl("apply", "-f", "-", stdin=json.dumps(obj))).rc == 0
        assert await eventually(applied, within=30, interval=0.5)
        status, out, _ = await raw(api, "PATCH", f"/apis/{group}/v1/queues/q1/status",
                                   body={"status": {"conditions": [
                                       {"type": "Ready", "status": "True"}]}},
                                   content_type="application/merge-patch+json")
        assert status == 200, out
        table = (await kubectl("get", f"queues.{group}")).ok().out.splitlines()
        assert table[0].split() == ["NAME", "SIZE", "READY", "AGE"]
        assert table[1].split()[:3] == ["q1", "4", "True"]
        wide = (await kubectl("get", f"queues.{group}", "-o", "wide")).ok().out
        assert wide.splitlines()[0].split() == ["NAME", "SIZE", "READY", "COLOUR", "AGE"]
        explained = (await kubectl("explain", f"queues.{group}.spec")).ok().out
        assert "size\t<integer> -required-" in explained
    finally:
        await raw(api, "DELETE",
                  f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")


async def test_an_object_is_served_in_every_version_of_its_crd(
        api: client.ApiClient, group: str, ns: str) -> None:
    """Conversion strategy None: one object, served in each version with that
    version's apiVersion; watches of either version see writes through the other."""
    body = crd(group)
    beta = {**body["spec"]["versions"][0], "name": "v1beta1", "storage": False}
    body["spec"]["versions"].append(beta)
    name = body["metadata"]["name"]
    status, out, _ = await raw(api, "POST",
                               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               body=body)
    assert status == 201, out
    try:
        crd_obj = await _established(api, name)
        assert crd_obj["spec"]["conversion"] == {"strategy": "None"}
        _, group_doc, _ = await raw(api, "GET", f"/apis/{group}")
        assert group_doc["preferredVersion"]["version"] == "v1"
        assert [v["version"] for v in group_doc["versions"]] == ["v1", "v1beta1"]
        obj = {**widget(group, ns), "apiVersion": f"{group}/v1beta1"}
        status, out, _ = await raw(api, "POST",
                                   f"/apis/{group}/v1beta1/namespaces/{ns}/widgets", body=obj)
        assert status == 201, out
        status, got, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/{ns}/widgets/w1")
        assert status == 200, got
        assert got["apiVersion"] == f"{group}/v1" and got["spec"]["size"] == 3
        _, listed, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/{ns}/widgets")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
        status, text, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/{ns}/widgets",
                                    query=[("watch", "1"), ("timeoutSeconds", "1")])
        first = json.loads(str(text).splitlines()[0]) if isinstance(text, str) else text
        assert first["object"]["apiVersion"] == f"{group}/v1"
    finally:
        await raw(api, "DELETE",
                  f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
