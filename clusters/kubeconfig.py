"""Connections from kubeconfig contexts, with exec and auth-provider plugins refused.

A kubeconfig `exec` plugin runs an arbitrary command with the controller's privileges,
and `auth-provider` runs provider code; a fleet repo names the kubeconfig path, so a
plugin is something we run on a repo's say-so. Both are refused unless the operator
passes `--allow-exec-plugins`. The file is read once, checked, and the same parsed
content is handed to kubernetes-asyncio (no time-of-check/time-of-use gap).

Never log the config: it holds tokens and keys. Errors name the file, the context and
the user, never a credential.

A Cluster file's kubeconfig path comes from the repo, i.e. from anyone who can open a
pull request, so `${VAR}` in it is expanded only for the variables in
`PATH_VARIABLES` (paths the operator sets for exactly this use, never secrets); any
other variable is refused. Errors quote the path as the repo wrote it, never its
expansion. TLS material that cannot be loaded (a CA, client certificate or key that
is not PEM, a file that cannot be read) is a `KubeconfigError` for that cluster, like
any other unusable kubeconfig: the cluster cannot be reached, the controller runs on.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from clusters.errors import ExecPluginRefused, KubeconfigError
from clusters.transport import tls_context

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

PATH_VARIABLES = frozenset({"FLEET_KUBECONFIG", "KUBECONFIG"})
"""The only variables a repo-supplied kubeconfig path may name: each holds the path of
a kubeconfig file, set by the operator (`FLEET_KUBECONFIG` is what the example Cluster
files and `fleet demo` use; `KUBECONFIG` is the standard one). The controller's
environment also holds secrets (the webhook secret, forge tokens), which a pull request
must not be able to read back through a path that ends up in status and logs."""


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """What a Cluster file says about reaching the cluster (no secrets in it)."""

    cluster: str
    kubeconfig: str | None = None
    context: str | None = None


def expand(path: str) -> str:
    """`${VAR}` from the environment, for `PATH_VARIABLES` only; any other variable, or
    an unset one, is an error (never an empty string), naming the variable, not a value."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in PATH_VARIABLES:
            raise KubeconfigError(
                f"kubeconfig path {path!r}: ${{{name}}} may not be used; a Cluster file's "
                f"path may name only {', '.join(f'${{{v}}}' for v in sorted(PATH_VARIABLES))}")
        value = os.environ.get(name)
        if value is None:
            raise KubeconfigError(f"kubeconfig path {path!r}: ${{{name}}} is not set")
        return value

    return os.path.expanduser(_VAR.sub(sub, path))


def default_kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")


def read_kubeconfig(spec: ConnectionSpec, *, allow_exec: bool = False
                    ) -> tuple[dict[str, Any], str, Path]:
    """The parsed kubeconfig, the context to use, and the file's folder."""
    raw_path = spec.kubeconfig
    try:
        path = Path(expand(raw_path) if raw_path else default_kubeconfig())
    except KubeconfigError as e:
        e.cluster = spec.cluster
        raise
    # What errors quote: the path as written, never what the environment made of it.
    shown = raw_path or str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {shown}: {e.strerror}",
                              cluster=spec.cluster) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise KubeconfigError(f"kubeconfig {shown} is not valid YAML",
                              cluster=spec.cluster) from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {shown} is not a mapping", cluster=spec.cluster)
    context = spec.context or doc.get("current-context")
    if not context:
        raise KubeconfigError(f"kubeconfig {shown}: no context given and no current-context",
                              cluster=spec.cluster)
    ctx = _named(doc.get("contexts"), context)
    if ctx is None:
        raise KubeconfigError(f"kubeconfig {shown}: context {context!r} not found",
                              cluster=spec.cluster)
    user_name = (ctx.get("context") or {}).get("user")
    user = _named(doc.get("users"), user_name) if user_name else None
    body = (user or {}).get("user") or {}
    if not allow_exec:
        for plugin in ("exec", "auth-provider"):
            if plugin in body:
                what = body[plugin].get("command") or body[plugin].get("name") or "?"
                raise ExecPluginRefused(
                    f"kubeconfig {shown}, context {context!r}: user {user_name!r} uses an "
                    f"{plugin} plugin ({what}); refused. Run the controller with "
                    "--allow-exec-plugins to trust it, or use a token or client "
                    "certificate", cluster=spec.cluster)
    return doc, context, path.parent


def server_of(spec: ConnectionSpec, *, allow_exec: bool = False) -> str:
    """The API server URL a Cluster file's context points at: the cluster's identity
    (two Cluster files on the same server are the same cluster, whatever their names)."""
    doc, context, _ = read_kubeconfig(spec, allow_exec=allow_exec)
    ctx = _named(doc.get("contexts"), context) or {}
    cluster_name = (ctx.get("context") or {}).get("cluster")
    entry = _named(doc.get("clusters"), cluster_name) if cluster_name else None
    server = ((entry or {}).get("cluster") or {}).get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigError(f"kubeconfig context {context!r}: its cluster has no server",
                              cluster=spec.cluster)
    return server


def _named(items: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


async def connection_config(spec: ConnectionSpec, *, allow_exec: bool = False
                            ) -> Configuration:
    """kubernetes-asyncio's Configuration for one cluster's context, its TLS material
    loaded (into a context shared with every cluster that has the same material)."""
    doc, context, base = read_kubeconfig(spec, allow_exec=allow_exec)
    cfg = Configuration()
    try:
        loader = KubeConfigLoader(config_dict=doc, config_base_path=str(base),
                                  active_context=context)
        await loader.load_and_set(cfg)
    except (ConfigException, KeyError, ValueError) as e:
        # The library's message may quote the config; say only what and where.
        raise KubeconfigError(
            f"kubeconfig context {context!r} cannot be used: {type(e).__name__}",
            cluster=spec.cluster) from None
    cfg.retries = None  # retries are ours (finite, jittered, Retry-After aware)
    if str(cfg.host).startswith("https"):
        try:
            tls_context(cfg)  # the CA, client certificate and key are loaded here
        except (ssl.SSLError, OSError, ValueError) as e:
            raise KubeconfigError(
                f"kubeconfig context {context!r}: its TLS material (CA, client certificate "
                f"or key) cannot be loaded: {_tls_reason(e)}", cluster=spec.cluster) from None
    return cfg


async def api_client(spec: ConnectionSpec, *, allow_exec: bool = False) -> ApiClient:
    """A kubernetes-asyncio ApiClient for one cluster's context (its TLS material
    checked by `connection_config`)."""
    cfg = await connection_config(spec, allow_exec=allow_exec)
    try:
        return ApiClient(configuration=cfg)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise KubeconfigError(
            f"kubeconfig context {spec.context!r}: its TLS material (CA, client certificate "
            f"or key) cannot be loaded: {_tls_reason(e)}", cluster=spec.cluster) from None


def _tls_reason(e: Exception) -> str:
    """What was wrong, in the library's words but never quoting the material or a
    temporary file's path: the SSL reason code, or the OS error's text."""
    if isinstance(e, ssl.SSLError):
        return str(e.reason or "not PEM")
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return type(e).__name__
