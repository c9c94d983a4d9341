"""Server-side apply and `metadata.managedFields`, as the API server keeps them. Pure.

Field management is the API server's answer to "who set this field, and may this
writer change it?". Every object carries, per field manager and operation, the set of
fields that manager owns, encoded as FieldsV1: a tree of path elements where `f:name`
is a map field, `k:{"name":"app"}` a list item picked by its list-map keys, `v:"x"` a
member of a set-list, and `.` (or an empty `{}` leaf) means "this node itself".

    apply(live, applied, manager, force=, now=)    PATCH application/apply-patch+yaml
    record_update(old, new, manager, now=)         POST, PUT and the other PATCH types

`apply` merges the applied configuration into the live object (maps recursively,
keyed lists item by item, other lists and atomic maps whole; the same table as the
strategic merge patch, `patch.list_strategy`), and then:

- conflicts: a field the configuration sets to a value that differs from the live one,
  while another manager owns it, is a conflict. Without `force` the apply fails with
  `ApplyConflict` listing each (field, manager); with `force` the applier takes the
  field away from its owner. Equal values are shared, not conflicts.
- removal: a field this manager applied before and omits now is deleted from the
  object unless another manager still owns it (or something inside it).
- idempotence: applying the same configuration again returns the live object as it
  was, managedFields `time` included, so the server can skip the write entirely (no
  resourceVersion, no generation bump, no watch event).

`record_update` is the non-apply side: the fields a write changed (added, modified or
removed) move to that manager's `Update` entry and out of everyone else's, the way
`kubectl edit` (manager `kubectl-edit`) takes a field from an applier; the entry's
`time` moves only when its field set grows, as the API server does.

Neither touches `status` nor the server-set metadata (uid, resourceVersion, generation,
creationTimestamp): those are the server's, and they are never part of a field set.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from clusters.sim import status_strategy
from clusters.sim.errors import ApplyConflict
from clusters.sim.patch import ATOMIC_MAPS, ListStrategy, item_key, list_strategy

Path = tuple[str, ...]
"""Path elements as FieldsV1 spells them: `f:spec`, `k:{"name":"app"}`, `v:"x"`."""

_TOP_IGNORED = frozenset({"apiVersion", "kind", "status"})
_META_IGNORED = frozenset({
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
})
# Maps whose own node is recorded ("." in FieldsV1) when an Update creates them, as the
# API server records free-form string maps (labels, data, resource lists).
_FREE_FORM_MAPS = frozenset({
    "labels", "annotations", "data", "binaryData", "stringData", "limits", "requests",
    "capacity", "allocatable",
})
_MISSING: Any = object()


# ------------------------------------------------------------------ field sets


def _key_element(item: Mapping[str, Any], strategy: ListStrategy) -> str | None:
    """`k:{...}`: the item's list-map keys as sorted compact JSON. Every item of every
    keyed list on every write spells one, and the same few (container names, ports)
    recur, so the spelling is cached by the key values *and their types* (`1` and
    `True` are equal and hash alike, yet JSON spells them apart). Only types whose
    equal values always spell alike are cached: not floats (`0.0 == -0.0`), nor
    subclasses, lists or maps, which are spelled afresh."""
    key = item_key(item, strategy)
    if key is None:
        return None
    types = tuple(map(type, key))
    if _CACHEABLE.issuperset(types):
        return _spelled_key(strategy.keys, key, types)
    return _spell_key(strategy.keys, key)


_CACHEABLE = frozenset({str, int, bool, type(None)})


def _spell_key(names: tuple[str, ...], key: tuple[Any, ...]) -> str:
    return "k:" + json.dumps(dict(zip(names, key, strict=True)),
                             sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1 << 16)
def _spelled_key(names: tuple[str, ...], key: tuple[Any, ...],
                 types: tuple[type, ...]) -> str:
    """`_spell_key`, cached; `types` keeps `1` and `True` apart (bounded: owner
    references are keyed by uid, one per owner)."""
    del types  # part of the cache key only
    return _spell_key(names, key)


def _fields(obj: Any, *, update: bool = False, subresource: str | None = None,
            meta_keys: frozenset[str] | None = None) -> dict[Path, Any]:
    """Every owned path of `obj` mapped to its value: leaves, list items, set members.
    For the `status` subresource the paths under `status` and the metadata its kind's
    status strategy lets a status writer own (`status_strategy.owned`: a Job's
    labels, a Deployment's annotations, none of a custom resource's); for the main
    resource everything but status. `meta_keys`: the status writer's metadata keys to
    walk, when not all it may own (`record_update` skips those a write left as they
    were: their paths are the same on both sides)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, Mapping) and subresource == "status":
        if isinstance(obj.get("status"), Mapping) and obj["status"]:
            _walk(obj["status"], ("status",), ("f:status",), out, update)
        meta = obj.get("metadata")
        if isinstance(meta, Mapping):
            keys = meta_keys if meta_keys is not None else status_strategy.owned(
                str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            mine = {k: v for k, v in meta.items() if k in keys and v} if keys else None
            if mine:
                _walk(mine, ("metadata",), ("f:metadata",), out, update)
        return out
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _TOP_IGNORED:
                continue
            if k == "metadata" and isinstance(v, Mapping):
                meta = {mk: mv for mk, mv in v.items() if mk not in _META_IGNORED}
                if meta:  # name and namespace alone are identity, not owned fields
                    _walk(meta, ("metadata",), ("f:metadata",), out, update)
            else:
                _walk(v, (k,), (f"f:{k}",), out, update)
    return out


def _walk(value: Any, names: tuple[str, ...], prefix: Path, out: dict[Path, Any],
          update: bool) -> None:
    name = names[-1]
    if isinstance(value, Mapping):
        if not value or name in ATOMIC_MAPS:
            out[prefix] = value
            return
        if update and name in _FREE_FORM_MAPS:
            out[prefix] = _MISSING  # the map node itself; its value is its children
        for k, v in value.items():
            _walk(v, (*names, k), (*prefix, f"f:{k}"), out, update)
        return
    if isinstance(value, list):
        strategy = list_strategy(names)
        if strategy.kind == "set" and all(not isinstance(v, dict | list) for v in value):
            for v in value:
                out[(*prefix, "v:" + json.dumps(v, separators=(",", ":")))] = v
            return
        elements = ([_key_element(i, strategy) if isinstance(i, Mapping) else None
                     for i in value] if strategy.kind == "map" else [None])
        if strategy.kind != "map" or None in elements or not value:
            out[prefix] = value
            return
        for element, item in zip(elements, value, strict=True):
            assert element is not None
            item_path = (*prefix, element)
            out[item_path] = _MISSING  # the item itself ("."); compared by its fields
            for k, v in item.items():
                _walk(v, (*names, k), (*item_path, f"f:{k}"), out, update)
        return
    out[prefix] = value


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a set of paths as a FieldsV1 tree (`.` marks a node that is a member),
    every level's keys sorted, as the API server serialises it.

    Built in one pass over the sorted paths instead of sorting the tree afterwards
    (`_to_fields_v1_resorted`, which every create and update paid for): in sorted
    order a node's children first appear in their own order, so each dict is filled
    in sorted order; a path is followed directly by the paths inside it, so whether a
    member needs its `.` is known when it is reached, and `.` comes first, before
    every `f:`/`k:`/`v:`/`i:` sibling. An element that would sort before (or be) `.`
    breaks that last step, so such a set takes the resorting way."""
    ordered = sorted(set(paths))
    root: dict[str, Any] = {}
    last = len(ordered) - 1
    for n, path in enumerate(ordered):
        node = root
        for element in path:
            if element <= ".":
                return _to_fields_v1_resorted(ordered)
            child = node.get(element)
            if child is None:
                child = node[element] = {}
            node = child
        if n < last:
            after = ordered[n + 1]
            if len(after) > len(path) and after[:len(path)] == path:
                node["."] = {}
    return root


def _to_fields_v1_resorted(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    members: list[dict[str, Any]] = []
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        members.append(node)
    for node in members:
        if node:
            node["."] = {}
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(node[k]) for k in sorted(node)}


def from_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    """Decode a FieldsV1 tree into its set of paths."""
    out: set[Path] = set()
    for element, child in tree.items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if not isinstance(child, Mapping) or not child:
            out.add(path)
        else:
            out |= from_fields_v1(child, path)
    return out


def format_path(path: Path) -> str:
    """The API server's spelling: `.spec.containers[name="app"].image`."""
    s = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            s += "." + rest
        elif kind == "k":
            try:
                keys = json.loads(rest)
                s += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
            except (ValueError, AttributeError):
                s += f"[{rest}]"
        elif kind == "v":
            s += f"[={rest}]"
        else:
            s += f"[{element}]"
    return s


# ------------------------------------------------------------------ managedFields


Entry = dict[str, Any]


def _entries(obj: Mapping[str, Any] | None) -> list[tuple[Entry, set[Path]]]:
    meta = (obj or {}).get("metadata")
    raw = meta.get("managedFields") if isinstance(meta, Mapping) else None
    out: list[tuple[Entry, set[Path]]] = []
    for e in raw or []:
        if isinstance(e, Mapping) and e.get("manager") is not None:
            fields = e.get("fieldsV1")
            out.append((dict(e), from_fields_v1(fields) if isinstance(fields, Mapping)
                        else set()))
    return out


def _owned_under(paths: set[Path], path: Path) -> bool:
    """Whether `paths` holds `path` or anything inside it."""
    n = len(path)
    return any(p[:n] == path for p in paths)


def _encode(entries: list[tuple[Entry, set[Path]]]) -> list[Entry]:
    out = []
    for entry, paths in entries:
        if not paths:
            continue  # a manager that owns nothing disappears, as on a real server
        e = dict(entry)
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = to_fields_v1(paths)
        out.append(e)
    return out


def _with_managed(obj: dict[str, Any], entries: list[tuple[Entry, set[Path]]]
                  ) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    encoded = _encode(entries)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    obj["metadata"] = meta
    return obj


def _strip_managed(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(obj or {})
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


# ------------------------------------------------------------------ apply


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str, *,
          force: bool, now: str, subresource: str | None = None) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: create it).

    `subresource="status"` is an apply to `/status`: the configuration's status and
    the metadata its kind's status strategy takes from a request
    (`status_strategy.taken`) are applied, the rest dropped as the strategy would
    reset it, and the manager's entry carries `subresource: status`."""
    config = _omit_empty(applied, "")
    if subresource == "status":
        sent = config.get("metadata")
        keys = status_strategy.taken(str(config.get("apiVersion", "")),
                                     str(config.get("kind", "")))
        config = {k: v for k, v in config.items() if k in ("apiVersion", "kind", "status")}
        if isinstance(sent, dict):
            meta = {k: v for k, v in sent.items()
                    if k in keys or k in ("name", "namespace")}
            if meta:
                config["metadata"] = meta
    else:
        config.pop("status", None)  # applies to the main resource never write status
    if isinstance(config.get("metadata"), dict):
        config["metadata"].pop("managedFields", None)
    entries = _entries(live)
    mine = ("Apply", manager)
    previous: set[Path] = set()
    position: int | None = None
    for n, (entry, paths) in enumerate(entries):
        if (entry.get("operation"), entry.get("manager")) == mine \
                and entry.get("subresource") == subresource:
            previous, position = paths, n
    others = [(e, p) for n, (e, p) in enumerate(entries) if n != position]

    applied_fields = _fields(config, subresource=subresource)
    live_fields = _fields(live, subresource=subresource)
    conflicts: list[tuple[Path, str]] = []
    for path, value in applied_fields.items():
        if value is _MISSING:
            continue
        current = live_fields.get(path, _MISSING)
        if current is _MISSING or current == value:
            continue
        conflicts += [(path, str(e["manager"])) for e, p in others
                      if path in p and e["manager"] != manager]
    if conflicts and not force:
        raise _conflict_error(conflicts, others)
    for path, _ in conflicts:
        for _, paths in others:
            paths.discard(path)

    # A deep copy: removal below edits in place, and the caller's live object (the
    # store's) must never change under it.
    merged = _merge(copy.deepcopy(_strip_managed(live)), config, ())
    new_set = set(applied_fields)
    owned_by_others: set[Path] = set().union(*(p for _, p in others)) if others else set()
    for path in sorted(previous - new_set, key=len, reverse=True):
        if _owned_under(new_set, path) or _owned_under(owned_by_others, path):
            continue
        if _is_key_field(path):
            continue  # an item's key goes with the item, not on its own
        _delete(merged, path)

    unchanged = merged == _strip_managed(live) and new_set == previous
    if live is not None and unchanged and not conflicts:
        return copy.deepcopy(live)
    mine_entry: Entry = {"manager": manager, "operation": "Apply",
                         "apiVersion": str(config.get("apiVersion", "")), "time": now}
    if subresource:
        mine_entry["subresource"] = subresource
    result_entries = list(others)
    if position is None:
        result_entries.append((mine_entry, new_set))
    else:
        result_entries.insert(position, (mine_entry, new_set))
    return _with_managed(merged, result_entries)


