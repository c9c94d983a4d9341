"""Contract: discovery, server-set metadata, defaults and errors as v1 Status.

Each test pins one behaviour of the real kube-apiserver that our controller depends
on; the docstring names it. Runs against the simulator, or a real cluster with
FLEET_E2E_KUBECONFIG.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.k8s import configmap, deployment, eventually, job, raw


async def test_version_reports_a_kubernetes_version(api: client.ApiClient) -> None:
    """GET /version returns major/minor/gitVersion (clients gate features on it)."""
    info = await client.VersionApi(api).get_code()
    assert info.major == "1" and int(info.minor.rstrip("+")) >= 28
    assert info.git_version.startswith("v1.")


@pytest.mark.parametrize(("group_version", "kind", "plural", "namespaced"), [
    ("v1", "Namespace", "namespaces", False),
    ("v1", "Node", "nodes", False),
    ("v1", "Pod", "pods", True),
    ("v1", "Service", "services", True),
    ("v1", "ConfigMap", "configmaps", True),
    ("v1", "Event", "events", True),
    ("apps/v1", "Deployment", "deployments", True),
    ("batch/v1", "Job", "jobs", True),
    ("coordination.k8s.io/v1", "Lease", "leases", True),
], ids=["namespaces", "nodes", "pods", "services", "configmaps", "events",
        "deployments", "jobs", "leases"])
async def test_discovery_lists_each_resource_with_kind_scope_and_verbs(
        api: client.ApiClient, group_version: str, kind: str, plural: str,
        namespaced: bool) -> None:
    """/api/v1 and /apis/<g>/<v> list each resource's kind, namespaced flag and verbs;
    kubectl and dynamic clients build their REST mapping from exactly this."""
    path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    status, doc, _ = await raw(api, "GET", path)
    assert status == 200 and doc["kind"] == "APIResourceList"
    entry = next(r for r in doc["resources"] if r["name"] == plural)
    assert entry["kind"] == kind and entry["namespaced"] is namespaced
    assert {"get", "list", "watch", "create", "patch", "delete"} <= set(entry["verbs"])


async def test_api_groups_name_their_preferred_versions(api: client.ApiClient) -> None:
    """/apis lists apps, batch and coordination.k8s.io with a preferredVersion."""
    groups = await client.ApisApi(api).get_api_versions()
    by_name = {g.name: g.preferred_version.group_version for g in groups.groups}
    assert by_name["apps"] == "apps/v1" and by_name["batch"] == "batch/v1"
    assert by_name["coordination.k8s.io"] == "coordination.k8s.io/v1"


async def test_create_sets_uid_timestamp_namespace_and_resource_version(
        api: client.ApiClient, ns: str) -> None:
    """The server sets uid, creationTimestamp, namespace (from the URL) and a
    resourceVersion; versions of successive writes increase."""
    core = client.CoreV1Api(api)
    body = configmap(ns)
    del body["metadata"]["namespace"]
    a = await core.create_namespaced_config_map(ns, body)
    b = await core.create_namespaced_config_map(ns, configmap(ns, "second"))
    assert a.metadata.uid and a.metadata.creation_timestamp is not None
    assert a.metadata.namespace == ns
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)


async def test_generation_rises_only_when_the_spec_changes(api: client.ApiClient,
                                                           ns: str) -> None:
    """metadata.generation starts at 1 and rises on spec changes, not on label edits."""
    apps = client.AppsV1Api(api)
    d = await apps.create_namespaced_deployment(ns, deployment())
    assert d.metadata.generation == 1
    d = await apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = await apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    assert d.metadata.generation == 2


async def test_server_defaults_fill_fields_the_client_left_out(api: client.ApiClient,
                                                               ns: str) -> None:
    """Defaults appear on read: imagePullPolicy (IfNotPresent for a tag), restartPolicy,
    Deployment strategy (RollingUpdate 25%/25%), Job backoffLimit/completions."""
    d = await client.AppsV1Api(api).create_namespaced_deployment(ns, deployment())
    tmpl = d.spec.template.spec
    assert tmpl.containers[0].image_pull_policy == "IfNotPresent"
    assert tmpl.restart_policy == "Always" and tmpl.dns_policy == "ClusterFirst"
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rolling_update.max_surge == "25%"
    body = job()
    del body["spec"]["backoffLimit"]
    j = await client.BatchV1Api(api).create_namespaced_job(ns, body)
    assert j.spec.backoff_limit == 6 and j.spec.completions == 1
    assert j.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "train"


async def _status_of(call: Any) -> dict[str, Any]:
    with pytest.raises(client.ApiException) as err:
        await call
    body = json.loads(err.value.body)
    assert body["kind"] == "Status" and body["code"] == err.value.status
    return dict(body)


async def test_get_of_a_missing_object_is_404_not_found(api: client.ApiClient,
                                                        ns: str) -> None:
    """404 with reason NotFound and the server's wording `configmaps "x" not found`."""
    body = await _status_of(client.CoreV1Api(api).read_namespaced_config_map("nope", ns))
    assert body["reason"] == "NotFound" and body["message"] == 'configmaps "nope" not found'


