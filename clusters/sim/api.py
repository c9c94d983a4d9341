"""The REST surface of one simulated cluster: URL -> resource, verb -> store operation.

Paths follow kube-apiserver exactly: `/api/v1/...` for the core group,
`/apis/<group>/<version>/...` for the others, `namespaces/<ns>/` before namespaced
collections, an optional subresource (`status`, `scale`) after the name. Instead of
one aiohttp route per resource, a single catch-all route parses the path against the
resource table (`resources.py`), which keeps building a cluster cheap (a thousand of
them start in one process) and makes the routed set exactly the discovered set.

Writes: POST creates, PUT replaces, PATCH takes the four patch types the real server
takes (JSON, merge, strategic merge, apply), DELETE honours DeleteOptions. Reads: get,
list with selectors and `limit`/`continue`, watch (`watch.py`), the Table form when
kubectl asks for it, and metadata only (`PartialObjectMetadata`) when a client does.
Errors are raised as `SimError` and rendered by the middleware.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from clusters.sim import decoding, kubectl, objects, patch, protobuf, resources, ssa
from clusters.sim.errors import SimError, bad_request, conflict, invalid, uid_precondition
from clusters.sim.listing import list_response, parse_bool
from clusters.sim.resources import Registry, Resource, served_as
from clusters.sim.selectors import combine, field_matcher, label_matcher
from clusters.sim.watch import serve_watch

if TYPE_CHECKING:
    from clusters.sim.server import SimCluster

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(),
                        status=status, content_type="application/json", headers=headers)


def _warnings(texts: list[str]) -> dict[str, str] | None:
    if not texts:
        return None
    # RFC 7234 warn-text is a quoted-string: escape quotes, or kubectl drops the header.
    quoted = (t.replace("\\", "\\\\").replace('"', '\\"') for t in texts)
    return {"Warning": ", ".join(f'299 - "{t}"' for t in quoted)}


def parse_path(path: str, served: Registry | None = None
               ) -> tuple[Resource, str | None, str | None, str | None] | None:
    """(resource, namespace, name, subresource) for a REST path, or None (404);
    `served` is the cluster's registry (the built-in table when None)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    res = (served or _BUILT_IN).by_path(group, version, rest[0])
    if res is None or (ns is not None and not res.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in res.subresources:
        return None
    return res, ns, name, sub


_BUILT_IN = Registry()


def _check_fields(cluster: SimCluster, res: Resource, obj: dict[str, Any],
                  request: web.Request, apply: bool = False) -> list[str]:
    """Field validation against the kind's schema: a CRD's own for custom resources."""
    directive = request.query.get("fieldValidation")
    if res.custom:
        return cluster.crds.check_fields(res, obj, directive, apply=apply)
    return kubectl.check_fields(res.kind, obj, directive, apply=apply)


def _table_args(cluster: SimCluster, res: Resource) -> dict[str, Any]:
    return cluster.crds.table_args(res) if res.custom else {}


def _manager(request: web.Request) -> str:
    fm = request.query.get("fieldManager")
    if fm:
        return fm
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/", 1)[0] or "unknown"


_OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions",
                 "DELETE": "DeleteOptions"}
MAX_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's `--max-request-body-bytes` default (3 MiB): more is a 413."""


def _dry_run(request: web.Request, sent: Any = None) -> bool:
    """Whether the write is a dry run; any value but `All` (query or DeleteOptions
    body) is the 422 of apimachinery `ValidateDryRun`, before anything is written."""
    values = [*request.query.getall("dryRun", []), *(sent or [])]
    if any(v != "All" for v in values):
        shown = ", ".join(json.dumps(v) for v in values)
        kind = _OPTIONS_KIND.get(request.method, "CreateOptions")
        raise invalid(kind, "", [("dryRun", "FieldValueNotSupported",
                                  f'Unsupported value: []string{{{shown}}}: supported '
                                  'values: "All"')], "meta.k8s.io")
    return bool(values)