def _conflict_error(conflicts: list[tuple[Path, str]],
                    entries: list[tuple[Entry, set[Path]]]) -> ApplyConflict:
    """The 409, worded as kube-apiserver's `printManager`: an Update manager is named
    with the version it wrote (`"kubectl-edit" using v1`), an applier by name alone."""
    err = ApplyConflict(conflicts=sorted((format_path(p), m) for p, m in conflicts))
    using = {str(e["manager"]): str(e.get("apiVersion", "")) for e, _ in entries
             if e.get("operation") == "Update"}
    for mgr, version in using.items():
        if any(m == mgr for _, m in conflicts):
            label = f'"{mgr}" using {version}'
            err.message = err.message.replace(f'"{mgr}"', label)
            for cause in (err.details or {}).get("causes", []):
                cause["message"] = cause["message"].replace(f'"{mgr}"', label)
    err.args = (err.message,)
    return err


def _omit_empty(value: Any, name: str) -> Any:
    """A deep copy without empty lists and string maps, as the server decodes the
    configuration into Go types with `omitempty`: `env: []` sets nothing."""
    if isinstance(value, dict):
        return {k: _omit_empty(v, k) for k, v in value.items()
                if not (v == [] or (v == {} and k in _OMIT_EMPTY_MAPS))}
    if isinstance(value, list):
        return [_omit_empty(v, name) for v in value]
    return value


