"""Wrong JSON types in a body, refused the way kube-apiserver 1.35's decoder refuses them.

A real server decodes every body into the kind's Go struct before anything else looks
at it, so `replicas: "two"` never reaches validation, defaulting or a controller. What
the client gets back depends on the write path
(`staging/src/k8s.io/apiserver/pkg/endpoints/handlers`):

- create and update (`create.go`, `update.go` `transformDecodeError`): 400 BadRequest,
  `Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal
  string into Go struct field DeploymentSpec.spec.replicas of type int32` (Go's
  `encoding/json.UnmarshalTypeError`, as forked by sigs.k8s.io/json: the innermost
  struct, the JSON path without list indices, the Go type);
- JSON and merge patches (`patch.go` `jsonPatcher`): 422 Invalid with an empty kind and
  name, one cause on `patch` whose value is the patched object;
- strategic merge patches (`patch.go` `applyPatchToObject`): the same 422, the value
  being the patch map as Go's `%+v` prints it and the converter's
  `unrecognized type: int32`;
- server-side apply (`fieldmanager` `ObjectToTyped`): 400 BadRequest `failed to create
  typed patch object (apps/v1, Kind=Deployment): .spec.replicas: expected numeric (int
  or float), got string` (structured-merge-diff's scalar errors).

The API handlers (`api.py`) and the out-of-band `edit` call these before a body
touches the store; the simulator's own controllers write well-typed objects and are
not checked. The types come from the Kubernetes 1.35 OpenAPI schemas `kubectl.py`
serves; without
them (no `kubernetes-validate` installed) a small table of the integer fields the
simulator's own controllers read keeps them from ever seeing a wrong type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clusters.sim import kubectl
from clusters.sim.errors import SimError, bad_request, invalid
from clusters.sim.resources import Resource

Obj = dict[str, Any]
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_FALLBACK_INTS = {
    "Deployment": (("spec", "replicas"), ("spec", "minReadySeconds"),
                   ("spec", "progressDeadlineSeconds"), ("spec", "revisionHistoryLimit")),
    "Job": (("spec", "parallelism"), ("spec", "completions"), ("spec", "backoffLimit"),
            ("spec", "activeDeadlineSeconds")),
}
"""Without the schemas: the integers the Deployment and Job controllers read."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A value of the wrong JSON type: where, what it was, what Go wanted."""

    value: str          # Go's UnmarshalTypeError.Value: "string", "number 1.5", ...
    struct: str         # the innermost Go struct: "DeploymentSpec"
    path: tuple[str, ...]  # JSON field names, no list indices
    go_type: str        # "int32", "v1.PodSpec", "[]v1.Container", ...
    smd_path: str       # structured-merge-diff's path: ".spec.replicas"
    actual: Any

    def json_error(self) -> str:
        return (f"json: cannot unmarshal {self.value} into Go struct field "
                f"{self.struct}.{'.'.join(self.path)} of type {self.go_type}")


def _def_name(schema: Any) -> str | None:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    return str(ref).rsplit("/", 1)[-1] if ref else None


def _resolve(schema: Any) -> tuple[Any, str | None]:
    defs = kubectl.schema_definitions()
    name = None
    while isinstance(schema, dict) and "$ref" in schema:
        name = _def_name(schema)
        schema = defs.get(name or "")
    return schema, name