async def _read(request: web.Request) -> bytes:
    """The body, read as it streams in (other clusters' requests go on meanwhile), up
    to `MAX_BODY_BYTES`: beyond it the real server's 413 (`handlers/rest.go`
    `limitedReadBody`). The app's `client_max_size` is the same limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise SimError(413, "RequestEntityTooLarge",
                       f"Request entity too large: limit is {MAX_BODY_BYTES}") from None


async def _body(request: web.Request) -> Any:
    if request.content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(await _read(request))
    if request.content_type == "application/cbor":
        raise SimError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media "
                       "types include: application/json, application/yaml, "
                       f"{protobuf.CONTENT_TYPE} (CBOR is not served by the simulator)")
    raw = await _read(request)
    try:
        if not raw:
            return None
        if request.content_type in ("application/apply-patch+yaml", "application/yaml"):
            if raw.lstrip()[:1] == b"{":  # clients mostly send JSON, which YAML includes
                try:
                    return json.loads(raw)
                except ValueError:
                    pass
            return yaml.load(raw, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the body of the request was in an unknown format: {e}") from e


def _as_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


PARTIAL = "PartialObjectMetadata"


def _as_partial(request: web.Request, *, listing: bool) -> bool:
    """Whether a GET is answered as metadata only (`meta.k8s.io/v1`
    `PartialObjectMetadata`, a list as `PartialObjectMetadataList`), as kube-apiserver
    negotiates it (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go,
    `transformObject`): the first media range of the Accept header it can serve wins, a
    plain one being the object itself; a partial shape that is not the answer's (a list
    asked of one object, or the reverse) is 406 NotAcceptable, not passed over."""
    accept = request.headers.get("Accept", "")
    if "as=Table" in accept or "as=" not in accept:
        return False
    for media in accept.split(","):
        kind, *raw = (part.strip() for part in media.split(";"))
        params = dict(p.split("=", 1) for p in raw if "=" in p)
        if kind not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in params:
            return False
        if params["as"] not in (PARTIAL, PARTIAL + "List") or \
                params.get("g") != "meta.k8s.io" or params.get("v") != "v1":
            continue
        if params["as"] == PARTIAL + "List" if listing else params["as"] == PARTIAL:
            return True
        raise SimError(406, "NotAcceptable",
                       f"you requested {params['as']}, but the requested object is "
                       + ("a list" if listing else "not a list"))
    raise SimError(406, "NotAcceptable", "only the following media types are accepted: "
                   "application/json, application/yaml, application/vnd.kubernetes.protobuf")


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": PARTIAL, "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


async def handle(request: web.Request, cluster: SimCluster) -> web.StreamResponse:
    parsed = parse_path(request.path, cluster.store.resources)
    if parsed is None:
        return _discovery(request.path, cluster.store.resources)
    res, ns, name, sub = parsed
    store = cluster.store
    method = request.method
    if name is None:
        if res.namespaced and ns is None and method not in ("GET",):
            raise SimError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource")
        if method == "GET":
            matcher = combine(label_matcher(request.query.get("labelSelector")),
                              field_matcher(request.query.get("fieldSelector"), res.kind))
            if parse_bool(request.query.get("watch")):
                return await serve_watch(request, cluster, res, ns, matcher)
            body = list_response(store, res, ns, matcher, request.query)
            if _as_table(request):
                table = kubectl.to_table(
                    res.kind, body["items"],
                    include_object=request.query.get("includeObject", "Metadata"),
                    **_table_args(cluster, res))
                table["metadata"] = body["metadata"]
                return _json(table)
            if _as_partial(request, listing=True):
                return _json({"kind": PARTIAL + "List", "apiVersion": "meta.k8s.io/v1",
                              "metadata": body["metadata"],
                              "items": [_partial(o) for o in body["items"]]})
            return _json(body)
        if method == "POST":
            obj = await _body(request)
            if not isinstance(obj, dict):
                raise bad_request("the body of the request must be an object")
            decoding.check_body(res, obj)
            obj.setdefault("metadata", {})
            if res.namespaced:
                body_ns = obj["metadata"].get("namespace")
                if body_ns and body_ns != ns:
                    raise bad_request("the namespace of the provided object does not match "
                                      "the namespace sent on the request")
                obj["metadata"]["namespace"] = ns
            warn = _check_fields(cluster, res, obj, request)
            created = store.create(res, obj, manager=_manager(request),
                                   dry_run=_dry_run(request))
            return _json(created, 201, _warnings(warn))
        if method == "DELETE":
            matcher = combine(label_matcher(request.query.get("labelSelector")),
                              field_matcher(request.query.get("fieldSelector"), res.kind))
            dry = _dry_run(request)  # refused before anything, even an empty collection
            opts = await _body(request) or {}
            grace = _grace(request, opts if isinstance(opts, dict) else {})
            gone = [store.delete(res, o["metadata"].get("namespace", ""),
                                 o["metadata"]["name"], dry_run=dry, grace_seconds=grace)
                    for o in list(store.list(res, ns, matcher))]
            return _json({"kind": f"{res.kind}List", "apiVersion": res.api_version,
                          "metadata": {"resourceVersion": str(store.rv)}, "items": gone})
        raise SimError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")
    key_ns = ns or ""
    if sub == "scale":
        return await _scale(request, cluster, res, key_ns, name)
    if sub == "eviction":
        return await _evict(request, cluster, res, key_ns, name)
    if method == "GET":
        obj = served_as(res, store.get(res, key_ns, name)) if res.custom else \
            store.get(res, key_ns, name)
        if _as_table(request):
            table = kubectl.to_table(res.kind, [obj], **_table_args(cluster, res))
            table["metadata"] = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return _json(table)
        if _as_partial(request, listing=False):
            return _json(_partial(obj))
        return _json(obj)
    if method == "PUT":
        new = await _body(request)
        if not isinstance(new, dict):
            raise bad_request("the body of the request must be an object")
        old = store.get(res, key_ns, name)
        decoding.check_body(res, new)
        sent = new.get("metadata")
        sent_uid = sent.get("uid") if isinstance(sent, dict) else None
        if sent_uid and sent_uid != old["metadata"].get("uid"):
            # main resource and /status alike: a PUT of an object deleted and created
            # again under the same name is refused, not applied to the new one
            raise uid_precondition(res.plural, name, res.group, _etcd_key(res, key_ns, name),
                                   str(sent_uid), str(old["metadata"].get("uid", "")))
        if not (sent or {}).get("resourceVersion") and not _unconditional(res, sub):
            # genericregistry.Store.Update, named by resource as it does (#18526)
            raise invalid(res.plural, name, [(
                "metadata.resourceVersion", "FieldValueInvalid",
                "Invalid value: 0: must be specified for an update")], group=res.group)
        warn = _check_fields(cluster, res, new, request)
        out = store.replace(res, new, old, manager=_manager(request), subresource=sub,
                            dry_run=_dry_run(request))
        return _json(out, 200, _warnings(warn))
    if method == "PATCH":
        return await _patch(request, cluster, res, key_ns, name, sub)
    if method == "DELETE":
        opts = await _body(request) or {}
        propagation = request.query.get("propagationPolicy") or opts.get("propagationPolicy")
        if propagation is None and "orphanDependents" in opts:
            propagation = "Orphan" if opts["orphanDependents"] else "Background"
        pre = opts.get("preconditions") or {}
        dry = _dry_run(request, opts.get("dryRun"))
        out = store.delete(res, key_ns, name, propagation=propagation,
                           precondition_rv=pre.get("resourceVersion"),
                           precondition_uid=pre.get("uid"), dry_run=dry,
                           grace_seconds=_grace(request, opts))
        return _json(_deleted(res, out, store.find(res, key_ns, name) is not None))
    raise SimError(405, "MethodNotAllowed",
                   "the server does not allow this method on the requested resource")


# Where kube-apiserver keeps a resource in etcd when it is not `<plural>`
# (pkg/kubeapiserver/default_storage_factory_builder.go, the registries' prefixes).
_ETCD_PREFIX = {("", "services"): "services/specs", ("", "nodes"): "minions",
                ("networking.k8s.io", "ingresses"): "ingress"}


def _etcd_key(res: Resource, ns: str, name: str) -> str:
    prefix = _ETCD_PREFIX.get((res.group, res.plural)) or (
        f"{res.group}/{res.plural}" if res.custom or res.group == "apiextensions.k8s.io"
        else res.plural)
    return f"/registry/{prefix}/{ns}/{name}" if res.namespaced else \
        f"/registry/{prefix}/{name}"


def _unconditional(res: Resource, sub: str | None) -> bool:
    """Whether a PUT without a resourceVersion replaces whatever is stored (the
    strategy's `AllowUnconditionalUpdate`): not for custom resources
    (`customResourceStrategy`, whose status strategy embeds it), PodDisruptionBudgets
    (`podDisruptionBudgetStrategy`: "Status update should only be allowed if version
    match") and a CRD's /status (apiextensions `statusStrategy`)."""
    if res.custom or res.kind == "PodDisruptionBudget":
        return False
    return not (res.kind == "CustomResourceDefinition" and sub == "status")


# Kinds whose DELETE answers with the object even when it is gone at once (the generic
# registry's ReturnDeletedObject); the others answer a Status Success.
_RETURNS_DELETED = frozenset({"Pod", "Service", "Namespace", "Node"})


def _deleted(res: Resource, obj: dict[str, Any], pending: bool) -> dict[str, Any]:
    """A DELETE's answer: the object while it is pending (finalizers, a terminating
    namespace) or for kinds that return it, else `Status Success` with its details."""
    if pending or res.kind in _RETURNS_DELETED:
        return obj
    details = {"name": obj["metadata"]["name"], "kind": res.plural,
               "uid": obj["metadata"].get("uid", "")}
    if res.group:
        details["group"] = res.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


async def _patch(request: web.Request, cluster: SimCluster, res: Resource, ns: str,
                 name: str, sub: str | None) -> web.Response:
    store = cluster.store
    kind = _PATCH_TYPES.get(request.content_type)
    if kind is None:
        raise SimError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media "
                       f"types include: {', '.join(_PATCH_TYPES)}")
    body = await _body(request)
    manager = _manager(request)
    dry = _dry_run(request)
    if kind == "apply":
        return _apply(request, cluster, res, ns, name, body, dry, sub)
    old = store.get(res, ns, name)
    if kind == "json":
        new = patch.json_patch(old, body)
    elif not isinstance(body, dict):
        raise bad_request("a merge patch must be a JSON object")
    elif kind == "merge":
        new = patch.merge_patch(old, body)
    else:
        new = patch.strategic_merge_patch(old, body)
    decoding.check_patched(res, kind, new, body)
    warn = _check_fields(cluster, res, new, request)
    out = store.replace(res, new, old, manager=manager, subresource=sub, dry_run=dry)
    return _json(out, 200, _warnings(warn))


def _apply(request: web.Request, cluster: SimCluster, res: Resource, ns: str, name: str,
           body: Any, dry: bool, sub: str | None = None) -> web.Response:
    store = cluster.store
    manager = request.query.get("fieldManager")
    if not manager:
        raise invalid("PatchOptions", "", [
            ("fieldManager", "FieldValueRequired", "Required value: is required for apply "
             "patch")], group="meta.k8s.io")
    if not isinstance(body, dict):
        raise bad_request("an apply patch must be a YAML or JSON object")
    decoding.check_apply(res, body)
    meta = body.setdefault("metadata", {})
    if meta.get("name", name) != name:
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the "
                          f"name on the URL ({name})")
    if body.get("kind") != res.kind or body.get("apiVersion") != res.api_version:
        raise bad_request(f"apply patch must name apiVersion {res.api_version} and kind "
                          f"{res.kind}")
    meta["name"] = name
    if res.namespaced:
        meta["namespace"] = ns
    _check_fields(cluster, res, body, request, apply=True)
    force = parse_bool(request.query.get("force"))
    live = store.find(res, ns, name)
    if sub == "status":
        # An apply to /status changes status only and records its managedFields entry
        # with `subresource: status`; the object must exist (the status strategy).
        live = store.get(res, ns, name)
        new = ssa.apply(live, body, manager, force=force, now=objects.now(),
                        subresource="status")
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        return _json(store.replace(res, new, live, managed=True, subresource="status",
                                   dry_run=dry))
    new = ssa.apply(live, body, manager, force=force, now=objects.now())
    if live is None:
        # `ssa.apply` built `new` of copies (of the body, which nothing else holds):
        # the store keeps it rather than a copy of it
        return _json(store.create(res, new, dry_run=dry, fresh=True), 201)
    rv = meta.get("resourceVersion")
    if rv and rv != live["metadata"]["resourceVersion"]:
        raise conflict(res.plural, name, res.group)
    new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    return _json(store.replace(res, new, live, managed=True, dry_run=dry))


