"""What kubectl needs from an API server beyond plain REST, for the simulated clusters.

kubectl v1.35 is a client nobody here wrote, so it keeps the simulator honest. Running
it with `-v=8` against the simulator shows what it asks for besides CRUD and watch:

- OpenAPI v3 (`/openapi/v3`, then one document per group-version). `apply`, `create`
  and `replace` will not send anything until it loads: kubectl reads from it whether
  the server supports the `fieldValidation` query parameter on PATCH for the kind (then
  validation is the server's job: `fieldValidation=Strict` by default) and `explain`
  renders its schemas. The schemas are the real Kubernetes 1.35 ones when the
  `kubernetes-validate` package is installed (the dev extra); without it, each kind is a
  bare object that keeps unknown fields, so kubectl still works and explain says little.
- The Table format (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) for `get`:
  `to_table` renders the columns kubectl shows for each kind, with the same spellings
  (`Ready,SchedulingDisabled`, `1/1`, `5m10s`); the list and watch handlers call it.
- `pods/log`: there are no processes in a simulated pod, so the log says so.

Field validation (`check_fields`) lives here too, because it reads the same schemas:
Strict rejects unknown fields with 400 `strict decoding error: unknown field
"spec.foo"`, Warn (the server default) drops them and says so in `Warning` headers,
Ignore drops them silently; apply patches always reject them (`field not declared in
schema`). OpenAPI v2 is not served: kubectl asks for it only when v3 is missing, and
then only as protobuf.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from aiohttp import web

from clusters.sim.errors import SimError, bad_request, not_found
from clusters.sim.resources import BY_KIND, RESOURCES, Resource

__all__ = ["add_kubectl_routes", "check_fields", "kind_schema", "openapi_v3_document",
           "openapi_v3_index", "schema_definitions", "to_table", "unknown_fields"]


def _definition(r: Resource) -> str:
    """The OpenAPI definition name of a resource's kind: `io.k8s.api.apps.v1.Deployment`."""
    if r.custom:  # as apiextensions-apiserver names a CRD's: reversed group, version, kind
        return f"{'.'.join(reversed(r.group.split('.')))}.{r.version}.{r.kind}"
    if r.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{r.version}.{r.kind}"
    return f"io.k8s.api.{r.group.split('.')[0] or 'core'}.{r.version}.{r.kind}"


def _gv_path(r: Resource) -> str:
    return f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"


_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_ALWAYS = (_META + "Status", _META + "DeleteOptions", _META + "Patch")

# ------------------------------------------------------------------ schemas


@lru_cache(maxsize=1)
def _definitions() -> dict[str, Any]:
    """The Kubernetes 1.35 schemas by definition name, in OpenAPI v3 spelling."""
    try:
        root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
        text = (root / "v1.35.0-local" / "_definitions.json").read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return _fallback_definitions()
    raw = json.loads(text.replace('"#/$defs/', '"#/components/schemas/'))["$defs"]
    return {name: _openapi(schema, top=True) for name, schema in raw.items()}


def schema_definitions() -> dict[str, Any]:
    """The schemas by definition name (`io.k8s.api.core.v1.Container`), OpenAPI v3."""
    return _definitions()


def kind_schema(kind: str) -> dict[str, Any] | None:
    """The schema of a served kind (a bare object when the schemas are not installed)."""
    served = BY_KIND.get(kind)
    schema = _definitions().get(_definition(served)) if served else None
    return schema if isinstance(schema, dict) else None


def _openapi(node: Any, *, top: bool = False) -> Any:
    """JSON-schema spellings back to the API server's: `["string","null"]` -> `string`,
    int-or-string and quantity as `format: int-or-string`, no enums on apiVersion/kind."""
    if isinstance(node, list):
        return [_openapi(v) for v in node]
    if not isinstance(node, dict):
        return node
    one_of = node.get("oneOf")
    if isinstance(one_of, list) and {_type(o) for o in one_of} <= {"string", "integer",
                                                                    "number"}:
        rest = {k: v for k, v in node.items() if k != "oneOf"}
        return {**rest, "type": "string", "format": "int-or-string"} if top else \
            {**rest, "x-kubernetes-int-or-string": True}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, list):
            out[k] = next((t for t in v if t != "null"), "object")
        elif k == "properties" and isinstance(v, dict):
            out[k] = {p: _openapi({kk: vv for kk, vv in s.items() if kk != "enum"}
                                  if p in ("apiVersion", "kind") and isinstance(s, dict)
                                  else s) for p, s in v.items()}
        else:
            out[k] = _openapi(v)
    return out