def _merge(live: Any, applied: Any, names: tuple[str, ...]) -> Any:
    if isinstance(applied, Mapping):
        if not isinstance(live, Mapping) or (names and names[-1] in ATOMIC_MAPS):
            return copy.deepcopy(dict(applied))
        out = dict(live)
        for k, v in applied.items():
            out[k] = _merge(live.get(k, _MISSING), v, (*names, k))
        return out
    if isinstance(applied, list) and isinstance(live, list):
        strategy = list_strategy(names)
        if strategy.kind == "set":
            return list(live) + [v for v in applied if v not in live]
        if strategy.kind == "map" and all(
                isinstance(i, Mapping) and item_key(i, strategy) is not None for i in applied):
            out_items = list(live)
            for item in applied:
                key = item_key(item, strategy)
                at = next((n for n, cur in enumerate(out_items) if isinstance(cur, Mapping)
                           and item_key(cur, strategy) == key), None)
                if at is None:
                    out_items.append(copy.deepcopy(item))
                else:
                    out_items[at] = _merge(out_items[at], item, names)
            return out_items
    return copy.deepcopy(applied)


def _is_key_field(path: Path) -> bool:
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    try:
        keys = json.loads(path[-2][2:])
    except ValueError:
        return False
    return isinstance(keys, dict) and path[-1][2:] in keys