async def _scale(request: web.Request, cluster: SimCluster, res: Resource, ns: str,
                 name: str) -> web.Response:
    store = cluster.store
    obj = store.get(res, ns, name)
    if request.method in ("PUT", "PATCH"):
        body = await _body(request)
        if request.method == "PATCH":
            current = _scale_obj(obj)
            body = (patch.json_patch(current, body)
                    if request.content_type == "application/json-patch+json"
                    else patch.merge_patch(current, body))
        replicas = decoding.scale_replicas(name, body, patched=request.method == "PATCH")
        new = patch.merge_patch(obj, {"spec": {"replicas": replicas}})
        obj = store.replace(res, new, obj, manager=_manager(request),
                            dry_run=_dry_run(request))
    return _json(_scale_obj(obj))


async def _evict(request: web.Request, cluster: SimCluster, res: Resource, ns: str,
                 name: str) -> web.Response:
    """POST pods/<name>/eviction (kubectl drain): the pod is deleted, 201 Success.
    There are no PodDisruptionBudgets here, so no eviction is ever refused with 429."""
    if request.method != "POST":
        raise SimError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")
    body = await _body(request) or {}
    opts = body.get("deleteOptions") or {}
    dry = _dry_run(request, opts.get("dryRun"))
    cluster.store.delete(res, ns, name, propagation=opts.get("propagationPolicy"),
                         dry_run=dry, grace_seconds=_grace(request, opts))
    return _json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Success", "code": 201}, 201)