def _type(node: Any) -> str:
    t = node.get("type") if isinstance(node, dict) else None
    return next((x for x in t if x != "null"), "") if isinstance(t, list) else str(t)


def _fallback_definitions() -> dict[str, Any]:
    out: dict[str, Any] = {name: {"type": "object"} for name in _ALWAYS}
    for r in RESOURCES:
        out[_definition(r)] = {
            "description": f"{r.kind} (schema not available: install kubernetes-validate)",
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [
                {"group": r.group, "kind": r.kind, "version": r.version}]}
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _closure(names: list[str]) -> dict[str, Any]:
    defs = _definitions()
    out: dict[str, Any] = {}
    todo = [n for n in names if n in defs]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = defs[name]
        todo.extend(r for r in _refs(defs[name]) if r in defs and r not in out)
    return {k: out[k] for k in sorted(out)}


# ------------------------------------------------------------------ OpenAPI v3

_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": True}}


def _operation(s: Resource, action: str, verb: str, ref: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if action in ("post", "put", "patch"):
        params = [_param(n) for n in _WRITE_PARAMS]
    if action == "patch":
        params.append(_param("force", "boolean"))
    body = {"content": {t: {"schema": {"$ref": ref}} for t in (
        ("application/apply-patch+yaml", "application/json-patch+json",
         "application/merge-patch+json", "application/strategic-merge-patch+json")
        if action == "patch" else ("application/json",))}, "required": True}
    op: dict[str, Any] = {
        "operationId": f"{verb}{s.kind}", "parameters": params,
        "responses": {"200": {"description": "OK",
                              "content": {"application/json": {"schema": {"$ref": ref}}}}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": s.group, "kind": s.kind,
                                            "version": s.version},
    }
    if action in ("post", "put", "patch"):
        op["requestBody"] = body
    return op


def _paths(s: Resource) -> dict[str, Any]:
    ref = f"#/components/schemas/{_definition(s)}"
    base = f"/{_gv_path(s)}/" + ("namespaces/{namespace}/" if s.namespaced else "") + s.plural
    item = {a: _operation(s, a, v, ref) for a, v in (
        ("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete"))}
    collection = {a: _operation(s, a, v, ref) for a, v in (("get", "list"), ("post", "post"))}
    return {base: collection, base + "/{name}": item}


def openapi_v3_document(gv_path: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`), or None."""
    served = [r for r in RESOURCES if _gv_path(r) == gv_path]
    if not served:
        return None
    paths: dict[str, Any] = {}
    for r in served:
        paths.update(_paths(r))
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes (simulated)", "version": "v1.35.0"},
            "paths": paths,
            "components": {"schemas": _closure(
                [_definition(r) for r in served] + list(_ALWAYS))}}


@lru_cache(maxsize=16)
def _document_bytes(gv_path: str) -> bytes | None:
    doc = openapi_v3_document(gv_path)
    return None if doc is None else json.dumps(doc, separators=(",", ":")).encode()


def openapi_v3_index() -> dict[str, Any]:
    """`/openapi/v3`: each group-version with a content-hashed URL, as kubectl expects."""
    paths: dict[str, Any] = {}
    for gv in sorted({_gv_path(r) for r in RESOURCES}):
        body = _document_bytes(gv) or b""
        digest = hashlib.sha512(body).hexdigest().upper()
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


# ------------------------------------------------------------------ field validation


Unknown = tuple[str, dict[str, Any], str]
"""(path as the server words it, the map holding the field, the field's key)."""


def _unknown(value: Any, schema: Any, path: str, out: list[Unknown]) -> None:
    defs = _definitions()
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if isinstance(props, dict) and k in props:
                _unknown(v, props[k], sub, out)
            elif isinstance(extra, dict):
                _unknown(v, extra, sub, out)
            elif isinstance(props, dict):
                out.append((sub, value, k))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, v in enumerate(value):
            _unknown(v, schema["items"], f"{path}[{n}]", out)


def _find_unknown(kind: str, obj: dict[str, Any]) -> list[Unknown]:
    served = BY_KIND.get(kind)
    schema = _definitions().get(_definition(served)) if served else None
    out: list[Unknown] = []
    if schema is not None:
        _unknown(obj, schema, "", out)
    return out


def unknown_fields(kind: str, obj: dict[str, Any]) -> list[str]:
    """Fields of `obj` its kind's schema does not declare (`spec.template.spec.foo`)."""
    return [path for path, _, _ in _find_unknown(kind, obj)]


def check_fields(kind: str, obj: dict[str, Any], directive: str | None, *,
                 apply: bool = False) -> list[str]:
    """Field validation of a write: raise for Strict (and apply), else return warnings.

    `directive` is the `fieldValidation` query value (None means the server default,
    Warn). Under Warn and Ignore the unknown fields are removed from `obj` in place, as
    decoding into the typed object does on a real server: they are never stored. The
    returned texts go out as `Warning: 299 - "<text>"` headers (quotes escaped).
    """
    mode = directive or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f'fieldValidation must be one of "Ignore", "Warn", or "Strict", '
                          f'got "{mode}"')
    unknown = _find_unknown(kind, obj)
    if not unknown:
        return []
    served = BY_KIND[kind]
    if apply:
        raise bad_request(f"failed to create typed patch object ({served.api_version}, "
                          f"Kind={kind}): .{unknown[0][0]}: field not declared in schema")
    if mode == "Strict":
        raise bad_request("strict decoding error: " + ", ".join(
            f'unknown field "{path}"' for path, _, _ in unknown))
    for _, holder, key in unknown:
        holder.pop(key, None)
    return [] if mode == "Ignore" else [f'unknown field "{path}"' for path, _, _ in unknown]


# ------------------------------------------------------------------ routes


def _custom_documents(cluster: Any) -> dict[str, bytes]:
    """The cluster's CRD group-versions (`crds.py`), if it has any."""
    crds = getattr(cluster, "crds", None)
    return crds.openapi_documents() if crds is not None else {}


def _openapi_index_of(cluster: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        index = openapi_v3_index()
        for gv, body in sorted(_custom_documents(cluster).items()):
            digest = hashlib.sha512(body).hexdigest().upper()
            index["paths"][gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
        return web.json_response(index)
    return handler


def _openapi_group_of(cluster: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        gv = request.match_info["gv"]
        body = _document_bytes(gv) or _custom_documents(cluster).get(gv)
        if body is None:
            raise SimError(404, "NotFound",
                           "the server could not find the requested resource")
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "public, immutable"})
    return handler


def custom_document(served: list[tuple[Resource, dict[str, Any]]]) -> dict[str, Any]:
    """The OpenAPI v3 document of one CRD group-version: its paths, and each kind's
    schema with apiVersion, kind and a `$ref` to ObjectMeta as the real server
    publishes them (plus what those refer to)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for res, schema in served:
        paths.update(_paths(res))
        props = {**(schema.get("properties") or {}),
                 "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                 "metadata": {"$ref": f"#/components/schemas/{_META}ObjectMeta"}}
        schemas[_definition(res)] = {
            **schema, "type": "object", "properties": props,
            "x-kubernetes-group-version-kind": [
                {"group": res.group, "kind": res.kind, "version": res.version}]}
    schemas.update(_closure([_META + "ObjectMeta", *_ALWAYS]))
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes CRD (simulated)", "version": "v1.35.0"},
            "paths": paths, "components": {"schemas": dict(sorted(schemas.items()))}}


def _pod_log(cluster: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        pod = next((p for p in cluster.objects("Pod", ns)
                    if p.get("metadata", {}).get("name") == name), None)
        if pod is None:
            raise not_found("pods", name)
        containers = [c.get("name") for c in pod.get("spec", {}).get("containers", [])]
        container = request.query.get("container") or (containers[0] if containers else "")
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        phase = pod.get("status", {}).get("phase", "Pending")
        if phase == "Pending":
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              "ContainerCreating")
        image = next((c.get("image", "") for c in pod["spec"]["containers"]
                      if c.get("name") == container), "")
        node = pod.get("spec", {}).get("nodeName", "")
        text = (f"[simulated] pod {ns}/{name} container {container} ({image}) on node "
                f"{node}: {phase}\n"
                "[simulated] this is a simulated cluster: no process runs, so there is no "
                "log output\n")
        return web.Response(text=text, content_type="text/plain")
    return handler


def add_kubectl_routes(app: web.Application, cluster: Any) -> None:
    """Register OpenAPI v3 and `pods/log` on one simulated cluster's app.

    `cluster` needs `objects(kind, namespace) -> list[dict]` (the store, read-only).
    Register these before any catch-all resource route so they win the match.
    """
    app.router.add_get("/openapi/v3", _openapi_index_of(cluster))
    app.router.add_get("/openapi/v3/{gv:.+}", _openapi_group_of(cluster))
    app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}/log", _pod_log(cluster))


# ------------------------------------------------------------------ Table

Column = tuple[str, str, int, str]
"""(name, type, priority, description); priority 1 columns show with `-o wide`."""

_AGE: Column = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the "
                "server time when this object was created.")


def _name_col() -> Column:
    return ("Name", "string", 0, "Name must be unique within a namespace.")


def human_duration(seconds: float) -> str:
    """kubectl's `duration.HumanDuration`: 45s, 5m10s, 3h, 2d4h, 1y30d."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def _age(ts: Any, now: float) -> str:
    if not isinstance(ts, str) or not ts:
        return "<unknown>"
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "<unknown>"
    return human_duration(now - t)


def _cond(obj: dict[str, Any], kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return None


def _node(o: dict[str, Any], now: float) -> list[Any]:
    ready = _cond(o, "Ready")
    status = "Ready" if ready == "True" else ("NotReady" if ready else "Unknown")
    if o.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = o["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    st = o.get("status", {})
    info = st.get("nodeInfo") or {}
    ips = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [o["metadata"]["name"], status, ",".join(roles) or "<none>",
            _age(o["metadata"].get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            ips.get("InternalIP", "<none>"), ips.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def _pod(o: dict[str, Any], now: float) -> list[Any]:
    # kube's printPod: the phase, overridden by the last container's waiting or
    # terminated reason (`Completed`, `ContainerCreating`), `Terminating` when deleted.
    st = o.get("status", {})
    reason = st.get("reason") or st.get("phase") or "Pending"
    ready = restarts = 0
    running = False
    for cs in reversed(st.get("containerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        waiting, done = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif done is not None:
            reason = done.get("reason") or (f"Signal:{done['signal']}" if done.get("signal")
                                            else f"ExitCode:{done.get('exitCode', 0)}")
        elif cs.get("ready") and state.get("running") is not None:
            running = True
            ready += 1
    if reason == "Completed" and running:
        reason = "Running" if _cond(o, "Ready") is not None else "NotReady"
    if o["metadata"].get("deletionTimestamp") and st.get("phase") not in ("Succeeded",
                                                                          "Failed"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    total = len(o.get("spec", {}).get("containers") or [])
    return [o["metadata"]["name"], f"{ready}/{total}", reason, restarts,
            _age(o["metadata"].get("creationTimestamp"), now), st.get("podIP") or "<none>",
            o.get("spec", {}).get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", "<none>"]


def _containers(template_spec: dict[str, Any]) -> tuple[str, str]:
    cs = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(spec: dict[str, Any]) -> str:
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _job(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec", {}), o.get("status", {})
    status = "Running"
    for cond, word in (("Complete", "Complete"), ("Failed", "Failed"),
                       ("Suspended", "Suspended"), ("FailureTarget", "FailureTarget"),
                       ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if _cond(o, cond) == "True":
            status = word
            break
    succeeded = st.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    else:
        par = spec.get("parallelism") or 1
        completions = f"{succeeded}/1 of {par}" if par > 1 else f"{succeeded}/1"
    duration = ""
    if st.get("startTime"):
        end = st.get("completionTime")
        duration = _age(st["startTime"], _ts(end) if end else now)
    names, images = _containers(spec.get("template", {}).get("spec", {}))
    return [o["metadata"]["name"], status, completions, duration,
            _age(o["metadata"].get("creationTimestamp"), now), names, images, _selector(spec)]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _deployment(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec", {}), o.get("status", {})
    names, images = _containers(spec.get("template", {}).get("spec", {}))
    return [o["metadata"]["name"],
            f"{st.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas") or 0, st.get("availableReplicas") or 0,
            _age(o["metadata"].get("creationTimestamp"), now), names, images, _selector(spec)]


def _replicaset(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec", {}), o.get("status", {})
    names, images = _containers(spec.get("template", {}).get("spec", {}))
    return [o["metadata"]["name"], spec.get("replicas", 1), st.get("replicas") or 0,
            st.get("readyReplicas") or 0, _age(o["metadata"].get("creationTimestamp"), now),
            names, images, _selector(spec)]


def _service(o: dict[str, Any], now: float) -> list[Any]:
    spec = o.get("spec", {})
    kind = spec.get("type") or "ClusterIP"
    external = ",".join(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        ingress = (o.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or \
            "<pending>"
    ports = ",".join(
        f"{p.get('port')}" + (f":{p['nodePort']}" if p.get("nodePort") else "")
        + f"/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    sel = spec.get("selector") or {}
    return [o["metadata"]["name"], kind, spec.get("clusterIP") or "<none>",
            external or "<none>", ports or "<none>",
            _age(o["metadata"].get("creationTimestamp"), now),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"]


def _event(o: dict[str, Any], now: float) -> list[Any]:
    inv = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or \
        o["metadata"].get("creationTimestamp")
    src = o.get("source") or {}
    return [_age(last, now), o.get("type", ""), o.get("reason", ""),
            f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
            inv.get("fieldPath", ""), ", ".join(v for v in (src.get("component"),
                                                             src.get("host")) if v),
            o.get("message", ""), _age(o.get("firstTimestamp") or last, now),
            o.get("count") or 1, o["metadata"]["name"]]


_COLUMNS: dict[str, tuple[list[Column], Any]] = {
    "Node": ([_name_col(), ("Status", "string", 0, "The status of the node"),
              ("Roles", "string", 0, "The roles of the node"), _AGE,
              ("Version", "string", 0, "Kubelet Version reported by the node."),
              ("Internal-IP", "string", 1, "List of addresses reachable to the node."),
              ("External-IP", "string", 1, "List of addresses reachable to the node."),
              ("OS-Image", "string", 1, "OS Image reported by the node."),
              ("Kernel-Version", "string", 1, "Kernel Version reported by the node."),
              ("Container-Runtime", "string", 1, "Container Runtime Version.")], _node),
    "Pod": ([_name_col(), ("Ready", "string", 0, "The aggregate readiness state."),
             ("Status", "string", 0, "The aggregate status of the containers."),
             ("Restarts", "string", 0, "The number of times the containers restarted."),
             _AGE, ("IP", "string", 1, "IP address allocated to the pod."),
             ("Node", "string", 1, "Name of the node the pod is assigned to."),
             ("Nominated Node", "string", 1, "Nominated node name."),
             ("Readiness Gates", "string", 1, "Pod readiness gates.")], _pod),
    "Job": ([_name_col(), ("Status", "string", 0, "Status of the job."),
             ("Completions", "string", 0, "The completion status of the job."),
             ("Duration", "string", 0, "Time required to complete the job."), _AGE,
             ("Containers", "string", 1, "Names of each container in the template."),
             ("Images", "string", 1, "Images referenced by each container."),
             ("Selector", "string", 1, "Label selector of the job's pods.")], _job),
    "Deployment": ([_name_col(), ("Ready", "string", 0, "Ready replicas / desired."),
                    ("Up-to-date", "integer", 0, "Updated replicas."),
                    ("Available", "integer", 0, "Available replicas."), _AGE,
                    ("Containers", "string", 1, "Names of each container in the template."),
                    ("Images", "string", 1, "Images referenced by each container."),
                    ("Selector", "string", 1, "Label selector of the pods.")], _deployment),
    "ReplicaSet": ([_name_col(), ("Desired", "integer", 0, "Number of desired pods."),
                    ("Current", "integer", 0, "Number of actually running pods."),
                    ("Ready", "integer", 0, "Number of ready pods."), _AGE,
                    ("Containers", "string", 1, "Names of each container in the template."),
                    ("Images", "string", 1, "Images referenced by each container."),
                    ("Selector", "string", 1, "Label selector of the pods.")], _replicaset),
    "Service": ([_name_col(), ("Type", "string", 0, "How the service is exposed."),
                 ("Cluster-IP", "string", 0, "The cluster IP of the service."),
                 ("External-IP", "string", 0, "External IPs of the service."),
                 ("Port(s)", "string", 0, "Ports exposed by the service."), _AGE,
                 ("Selector", "string", 1, "Pods the service routes to.")], _service),
    "Namespace": ([_name_col(), ("Status", "string", 0, "The status of the namespace"),
                   _AGE], lambda o, now: [o["metadata"]["name"],
                                          o.get("status", {}).get("phase", "Active"),
                                          _age(o["metadata"].get("creationTimestamp"), now)]),
    "ConfigMap": ([_name_col(), ("Data", "string", 0, "Number of data keys."), _AGE],
                  lambda o, now: [o["metadata"]["name"],
                                  len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                  _age(o["metadata"].get("creationTimestamp"), now)]),
    "Event": ([("Last Seen", "string", 0, "Time since the last occurrence."),
               ("Type", "string", 0, "Type of this event."),
               ("Reason", "string", 0, "Why the event was emitted."),
               ("Object", "string", 0, "The object this event is about."),
               ("Subobject", "string", 1, "The part of the object it is about."),
               ("Source", "string", 1, "The component reporting the event."),
               ("Message", "string", 0, "A human-readable description."),
               ("First Seen", "string", 1, "Time since the first occurrence."),
               ("Count", "string", 1, "How many times it occurred."),
               ("Name", "string", 1, "The name of the event.")], _event),
    "Lease": ([_name_col(), ("Holder", "string", 0, "The holder of the lease."), _AGE],
              lambda o, now: [o["metadata"]["name"],
                              o.get("spec", {}).get("holderIdentity") or "",
                              _age(o["metadata"].get("creationTimestamp"), now)]),
    # pkg/printers/internalversion/printers.go: printResourceClaim, printResourceSlice
    "ResourceClaim": ([_name_col(), ("State", "string", 0, "A summary of the current state "
                                     "(allocated, pending, reserved, etc.)."), _AGE],
                      lambda o, now: [o["metadata"]["name"], _claim_state(o),
                                      _age(o["metadata"].get("creationTimestamp"), now)]),
    "ResourceSlice": ([_name_col(), ("Node", "string", 0, "The node providing the devices."),
                       ("Driver", "string", 0, "The driver providing the devices."),
                       ("Pool", "string", 0, "The pool of the devices."), _AGE],
                      lambda o, now: [o["metadata"]["name"],
                                      o.get("spec", {}).get("nodeName") or "",
                                      o.get("spec", {}).get("driver") or "",
                                      (o.get("spec", {}).get("pool") or {}).get("name") or "",
                                      _age(o["metadata"].get("creationTimestamp"), now)]),
}


# The storage kinds' columns, as `pkg/printers/internalversion/printers.go` defines them.


def _binding(o: dict[str, Any], now: float) -> list[Any]:
    ref = o.get("roleRef") or {}
    subjects = o.get("subjects") or []

    def of(kind: str) -> str:
        return ", ".join(
            (f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount"
             else str(s.get("name", ""))) for s in subjects if s.get("kind") == kind)
    return [o["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _age(o["metadata"].get("creationTimestamp"), now), of("User"), of("Group"),
            of("ServiceAccount")]


def _binding_columns(what: str) -> list[Column]:
    return [_name_col(), ("Role", "string", 0, "RoleRef references the role."), _AGE,
            ("Users", "string", 1, f"Users in the {what}"),
            ("Groups", "string", 1, f"Groups in the {what}"),
            ("ServiceAccounts", "string", 1, f"ServiceAccounts in the {what}")]


def _pod_selector(o: dict[str, Any], now: float) -> list[Any]:
    labels = ((o.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    return [o["metadata"]["name"],
            ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>",
            _age(o["metadata"].get("creationTimestamp"), now)]


_COLUMNS.update({
    "Secret": ([_name_col(), ("Type", "string", 0, "Used to facilitate programmatic "
                              "handling of secret data."),
                ("Data", "string", 0, "Number of data keys."), _AGE],
               lambda o, now: [o["metadata"]["name"], o.get("type", ""),
                               len(o.get("data") or {}),
                               _age(o["metadata"].get("creationTimestamp"), now)]),
    "ServiceAccount": ([_name_col(), ("Secrets", "string", 0, "Secrets of the account."),
                        _AGE],
                       lambda o, now: [o["metadata"]["name"], len(o.get("secrets") or []),
                                       _age(o["metadata"].get("creationTimestamp"), now)]),
    "NetworkPolicy": ([_name_col(), ("Pod-Selector", "string", 0, "Pods the policy "
                                     "applies to."), _AGE], _pod_selector),
    "RoleBinding": (_binding_columns("roleBinding"), _binding),
    "ClusterRoleBinding": (_binding_columns("clusterRoleBinding"), _binding),
})


def _claim_state(o: dict[str, Any]) -> str:
    """printers.go resourceClaimState: deleted, pending / allocated, reserved."""
    states = ["deleted"] if o["metadata"].get("deletionTimestamp") else []
    status = o.get("status") or {}
    if not status.get("allocation"):
        if not states:
            states.append("pending")
    else:
        states.append("allocated")
        if status.get("reservedFor"):
            states.append("reserved")
    return ",".join(states)


Cells = Callable[[dict[str, Any], float], list[Any]]


def to_table(kind: str, objects: list[dict[str, Any]], *, include_object: str = "Metadata",
             now: float | None = None, column_definitions: bool = True,
             api_version: str | None = None,
             columns: tuple[list[Column], Cells] | None = None) -> dict[str, Any]:
    """A `meta.k8s.io/v1` Table of `objects`, with the columns kubectl shows for `kind`.

    `include_object` is the request's `includeObject` (None, Metadata, Object): each row
    carries the object, its metadata only (PartialObjectMetadata, the default) or
    nothing. Watch events after the first are sent without column definitions. The
    caller sets `metadata.resourceVersion` (and `continue`) as for a list. A custom
    resource passes its own `api_version` and `columns` (`crds.py`).
    """
    at = time.time() if now is None else now
    cols, cells = columns or _COLUMNS.get(kind, ([_name_col(), _AGE], lambda o, t: [
        o["metadata"].get("name", ""), _age(o["metadata"].get("creationTimestamp"), t)]))
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells(obj, at)}
        if include_object == "Object":
            # List items carry no kind; an embedded object must, or kubectl cannot
            # decode it (`get --sort-by`, `-o custom-columns` ask for whole objects).
            served = BY_KIND.get(kind)
            version = api_version or (served.api_version if served else "v1")
            row["object"] = {"kind": kind, "apiVersion": version, **obj}
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata", {})}
        rows.append(row)
    defs = [{"name": n, "type": t, "format": "name" if n == "Name" and p == 0 else "",
             "description": d, "priority": p} for n, t, p, d in cols]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": defs if column_definitions else [], "rows": rows}
