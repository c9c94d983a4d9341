"""The three PATCH flavours of the Kubernetes API, as pure functions over dicts.

    merge_patch             application/merge-patch+json       RFC 7386
    json_patch              application/json-patch+json        RFC 6902
    strategic_merge_patch   application/strategic-merge-patch+json

A real API server knows, from the Go struct tags of each type, which lists merge item
by item (`patchStrategy:"merge"` with a `patchMergeKey`) and which are replaced whole.
The simulator has no Go types, so `list_strategy` encodes that knowledge for the fields
our workloads use, by field name and the path that leads to it: containers, env,
volumes by `name`, volumeMounts by `mountPath`, container ports by `containerPort`,
Service ports by `port`, conditions by `type`, finalizers as a merged set; everything
else (command, args, tolerations, envFrom) is atomic. Server-side apply (`ssa.py`)
reads the same table for its list-map keys, so the two write paths agree on which list
item is "the same" item.

Every function returns a new object and leaves its arguments untouched; a patch that
cannot apply raises `PatchError` with a message naming the offending path, which the
server turns into a 422 (or 400 for malformed JSON patch operations).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusters.sim.errors import PatchError

# ------------------------------------------------------------------ list strategies

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
_BY_NAME = _CONTAINER_LISTS | {"env", "volumes", "imagePullSecrets", "resourceClaims"}


@dataclass(frozen=True, slots=True)
class ListStrategy:
    """How a list field merges: `map` (items by `keys`), `set` (scalars), or `atomic`.

    `keys[0]` is the strategic-merge `patchMergeKey`; server-side apply keys items by
    all of `keys` (its `x-kubernetes-list-map-keys`), filling `defaults` for a key the
    item leaves out, as the API server's defaulting does (`protocol: TCP`).
    """

    kind: str
    keys: tuple[str, ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()


_ATOMIC = ListStrategy("atomic")
_SET = ListStrategy("set")


def list_strategy(path: tuple[str, ...]) -> ListStrategy:
    """The merge strategy of the list at `path` (field names from the object root)."""
    name = path[-1] if path else ""
    parent = path[-2] if len(path) > 1 else ""
    if name in _BY_NAME:
        return ListStrategy("map", ("name",))
    if name == "ports":
        if parent in _CONTAINER_LISTS:
            return ListStrategy("map", ("containerPort", "protocol"), (("protocol", "TCP"),))
        if path == ("spec", "ports"):
            return ListStrategy("map", ("port", "protocol"), (("protocol", "TCP"),))
        return _ATOMIC
    if name == "volumeMounts":
        return ListStrategy("map", ("mountPath",))
    if name == "volumeDevices":
        return ListStrategy("map", ("devicePath",))
    if name == "conditions" or (name == "addresses" and parent == "status"):
        return ListStrategy("map", ("type",))
    if name == "ownerReferences":
        return ListStrategy("map", ("uid",))
    if name == "hostAliases":
        return ListStrategy("map", ("ip",))
    if name == "topologySpreadConstraints":
        return ListStrategy("map", ("topologyKey", "whenUnsatisfiable"))
    if name == "finalizers" and path == ("metadata", "finalizers"):
        return _SET
    return _ATOMIC


ATOMIC_MAPS = frozenset({"selector", "nodeSelector"})
"""Map fields the API server treats as one value (`+mapType=atomic` / `structType=atomic`)."""


def item_key(item: Mapping[str, Any], strategy: ListStrategy) -> tuple[Any, ...] | None:
    """The identity of a keyed-list item, or None when its merge key is missing."""
    if strategy.keys[0] not in item:
        return None
    if not strategy.defaults:  # most lists (by name); no dict to build for each item
        return tuple([item.get(k) for k in strategy.keys])
    defaults = dict(strategy.defaults)
    return tuple(item.get(k, defaults.get(k)) for k in strategy.keys)


# ------------------------------------------------------------------ RFC 7386


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, lists replace."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ------------------------------------------------------------------ RFC 6902


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PatchError(f"invalid JSON pointer {pointer!r}: must be '' or start with '/'")
    return [_unescape(t) for t in pointer.split("/")[1:]] if pointer else []


def _index(container: list[Any], token: str, pointer: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{pointer}: {token!r} is not an array index")
    i = int(token)
    if i > len(container) or (not adding and i == len(container)):
        raise PatchError(f"{pointer}: index {i} is out of range (length {len(container)})")
    return i


def _parent(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, dict):
            if t not in node:
                raise PatchError(f"{pointer}: path does not exist (no {t!r})")
            node = node[t]
        elif isinstance(node, list):
            node = node[_index(node, t, pointer, adding=False)]
        else:
            raise PatchError(f"{pointer}: cannot descend into a {type(node).__name__}")
    return node


def _get(doc: Any, pointer: str) -> Any:
    tokens = _pointer(pointer)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, pointer), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{pointer}: path does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, pointer, adding=False)]
    raise PatchError(f"{pointer}: cannot descend into a {type(parent).__name__}")


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _pointer(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, tokens, pointer), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{pointer}: cannot remove, path does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, pointer, adding=False))
    raise PatchError(f"{pointer}: cannot remove from a {type(parent).__name__}")


def _add(doc: Any, pointer: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(pointer)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, pointer), tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"{pointer}: cannot replace, path does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, pointer, adding=False)] = value
        else:
            parent.insert(_index(parent, last, pointer, adding=True), value)
    else:
        raise PatchError(f"{pointer}: cannot add to a {type(parent).__name__}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: apply `ops` in order; all or nothing.

    As kube-apiserver sorts them: a patch that does not decode (not a list of objects
    with `op` and `path`) is 400 BadRequest; one that decodes but cannot apply (missing
    path, failed test, unknown op) is 422, like `errors.NewGenericServerResponse(422)`.
    """
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    for n, op in enumerate(ops):
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {n}: needs 'op' and 'path'")
    doc = copy.deepcopy(target)
    try:
        for n, op in enumerate(ops):
            doc = _json_op(doc, n, op)
    except PatchError as e:
        raise PatchError(e.message, invalid=True) from None
    return doc


