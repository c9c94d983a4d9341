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

import copy
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
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
    secret: str | None = None
    """Reached through the credentials Secret of this name in the controller's namespace
    on the management cluster (`clusters.credentials`) instead of a kubeconfig file; the
    caller reads it and passes the kubeconfig it makes as `inline`."""


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
    """`$KUBECONFIG` as it is (a list of files, `os.pathsep`-separated, is read merged:
    `load_merged`), else `~/.kube/config`."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    return os.path.expanduser("~/.kube/config")


_PATH_FIELDS = {"clusters": ("cluster", ("certificate-authority",)),
                "users": ("user", ("client-certificate", "client-key", "tokenFile"))}
"""The file references client-go resolves against the folder of the file that holds
them (`ResolveLocalPaths` in k8s.io/client-go/tools/clientcmd/loader.go): a merged
config keeps each file's relative paths meaning what they meant in that file."""


def _load_file(path: Path, shown: str, cluster: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {shown}: {e.strerror}",
                              cluster=cluster) from None
    doc = _PARSED.get(text)
    if doc is None:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise KubeconfigError(f"kubeconfig {shown} is not valid YAML",
                                  cluster=cluster) from None
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {shown} is not a mapping", cluster=cluster)
        _PARSED[text] = doc
        for section in ("contexts", "users", "clusters"):
            items = doc.get(section)
            if isinstance(items, list):
                index: dict[str, dict[str, Any]] = {}
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        index.setdefault(item["name"], item)  # the first wins, as a scan
                _INDEXED[id(items)] = (items, index)
        while len(_PARSED) > _PARSED_KEEP:
            gone = _PARSED.pop(next(iter(_PARSED)))
            for section in ("contexts", "users", "clusters"):
                _INDEXED.pop(id(gone.get(section)), None)
    return doc


_PARSED: dict[str, dict[str, Any]] = {}
"""Kubeconfig texts already parsed, by their text (a changed file is parsed again).
Each cluster's connection reads the kubeconfig, and so does the check for two Cluster
files on one server: with one file of N contexts that was N x 2 parses of N contexts,
in the event loop (issue 22: 20 clusters, 40 parses, 4.4 s of the loop; one
pass of the twin check held it 2.3 s). Shared, so never changed: what leaves this
module is `_slim`'s copy of the one context used."""
_PARSED_KEEP = 16
_INDEXED: dict[int, tuple[list[Any], dict[str, dict[str, Any]]]] = {}
"""The sections of the `_PARSED` documents by name (kept and dropped with them): a
scan of N contexts per lookup, several lookups per cluster, was O(N^2) too."""


def _slim(doc: dict[str, Any], context: str) -> dict[str, Any]:
    """A copy of `doc` with only `context`, its user and its cluster (and the top-level
    settings): all a connection or a server check reads, and the caller's own.
    Copying the whole of a shared kubeconfig of N contexts for each of N clusters was
    O(N^2): 1,000 clusters in one file, a deep copy of 1,000 contexts per cluster,
    twice per connection, in the event loop (issue 22, a replica's start)."""
    ctx = _named(doc.get("contexts"), context)
    body = (ctx or {}).get("context") or {}
    user_name, cluster_name = body.get("user"), body.get("cluster")
    out = {k: copy.deepcopy(v) for k, v in doc.items()
           if k not in ("contexts", "users", "clusters")}
    out["contexts"] = [copy.deepcopy(ctx)] if ctx is not None else []
    user = _named(doc.get("users"), user_name) if isinstance(user_name, str) else None
    out["users"] = [copy.deepcopy(user)] if user is not None else []
    entry = _named(doc.get("clusters"), cluster_name) \
        if isinstance(cluster_name, str) else None
    out["clusters"] = [copy.deepcopy(entry)] if entry is not None else []
    return out