async def test_create_in_a_missing_namespace_is_404(api: client.ApiClient) -> None:
    """Creating into a namespace that does not exist: 404 `namespaces "x" not found`."""
    body = await _status_of(client.CoreV1Api(api).create_namespaced_config_map(
        "no-such-ns", configmap("no-such-ns")))
    assert body["reason"] == "NotFound" and 'namespaces "no-such-ns"' in body["message"]


async def test_create_of_an_existing_name_is_409_already_exists(api: client.ApiClient,
                                                                ns: str) -> None:
    """A second create of the same name: 409 AlreadyExists."""
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, configmap(ns))
    body = await _status_of(core.create_namespaced_config_map(ns, configmap(ns)))
    assert body["reason"] == "AlreadyExists" and body["code"] == 409


async def test_update_with_a_stale_resource_version_is_409_conflict(api: client.ApiClient,
                                                                    ns: str) -> None:
    """Optimistic concurrency: PUT with an old resourceVersion is 409 Conflict."""
    core = client.CoreV1Api(api)
    first = await core.create_namespaced_config_map(ns, configmap(ns))
    stale = first.metadata.resource_version
    await core.patch_namespaced_config_map("settings", ns, {"data": {"k": "2"}})
    body = configmap(ns, k="3")
    body["metadata"]["resourceVersion"] = stale
    out = await _status_of(core.replace_namespaced_config_map("settings", ns, body))
    assert out["reason"] == "Conflict" and "has been modified" in out["message"]


async def test_changing_an_immutable_field_is_422_invalid(api: client.ApiClient,
                                                          ns: str) -> None:
    """A Job's pod template is immutable: 422 Invalid naming `spec.template`."""
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job())
    body = await _status_of(batch.patch_namespaced_job(
        "train", ns, {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "busybox:1.37"}]}}}}))
    assert body["reason"] == "Invalid" and body["code"] == 422
    assert any(c["field"].startswith("spec.template") for c in body["details"]["causes"])


async def test_job_completions_change_only_indexed_and_in_tandem_with_parallelism(
        api: client.ApiClient, ns: str) -> None:
    """batch validation `validateCompletions`: a NonIndexed Job's completions are
    immutable; an Indexed Job's change only together with parallelism (elastic Jobs)."""
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(ns, job("plain", completions=2, parallelism=2))
    body = await _status_of(batch.patch_namespaced_job(
        "plain", ns, {"spec": {"completions": 3, "parallelism": 3}}))
    assert body["code"] == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.completions"]
    assert "field is immutable" in body["details"]["causes"][0]["message"]
    await batch.create_namespaced_job(ns, job("elastic", completions=2, parallelism=2,
                                              indexed=True))
    body = await _status_of(batch.patch_namespaced_job(
        "elastic", ns, {"spec": {"completions": 3}}))
    assert body["code"] == 422
    assert "can only be modified in tandem with spec.parallelism" in \
        body["details"]["causes"][0]["message"]
    resized = await batch.patch_namespaced_job(
        "elastic", ns, {"spec": {"completions": 3, "parallelism": 3}})
    assert (resized.spec.completions, resized.spec.parallelism) == (3, 3)


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "a" * 254],
                         ids=["uppercase", "underscore", "leading-dash", "too-long"])
async def test_a_bad_name_is_422_invalid_on_metadata_name(api: client.ApiClient, ns: str,
                                                          name: str) -> None:
    """Names must be RFC 1123 subdomains: 422 with a cause on `metadata.name`."""
    body = await _status_of(client.CoreV1Api(api).create_namespaced_config_map(
        ns, configmap(ns, name)))
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_a_malformed_body_is_400_bad_request(api: client.ApiClient, ns: str) -> None:
    """A body that does not parse (here YAML, which POST accepts too): 400 BadRequest."""
    status, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                                body=b"{not: [valid", content_type="application/yaml")
    assert status == 400 and body["reason"] == "BadRequest"


async def test_an_unsupported_body_encoding_is_415(api: client.ApiClient, ns: str) -> None:
    """A body in a media type the server does not decode (CBOR is alpha, off by
    default, in 1.35): 415 UnsupportedMediaType."""
    status, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                                body=b"\xd9\xd9\xf7\xa0", content_type="application/cbor")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_a_wrong_bearer_token_is_401_unauthorized(api: client.ApiClient) -> None:
    """Authentication failure: 401 Unauthorized, on every path."""
    status, body, _ = await raw(api, "GET", "/api/v1/namespaces",
                                headers={"Authorization": "Bearer wrong-token"})
    assert status == 401 and body["reason"] == "Unauthorized"


