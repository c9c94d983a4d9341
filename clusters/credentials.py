"""A member cluster's credentials, kept in a Secret on the management cluster.

As Argo CD keeps cluster Secrets and Flux a `kubeConfig.secretRef`: a Cluster file then
needs no kubeconfig path in Git. The Secret lives in the controller's namespace on the
management (home) cluster, is named after the Cluster file, and carries the label
`CREDENTIALS_LABEL: "true"` (an unlabelled Secret of that name is not ours to read as
credentials). Its keys:

- `server` (required): the API server URL;
- `ca.crt`: the server's CA (PEM); without it the system trust store is used;
- `token`: a bearer token, or `tls.crt` + `tls.key`: a client certificate and key;
- `exec`: a kubeconfig `exec` stanza (YAML), refused unless the controller runs with
  `--allow-exec-plugins` (it runs a command with the controller's privileges).

`secret_body` writes that shape and `kubeconfig_of_secret` reads it back (one module
for both). Errors name the Secret and the key, never a value: they end up in status.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import anyio
import yaml

from clusters.client import JSON, KubeClient, ResourceType
from clusters.errors import KubeconfigError, NotFound

CREDENTIALS_LABEL = "aifleet.dev/cluster-credentials"
SECRET = ResourceType("v1", "Secret", "secrets", True)
DEADLINE = 10.0


def secret_body(name: str, namespace: str, *, server: str, ca: bytes | None = None,
                token: str | None = None, cert: bytes | None = None,
                key: bytes | None = None) -> JSON:
    """The credentials Secret of cluster `name` (`stringData` is never stored: the
    API server merges it into `data`)."""
    data: dict[str, bytes] = {"server": server.encode()}
    if ca:
        data["ca.crt"] = ca
    if token:
        data["token"] = token.encode()
    if cert and key:
        data["tls.crt"], data["tls.key"] = cert, key
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {CREDENTIALS_LABEL: "true",
                                    "app.kubernetes.io/managed-by": "aifleet"}},
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}}


def _decoded(secret: JSON, shown: str, cluster: str) -> dict[str, bytes]:
    raw = secret.get("data") or {}
    if not isinstance(raw, dict):
        raise KubeconfigError(f"{shown}: data is not a mapping", cluster=cluster)
    out: dict[str, bytes] = {}
    for k, v in raw.items():
        try:
            out[str(k)] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{shown}: key {k!r} is not base64",
                                  cluster=cluster) from None
    return out


def _text(data: dict[str, bytes], key: str, shown: str, cluster: str) -> str:
    try:
        return data[key].decode().strip()
    except UnicodeDecodeError:
        raise KubeconfigError(f"{shown}: key {key!r} is not UTF-8 text",
                              cluster=cluster) from None


def kubeconfig_of_secret(secret: JSON, cluster: str) -> dict[str, Any]:
    """The kubeconfig (one context named `cluster`) a credentials Secret describes;
    `KubeconfigError` naming the Secret and key when it cannot be used. The exec check
    is the kubeconfig's own (`clusters.kubeconfig.check_context`)."""
    meta = secret.get("metadata") or {}
    shown = f"Secret {meta.get('namespace', '')}/{meta.get('name', cluster)}"
    labels = meta.get("labels") or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        raise KubeconfigError(f"{shown} is not labelled {CREDENTIALS_LABEL}=true: not read "
                              "as cluster credentials", cluster=cluster)
    data = _decoded(secret, shown, cluster)
    if "server" not in data:
        raise KubeconfigError(f"{shown}: key 'server' is missing", cluster=cluster)
    server = _text(data, "server", shown, cluster)
    if not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{shown}: key 'server' is not an http(s) URL", cluster=cluster)
    entry: dict[str, Any] = {"server": server}
    if "ca.crt" in data:
        entry["certificate-authority-data"] = base64.b64encode(data["ca.crt"]).decode()
    user: dict[str, Any] = {}
    if "token" in data:
        user["token"] = _text(data, "token", shown, cluster)
    elif "tls.crt" in data and "tls.key" in data:
        user["client-certificate-data"] = base64.b64encode(data["tls.crt"]).decode()
        user["client-key-data"] = base64.b64encode(data["tls.key"]).decode()
    elif "exec" in data:
        try:
            stanza = yaml.safe_load(_text(data, "exec", shown, cluster))
        except yaml.YAMLError:
            stanza = None
        if not isinstance(stanza, dict) or not stanza.get("command"):
            raise KubeconfigError(f"{shown}: key 'exec' is not an exec stanza with a "
                                  "command", cluster=cluster)
        user["exec"] = stanza
    else:
        raise KubeconfigError(f"{shown}: no credentials: give 'token', 'tls.crt' and "
                              "'tls.key', or 'exec'", cluster=cluster)
    return {"apiVersion": "v1", "kind": "Config", "current-context": cluster,
            "clusters": [{"name": cluster, "cluster": entry}],
            "users": [{"name": cluster, "user": user}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}]}


def version_of(secret: JSON) -> str:
    """A Secret's resourceVersion: it changes with every write to the Secret."""
    return str((secret.get("metadata") or {}).get("resourceVersion", ""))


async def read_credentials(client: KubeClient, namespace: str, name: str) -> JSON | None:
    """The credentials Secret `name` in `namespace`, or None when there is none;
    ClusterError or TimeoutError when it cannot be read now."""
    try:
        with anyio.fail_after(DEADLINE):
            return await client.request("GET", SECRET.item(name, namespace), verb="get",
                                        retry=False)
    except NotFound:
        return None


async def list_credentials(client: KubeClient, namespace: str) -> list[JSON]:
    """Every labelled credentials Secret in `namespace`, by name."""
    with anyio.fail_after(DEADLINE):
        doc = await client.request("GET", SECRET.collection(namespace), verb="list",
                                   query={"labelSelector": f"{CREDENTIALS_LABEL}=true"})
    items = doc.get("items") or []
    return sorted((i for i in items if isinstance(i, dict)),
                  key=lambda i: str((i.get("metadata") or {}).get("name", "")))
