"""Field tables of the fleet repo kinds, generated from their JSON Schemas.

`docs/fleet-repo.md` documents every field of every kind; the descriptions are written
once, in the models (`fleet/models/*`, `Field(description=...)`), and the tables in the
doc are generated from `fleet.models.json_schemas()` between markers:

    <!-- fields: Workload -->
    | field | type | description |
    ...
    <!-- end fields: Workload -->

`fleet schema --update-doc docs/fleet-repo.md` rewrites them (`make schema`), and a test
fails when the doc is not what the models say.
"""

from __future__ import annotations

import re
from typing import Any

from fleet.texttable import markdown_cell, markdown_table

Schema = dict[str, Any]

_BLOCK = re.compile(r"(<!-- fields: (\w+) -->\n)(.*?)(<!-- end fields: \2 -->)", re.S)


def _resolve(root: Schema, node: Schema) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target: Schema = root["$defs"][ref.removeprefix("#/$defs/")]
        return target
    return node


def _unwrap(node: Schema) -> Schema:
    """`X | None` (anyOf with null) as X."""
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1 and "anyOf" in node:
        return {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
    return node


def _type(root: Schema, node: Schema) -> str:
    node = _unwrap(node)
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "$ref" in node:
        return "object"
    t = node.get("type")
    if t == "array":
        return f"list of {_type(root, node.get('items') or {})}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of string to {_type(root, node['additionalProperties'])}"
    return str(t or "any")


def rows(root: Schema) -> list[tuple[str, str, bool, str]]:
    """(dotted path, type, required, description) of every field, depth first."""
    out: list[tuple[str, str, bool, str]] = []

    def walk(node: Schema, prefix: str) -> None:
        node = _resolve(root, node)
        required = set(node.get("required", []))
        for name, prop in (node.get("properties") or {}).items():
            path = f"{prefix}{name}"
            out.append((path, _type(root, prop), name in required,
                        str(prop.get("description") or "")))
            inner = _unwrap(prop)
            if "$ref" in inner:
                walk(inner, f"{path}.")
            elif inner.get("type") == "array" and "$ref" in (inner.get("items") or {}):
                walk(inner["items"], f"{path}[].")
            elif isinstance(inner.get("additionalProperties"), dict) and \
                    "$ref" in inner["additionalProperties"]:
                walk(inner["additionalProperties"], f"{path}.<name>.")

    walk(root, "")
    return out


def field_table(schema: Schema) -> str:
    return "\n".join(markdown_table(
        ["field", "type", "required", "description"],
        ([f"`{path}`", typ, "yes" if required else "", markdown_cell(description)]
         for path, typ, required, description in rows(schema)))) + "\n"


def update_doc(text: str, schemas: dict[str, Schema]) -> str:
    """`text` with every marked field table regenerated; an unknown kind is an error."""
    def one(m: re.Match[str]) -> str:
        kind = m.group(2)
        if kind not in schemas:
            raise KeyError(kind)
        return f"{m.group(1)}\n{field_table(schemas[kind])}\n{m.group(4)}"

    return _BLOCK.sub(one, text)