def _delete(obj: Any, path: Path) -> None:
    """Remove the node at `path` from `obj` in place; a missing node is no error.

    A list or a string map left empty goes too, as Go's `omitempty` drops it when the
    server encodes the object (`env: []` and `labels: {}` are never stored).
    """
    chain = [obj]
    for element in path[:-1]:
        chain.append(_child(chain[-1], element))
        if chain[-1] is _MISSING:
            return
    for depth in range(len(path) - 1, -1, -1):
        node, element = chain[depth], path[depth]
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(node, dict):
            node.pop(rest, None)
        elif kind in ("k", "v") and isinstance(node, list):
            at = _find(node, element)
            if at is not None:
                node.pop(at)
        parent_name = path[depth - 1].partition(":")[2] if depth else ""
        emptied = node == [] or (node == {} and parent_name in _OMIT_EMPTY_MAPS)
        if not (depth and emptied):
            return


_OMIT_EMPTY_MAPS = _FREE_FORM_MAPS | ATOMIC_MAPS


def _child(node: Any, element: str) -> Any:
    kind, _, rest = element.partition(":")
    if kind == "f":
        return node.get(rest, _MISSING) if isinstance(node, dict) else _MISSING
    if isinstance(node, list):
        at = _find(node, element)
        return _MISSING if at is None else node[at]
    return _MISSING


def _find(items: list[Any], element: str) -> int | None:
    kind, _, rest = element.partition(":")
    try:
        want = json.loads(rest)
    except ValueError:
        return None
    for n, item in enumerate(items):
        if kind == "v" and item == want:
            return n
        # Keys the item leaves out take their server default (protocol: TCP).
        if kind == "k" and isinstance(item, Mapping) and isinstance(want, dict) and all(
                item.get(k, v if k == "protocol" else _MISSING) == v
                for k, v in want.items()):
            return n
    return None