def _json_op(doc: Any, n: int, op: Mapping[str, Any]) -> Any:
    kind, path = op["op"], op["path"]
    if kind in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"operation {n} ({kind} {path}): needs 'value'")
    if kind in ("move", "copy") and "from" not in op:
        raise PatchError(f"operation {n} ({kind} {path}): needs 'from'")
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op["value"]))
    if kind == "remove":
        _remove(doc, path)
    elif kind == "replace":
        return _add(doc, path, copy.deepcopy(op["value"]), replace=True)
    elif kind == "move":
        src = op["from"]
        if isinstance(src, str) and isinstance(path, str) and path.startswith(src + "/"):
            raise PatchError(f"operation {n}: cannot move {src} into its own child {path}")
        if src != path:
            return _add(doc, path, _remove(doc, src))
    elif kind == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
    elif kind == "test":
        if not _json_equal(_get(doc, path), op["value"]):
            raise PatchError(f"operation {n}: test failed, {path} is not {op['value']!r}")
    else:
        raise PatchError(f"operation {n}: unknown op {kind!r}")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but true != 1.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or (
        isinstance(a, int | float) and isinstance(b, int | float)
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


# ------------------------------------------------------------------ strategic merge

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch over the known list strategies."""
    if not isinstance(patch, Mapping):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _smp_map(target if isinstance(target, Mapping) else {}, patch, ())
    return {} if result is _DELETED else result


_DELETED: Any = object()


def _smp_map(live: Mapping[str, Any], patch: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    where = ".".join(path) or "<root>"
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return _strip(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"{where}: unknown $patch directive {directive!r}")
    out = copy.deepcopy(dict(live))
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN) or key.startswith(_ORDER_PREFIX):
            continue  # $setElementOrder applies below, once the list is merged
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if not isinstance(value, list):
                raise PatchError(f"{where}: {key} must be a list")
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = (*path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            if key in ATOMIC_MAPS and value.get(_DIRECTIVE) is None:
                out[key] = _strip(value)
                continue
            cur = out.get(key)
            merged = _smp_map(cur if isinstance(cur, Mapping) else {}, value, sub)
            if merged is _DELETED:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _smp_list(out.get(key), value, sub)
        else:
            out[key] = value
    for key, order in patch.items():
        field = key[len(_ORDER_PREFIX):]
        if key.startswith(_ORDER_PREFIX) and isinstance(out.get(field), list):
            if not isinstance(order, list):
                raise PatchError(f"{where}: {key} must be a list")
            original = live.get(field)
            out[field] = _set_element_order(out[field], order, original if isinstance(
                original, list) else [], list_strategy((*path, field)))
    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"{where}: $retainKeys must be a list")
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _smp_list(live: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    where = ".".join(path)
    replace = [i for i in patch if isinstance(i, Mapping) and i.get(_DIRECTIVE) == "replace"]
    if replace:
        return [_strip(i) for i in patch if i not in replace]
    strategy = list_strategy(path)
    current = list(live) if isinstance(live, list) else []
    if strategy.kind == "set":
        return current + [v for v in patch if v not in current]
    if strategy.kind == "atomic":
        return [_strip(i) if isinstance(i, Mapping) else i for i in patch]
    merge_key = strategy.keys[0]
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, Mapping) or merge_key not in item:
            raise PatchError(f"{where}: item {item!r} does not contain declared merge key "
                             f"{merge_key!r}")
        at = next((n for n, cur in enumerate(out)
                   if isinstance(cur, Mapping) and cur.get(merge_key) == item[merge_key]),
                  None)
        if item.get(_DIRECTIVE) == "delete":
            if at is not None:
                out.pop(at)
            continue
        if at is None:
            out.append(_strip(item))
        else:
            merged = _smp_map(out[at], item, path)
            if merged is _DELETED:
                out.pop(at)
            else:
                out[at] = merged
    return out


def _identity(item: Any, strategy: ListStrategy) -> Any:
    if strategy.kind == "map" and isinstance(item, Mapping):
        return item.get(strategy.keys[0])
    return json.dumps(item, sort_keys=True)


def _set_element_order(merged: list[Any], order: list[Any], original: list[Any],
                       strategy: ListStrategy) -> list[Any]:
    """`$setElementOrder`, as apimachinery's normalizeElementOrder/mergeSortedSlice: the
    items the order names come in that order; each item only the server has keeps its
    live order and goes before the first named item that stood after it live (a named
    item new to the list counts as after nothing, so it goes first)."""
    wanted = [_identity(i, strategy) for i in order]
    live_at = {_identity(i, strategy): n for n, i in enumerate(original)}
    named = sorted((i for i in merged if _identity(i, strategy) in wanted),
                   key=lambda i: wanted.index(_identity(i, strategy)))
    server_only = sorted((i for i in merged if _identity(i, strategy) not in wanted),
                         key=lambda i: live_at.get(_identity(i, strategy), len(original)))
    out: list[Any] = []
    j = 0
    for item in server_only:
        li = live_at.get(_identity(item, strategy))
        while j < len(named):
            ri = live_at.get(_identity(named[j], strategy))
            if li is not None and ri is not None and li < ri:
                break  # the server-only item stood before this one: it goes first
            out.append(named[j])
            j += 1
        out.append(item)
    return out + named[j:]


def _strip(value: Any) -> Any:
    """A patch value with directives and nulls removed, as the server stores it."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items()
                if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