async def test_list_across_all_namespaces_returns_every_namespace(api: client.ApiClient,
                                                                  ns: str) -> None:
    """GET /api/v1/configmaps lists every namespace's objects, namespace set on each."""
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, configmap(ns, "mine"))
    all_cms = await core.list_config_map_for_all_namespaces()
    assert ("mine", ns) in {(c.metadata.name, c.metadata.namespace) for c in all_cms.items}


async def test_leases_support_create_and_update_for_leader_election(
        api: client.ApiClient, ns: str) -> None:
    """coordination.k8s.io/v1 Lease: create then update holderIdentity (leader election)."""
    coord = client.CoordinationV1Api(api)
    lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a",
                                                      "leaseDurationSeconds": 15}}
    made = await coord.create_namespaced_lease(ns, lease)
    made.spec.holder_identity = "b"
    again = await coord.replace_namespaced_lease("leader", ns, made)
    assert again.spec.holder_identity == "b"
    assert int(again.metadata.resource_version) > int(made.metadata.resource_version)


async def test_delete_answers_status_success_or_the_pending_object(api: client.ApiClient,
                                                                   ns: str) -> None:
    """DELETE of an object gone at once answers `Status Success` naming it; of one held
    by a finalizer, the object with its deletionTimestamp."""
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, configmap(ns, "gone"))
    status, body, _ = await raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/gone")
    assert status == 200 and body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"]["name"] == "gone"
    held = configmap(ns, "held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await core.create_namespaced_config_map(ns, held)
    status, body, _ = await raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert body["kind"] == "ConfigMap" and body["metadata"]["deletionTimestamp"]
    await core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})


async def test_a_service_gets_a_cluster_ip_that_cannot_change(api: client.ApiClient,
                                                              ns: str) -> None:
    """Services are defaulted (type ClusterIP, an allocated clusterIP, targetPort =
    port, protocol TCP) and spec.clusterIP is immutable (422)."""
    core = client.CoreV1Api(api)
    svc = await core.create_namespaced_service(ns, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip
    assert svc.spec.ports[0].target_port == 80 and svc.spec.ports[0].protocol == "TCP"
    body = await _status_of(core.patch_namespaced_service(
        "web", ns, {"spec": {"clusterIP": "10.96.250.250", "clusterIPs": ["10.96.250.250"]}}))
    assert body["code"] == 422


async def test_dry_run_validates_and_defaults_without_storing(api: client.ApiClient,
                                                              ns: str) -> None:
    """dryRun=All returns the object as it would be stored, and stores nothing."""
    core = client.CoreV1Api(api)
    out = await core.create_namespaced_config_map(ns, configmap(ns), dry_run="All")
    assert out.metadata.name == "settings" and out.metadata.uid
    assert not (await core.list_namespaced_config_map(ns)).items


async def test_every_kind_reads_back_into_the_typed_models(api: client.ApiClient,
                                                           ns: str) -> None:
    """Objects are complete: kubernetes-asyncio's typed models (which reject missing
    required fields) deserialise every served kind, Events included."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    apps, coord = client.AppsV1Api(api), client.CoordinationV1Api(api)
    await batch.create_namespaced_job(ns, job())
    await apps.create_namespaced_deployment(ns, deployment(replicas=1))

    async def events() -> Any:
        return (await core.list_namespaced_event(ns)).items
    for ev in await eventually(events):
        assert ev.involved_object.name and ev.reason
    assert (await core.list_node()).items[0].status.node_info.kubelet_version
    assert (await core.list_namespace()).items
    for pod in (await core.list_pod_for_all_namespaces()).items:
        assert pod.spec.containers[0].name
    assert (await batch.list_job_for_all_namespaces()).items[0].spec.template
    assert (await apps.list_deployment_for_all_namespaces()).items[0].spec.selector
    await coord.list_lease_for_all_namespaces()
    await core.list_service_for_all_namespaces()


async def test_create_ignores_a_client_supplied_status(api: client.ApiClient,
                                                       ns: str) -> None:
    """On create the server resets status (PrepareForCreate): a Pod starts Pending
    whatever the client sent (kubectl run sends `status: {}`)."""
    status, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/pods", body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        "status": {"phase": "Succeeded"}})
    assert status == 201 and body["status"]["phase"] == "Pending"


async def test_a_protobuf_body_creates_the_object(api: client.ApiClient, ns: str) -> None:
    """Built-in kinds may be sent as application/vnd.kubernetes.protobuf (kubectl's
    `create configmap|deployment|job`, `run` do): the object is created as from JSON."""
    def field(n: int, data: bytes) -> bytes:
        return bytes([n << 3 | 2, len(data)]) + data
    cm = field(1, field(1, b"from-pb")) + field(2, field(1, b"k") + field(2, b"v"))
    body = b"k8s\x00" + field(1, field(1, b"v1") + field(2, b"ConfigMap")) + field(2, cm)
    status, out, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", body=body,
                               content_type="application/vnd.kubernetes.protobuf")
    assert status == 201, out
    got = await client.CoreV1Api(api).read_namespaced_config_map("from-pb", ns)
    assert got.data == {"k": "v"}
