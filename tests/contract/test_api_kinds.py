"""The storage kinds a GPU cluster serves besides workloads, as kube-apiserver 1.35 does.

Secrets and ConfigMaps (with the decoding and size rules of `pkg/apis/core`), service
accounts, RBAC, PodDisruptionBudgets, NetworkPolicies, Ingresses and the node Leases
kubelets keep in `kube-node-lease`: what `helm install` of an ordinary chart creates and
what controllers read. Every test goes over HTTP and would pass unchanged against a
real 1.35 server (`FLEET_E2E_KUBECONFIG`), except the two that need the simulator's
powers (`cluster`).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client

from clusters.sim import SimCluster
from tests.contract.k8s import configmap, eventually, raw

MIB = 1024 * 1024


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def secret(ns: str, name: str = "creds", **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns}, **fields}


@pytest.mark.parametrize(("path", "names"), [
    ("/api/v1", {"secrets", "serviceaccounts"}),
    ("/apis/rbac.authorization.k8s.io/v1",
     {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}),
    ("/apis/policy/v1", {"poddisruptionbudgets"}),
    ("/apis/networking.k8s.io/v1", {"networkpolicies", "ingresses"}),
    ("/apis/coordination.k8s.io/v1", {"leases"}),
])
async def test_discovery_lists_the_storage_kinds(api: client.ApiClient, path: str,
                                                 names: set[str]) -> None:
    code, body, _ = await raw(api, "GET", path)
    assert code == 200
    assert names <= {r["name"] for r in body["resources"]}


def _manifests(ns: str, tag: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) for one object of each storage kind."""
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    subject = [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": f"aifleet:{tag}:reader"}
    selector = {"matchLabels": {"app": "web"}}
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    rbac, core = "/apis/rbac.authorization.k8s.io/v1", f"/api/v1/namespaces/{ns}"
    return [
        (f"{core}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                     "metadata": {"name": "robot"}}),
        (f"{rbac}/namespaces/{ns}/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader"}, "rules": rules}),
        (f"{rbac}/namespaces/{ns}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader"}, "subjects": subject,
            "roleRef": {**role_ref, "kind": "Role", "name": "reader"}}),
        # RBAC names are path segments: a colon is fine (`system:controller:x`).
        (f"{rbac}/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"aifleet:{tag}:reader"}, "rules": rules}),
        (f"{rbac}/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"aifleet:{tag}:reader"}, "subjects": subject,
            "roleRef": role_ref}),
        (f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": selector}}),
        (f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web"},
            "spec": {"podSelector": selector, "policyTypes": ["Ingress"]}}),
        (f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"}, "spec": {"defaultBackend": backend}}),
    ]


async def test_each_storage_kind_is_created_read_patched_and_deleted(
        api: client.ApiClient, ns: str) -> None:
    tag = uuid.uuid4().hex[:6]
    for collection, obj in _manifests(ns, tag):
        name = obj["metadata"]["name"]
        code, created, _ = await raw(api, "POST", collection, body=obj)
        assert code == 201, (collection, created)
        assert created["kind"] == obj["kind"] and created["metadata"]["uid"]
        item = f"{collection}/{name}"
        code, got, _ = await raw(api, "GET", item)
        assert code == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]
        code, patched, _ = await raw(api, "PATCH", item,
                                     body={"metadata": {"labels": {"tier": "gold"}}},
                                     content_type="application/merge-patch+json")
        assert code == 200 and patched["metadata"]["labels"] == {"tier": "gold"}
        code, _, _ = await raw(api, "DELETE", item)
        assert code == 200
        code, gone, _ = await eventually_gone(api, item)
        assert code == 404, gone


async def eventually_gone(api: client.ApiClient, path: str) -> tuple[int, Any, Any]:
    for _ in range(100):
        code, body, headers = await raw(api, "GET", path)
        if code == 404:
            return code, body, headers
        await asyncio.sleep(0.05)
    return code, body, headers


async def test_generation_is_kept_for_kinds_with_a_spec(api: client.ApiClient,
                                                        ns: str) -> None:
    path = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "web"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    code, created, _ = await raw(api, "POST", path, body=pdb)
    assert code == 201 and created["metadata"]["generation"] == 1
    code, patched, _ = await raw(api, "PATCH", f"{path}/web",
                                 body={"spec": {"minAvailable": 2}},
                                 content_type="application/merge-patch+json")
    assert code == 200 and patched["metadata"]["generation"] == 2


# ------------------------------------------------------------------ Secrets


async def test_string_data_is_merged_into_data_and_never_stored(api: client.ApiClient,
                                                                ns: str) -> None:
    body = secret(ns, data={"password": b64("old"), "user": b64("ada")},
                  stringData={"password": "s3cret"})
    code, created, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/secrets", body=body)
    assert code == 201, created
    assert created["data"] == {"password": b64("s3cret"), "user": b64("ada")}
    assert created["type"] == "Opaque"
    code, got, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/secrets/creds")
    assert "stringData" not in got and got["data"]["password"] == b64("s3cret")


