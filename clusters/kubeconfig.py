"""Connections from kubeconfig contexts, with exec and auth-provider plugins refused.

A kubeconfig `exec` plugin runs an arbitrary command with the controller's privileges,
and `auth-provider` runs provider code; a fleet repo names the kubeconfig path, so a
plugin is something we run on a repo's say-so. Both are refused unless the operator
passes `--allow-exec-plugins`. The file is read once, checked, and the same parsed
content is handed to kubernetes-asyncio (no time-of-check/time-of-use gap).

Never log the config: it holds tokens and keys. Errors name the file, the context and
the user, never a credential.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from clusters.errors import ExecPluginRefused, KubeconfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """What a Cluster file says about reaching the cluster (no secrets in it)."""

    cluster: str
    kubeconfig: str | None = None
    context: str | None = None


def expand(path: str) -> str:
    """`${VAR}` from the environment; an unset variable is an error, not an empty string."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise KubeconfigError(f"kubeconfig path {path!r}: ${{{m.group(1)}}} is not set")
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
    try:
        text = path.read_text()
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror}",
                              cluster=spec.cluster) from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML",
                              cluster=spec.cluster) from e
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping", cluster=spec.cluster)
    context = spec.context or doc.get("current-context")
    if not context:
        raise KubeconfigError(f"kubeconfig {path}: no context given and no current-context",
                              cluster=spec.cluster)
    ctx = _named(doc.get("contexts"), context)
    if ctx is None:
        raise KubeconfigError(f"kubeconfig {path}: context {context!r} not found",
                              cluster=spec.cluster)
    user_name = (ctx.get("context") or {}).get("user")
    user = _named(doc.get("users"), user_name) if user_name else None
    body = (user or {}).get("user") or {}
    if not allow_exec:
        for plugin in ("exec", "auth-provider"):
            if plugin in body:
                what = body[plugin].get("command") or body[plugin].get("name") or "?"
                raise ExecPluginRefused(
                    f"kubeconfig {path}, context {context!r}: user {user_name!r} uses an "
                    f"{plugin} plugin ({what}); refused. Run the controller with "
                    "--allow-exec-plugins to trust it, or use a token or client "
                    "certificate", cluster=spec.cluster)
    return doc, context, path.parent


def _named(items: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


async def api_client(spec: ConnectionSpec, *, allow_exec: bool = False) -> ApiClient:
    """A kubernetes-asyncio ApiClient for one cluster's context."""
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
    return ApiClient(configuration=cfg)
