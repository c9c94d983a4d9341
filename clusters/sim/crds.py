"""CustomResourceDefinitions: installing one makes its kind servable on that cluster.

As apiextensions-apiserver does (staging/src/k8s.io/apiextensions-apiserver):
- a CRD is validated on write (`pkg/apis/apiextensions/validation/validation.go`):
  `metadata.name` must be `<spec.names.plural>.<spec.group>`, the group a domain with
  at least one dot, the scope `Cluster` or `Namespaced`, names.plural and names.kind
  given, exactly one storage version, every version with an `openAPIV3Schema` whose
  object nodes name their type (a structural schema);
- once accepted, the naming and establishing controllers set the conditions
  `NamesAccepted` (NoConflicts) and `Established` (InitialNamesAccepted) and
  `acceptedNames`; from then on every served version is routed, discovered (`/apis`,
  the group, `kubectl api-resources`) and listed in OpenAPI v3, on this cluster only
  (`resources.Registry`);
- a custom object is pruned (fields the schema does not declare are dropped, unless a
  node says `x-kubernetes-preserve-unknown-fields: true`), defaulted (`default`), and
  validated (`pkg/apiserver/validation/validation.go`: type, required, enum, bounds)
  with the real server's 422 causes, e.g. `spec.replicas: Invalid value: "string":
  spec.replicas in body must be of type integer: "string"`;
- `fieldValidation=Strict` (kubectl's default) refuses unknown fields with 400 `strict
  decoding error: unknown field "spec.foo"`, Warn prunes them with a warning;
- a declared `status` subresource keeps status out of main writes and spec out of
  `/status` writes (the store's generic rule);
- deleting the CRD deletes every object of its kind, then stops serving it.

Every served version shows the same objects (one collection, `Registry.storage_key`),
each in its own apiVersion, as conversion strategy None serves them.

Printer columns (`additionalPrinterColumns`) make the Table kubectl shows, and each
version's schema is published in OpenAPI v3 (`kubectl explain`).

Not reproduced (docs/simulator.md): webhook conversion, the `scale` subresource,
`x-kubernetes-validations` (CEL), a Terminating phase while the objects go (they go
at once).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from clusters.sim import kubectl, objects
from clusters.sim.errors import bad_request, invalid
from clusters.sim.resources import BY_KIND, Resource, version_priority
from clusters.sim.store import Event, Obj, Store

CRDS = BY_KIND["CustomResourceDefinition"]
Cause = tuple[str, str, str]
_ROOT_KEYS = frozenset({"apiVersion", "kind", "metadata"})
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


@dataclass(frozen=True, slots=True)
class Served:
    """One served version of a CRD: the resource it routes and its schema."""

    res: Resource
    schema: dict[str, Any]
    crd: str
    columns: tuple[dict[str, Any], ...] = ()
    """`additionalPrinterColumns` of the version."""


def served_versions(crd: Obj) -> list[Served]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served"):
            continue
        subs = tuple(s for s in ("status", "scale") if s in (v.get("subresources") or {}))
        res = Resource(spec["group"], v["name"], names["plural"], names["kind"],
                       spec.get("scope") == "Namespaced",
                       tuple(names.get("shortNames") or ()),
                       categories=tuple(names.get("categories") or ()),
                       subresources=tuple(s for s in subs if s == "status"), custom=True)
        schema = (v.get("schema") or {}).get("openAPIV3Schema") or {}
        out.append(Served(res, schema, crd["metadata"]["name"],
                          tuple(v.get("additionalPrinterColumns") or ())))
    return sorted(out, key=lambda s: version_priority(s.res.version))


# ------------------------------------------------------------------ the CRD itself


def validate_crd(crd: Obj) -> list[Cause]:
    """The checks of ValidateCustomResourceDefinition the simulator keeps (see module)."""
    causes: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, name = spec.get("group") or "", names.get("plural") or "", \
        crd["metadata"].get("name", "")
    if name != f"{plural}.{group}":
        causes.append(("metadata.name", "FieldValueInvalid",
                       f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if not group:
        causes.append(("spec.group", "FieldValueRequired", "Required value"))
    elif "." not in group:
        causes.append(("spec.group", "FieldValueInvalid",
                       f'Invalid value: "{group}": should be a domain with at least one dot'))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        causes.append(("spec.scope", "FieldValueNotSupported" if scope else
                       "FieldValueRequired", f'Unsupported value: "{scope or ""}": '
                       'supported values: "Cluster", "Namespaced"' if scope
                       else "Required value"))
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append((f"spec.names.{key}", "FieldValueRequired", "Required value"))
    if plural and not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", plural):
        causes.append(("spec.names.plural", "FieldValueInvalid",
                       f'Invalid value: "{plural}": a DNS-1035 label must consist of lower '
                       "case alphanumeric characters or '-', start with an alphabetic "
                       "character, and end with an alphanumeric character"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "FieldValueInvalid",
                       "Invalid value: null: must have exactly one version marked as "
                       "storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(("spec.versions", "FieldValueInvalid",
                       f"Invalid value: {len(versions)} versions: must have exactly one "
                       "version marked as storage version"))
    for i, v in enumerate(versions):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        path = f"spec.versions[{i}].schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            causes.append((path, "FieldValueRequired", "Required value: schemas are required"))
            continue
        causes.extend(_structural(schema, path, root=True))
    return causes


def _structural(schema: dict[str, Any], path: str, root: bool = False) -> Iterator[Cause]:
    """Every node that declares fields or items names its type (structural schemas,
    apiextensions `pkg/apiserver/schema/validation.go`: `must not be empty for
    specified object fields`, `must be object at the root`)."""
    t = schema.get("type")
    if root and t != "object":
        yield (f"{path}.type", "FieldValueInvalid" if t else "FieldValueRequired",
               f'Invalid value: "{t}": must be object at the root' if t
               else "Required value: must not be empty at the root")
    if not t and not schema.get("x-kubernetes-int-or-string") and \
            not schema.get("x-kubernetes-preserve-unknown-fields"):
        if "properties" in schema:
            yield (f"{path}.type", "FieldValueRequired",
                   "Required value: must not be empty for specified object fields")
        elif "items" in schema:
            yield (f"{path}.type", "FieldValueRequired",
                   "Required value: must not be empty for specified array items")
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield from _structural(sub, f"{path}.properties[{key}]")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _structural(schema[key], f"{path}.{key}")


def _immutable_crd_fields(old: Obj, new: Obj) -> list[Cause]:
    """validateCustomResourceDefinitionSpecUpdate (apiextensions validation.go): the
    group and plural never change (they make the name); once Established, neither do
    the scope and the kind (they shape the storage). `field is immutable`."""
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (old.get("status") or {}).get("conditions") or [])
    fields = [("spec.scope", ("scope",)), ("spec.names.kind", ("names", "kind"))] \
        if established else []
    fields += [("spec.group", ("group",)), ("spec.names.plural", ("names", "plural"))]
    causes: list[Cause] = []
    for path, keys in fields:
        was: Any = old.get("spec") or {}
        now: Any = new.get("spec") or {}
        for k in keys:
            was, now = (was or {}).get(k), (now or {}).get(k)
        if was != now:
            causes.append((path, "FieldValueInvalid",
                           f'Invalid value: "{now}": field is immutable'))
    return causes


def _default_crd(crd: Obj) -> None:
    """SetDefaults_CustomResourceDefinition(Spec) of apiextensions/v1 defaults.go:
    singular and listKind from the kind, conversion strategy None."""
    spec = crd["spec"]
    names = spec["names"]
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})


# ------------------------------------------------------------------ custom objects


def _type_name(value: Any) -> str:
    """The JSON type a value decoded to, as go-openapi names it in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    t = schema.get("type")
    if not t:
        return True
    if value is None:
        return bool(schema.get("nullable"))
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES.get(str(t), object))