def _go_type(schema: Any) -> str:
    name = _def_name(schema)
    if name:
        parts = name.split(".")
        return f"{parts[-2]}.{parts[-1]}"
    if not isinstance(schema, dict):
        return "interface {}"
    kind = schema.get("type")
    if kind == "integer":
        return str(schema.get("format") or "int64")
    if kind == "array":
        return "[]" + _go_type(schema.get("items"))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _go_type(schema["additionalProperties"])
    return {"number": "float64", "boolean": "bool", "string": "string"}.get(
        str(kind), "map[string]interface {}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _scalar_ok(kind: str, fmt: str, value: Any) -> bool:
    if kind == "integer":
        lo, hi = _INT_RANGE.get(fmt, _INT_RANGE["int64"])
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _find(value: Any, field_schema: Any, path: tuple[str, ...], smd: str,
          struct: str) -> Mismatch | None:
    if value is None:
        return None  # null leaves the zero value: never a decode error
    node, name = _resolve(field_schema)
    if not isinstance(node, dict) or node.get("x-kubernetes-preserve-unknown-fields") or \
            node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return None
    kind = str(node.get("type") or ("object" if "properties" in node else ""))
    if not kind:
        return None
    if not _scalar_ok(kind, str(node.get("format") or ""), value):
        got = _json_kind(value)
        if got == "number" and kind == "integer":
            got = f"number {value!r}"
        return Mismatch(got, struct, path, _go_type(field_schema), smd, value)
    if kind == "array":
        for i, item in enumerate(value):
            key = f'[name="{item["name"]}"]' if isinstance(item, dict) and "name" in item \
                else f"[{i}]"
            found = _find(item, node.get("items"), path, smd + key, struct)
            if found:
                return found
    elif kind == "object":
        return _find_fields(value, node, path, smd, name.rsplit(".", 1)[-1] if name
                            else struct)
    return None


def _find_fields(value: Obj, node: Obj, path: tuple[str, ...], smd: str,
                 struct: str) -> Mismatch | None:
    props = node.get("properties")
    extra = node.get("additionalProperties")
    for k, v in value.items():
        if isinstance(props, dict) and k in props:
            found = _find(v, props[k], (*path, k), f"{smd}.{k}", struct)
        elif isinstance(extra, dict):
            found = _find(v, extra, path, f"{smd}.{k}", struct)
        else:
            continue
        if found:
            return found
    return None


def mismatch(res: Resource, obj: Obj) -> Mismatch | None:
    """The first value of `obj` whose JSON type its kind's schema does not allow."""
    schema = kubectl.kind_schema(res.kind)
    if schema is not None and "properties" in schema:
        return _find_fields(obj, schema, (), "", res.kind)
    for path in _FALLBACK_INTS.get(res.kind, ()):
        node: Any = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and not _scalar_ok("integer", "int32", node):
            return Mismatch(_json_kind(node), f"{res.kind}Spec", path, "int32",
                            "." + ".".join(path), node)
    return None


def check_body(res: Resource, obj: Obj) -> None:
    """Create and update: the decoder's 400 (`transformDecodeError`)."""
    found = mismatch(res, obj)
    if found:
        raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a '
                          f"{res.kind}: {found.json_error()}")


def check_patched(res: Resource, patch_type: str, patched: Obj, body: Any) -> None:
    """JSON, merge and strategic merge patches: 422 on `patch` (see module doc)."""
    found = mismatch(res, patched)
    if not found:
        return
    if patch_type == "strategic":
        value, detail = go_print(body), f"unrecognized type: {found.go_type}"
    else:
        value, detail = json.dumps(patched, separators=(",", ":")), found.json_error()
    raise invalid("", "", [("patch", "FieldValueInvalid",
                            f"Invalid value: {json.dumps(value)}: {detail}")])


def check_apply(res: Resource, body: Obj) -> None:
    """Server-side apply: structured-merge-diff's 400 on the typed patch object."""
    found = mismatch(res, body)
    if not found:
        return
    expected = {"int32": "numeric (int or float)", "int64": "numeric (int or float)",
                "float64": "numeric (int or float)", "string": "string",
                "bool": "boolean"}.get(found.go_type, "map" if found.go_type.startswith(
                    ("v1.", "map[")) else "list")
    got = {"string": "string", "bool": "bool", "array": "[]interface {}",
           "object": "map[string]interface {}"}.get(_json_kind(found.actual), "float64")
    if expected == "string":
        got = f"&value.valueUnstructured{{Value:{go_print(found.actual)}}}"
    raise SimError(400, "BadRequest",
                   f"failed to create typed patch object ({res.api_version}, "
                   f"Kind={res.kind}): {found.smd_path}: expected {expected}, got {got}")


def go_print(value: Any) -> str:
    """Go's `%+v` of a decoded JSON value: `map[spec:map[replicas:two]]`."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_print(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def scale_replicas(name: str, body: Any, *, patched: bool) -> int:
    """`spec.replicas` of an autoscaling/v1 Scale written to `/scale`: a wrong type is
    the decoder's error (400 on PUT, 422 on `patch` for a PATCH), a negative count
    `ValidateScale`'s 422 (`pkg/apis/autoscaling/validation`)."""
    if not isinstance(body, dict):  # encoding/json on a non-object into a struct
        raise bad_request('Scale in version "v1" cannot be handled as a Scale: json: '
                          f"cannot unmarshal {_json_kind(body)} into Go value of type "
                          "autoscaling.Scale")
    spec = body.get("spec")
    replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
    if replicas is None:
        replicas = 0
    if not _scalar_ok("integer", "int32", replicas):
        error = (f"json: cannot unmarshal {_json_kind(replicas)} into Go struct field "
                 "ScaleSpec.spec.replicas of type int32")
        if patched:
            raise invalid("", "", [("patch", "FieldValueInvalid", "Invalid value: "
                                    f"{json.dumps(json.dumps(body))}: {error}")])
        raise bad_request(f'Scale in version "v1" cannot be handled as a Scale: {error}')
    if replicas < 0:
        raise invalid("Scale", name, [("spec.replicas", "FieldValueInvalid",
                                       f"Invalid value: {replicas}: must be greater than "
                                       "or equal to 0")], group="autoscaling")
    return int(replicas)
