"""Contract: writes. Patches of every type, server-side apply, deletion semantics.

Each test names the kube-apiserver behaviour it pins. Server-side apply is what our
controller writes with, so its rules (field managers, conflicts, force, removal,
no-op) are pinned one by one.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.k8s import configmap, deployment, eventually, job, raw

APPLY = "application/apply-patch+yaml"


async def _apply(api: client.ApiClient, ns: str, body: dict[str, Any], manager: str = "fleet",
                 force: str | None = None) -> tuple[int, Any, dict[str, str]]:
    name = body["metadata"]["name"]
    query = [("fieldManager", manager)] if manager else []
    if force is not None:
        query.append(("force", force))
    return await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}",
                     query=query, body=body, content_type=APPLY)


@pytest.mark.parametrize(("content_type", "patch", "expected"), [
    ("application/merge-patch+json", {"data": {"b": "2", "a": None}}, {"b": "2"}),
    ("application/json-patch+json", [{"op": "add", "path": "/data/b", "value": "2"},
                                     {"op": "remove", "path": "/data/a"}], {"b": "2"}),
    ("application/strategic-merge-patch+json", {"data": {"b": "2"}}, {"a": "1", "b": "2"}),
], ids=["merge-patch", "json-patch", "strategic-merge"])
async def test_each_patch_type_is_applied_as_its_rfc_says(
        api: client.ApiClient, ns: str, content_type: str, patch: Any,
        expected: dict[str, str]) -> None:
    """PATCH accepts merge (RFC 7386, null deletes), JSON (RFC 6902) and strategic merge."""
    await client.CoreV1Api(api).create_namespaced_config_map(ns, configmap(ns, a="1"))
    status, body, _ = await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings",
                                body=patch, content_type=content_type)
    assert status == 200, body["message"]
    assert body["data"] == expected


async def test_strategic_merge_merges_containers_by_name_and_env_by_name(
        api: client.ApiClient, ns: str) -> None:
    """Strategic merge: `containers` and `env` are merged by name, not replaced."""
    apps = client.AppsV1Api(api)
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "envoy:1"})
    await apps.create_namespaced_deployment(ns, d)
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}}
    status, body, _ = await raw(api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web",
                                body=patch,
                                content_type="application/strategic-merge-patch+json")
    assert status == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side"]
    assert {e["name"] for e in containers[0]["env"]} == {"A", "B"}


async def test_apply_without_field_manager_is_rejected(api: client.ApiClient,
                                                       ns: str) -> None:
    """Server-side apply requires `fieldManager` (422 Invalid on PatchOptions)."""
    status, body, _ = await _apply(api, ns, configmap(ns), manager="")
    assert status == 422 and "fieldManager" in body["message"]


async def test_apply_creates_a_missing_object_and_records_its_manager(
        api: client.ApiClient, ns: str) -> None:
    """Apply to a missing object creates it (201) with a managedFields entry for the
    manager, operation Apply, fieldsType FieldsV1."""
    status, body, _ = await _apply(api, ns, configmap(ns, a="1"))
    assert status == 201
    entry = next(m for m in body["metadata"]["managedFields"] if m["manager"] == "fleet")
    assert entry["operation"] == "Apply" and entry["fieldsType"] == "FieldsV1"
    assert "f:a" in entry["fieldsV1"]["f:data"]


async def test_repeating_an_apply_changes_neither_resource_version_nor_generation(
        api: client.ApiClient, ns: str) -> None:
    """A no-op apply writes nothing: same resourceVersion (and no watch event)."""
    _, first, _ = await _apply(api, ns, configmap(ns, a="1"))
    _, again, _ = await _apply(api, ns, configmap(ns, a="1"))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_apply_conflicts_with_another_managers_field_unless_forced(
        api: client.ApiClient, ns: str) -> None:
    """A field owned by another manager with a different value: 409 Conflict naming the
    field and the manager; with force=true the applier takes it over."""
    await _apply(api, ns, configmap(ns, a="1"))
    status, _, _ = await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings",
                             query=[("fieldManager", "kubectl-edit")],
                             body={"data": {"a": "2"}},
                             content_type="application/merge-patch+json")
    assert status == 200
    status, body, _ = await _apply(api, ns, configmap(ns, a="1"))
    assert status == 409 and body["reason"] == "Conflict"
    assert body["details"]["causes"][0]["field"] == ".data.a"
    assert "kubectl-edit" in body["message"]
    status, body, _ = await _apply(api, ns, configmap(ns, a="1"), force="true")
    assert status == 200 and body["data"]["a"] == "1"


async def test_apply_removes_fields_the_manager_stopped_applying(api: client.ApiClient,
                                                                 ns: str) -> None:
    """A field the manager applied before and omits now is removed from the object."""
    await _apply(api, ns, configmap(ns, a="1", b="2"))
    _, body, _ = await _apply(api, ns, configmap(ns, a="1"))
    assert body["data"] == {"a": "1"}


@pytest.mark.parametrize("value", ["True", "true", "1"], ids=["True", "true", "1"])
async def test_query_booleans_accept_the_go_spellings(api: client.ApiClient, ns: str,
                                                      value: str) -> None:
    """Query booleans are parsed like Go's strconv.ParseBool (True/true/1)."""
    await _apply(api, ns, configmap(ns, a="1"))
    await raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings",
              query=[("fieldManager", "other")], body={"data": {"a": "2"}},
              content_type="application/merge-patch+json")
    status, _, _ = await _apply(api, ns, configmap(ns, a="1"), force=value)
    assert status == 200