def _grace(request: web.Request, opts: dict[str, Any]) -> int | None:
    """DeleteOptions' `gracePeriodSeconds`, from the query or the body (None: the
    object's own, e.g. a pod's `terminationGracePeriodSeconds`)."""
    value = request.query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid gracePeriodSeconds {value!r}") from None


def _scale_obj(obj: dict[str, Any]) -> dict[str, Any]:
    sel = obj.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in
                         ("name", "namespace", "uid", "resourceVersion",
                          "creationTimestamp") if k in obj["metadata"]},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items()))}}


def _discovery(path: str, served: Registry) -> web.Response:
    p = path.rstrip("/")
    doc: dict[str, Any] | None = None
    if p == "/version":
        doc = resources.version_info()
    elif p == "/api":
        doc = resources.api_versions()
    elif p == "/apis":
        doc = resources.api_group_list(served.all())
    elif p == "/api/v1":
        doc = resources.resource_list("", "v1", served.all())
    elif p.startswith("/apis/"):
        parts = p.split("/")[2:]
        if len(parts) == 1:
            doc = resources.api_group(parts[0], served.all())
        elif len(parts) == 2:
            doc = resources.resource_list(parts[0], parts[1], served.all())
    elif p in ("/healthz", "/readyz", "/livez"):
        return web.Response(text="ok")
    if doc is None:
        raise SimError(404, "NotFound", "the server could not find the requested resource",
                       {})
    return _json(doc)
