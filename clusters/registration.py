"""Registering a member cluster: a scoped ServiceAccount there, its token, and the
credentials Secret on the management cluster (`fleet cluster add`, as `argocd cluster
add` does).

On the member, in the controller's namespace: ServiceAccount `aifleet-manager`, bound
by ClusterRoleBinding `aifleet-manager` to ClusterRole `aifleet-manager` with `RULES`
(exactly the resources the adapter reads and writes: `clusters.adapter`,
`clusters.apply`), and a `kubernetes.io/service-account-token` Secret for a long-lived
token. The token is, in order:

1. the one the member's token controller writes into that Secret (`data.token`);
2. else, when the member serves `serviceaccounts/token`, a TokenRequest (it expires:
   `TOKEN_SECONDS` asked, the server may shorten it);
3. else the kubeconfig context's own credentials, with a warning (broader than the
   role above): the simulated clusters do neither 1 nor 2.

Every write is a server-side apply (field manager `aifleet-cluster-add`): running it
again converges, never duplicates. Nothing here prints or logs a credential.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from clusters.client import APPLY_PATCH, JSON, NAMESPACE, KubeClient, ResourceType
from clusters.credentials import SECRET, secret_body
from clusters.errors import KubeconfigError, NotFound

ACCOUNT = "aifleet-manager"
MANAGER = "aifleet-cluster-add"
TOKEN_SECONDS = 365 * 24 * 3600
SERVICE_ACCOUNT = ResourceType("v1", "ServiceAccount", "serviceaccounts", True)
CLUSTER_ROLE = ResourceType("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles",
                            False)
CLUSTER_ROLE_BINDING = ResourceType("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",
                                    "clusterrolebindings", False)

_WRITE = ["get", "list", "watch", "create", "patch", "delete"]
_READ = ["get", "list", "watch"]
RULES: list[dict[str, Any]] = [
    # What the controller applies (server-side apply is a PATCH, authorized as `patch`,
    # and as `create` too when it creates the object: kubernetes.io docs,
    # reference/using-api/api-concepts.md "Patch and apply"; the apply create path in
    # staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go), prunes and
    # recreates (`delete`), and watches to see drift: clusters.apply (PATCH and DELETE
    # only, never PUT, so no `update`), clusters.adapter's owned informers.
    {"apiGroups": [""], "resources": ["namespaces", "services"], "verbs": _WRITE},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _WRITE},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": _WRITE},
    # Capacity: nodes and the pods on them (clusters.capacity), DRA devices and claims.
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": _READ},
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices", "resourceclaims"],
     "verbs": _READ},
]
"""Not granted: Leases (only a member named by --leader-cluster holds the Lease; give it
a Role for `coordination.k8s.io` leases in aifleet-system by hand), Secrets, RBAC."""


@dataclass(frozen=True)
class Credentials:
    """What the credentials Secret will hold (never printed: repr hides it)."""

    server: str
    source: str
    """Where the credentials came from, for the user: "ServiceAccount token", ..."""
    ca: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)


def member_objects(namespace: str) -> list[JSON]:
    """The member's objects, in the order they are applied."""
    meta = {"labels": {"app.kubernetes.io/managed-by": "aifleet"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, **meta}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ACCOUNT, "namespace": namespace, **meta}},
        {"apiVersion": CLUSTER_ROLE.api_version, "kind": "ClusterRole",
         "metadata": {"name": ACCOUNT, **meta}, "rules": RULES},
        {"apiVersion": CLUSTER_ROLE_BINDING.api_version, "kind": "ClusterRoleBinding",
         "metadata": {"name": ACCOUNT, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": f"{ACCOUNT}-token", "namespace": namespace,
                      "annotations": {"kubernetes.io/service-account.name": ACCOUNT},
                      **meta}},
    ]


_TYPES = {"Namespace": NAMESPACE, "ServiceAccount": SERVICE_ACCOUNT,
          "ClusterRole": CLUSTER_ROLE, "ClusterRoleBinding": CLUSTER_ROLE_BINDING,
          "Secret": SECRET}


async def apply(client: KubeClient, obj: JSON) -> JSON:
    """One server-side apply (creates or converges)."""
    meta = obj["metadata"]
    path = _TYPES[obj["kind"]].item(meta["name"], meta.get("namespace"))
    return await client.request("PATCH", path, verb="apply", body=obj,
                                query={"fieldManager": MANAGER, "force": "true"},
                                content_type=APPLY_PATCH)


async def token_of_account(client: KubeClient, namespace: str, *, tries: int = 5,
                           sleep: Callable[[float], Awaitable[None]] = anyio.sleep
                           ) -> tuple[str, bytes | None, str] | None:
    """(token, CA, source) for the ServiceAccount, or None when the member gives none."""
    path = SECRET.item(f"{ACCOUNT}-token", namespace)
    for attempt in range(tries):
        doc = await client.request("GET", path, verb="get")
        data = doc.get("data") or {}
        if data.get("token"):
            ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None
            return base64.b64decode(data["token"]).decode(), ca, "ServiceAccount token"
        if attempt + 1 < tries:
            await sleep(0.5)
    if await _serves_token_request(client):
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS}}
        answer = await client.request(
            "POST", f"{SERVICE_ACCOUNT.item(ACCOUNT, namespace)}/token", verb="create",
            body=body)
        token = (answer.get("status") or {}).get("token")
        if token:
            return str(token), None, "TokenRequest token (expires)"
    return None


async def _serves_token_request(client: KubeClient) -> bool:
    doc = await client.request("GET", "/api/v1", verb="get")
    return any(r.get("name") == "serviceaccounts/token" for r in doc.get("resources") or []
               if isinstance(r, dict))


def kubeconfig_credentials(doc: dict[str, Any], context: str, base: Path) -> Credentials:
    """The server, CA and credentials of a kubeconfig context (files read, `-data`
    decoded); an exec or auth-provider user is a `KubeconfigError` (give a token)."""
    ctx = _named(doc.get("contexts"), context).get("context") or {}
    cluster = _named(doc.get("clusters"), ctx.get("cluster")).get("cluster") or {}
    user = _named(doc.get("users"), ctx.get("user")).get("user") or {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigError(f"context {context!r}: its cluster has no server")
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(f"context {context!r}: its user runs a plugin; the member "
                              "gave no ServiceAccount token to use instead")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    return Credentials(server=server, source="the kubeconfig context's own credentials",
                       ca=_material(cluster, "certificate-authority", base),
                       token=token or None,
                       cert=_material(user, "client-certificate", base),
                       key=_material(user, "client-key", base))


def _material(body: dict[str, Any], name: str, base: Path) -> bytes | None:
    if body.get(f"{name}-data"):
        return base64.b64decode(body[f"{name}-data"])
    if body.get(name):
        return (base / str(body[name])).read_bytes()
    return None


def _named(items: Any, name: Any) -> dict[str, Any]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return {}


async def write_credentials(home: KubeClient, name: str, namespace: str,
                            creds: Credentials) -> None:
    """The credentials Secret `name` on the management cluster (its namespace too)."""
    try:
        await home.request("GET", NAMESPACE.item(namespace), verb="get")
    except NotFound:
        await apply(home, {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace}})
    await apply(home, secret_body(name, namespace, server=creds.server, ca=creds.ca,
                                  token=creds.token, cert=creds.cert, key=creds.key))
