"""ConfigMaps of the controller's namespace in the home cluster (`clusters.home`).

The shared last plan (`controllers.persist.sharedplan`), the source guard
(`controllers.runtime.sourceguard`) and the rest of the shared state
(`controllers.persist.sharedstate`) keep their state in them. Each read or write is one
request with a short deadline and no retry: the callers fall back to their local files.

A ConfigMap's `data` and `binaryData` together may hold at most 1 MiB
(`MAX_DATA_BYTES`; kubernetes/kubernetes pkg/apis/core/validation/validation.go
`ValidateConfigMap`: keys and values summed against `core.MaxSecretSize`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

import anyio

from clusters.client import JSON, METADATA_ONLY, KubeClient, ResourceType
from clusters.errors import NotFound
from clusters.leader import ensure_namespace

CONFIGMAP = ResourceType("v1", "ConfigMap", "configmaps", True)
DEADLINE = 5.0
MAX_DATA_BYTES = 1024 * 1024


async def get_configmap(client: KubeClient, name: str, *, namespace: str) -> JSON | None:
    """A ConfigMap of the controller's namespace (`clusters.namespace`) in the home
    cluster, or None when it is not there; ClusterError or TimeoutError when it cannot
    be read now."""
    try:
        with anyio.fail_after(DEADLINE):
            return await client.request("GET", CONFIGMAP.item(name, namespace),
                                        verb="get", retry=False)
    except NotFound:
        return None


async def get_configmap_metadata(client: KubeClient, name: str, *, namespace: str
                                 ) -> JSON | None:
    """A ConfigMap's `metadata` alone (a `PartialObjectMetadata`: no data crosses the
    wire), or None when it is not there; ClusterError or TimeoutError as `get_configmap`.
    A server that cannot answer metadata only sends the whole object: its metadata is
    still the answer."""
    try:
        with anyio.fail_after(DEADLINE):
            got = await client.request("GET", CONFIGMAP.item(name, namespace), verb="get",
                                       retry=False, accept=METADATA_ONLY)
    except NotFound:
        return None
    meta = got.get("metadata")
    return meta if isinstance(meta, dict) else {}


def watch_configmap(client: KubeClient, name: str, *, namespace: str,
                    timeout_seconds: int = 300) -> AsyncGenerator[JSON, None]:
    """The watch events of one ConfigMap (`KubeClient.watch`: raw events, BOOKMARKs
    too): the namespace's ConfigMaps with `fieldSelector=metadata.name=<name>`, which
    kube-apiserver serves on every resource, so the stream carries that object alone.
    No resourceVersion: it starts with an ADDED of the object as it is now (if there),
    then its changes, until the server ends it (`timeout_seconds`) or it is cut
    (Unreachable)."""
    return client.watch(CONFIGMAP.collection(namespace), resource_version=None,
                        query={"fieldSelector": f"metadata.name={name}"},
                        timeout_seconds=timeout_seconds)


async def put_configmap(client: KubeClient, name: str, payload: JSON, *,
                        namespace: str,
                        annotations: Mapping[str, str] | None = None,
                        resource_version: str | None = None) -> JSON:
    """Replace a ConfigMap (`payload`: its `data` and/or `binaryData`) of the
    controller's namespace in the home cluster; create it, and the namespace, the first
    time. With `resource_version`, only that version is replaced (Conflict when it
    changed since: optimistic concurrency). The object as written (its new
    `resourceVersion`); ClusterError or TimeoutError when it cannot be written now."""
    meta: JSON = {"name": name, "namespace": namespace,
                  "labels": {"app.kubernetes.io/managed-by": "aifleet"}}
    if annotations:
        meta["annotations"] = dict(annotations)
    if resource_version:
        meta["resourceVersion"] = resource_version
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **payload}
    with anyio.fail_after(DEADLINE):
        try:
            return await client.request("PUT", CONFIGMAP.item(name, namespace),
                                        verb="update", body=body, retry=False)
        except NotFound:
            if resource_version:
                raise  # deleted since it was read: not ours to re-create
            meta.pop("resourceVersion", None)
            await ensure_namespace(client, namespace)
            return await client.request("POST", CONFIGMAP.collection(namespace),
                                        verb="create", body=body, retry=False)


async def delete_configmap(client: KubeClient, name: str, *, namespace: str) -> None:
    """Delete a ConfigMap of the controller's namespace (gone already is fine)."""
    with anyio.fail_after(DEADLINE):
        try:
            await client.request("DELETE", CONFIGMAP.item(name, namespace),
                                 verb="delete", retry=False)
        except NotFound:
            return