def prune_and_default(value: Any, schema: dict[str, Any], path: str,
                      unknown: list[str], root: bool = False) -> Any:
    """`value` without the fields the schema does not declare (their paths collected in
    `unknown`), with the schema's defaults filled in, as the real server stores it."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if root and k in _ROOT_KEYS:
                out[k] = v
            elif k in props:
                out[k] = prune_and_default(v, props[k], sub, unknown)
            elif isinstance(extra, dict):
                out[k] = prune_and_default(v, extra, sub, unknown)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                out[k] = v
            else:
                unknown.append(sub)
        for k, sub_schema in props.items():
            if k not in out and isinstance(sub_schema, dict) and "default" in sub_schema:
                out[k] = copy.deepcopy(sub_schema["default"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(v, schema["items"], f"{path}[{i}]", unknown)
                for i, v in enumerate(value)]
    return value


def validate_value(value: Any, schema: dict[str, Any], path: str) -> Iterator[Cause]:
    """The kube-openapi schema checks, worded as `kubeOpenAPIResultToFieldErrors` words
    them (apiextensions-apiserver pkg/apiserver/validation/validation.go)."""
    name = path or "."
    if not _type_ok(value, schema):
        got = _type_name(value)
        want = "integer" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        yield (path, "FieldValueInvalid",
               f'Invalid value: "{got}": {name} in body must be of type {want}: "{got}"')
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        allowed = ", ".join(f'"{e}"' for e in enum)
        yield (path, "FieldValueNotSupported",
               f"Unsupported value: {_show(value)}: supported values: {allowed}")
    yield from _bounds(value, schema, path, name)
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                yield (f"{path}.{key}" if path else key, "FieldValueRequired",
                       "Required value")
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub_schema = props.get(k, extra if isinstance(extra, dict) else None)
            if isinstance(sub_schema, dict):
                yield from validate_value(v, sub_schema, f"{path}.{k}" if path else k)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            yield from validate_value(v, schema["items"], f"{path}[{i}]")


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _bounds(value: Any, schema: dict[str, Any], path: str, name: str) -> Iterator[Cause]:
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if num and "minimum" in schema and value < schema["minimum"]:
        yield (path, "FieldValueInvalid", f"Invalid value: {value}: {name} in body should "
               f"be greater than or equal to {schema['minimum']}")
    if num and "maximum" in schema and value > schema["maximum"]:
        yield (path, "FieldValueInvalid", f"Invalid value: {value}: {name} in body should "
               f"be less than or equal to {schema['maximum']}")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        yield (path, "FieldValueTooLong", f"Too long: may not be more than "
               f"{schema['maxLength']} bytes")
    if isinstance(value, str) and "minLength" in schema and len(value) < schema["minLength"]:
        yield (path, "FieldValueInvalid", f'Invalid value: "{value}": {name} in body should '
               f"be at least {schema['minLength']} chars long")
    pattern = schema.get("pattern")
    if isinstance(value, str) and isinstance(pattern, str) and \
            re.search(pattern, value) is None:
        yield (path, "FieldValueInvalid", f'Invalid value: "{value}": {name} in body should '
               f"match '{pattern}'")
    if isinstance(value, list) and "minItems" in schema and len(value) < schema["minItems"]:
        yield (path, "FieldValueInvalid", f"Invalid value: {len(value)}: {name} in body "
               f"should have at least {schema['minItems']} items")
    if isinstance(value, list) and "maxItems" in schema and len(value) > schema["maxItems"]:
        yield (path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most "
               f"{schema['maxItems']} items")


_STEP = re.compile(r"""\.([A-Za-z0-9_-]+)|\[(\d+)\]"""
                   r"""|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]""")


def json_path(obj: Any, path: str) -> Any:
    """The value at a printer column's JSONPath: `.a.b`, `[0]`, `[?(@.type=="Ready")]`
    (the first match); None where there is nothing (kubectl prints `<none>`)."""
    text = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    value, pos = obj, 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group(1) is not None:
            value = value.get(m.group(1)) if isinstance(value, dict) else None
        elif m.group(2) is not None:
            i = int(m.group(2))
            value = value[i] if isinstance(value, list) and i < len(value) else None
        else:
            keys = m.group(3).split(".")
            matches = [v for v in value or [] if isinstance(v, dict) and
                       str(json_path(v, "." + ".".join(keys))) == m.group(4)] \
                if isinstance(value, list) else []
            value = matches[0] if matches else None
        if value is None:
            return None
    return value


class CustomResources:
    """One cluster's CRDs: its admission step and its establishing controller."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.served: dict[Resource, Served] = {}
        self._by_crd: dict[str, list[Resource]] = {}
        self._pending: set[str] = set()
        self._documents: dict[str, bytes] | None = None
        store.admitters.append(self.admit)
        store.listeners.append(self._on_event)

    # ------------------------------------------------------------ admission

    def admit(self, res: Resource, obj: Obj, old: Obj | None) -> None:
        if res is CRDS:
            causes = validate_crd(obj)
            if old is not None:
                causes += _immutable_crd_fields(old, obj)
            if causes:
                raise invalid(f"{res.kind}.{res.group}", obj["metadata"].get("name", ""),
                              causes)
            _default_crd(obj)
            return
        served = self.served.get(res)
        if served is None:
            return
        pruned = prune_and_default(obj, served.schema, "", [], root=True)
        for k in [k for k in obj if k not in pruned]:
            del obj[k]
        obj.update(pruned)
        body = {k: v for k, v in obj.items() if k not in _ROOT_KEYS}
        causes = list(validate_value(body, {**served.schema, "required": [
            r for r in served.schema.get("required") or [] if r not in _ROOT_KEYS]}, ""))
        if causes:
            raise invalid(f"{res.kind}.{res.group}", obj["metadata"].get("name", ""), causes)

    def check_fields(self, res: Resource, obj: Obj, directive: str | None, *,
                     apply: bool = False) -> list[str]:
        """`fieldValidation` for a custom object: as `kubectl.check_fields` for built-in
        kinds, with the CRD's schema (unknown fields are pruned later in any case)."""
        mode = directive or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f'fieldValidation must be one of "Ignore", "Warn", or '
                              f'"Strict", got "{mode}"')
        served = self.served.get(res)
        unknown: list[str] = []
        if served is not None:
            prune_and_default(obj, served.schema, "", unknown, root=True)
        if not unknown:
            return []
        if apply:
            raise bad_request(f"failed to create typed patch object ({res.api_version}, "
                              f"Kind={res.kind}): .{unknown[0]}: field not declared in "
                              "schema")
        if mode == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(
                f'unknown field "{p}"' for p in unknown))
        return [] if mode == "Ignore" else [f'unknown field "{p}"' for p in unknown]

    def openapi_documents(self) -> dict[str, bytes]:
        """`apis/<group>/<version>` -> its OpenAPI v3 document, for every served CRD
        version (kubectl reads it before `apply` and for `explain`)."""
        if self._documents is None:
            by_gv: dict[str, list[tuple[Resource, dict[str, Any]]]] = {}
            for res in sorted(self.served, key=lambda r: (r.group, r.version, r.plural)):
                by_gv.setdefault(f"apis/{res.group}/{res.version}", []).append(
                    (res, self.served[res].schema))
            self._documents = {gv: json.dumps(kubectl.custom_document(items),
                                              separators=(",", ":")).encode()
                               for gv, items in by_gv.items()}
        return self._documents

    def table_args(self, res: Resource) -> dict[str, Any]:
        """`kubectl.to_table` arguments for a custom kind: its apiVersion, and NAME plus
        its `additionalPrinterColumns`, or NAME and AGE when it declares none
        (apiextensions-apiserver customresource_handler.go, tableconvertor)."""
        served = self.served.get(res)
        if served is None or not served.columns:
            return {"api_version": res.api_version}
        specs = [c for c in served.columns if c.get("name") and c.get("jsonPath")]
        cols = [kubectl._name_col()] + [
            (str(c["name"]), "string" if c.get("type") == "date" else str(c.get("type")),
             int(c.get("priority", 0)), str(c.get("description", ""))) for c in specs]

        def cells(obj: Obj, now: float) -> list[Any]:
            row: list[Any] = [obj["metadata"].get("name", "")]
            for c in specs:
                value = json_path(obj, str(c["jsonPath"]))
                if c.get("type") == "date" and isinstance(value, str):
                    value = kubectl._age(value, now)
                row.append(value)
            return row
        return {"api_version": res.api_version, "columns": (cols, cells)}

    # ------------------------------------------------------------ controllers

    def _on_event(self, ev: Event) -> None:
        if ev.res is not CRDS:
            return
        self._pending.add(ev.obj["metadata"]["name"])
        try:
            asyncio.get_running_loop().call_soon(self._drain)
        except RuntimeError:  # no loop (a bare Store in a unit test): do it now
            self._drain()

    def _drain(self) -> None:
        pending, self._pending = self._pending, set()
        for name in sorted(pending):
            self.sync(name)

    def sync(self, name: str) -> None:
        """Serve what the CRD declares now; stop serving (and delete) what it no longer
        does; write its status conditions."""
        self._documents = None
        crd = self.store.find(CRDS, "", name)
        wanted = served_versions(crd) if crd is not None and \
            not crd["metadata"].get("deletionTimestamp") else []
        keep = {s.res for s in wanted}
        gone = [r for r in self._by_crd.pop(name, []) if r not in keep]
        if not wanted and gone:  # the CRD itself went: its objects go with it
            self._delete_objects(gone[0])
        # Add before removing: a changed version (new short names, say) is a new
        # Resource, and its objects must stay in the collection they are in.
        for s in wanted:
            old = next((r for r in self.served if r == s.res), None)
            if old is not None and self.served[old].crd != name:
                continue  # another CRD serves this path already
            self.served[s.res] = s
            self.store.resources.add(s.res)
        for res in gone:  # a version no longer served keeps the objects (shared storage)
            self.served.pop(res, None)
            self.store.resources.remove(res)
        self._by_crd[name] = [s.res for s in wanted]
        if crd is not None and wanted:
            self._establish(crd)

    def _delete_objects(self, res: Resource) -> None:
        """The CRD went: its objects go with it (the cleanup finalizer's work)."""
        for o in list(self.store.list(res)):
            meta = o["metadata"]
            if self.store.find(res, meta.get("namespace", ""), meta["name"]) is not None:
                self.store.delete(res, meta.get("namespace", ""), meta["name"],
                                  propagation="Background")
        self.store.data.pop(self.store.resources.storage_key(res), None)

    def _establish(self, crd: Obj) -> None:
        now = objects.now()
        prev = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}

        def cond(kind: str, reason: str, message: str) -> Obj:
            p = prev.get(kind)
            if p and p.get("status") == "True" and p.get("reason") == reason:
                return dict(p)
            return {"type": kind, "status": "True", "reason": reason, "message": message,
                    "lastTransitionTime": now}
        spec = crd["spec"]
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        status = {
            # apiextensions naming controller (NoConflicts) and establishing controller
            # (InitialNamesAccepted), pkg/controller/{status,establish}.
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted",
                     "the initial names have been accepted"),
            ],
            "acceptedNames": names,
            "storedVersions": sorted(set((crd.get("status") or {}).get("storedVersions")
                                         or []) | set(stored)),
        }
        if crd.get("status") != status:
            self.store.replace(CRDS, {**crd, "status": status}, crd, subresource="status",
                               check_rv=False)
