"""ConfigMaps of the controller's namespace in the home cluster (`clusters.home`).

The shared last plan (`controllers.persist.sharedplan`) and the source guard
(`controllers.runtime.sourceguard`) keep their state in them. Each read or write is one
request with a short deadline and no retry: the callers fall back to their local files.
"""

from __future__ import annotations

import anyio

from clusters.client import JSON, KubeClient, ResourceType
from clusters.errors import NotFound
from clusters.leader import ensure_namespace

CONFIGMAP = ResourceType("v1", "ConfigMap", "configmaps", True)
DEADLINE = 5.0


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


async def put_configmap(client: KubeClient, name: str, payload: JSON, *,
                        namespace: str) -> None:
    """Replace a ConfigMap (`payload`: its `data` and/or `binaryData`) of the
    controller's namespace in the home cluster; create it, and the namespace, the first
    time. ClusterError or TimeoutError when it cannot be written now."""
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "aifleet"}},
            **payload}
    with anyio.fail_after(DEADLINE):
        try:
            await client.request("PUT", CONFIGMAP.item(name, namespace),
                                 verb="update", body=body, retry=False)
        except NotFound:
            await ensure_namespace(client, namespace)
            await client.request("POST", CONFIGMAP.collection(namespace),
                                 verb="create", body=body, retry=False)