@pytest.mark.parametrize(("value", "offset"), [("admin", 4), ("My-pass-123", 2)])
async def test_data_that_is_not_base64_is_the_decoders_400(api: client.ApiClient, ns: str,
                                                          value: str, offset: int) -> None:
    code, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/secrets",
                              body=secret(ns, data={"password": value}))
    assert code == 400 and body["reason"] == "BadRequest"
    assert body["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                               f"illegal base64 data at input byte {offset}")
    code, _, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/secrets/creds")
    assert code == 404


async def test_a_secret_holds_at_most_one_mebibyte(api: client.ApiClient, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    code, _, _ = await raw(api, "POST", path,
                           body=secret(ns, "full", data={"blob": b64(b"x" * MIB)}))
    assert code == 201
    code, body, _ = await raw(api, "POST", path,
                              body=secret(ns, "big", data={"a": b64(b"x" * (MIB - 9)),
                                                           "b": b64(b"y" * 10)}))
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"] == ('Secret "big" is invalid: data: Too long: may not be more '
                               "than 1048576 bytes")
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [
        ("data", "FieldValueTooLong")]


async def test_a_configmap_holds_at_most_one_mebibyte(api: client.ApiClient,
                                                      ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    code, body, _ = await raw(api, "POST", path, body={
        **configmap(ns, "big", text="x" * (MIB - 2)), "binaryData": {"bin": b64(b"abc")}})
    assert code == 422
    assert body["message"] == ('ConfigMap "big" is invalid: []: Too long: may not be more '
                               "than 1048576 bytes")
    code, _, _ = await raw(api, "POST", path, body=configmap(ns, "full", text="x" * MIB))
    assert code == 201


async def test_data_keys_are_config_keys(api: client.ApiClient, ns: str) -> None:
    code, body, _ = await raw(api, "POST", f"/api/v1/namespaces/{ns}/secrets",
                              body=secret(ns, stringData={"my key": "v"}))
    assert code == 422
    assert body["message"] == (
        'Secret "creds" is invalid: data[my key]: Invalid value: "my key": a valid config '
        "key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
        "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
    assert [c["field"] for c in body["details"]["causes"]] == ["data[my key]"]


async def test_a_secrets_type_is_immutable(api: client.ApiClient, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    code, _, _ = await raw(api, "POST", path, body=secret(ns, stringData={"k": "v"}))
    assert code == 201
    code, body, _ = await raw(api, "PATCH", f"{path}/creds",
                              body={"type": "kubernetes.io/basic-auth"},
                              content_type="application/merge-patch+json")
    assert code == 422
    assert body["message"] == ('Secret "creds" is invalid: type: Invalid value: '
                               '"kubernetes.io/basic-auth": field is immutable')


async def test_an_immutable_secret_keeps_its_data(api: client.ApiClient, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    code, _, _ = await raw(api, "POST", path,
                           body=secret(ns, stringData={"k": "v"}, immutable=True))
    assert code == 201
    code, body, _ = await raw(api, "PATCH", f"{path}/creds", body={"stringData": {"k": "w"}},
                              content_type="application/merge-patch+json")
    assert code == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["data"]
    assert "field is immutable when `immutable` is set" in body["message"]
    code, _, _ = await raw(api, "PATCH", f"{path}/creds",
                           body={"metadata": {"labels": {"rotated": "no"}}},
                           content_type="application/merge-patch+json")
    assert code == 200  # metadata stays writable


async def test_secrets_select_by_type(api: client.ApiClient, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    for name, kind in (("a", "Opaque"), ("b", "helm.sh/release.v1")):
        code, _, _ = await raw(api, "POST", path,
                               body=secret(ns, name, type=kind, stringData={"k": "v"}))
        assert code == 201
    code, body, _ = await raw(api, "GET", path,
                              query=[("fieldSelector", "type=helm.sh/release.v1")])
    assert code == 200 and [i["metadata"]["name"] for i in body["items"]] == ["b"]


# ------------------------------------------------------------------ node leases


async def test_every_node_holds_a_lease_in_kube_node_lease(api: client.ApiClient) -> None:
    code, node_list, _ = await raw(api, "GET", "/api/v1/nodes")
    assert code == 200
    code, leases, _ = await raw(api, "GET",
                                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
    assert code == 200
    by_name = {lease["metadata"]["name"]: lease for lease in leases["items"]}
    for node in node_list["items"]:
        meta = node["metadata"]
        lease = by_name[meta["name"]]
        assert lease["spec"]["holderIdentity"] == meta["name"]
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["spec"]["renewTime"]
        owner = lease["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", meta["name"],
                                                                 meta["uid"])


async def test_leases_are_renewed_only_while_the_node_is_ready(
        api: client.ApiClient, cluster: SimCluster) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
    down, up = "contract-1-h100-0", "contract-1-h100-1"
    cluster.set_node_ready(down, False)
    cluster.node_leases.renew_seconds = 0.05
    cluster.node_leases.start()
    _, before_down, _ = await raw(api, "GET", path + down)
    seen: list[str] = []

    async def renewed() -> bool:
        _, now_up, _ = await raw(api, "GET", path + up)
        if not seen or now_up["spec"]["renewTime"] != seen[-1]:
            seen.append(now_up["spec"]["renewTime"])
        return len(seen) >= 3
    await eventually(renewed)  # the Ready node's lease moved at least twice
    _, after_down, _ = await raw(api, "GET", path + down)
    assert after_down["spec"]["renewTime"] == before_down["spec"]["renewTime"]
    managers = {e["manager"] for e in after_down["metadata"]["managedFields"]}
    assert managers == {"kubelet"}


async def test_leases_are_not_renewed_while_the_cluster_is_down(cluster: SimCluster) -> None:
    def renew_times() -> dict[str, str]:
        return {o["metadata"]["name"]: o["spec"]["renewTime"]
                for o in cluster.objects("Lease", "kube-node-lease")}
    cluster.node_leases.renew_seconds = 0.02
    await cluster.down()
    frozen = renew_times()
    await asyncio.sleep(0.2)  # ten renewal periods
    assert renew_times() == frozen
    await cluster.up()

    async def moved() -> bool:
        now = renew_times()
        return all(now[name] != frozen[name] for name in frozen)
    await eventually(moved)