# ------------------------------------------------------------------ update


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, *,
                  now: str, subresource: str | None = None) -> dict[str, Any]:
    """`new` with managedFields after a non-apply write by `manager` changed `old`
    (through `subresource`, e.g. `status`, whose entry is kept apart and owns only the
    status fields it changed).

    The answer is what decoding every entry, moving the changed paths and encoding every
    entry again gives (`tests/unit/sim/test_ssa_update.py` holds that algorithm and
    compares), computed for less, since a controller's status write changes a few
    paths and most entries (the applier's big spec entry) lose none:
    - an entry is decoded only when one of the paths the write moves is in it
      (`_holds` looks each up in its FieldsV1 tree);
    - an entry of the stored object whose paths stay as they were keeps its stored
      FieldsV1, which every path into the store produced with `to_fields_v1` (or
      copied from a stored object), so it is already the canonical encoding; entries a
      client sent are encoded again, as they may not be;
    - the object is copied at its top and its metadata (which this function and
      the store then write), not deeply: its other parts are shared with `new`, and the
      store never changes a stored object's parts in place."""
    keys: frozenset[str] | None = None
    if subresource == "status":
        # metadata a status write left as it was moves no field: not walked (the
        # kubelet's and the controllers' status writes change none)
        old_meta = (old or {}).get("metadata") or {}
        new_meta = new.get("metadata") or {}
        keys = frozenset(k for k in status_strategy.owned(
            str(new.get("apiVersion", "")), str(new.get("kind", "")))
            if old_meta.get(k) != new_meta.get(k))
    before = _fields(old, update=True, subresource=subresource, meta_keys=keys)
    after = _fields(new, update=True, subresource=subresource, meta_keys=keys)
    added = after.keys() - before.keys()
    removed = before.keys() - after.keys()
    modified = {p for p, v in after.items()
                if v is not _MISSING and p in before and v != before[p]}
    changed = added | modified
    gained = changed - removed
    moved = changed | removed

    raw, stored = _base_managed(old, new)
    result: list[Entry] = []
    found = False
    for e in raw:
        if not isinstance(e, Mapping) or e.get("manager") is None:
            continue
        tree = e.get("fieldsV1")
        if not isinstance(tree, Mapping) or not tree:
            tree = {}  # owns nothing: decodes to no paths
        entry: Entry = dict(e)
        mine = e.get("manager") == manager and e.get("operation") == "Update" \
            and e.get("subresource") == subresource
        if mine:
            found = True
            grows = any(not _holds(tree, p) for p in gained)
            same = not grows and not any(_holds(tree, p) for p in removed)
            if grows:
                entry["time"] = now
            entry["apiVersion"] = str(new.get("apiVersion", entry.get("apiVersion", "")))
            paths = None if same else \
                (from_fields_v1(tree) | changed) - removed
        else:
            same = not any(_holds(tree, p) for p in moved)
            paths = None if same else from_fields_v1(tree) - moved
        if same:
            if not tree:
                continue  # a manager that owns nothing disappears, as on a real server
            entry["fieldsType"] = "FieldsV1"
            entry["fieldsV1"] = tree if stored else to_fields_v1(from_fields_v1(tree))
        elif paths:
            entry["fieldsType"] = "FieldsV1"
            entry["fieldsV1"] = to_fields_v1(paths)
        else:
            continue
        result.append(entry)
    if not found and changed:
        entry = {"manager": manager, "operation": "Update",
                 "apiVersion": str(new.get("apiVersion", "")), "time": now}
        if subresource:
            entry["subresource"] = subresource
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = to_fields_v1(changed)
        result.append(entry)
    out = dict(new)
    meta = out["metadata"] = dict(new.get("metadata") or {})
    if result:
        meta["managedFields"] = result
    else:
        meta.pop("managedFields", None)
    return out


def _holds(tree: Mapping[str, Any], path: Path) -> bool:
    """Whether `from_fields_v1(tree)` holds `path` (not empty, no `.` element, as
    `_fields` makes them), found without decoding the tree: the node at `path` exists
    and is a leaf (empty or not a map) or is marked a member with `.`."""
    node: Any = tree
    for element in path:
        if not isinstance(node, Mapping):
            return False
        node = node.get(element, _MISSING)
        if node is _MISSING:
            return False
    return not isinstance(node, Mapping) or not node or "." in node


def _base_managed(old: Mapping[str, Any] | None, new: Mapping[str, Any]
                  ) -> tuple[list[Any], bool]:
    """The managedFields an update starts from, undecoded, and whether they are the
    stored object's (canonically encoded) rather than a client's. Per the "Clearing
    managedFields" rules: `[{}]` resets them (this writer then owns just what it
    changed), an empty list or none keeps the server's (clients unaware of the field
    never strip it), and any other list the client sent replaces them."""
    def managed(o: Mapping[str, Any] | None) -> Any:
        meta = (o or {}).get("metadata")
        return meta.get("managedFields") if isinstance(meta, Mapping) else None
    sent = managed(new)
    if sent == [{}]:
        return [], False
    if sent and sent != managed(old):
        return list(sent), False
    return list(managed(old) or []), True
