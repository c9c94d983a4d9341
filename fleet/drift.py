"""Drift: a field we apply whose live value differs. Pure.

What the server or other managers *add* is not drift: defaults (`imagePullPolicy`),
status, fields set by an HPA or a mutating webhook on fields we never set. So the
comparison walks the desired manifest only, the way server-side apply owns fields:
maps key by key, lists with a merge key (containers and env by `name`, container ports
by `containerPort`, service ports by `port`, volumes by `name`) item by item, and other
lists (command, args, tolerations) whole. Within an atomic list of objects, an item
matches when it holds every field we set (the server may default the rest).

Who changed it: the live object's `metadata.managedFields` says which manager owns each
field now (Flux's ssa package reads drift the same way). The owner of the deepest
path prefix that some other manager claims is reported; if nobody else claims it (a
field deleted out of band leaves no owner), the most recent other writer is named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.quantity import same as same_quantity

OUR_MANAGER = "aifleet"

MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
# Service ports merge by `port`; container ports by `containerPort`.
_SERVICE_PORTS = ("spec", "ports")

_IDENTITY = {("metadata", "name"), ("metadata", "namespace"), ("apiVersion",), ("kind",)}

_MISSING = object()

PathPart = str | tuple[str, Any]
"""A map key, or (merge key, value) for an item of a keyed list."""


@dataclass(frozen=True, slots=True)
class DriftedField:
    path: str
    """Dotted, with list items by key: `spec.template.spec.containers[name=app].image`."""
    desired: Any
    live: Any
    manager: str | None


def diff(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[DriftedField]:
    """Every field of `desired` whose value in `live` differs, with who changed it."""
    managers = _managers(live)
    out: list[DriftedField] = []
    for parts, want, got in _walk(desired, live, ()):
        if tuple(p for p in parts if isinstance(p, str)) in _IDENTITY:
            continue
        out.append(DriftedField(format_path(parts), want, None if got is _MISSING else got,
                                _owner(parts, managers)))
    return out


def format_path(parts: tuple[PathPart, ...]) -> str:
    s = ""
    for p in parts:
        if isinstance(p, tuple):
            s += f"[{p[0]}={p[1]}]"
        elif isinstance(p, int):
            s += f"[{p}]"
        else:
            s += f".{p}" if s else p
    return s


def _merge_key(parts: tuple[PathPart, ...], name: str) -> str | None:
    if parts == _SERVICE_PORTS:
        return "port"
    return MERGE_KEYS.get(name)


def _walk(want: Any, got: Any, parts: tuple[PathPart, ...]
          ) -> Iterator[tuple[tuple[PathPart, ...], Any, Any]]:
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            yield parts, want, got
            return
        for k, v in want.items():
            yield from _walk(v, got.get(k, _MISSING), (*parts, k))
        return
    if isinstance(want, list):
        name = parts[-1] if parts and isinstance(parts[-1], str) else ""
        key = _merge_key(parts, name)
        if key and all(isinstance(i, Mapping) and key in i for i in want):
            if not isinstance(got, list):
                yield parts, want, got
                return
            index = {i.get(key): i for i in got if isinstance(i, Mapping)}
            for item in want:
                yield from _walk(item, index.get(item[key], _MISSING),
                                 (*parts, (key, item[key])))
            return
        if not _atomic_equal(want, got):
            yield parts, want, got
        return
    if not _scalar_equal(want, got, _is_quantity(parts)):
        yield parts, want, got


def _is_quantity(parts: tuple[PathPart, ...]) -> bool:
    """Whether the field at `parts` is a resource quantity, which the API server stores
    canonical (`0.5` comes back `500m`): container requests/limits, pod overhead,
    emptyDir sizeLimit. Only there are spellings of one quantity the same value; an env
    var `1000` is not `1k`."""
    if not parts or not isinstance(parts[-1], str):
        return False
    if parts[-1] == "sizeLimit":
        return True
    return len(parts) >= 2 and (parts[-2] == "overhead" or (
        len(parts) >= 3 and parts[-2] in ("requests", "limits") and parts[-3] == "resources"))


def _atomic_equal(want: list[Any], got: Any) -> bool:
    if not isinstance(got, list) or len(got) != len(want):
        return False
    for w, g in zip(want, got, strict=True):
        if isinstance(w, Mapping):
            if not isinstance(g, Mapping) or any(True for _ in _walk(w, g, ())):
                return False
        elif isinstance(w, list):
            if not _atomic_equal(w, g):
                return False
        elif not _scalar_equal(w, g, False):
            return False
    return True


def _scalar_equal(want: Any, got: Any, quantity: bool) -> bool:
    if got is _MISSING:
        return False
    if want == got and type(want) is type(got):
        return True
    if quantity and same_quantity(want, got):
        return True
    # Quantities and int-or-string fields come back in either spelling.
    if isinstance(want, int | float | str) and isinstance(got, int | float | str) \
            and not isinstance(want, bool) and not isinstance(got, bool):
        return str(want) == str(got)
    return False


# --------------------------------------------------------------------------- managers


@dataclass(frozen=True, slots=True)
class _Manager:
    name: str
    operation: str
    time: str
    fields: Mapping[str, Any]


def _managers(live: Mapping[str, Any]) -> list[_Manager]:
    meta = live.get("metadata")
    entries = meta.get("managedFields") if isinstance(meta, Mapping) else None
    out: list[_Manager] = []
    for e in entries or []:
        if not isinstance(e, Mapping) or e.get("manager") == OUR_MANAGER:
            continue
        fields = e.get("fieldsV1")
        out.append(_Manager(str(e.get("manager")), str(e.get("operation", "")),
                            str(e.get("time") or ""),
                            fields if isinstance(fields, Mapping) else {}))
    return out


def _owner(parts: tuple[PathPart, ...], managers: list[_Manager]) -> str | None:
    best: tuple[int, str] | None = None
    for m in managers:
        depth = _claimed_depth(m.fields, parts)
        if depth == len(parts) and (best is None or depth > best[0]):
            best = (depth, m.name)
    if best is not None:
        return best[1]
    writers = sorted((m for m in managers if m.operation == "Update"), key=lambda m: m.time)
    return writers[-1].name if writers else None


def _claimed_depth(fields: Mapping[str, Any], parts: tuple[PathPart, ...]) -> int:
    """How many leading parts of `parts` this manager's FieldsV1 set contains."""
    node: Mapping[str, Any] = fields
    for depth, p in enumerate(parts):
        nxt: Any = None
        if isinstance(p, tuple):
            key, value = p
            for k, v in node.items():
                if k.startswith("k:"):
                    try:
                        item = json.loads(k[2:])
                    except json.JSONDecodeError:
                        continue
                    if isinstance(item, dict) and item.get(key) == value:
                        nxt = v
                        break
        else:
            nxt = node.get(f"f:{p}")
        if not isinstance(nxt, Mapping):
            return depth
        node = nxt
    return len(parts)
