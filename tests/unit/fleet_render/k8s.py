"""Kubernetes 1.35 schema validation for rendered manifests, built once per kind.

`kubernetes_validate.validate()` reads the schema files and builds a validator on every
call (tens of milliseconds), and resolving `$ref`s through a registry costs a few ms per
manifest more. Here each (apiVersion, kind) validator is built once from the same strict
1.35 schemas the package ships, with every `$ref` into `_definitions.json` inlined
(recursive definitions are left as refs), so validating a manifest is a plain walk of
the fields it has: well under a millisecond.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jsonschema
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

VERSION = "1.35.0"
SCHEMA_DIR = f"v{VERSION}-local-strict"


@cache
def _definitions() -> Resource[Any]:
    return Resource.from_contents(
        schema_contents(f"kubernetes-json-schema/{SCHEMA_DIR}/_definitions.json", VERSION))


@cache
def _definition_docs() -> dict[str, Any]:
    doc: dict[str, Any] = schema_contents(
        f"kubernetes-json-schema/{SCHEMA_DIR}/_definitions.json", VERSION)
    return doc


def _inline(node: Any, stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(x, stack) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and "#/$defs/" in ref:
        name = ref.rsplit("/", 1)[1]
        if name in stack:
            return node  # recursive: resolved through the registry when reached
        target = _definition_docs()["$defs"][name]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(target, (*stack, name)), **_inline(rest, stack)}
    return {k: _inline(v, stack) for k, v in node.items()}


@cache
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _inline(schema_contents(
        f"kubernetes-json-schema/{SCHEMA_DIR}/{kind.lower()}-{group}.json", VERSION), ())
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions() @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def errors(manifest: dict[str, Any]) -> list[str]:
    v = validator(manifest["apiVersion"], manifest["kind"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in v.iter_errors(manifest)]