async def test_delete_with_a_finalizer_only_marks_the_object(api: client.ApiClient,
                                                             ns: str) -> None:
    """DELETE of an object with finalizers sets deletionTimestamp; it goes away once the
    finalizers are removed."""
    core = client.CoreV1Api(api)
    body = configmap(ns)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await core.create_namespaced_config_map(ns, body)
    await core.delete_namespaced_config_map("settings", ns)
    held = await core.read_namespaced_config_map("settings", ns)
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map("settings", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as err:
        await core.read_namespaced_config_map("settings", ns)
    assert err.value.status == 404


async def test_a_put_naming_a_gone_objects_uid_is_a_conflict(api: client.ApiClient,
                                                              ns: str) -> None:
    """An object deleted and created again under its name: a PUT (of the object or its
    /status) carrying the old uid is refused as a storage precondition (409), and a
    patch changing the uid is an immutable field (422); neither reaches the new one."""
    base = f"/apis/batch/v1/namespaces/{ns}/jobs"
    body = job("again")
    body["spec"]["suspend"] = True
    status, first, _ = await raw(api, "POST", base, body=body)
    assert status == 201, first
    await raw(api, "DELETE", f"{base}/again", body={"propagationPolicy": "Background"})
    status, second, _ = await raw(api, "POST", base, body=body)
    assert status == 201, second
    stale = {**second, "metadata": {**second["metadata"], "uid": first["metadata"]["uid"],
                                    "labels": {"stale": "yes"}}}
    del stale["metadata"]["resourceVersion"]  # the uid alone is what is refused
    for path in (f"{base}/again", f"{base}/again/status"):
        status, out, _ = await raw(api, "PUT", path, body=stale)
        assert status == 409 and out["reason"] == "Conflict", out
        assert f"Precondition failed: UID in precondition: {first['metadata']['uid']}, " \
            f"UID in object meta: {second['metadata']['uid']}" in out["message"]
    status, out, _ = await raw(api, "PATCH", f"{base}/again",
                               body={"metadata": {"uid": first["metadata"]["uid"]}},
                               content_type="application/merge-patch+json")
    assert status == 422 and out["details"]["causes"][0]["field"] == "metadata.uid", out
    _, live, _ = await raw(api, "GET", f"{base}/again")
    assert "stale" not in (live["metadata"].get("labels") or {})


async def test_namespace_deletion_removes_the_objects_in_it(api: client.ApiClient) -> None:
    """Deleting a namespace deletes everything in it, then the namespace itself."""
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "doomed"}})
    await core.create_namespaced_config_map("doomed", configmap("doomed"))
    await core.delete_namespace("doomed")

    async def gone() -> bool:
        names = {n.metadata.name for n in (await core.list_namespace()).items}
        return "doomed" not in names
    await eventually(gone)
    cms = await core.list_config_map_for_all_namespaces()
    assert all(c.metadata.namespace != "doomed" for c in cms.items)


async def test_deleting_a_job_orphans_its_pods_by_default(api: client.ApiClient,
                                                          ns: str) -> None:
    """batch/v1 Jobs default to propagationPolicy=Orphan: the pods stay, ownerless."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(ns, job())

    async def pods() -> list[Any]:
        return list((await core.list_namespaced_pod(ns)).items)
    await eventually(pods)
    await batch.delete_namespaced_job("train", ns)
    left = await pods()
    assert left and all(not p.metadata.owner_references for p in left)


async def test_deleting_a_job_in_background_deletes_its_pods(api: client.ApiClient,
                                                             ns: str) -> None:
    """propagationPolicy=Background: the garbage collector deletes the Job's pods."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(ns, job())

    async def pods() -> list[Any]:
        return list((await core.list_namespaced_pod(ns)).items)
    await eventually(pods)
    await batch.delete_namespaced_job("train", ns, propagation_policy="Background")
    await eventually(lambda: _none(pods))


async def _none(fn: Any) -> bool:
    return not await fn()


async def test_an_eviction_deletes_the_pod(api: client.ApiClient, ns: str) -> None:
    """POST pods/<name>/eviction (policy/v1, what `kubectl drain` sends): 201, and the pod
    is deleted (no PodDisruptionBudget stands in the way)."""
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod(ns, {
        "metadata": {"name": "victim"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}],
                 "terminationGracePeriodSeconds": 0}})
    await core.create_namespaced_pod_eviction("victim", ns, {
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "victim", "namespace": ns}})

    async def gone() -> bool:
        return not (await core.list_namespaced_pod(ns)).items
    await eventually(gone)



async def test_quantities_are_stored_canonical_and_a_bad_one_is_a_400(
        api: client.ApiClient, ns: str) -> None:
    """kube-apiserver decodes every quantity and writes it back canonical; a value that
    is no quantity fails decoding with 400 BadRequest, before any validation."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {
               "requests": {"cpu": "0.5", "memory": "1024Mi"},
               "limits": {"cpu": "2000m", "memory": "1.5Gi"}}}]}}
    status, stored, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, stored
    assert stored["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1536Mi"}}
    bad = {**pod, "metadata": {"name": "bad", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                    "resources": {"requests": {"memory": "6GiB"}}}]}}
    status, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/pods", body=bad)
    assert status == 400 and body["reason"] == "BadRequest"
    assert "quantities must match the regular expression" in body["message"]