def _absolute_paths(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(doc)
    for section, (key, fields) in _PATH_FIELDS.items():
        items = doc.get(section)
        if not isinstance(items, list):
            continue
        fixed = []
        for item in items:
            body = item.get(key) if isinstance(item, dict) else None
            if isinstance(body, dict):
                body = {k: (str(base / v) if k in fields and isinstance(v, str) and v
                            and not os.path.isabs(v) else v) for k, v in body.items()}
                item = {**item, key: body}
            fixed.append(item)
        out[section] = fixed
    return out


def load_merged(paths: list[Path], shown: str, cluster: str) -> dict[str, Any]:
    """Several kubeconfig files (`KUBECONFIG=a:b`) merged as kubectl merges them
    (k8s.io/client-go/tools/clientcmd/loader.go, `ClientConfigLoadingRules.Load`): a
    file that does not exist is skipped; the first file to name a cluster, user or
    context wins it, and the first file to set `current-context` sets it; relative
    file references are resolved against their own file's folder."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {k: set() for k in merged}
    found = 0
    for path in paths:
        if not path.exists():
            continue
        found += 1
        doc = _absolute_paths(_load_file(path, str(path), cluster), path.parent)
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for section in ("clusters", "users", "contexts"):
            items = doc.get(section)
            for item in items if isinstance(items, list) else []:
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and name not in seen[section]:
                    seen[section].add(name)
                    merged[section].append(item)
    if not found:
        raise KubeconfigError(f"none of the kubeconfig files in {shown} exists",
                              cluster=cluster)
    return merged


def read_kubeconfig(spec: ConnectionSpec, *, allow_exec: bool = False
                    ) -> tuple[dict[str, Any], str, Path]:
    """The parsed kubeconfig (a copy of its part for the context used: `_slim`), the
    context to use, and the file's folder. A path that
    is a list (`a:b`, as `$KUBECONFIG` may be, also through `${KUBECONFIG}` in a
    Cluster file) is read merged (`load_merged`)."""
    raw_path = spec.kubeconfig
    try:
        expanded = expand(raw_path) if raw_path else default_kubeconfig()
    except KubeconfigError as e:
        e.cluster = spec.cluster
        raise
    paths = [Path(os.path.expanduser(p)) for p in expanded.split(os.pathsep) if p]
    if not paths:
        raise KubeconfigError(f"kubeconfig path {raw_path!r} names no file",
                              cluster=spec.cluster)
    path = paths[0]
    # What errors quote: the path as written, never what the environment made of it.
    shown = raw_path or expanded
    if len(paths) == 1:
        doc = _load_file(path, shown, spec.cluster)
    else:
        doc = load_merged(paths, shown, spec.cluster)
    doc, context = check_context(doc, spec, shown, allow_exec=allow_exec)
    return _slim(doc, context), context, path.parent


def check_context(doc: dict[str, Any], spec: ConnectionSpec, shown: str, *,
                  allow_exec: bool = False) -> tuple[dict[str, Any], str]:
    """The context to use in a parsed kubeconfig, its user's plugins refused unless
    `allow_exec`; errors name `shown` (a file, or a Secret), never a credential."""
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
    return doc, context


def resolve(spec: ConnectionSpec, *, allow_exec: bool = False,
            inline: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, Path]:
    """`read_kubeconfig`, or the kubeconfig made from a credentials Secret (`inline`),
    checked the same way (plugins refused unless allowed)."""
    if inline is None:
        return read_kubeconfig(spec, allow_exec=allow_exec)
    doc, context = check_context(inline, spec, f"from Secret {spec.secret}",
                                 allow_exec=allow_exec)
    return doc, context, Path(".")


def server_of(spec: ConnectionSpec, *, allow_exec: bool = False,
              inline: dict[str, Any] | None = None) -> str:
    """The API server URL a Cluster file's context points at: the cluster's identity
    (two Cluster files on the same server are the same cluster, whatever their names)."""
    doc, context, _ = resolve(spec, allow_exec=allow_exec, inline=inline)
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
    indexed = _INDEXED.get(id(items))
    if indexed is not None and indexed[0] is items:
        return indexed[1].get(name)
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


async def connection_config(spec: ConnectionSpec, *, allow_exec: bool = False,
                            inline: dict[str, Any] | None = None) -> Configuration:
    """kubernetes-asyncio's Configuration for one cluster's context (from its kubeconfig
    file, or from `inline`: the kubeconfig its credentials Secret makes), its TLS
    material loaded (into a context shared with every cluster that has the same one)."""
    doc, context, base = resolve(spec, allow_exec=allow_exec, inline=inline)
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


async def api_client(spec: ConnectionSpec, *, allow_exec: bool = False,
                     inline: dict[str, Any] | None = None) -> ApiClient:
    """A kubernetes-asyncio ApiClient for one cluster's context (its TLS material
    checked by `connection_config`)."""
    cfg = await connection_config(spec, allow_exec=allow_exec, inline=inline)
    try:
        return ApiClient(configuration=cfg)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise KubeconfigError(
            f"kubeconfig context {spec.context!r}: its TLS material (CA, client certificate "
            f"or key) cannot be loaded: {_tls_reason(e)}", cluster=spec.cluster) from None


IN_CLUSTER_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
"""Set by the kubelet in every container (like the mounted ServiceAccount token and CA:
kubernetes/kubernetes pkg/kubelet/kubelet_pods.go, and client-go rest.InClusterConfig in
staging/src/k8s.io/client-go/rest/config.go, which reads the same two variables and
files)."""


async def in_cluster_client(serviceaccount_dir: Path, cluster: str,
                            environ: Mapping[str, str] | None = None) -> ApiClient:
    """An ApiClient for the cluster this process runs in, with its ServiceAccount: the
    API server from KUBERNETES_SERVICE_HOST/PORT, the token and ca.crt of
    `serviceaccount_dir`. The token is read again every minute (kubelet rotates bound
    tokens). Errors name what is missing, never the token."""
    env = os.environ if environ is None else environ
    missing = [v for v in IN_CLUSTER_ENV if not env.get(v)]
    if missing:
        raise KubeconfigError(f"not running in a cluster: {' and '.join(missing)} not set",
                              cluster=cluster)
    token, ca = serviceaccount_dir / "token", serviceaccount_dir / "ca.crt"
    for path in (token, ca):
        if not path.is_file() or path.stat().st_size == 0:
            raise KubeconfigError(f"ServiceAccount file {path} is missing or empty",
                                  cluster=cluster)
    cfg = Configuration()
    try:
        InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca),
                              environ=dict(env)).load_and_set(cfg)
    except (ConfigException, OSError) as e:
        raise KubeconfigError(f"in-cluster configuration cannot be used: {type(e).__name__}",
                              cluster=cluster) from None
    cfg.retries = None
    try:
        return ApiClient(configuration=cfg)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise KubeconfigError(f"ServiceAccount CA {ca} cannot be loaded: {_tls_reason(e)}",
                              cluster=cluster) from None


def _tls_reason(e: Exception) -> str:
    """What was wrong, in the library's words but never quoting the material or a
    temporary file's path: the SSL reason code, or the OS error's text."""
    if isinstance(e, ssl.SSLError):
        return str(e.reason or "not PEM")
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return type(e).__name__
