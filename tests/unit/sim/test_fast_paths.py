"""The simulator's faster spellings give exactly the answers of the plain ones they
replaced (kept here): the key and the `k:{...}` element of a keyed-list item, the FieldsV1
encoding of a path set, a Node's readiness, the objects an owner controls, and a
namespace's listing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim import nodes, ssa
from clusters.sim.controllers import controlled_by
from clusters.sim.patch import ListStrategy, item_key
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store


def old_key_element(item: Mapping[str, Any], strategy: ListStrategy) -> str | None:
    key = old_item_key(item, strategy)
    if key is None:
        return None
    return "k:" + json.dumps(dict(zip(strategy.keys, key, strict=True)),
                             sort_keys=True, separators=(",", ":"))


def old_item_key(item: Mapping[str, Any], strategy: ListStrategy) -> tuple[Any, ...] | None:
    if strategy.keys[0] not in item:
        return None
    defaults = dict(strategy.defaults)
    return tuple(item.get(k, defaults.get(k)) for k in strategy.keys)


def old_to_fields_v1(paths: Iterable[ssa.Path]) -> dict[str, Any]:
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
    return old_sorted(root)


def old_sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: old_sorted(node[k]) for k in sorted(node)}


def old_is_ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


def spelled(tree: Any) -> str:
    """Byte-level: key order included (== on dicts ignores it)."""
    return json.dumps(tree)


NAMES = st.text(min_size=1, max_size=6)
# Values that are equal across types (1, True, 1.0; 0.0, -0.0) are drawn from one small
# pool so the cache sees them in turn.
SCALARS = st.one_of(
    st.sampled_from([0, 1, True, False, 1.0, 0.0, -0.0, None, "1", "True", "", "é",
                     "\u2603", '"q"', "a\\b"]),
    st.text(max_size=5), st.integers(), st.booleans(), st.floats(allow_nan=False))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2),
                   st.dictionaries(NAMES, SCALARS, max_size=2))


@st.composite
def keyed(draw: st.DrawFn) -> tuple[list[dict[str, Any]], ListStrategy]:
    keys = tuple(draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)))
    defaults = tuple((k, draw(SCALARS)) for k in keys[1:] if draw(st.booleans()))
    strategy = ListStrategy("map", keys, defaults)
    items = draw(st.lists(st.dictionaries(st.sampled_from([*keys, "other"]), VALUES),
                          max_size=8))
    return items, strategy


@settings(max_examples=400)
@given(keyed())
def test_key_element_spells_as_json_dumps(case: tuple[list[dict[str, Any]], ListStrategy]
                                          ) -> None:
    items, strategy = case
    for item in items:
        assert item_key(item, strategy) == old_item_key(item, strategy)
        assert ssa._key_element(item, strategy) == old_key_element(item, strategy)


def test_key_element_cache_keeps_equal_values_of_other_types_apart() -> None:
    strategy = ListStrategy("map", ("port",))
    spelled_ = [ssa._key_element({"port": v}, strategy) for v in (1, True, 1.0, 1, True)]
    assert spelled_ == ['k:{"port":1}', 'k:{"port":true}', 'k:{"port":1.0}',
                        'k:{"port":1}', 'k:{"port":true}']
    assert [ssa._key_element({"port": v}, strategy) for v in (0.0, -0.0)] == \
        ['k:{"port":0.0}', 'k:{"port":-0.0}']


ELEMENTS = st.one_of(
    st.sampled_from(["f:spec", "f:metadata", "f:a", "f:b", "f:a.b", "k:{\"name\":\"x\"}",
                     "k:{\"name\":\"é\"}", "v:\"x\"", "v:1", "i:0", "f:", "k:{}"]),
    st.builds(lambda p, s: p + s, st.sampled_from(["f:", "k:", "v:", "i:"]),
              st.text(max_size=4)),
    # elements sorting before or at "." take the resorting way: they must agree too
    st.sampled_from([".", "", "-", "!", "+x", ".a", "/"]))
PATHS = st.lists(st.lists(ELEMENTS, max_size=4).map(tuple), max_size=25)


@settings(max_examples=600)
@given(PATHS)
def test_to_fields_v1_matches_the_resorted_tree(paths: list[ssa.Path]) -> None:
    assert spelled(ssa.to_fields_v1(paths)) == spelled(old_to_fields_v1(paths))
    assert spelled(ssa.to_fields_v1(set(paths))) == spelled(old_to_fields_v1(set(paths)))


@settings(max_examples=300)
@given(st.lists(st.lists(st.sampled_from(["f:a", "f:b", "k:{\"n\":1}", "v:\"x\""]),
                         max_size=5).map(tuple), max_size=30))
def test_to_fields_v1_of_nested_members(paths: list[ssa.Path]) -> None:
    """Dense sets over few elements: members inside members, the root included."""
    assert spelled(ssa.to_fields_v1(paths)) == spelled(old_to_fields_v1(paths))


def test_to_fields_v1_round_trips_an_object() -> None:
    obj = {"metadata": {"labels": {"app": "x"}},
           "spec": {"containers": [{"name": "b", "image": "i", "ports": [
               {"containerPort": 80}]}, {"name": "a", "image": "j"}]}}
    paths = set(ssa._fields(obj, update=True))
    tree = ssa.to_fields_v1(paths)
    assert spelled(tree) == spelled(old_to_fields_v1(paths))
    assert ssa.from_fields_v1(tree) == paths


CONDITIONS = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["Ready", "MemoryPressure", "DiskPressure", "ready"]),
    "status": st.sampled_from(["True", "False", "Unknown", "true"])}), max_size=5)


@given(st.one_of(st.just({}), st.just({"status": {}}),
                 CONDITIONS.map(lambda cs: {"status": {"conditions": cs}})))
def test_is_ready_as_any_over_conditions(node: dict[str, Any]) -> None:
    assert nodes.is_ready(node) == old_is_ready(node)


def old_owned(objs: list[dict[str, Any]], uid: str) -> list[dict[str, Any]]:
    return [p for p in objs
            if any(r.get("uid") == uid and r.get("controller")
                   for r in p["metadata"].get("ownerReferences") or [])]


REFS = st.lists(st.dictionaries(
    st.sampled_from(["uid", "controller", "kind"]),
    st.one_of(st.sampled_from(["u1", "u2", ""]), st.booleans(), st.none())), max_size=3)
OBJS: st.SearchStrategy[list[dict[str, Any]]] = st.lists(st.one_of(
    st.just({"metadata": {}}),
    REFS.map(lambda refs: {"metadata": {"ownerReferences": refs}})), max_size=8)


@given(OBJS, st.sampled_from(["u1", "u2", ""]))
def test_controlled_by_as_the_comprehension(objs: list[dict[str, Any]], uid: str) -> None:
    got, want = controlled_by(objs, uid), old_owned(objs, uid)
    assert [id(o) for o in got] == [id(o) for o in want]


PODS = BY_KIND["Pod"]


def old_list(t: dict[tuple[str, str], Any], ns: str | None) -> list[Any]:
    out = []
    for k in sorted(t):
        if ns is not None and k[0] != ns:
            continue
        out.append(t[k])
    return out


@given(st.dictionaries(st.tuples(st.sampled_from(["", "a", "b", "é"]), st.text(max_size=3)),
                       st.integers().map(lambda n: {"n": n})),
       st.one_of(st.none(), st.sampled_from(["", "a", "b", "c"])))
def test_store_list_as_sorting_the_whole_table(t: dict[tuple[str, str], dict[str, Any]],
                                               ns: str | None) -> None:
    store = Store("s")
    store.data[PODS] = dict(t)
    assert [id(o) for o in store.list(PODS, ns)] == [id(o) for o in old_list(t, ns)]
