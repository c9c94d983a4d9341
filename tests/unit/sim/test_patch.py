"""The three PATCH flavours pinned against their specs (RFC 7386, RFC 6902, and the
Kubernetes strategic merge patch docs: "Update API Objects in Place Using kubectl patch")."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.errors import PatchError
from clusters.sim.patch import json_patch, list_strategy, merge_patch, strategic_merge_patch

# ------------------------------------------------------------------ RFC 7386

# RFC 7386 Appendix A, every example.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "want"), RFC7386,
                         ids=[f"rfc7386-a{n + 1}" for n in range(len(RFC7386))])
def test_merge_patch_follows_rfc7386_appendix(target: Any, patch: Any, want: Any) -> None:
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == want
    assert target == before, "the target must not be mutated"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)
# Documents without nulls: RFC 7386 cannot express a null value in the result.
null_free = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)
null_free_docs = st.dictionaries(st.text(max_size=3), null_free, max_size=4)


def _merge_diff(a: Any, b: Any) -> Any:
    """The merge patch that turns `a` into `b` (what kubectl computes for `edit`)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b
    out: dict[str, Any] = {k: None for k in a if k not in b}
    for k, v in b.items():
        if k not in a or a[k] != v:
            out[k] = _merge_diff(a.get(k), v)
    return out


@settings(max_examples=200, deadline=None)
@given(null_free_docs, null_free_docs)
def test_merge_patch_of_a_diff_reproduces_the_target(a: dict[str, Any],
                                                      b: dict[str, Any]) -> None:
    assert merge_patch(a, _merge_diff(a, b)) == b


@settings(max_examples=100, deadline=None)
@given(null_free_docs, st.dictionaries(st.text(max_size=3), json_values, max_size=4))
def test_merge_patch_is_idempotent(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(doc, patch)
    assert merge_patch(once, patch) == once


# ------------------------------------------------------------------ RFC 6902

# RFC 6902 Appendix A (A.1-A.10, A.14, A.16) plus the pointer escapes of RFC 6901.
RFC6902_OK = [
    ("A.1-add-object-member", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    ("A.2-add-array-element", {"foo": ["bar", "baz"]},
     [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    ("A.3-remove-object-member", {"baz": "qux", "foo": "bar"},
     [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4-remove-array-element", {"foo": ["bar", "qux", "baz"]},
     [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    ("A.5-replace-value", {"baz": "qux", "foo": "bar"},
     [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
    ("A.6-move-value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7-move-array-element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8-test-success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"},
      {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.10-add-nested-member", {"foo": "bar"},
     [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.14-escape-ordering", {"/": 9, "~1": 10},
     [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ("A.16-add-array-value", {"foo": ["bar"]},
     [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    ("copy-member", {"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}],
     {"a": {"b": 1}, "c": {"b": 1}}),
    ("escaped-slash-in-label-key", {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}},
     [{"op": "replace", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "y"}],
     {"metadata": {"labels": {"app.kubernetes.io/name": "y"}}}),
    ("replace-whole-document", {"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}],
     {"b": 2}),
]


@pytest.mark.parametrize(("target", "ops", "want"), [c[1:] for c in RFC6902_OK],
                         ids=[c[0] for c in RFC6902_OK])
def test_json_patch_follows_rfc6902_appendix(target: Any, ops: list[Any], want: Any) -> None:
    before = copy.deepcopy(target)
    assert json_patch(target, ops) == want
    assert target == before


RFC6902_ERRORS = [
    ("A.9-test-failure", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     422, "test failed"),
    ("A.12-add-to-nonexistent-target", {"foo": "bar"},
     [{"op": "add", "path": "/baz/bat", "value": "qux"}], 422, "does not exist"),
    ("A.13-invalid-op", {"foo": "bar"}, [{"op": "frobnicate", "path": "/foo"}], 422,
     "unknown op"),
    ("A.15-test-compares-types", {"/": 9, "~1": 10},
     [{"op": "test", "path": "/~01", "value": "10"}], 422, "test failed"),
    ("remove-missing-member", {"a": 1}, [{"op": "remove", "path": "/b"}], 422,
     "does not exist"),
    ("replace-missing-member", {"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], 422,
     "does not exist"),
    ("index-out-of-range", {"a": [1]}, [{"op": "add", "path": "/a/5", "value": 2}], 422,
     "out of range"),
    ("leading-zero-index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], 422,
     "not an array index"),
    ("pointer-without-slash", {"a": 1}, [{"op": "remove", "path": "a"}], 422, "JSON pointer"),
    ("add-without-value", {"a": 1}, [{"op": "add", "path": "/b"}], 422, "needs 'value'"),
    ("move-into-own-child", {"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}],
     422, "own child"),
    ("not-a-list", {"a": 1}, {"op": "remove", "path": "/a"}, 400, "list of operations"),
    ("operation-without-path", {"a": 1}, [{"op": "remove"}], 400, "needs 'op' and 'path'"),
]


@pytest.mark.parametrize(("target", "ops", "code", "message"),
                         [c[1:] for c in RFC6902_ERRORS], ids=[c[0] for c in RFC6902_ERRORS])
def test_json_patch_rejects_bad_operations_with_a_reason(target: Any, ops: Any, code: int,
                                                         message: str) -> None:
    """Undecodable patches are 400 BadRequest; ones that cannot apply are 422."""
    with pytest.raises(PatchError, match=message) as err:
        json_patch(target, ops)
    assert err.value.code == code


def test_json_patch_is_all_or_nothing() -> None:
    target = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(target, [{"op": "add", "path": "/b", "value": 2},
                            {"op": "test", "path": "/a", "value": 99}])
    assert target == {"a": 1}


# ------------------------------------------------------------------ strategic merge


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), **extra}}


APP = {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
       "ports": [{"containerPort": 80}]}
SIDE = {"name": "side", "image": "side:1"}

SMP = [
    ("containers-merge-by-name", pod_spec(APP, SIDE),
     pod_spec({"name": "app", "image": "app:2"}),
     pod_spec({**APP, "image": "app:2"}, SIDE)),
    ("new-container-is-appended", pod_spec(APP), pod_spec({"name": "new", "image": "n"}),
     pod_spec(APP, {"name": "new", "image": "n"})),
    ("env-merges-by-name", pod_spec(APP),
     pod_spec({"name": "app", "env": [{"name": "B", "value": "2"}]}),
     pod_spec({**APP, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})),
    ("container-ports-merge-by-containerPort", pod_spec(APP),
     pod_spec({"name": "app", "ports": [{"containerPort": 80, "name": "http"},
                                        {"containerPort": 9090}]}),
     pod_spec({**APP, "ports": [{"containerPort": 80, "name": "http"},
                                {"containerPort": 9090}]})),
    ("service-ports-merge-by-port",
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 9000}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 9000}, {"port": 443}]}}),
    ("volume-mounts-merge-by-mountPath",
     pod_spec({"name": "app", "volumeMounts": [{"mountPath": "/d", "name": "a"}]}),
     pod_spec({"name": "app", "volumeMounts": [{"mountPath": "/d", "readOnly": True}]}),
     pod_spec({"name": "app", "volumeMounts": [{"mountPath": "/d", "name": "a",
                                                "readOnly": True}]})),
    ("tolerations-are-atomic", pod_spec(APP, tolerations=[{"key": "a"}, {"key": "b"}]),
     {"spec": {"tolerations": [{"key": "c"}]}}, pod_spec(APP, tolerations=[{"key": "c"}])),
    ("command-is-atomic", pod_spec({"name": "app", "command": ["a", "b"]}),
     pod_spec({"name": "app", "command": ["c"]}), pod_spec({"name": "app", "command": ["c"]})),
    ("delete-item-by-key", pod_spec(APP, SIDE),
     pod_spec({"name": "side", "$patch": "delete"}), pod_spec(APP)),
    ("replace-whole-list", pod_spec(APP, SIDE),
     pod_spec({"name": "only", "image": "o"}, {"$patch": "replace"}),
     pod_spec({"name": "only", "image": "o"})),
    ("replace-whole-map", {"spec": {"template": {"a": 1, "b": 2}}},
     {"spec": {"template": {"$patch": "replace", "c": 3}}}, {"spec": {"template": {"c": 3}}}),
    ("delete-whole-map", {"spec": {"template": {"a": 1}, "x": 1}},
     {"spec": {"template": {"$patch": "delete"}}}, {"spec": {"x": 1}}),
    ("null-deletes-a-field", {"metadata": {"labels": {"a": "1", "b": "2"}}},
     {"metadata": {"labels": {"a": None}}}, {"metadata": {"labels": {"b": "2"}}}),
    ("node-selector-is-atomic", pod_spec(APP, nodeSelector={"a": "1"}),
     {"spec": {"nodeSelector": {"b": "2"}}}, pod_spec(APP, nodeSelector={"b": "2"})),
    ("finalizers-merge-as-a-set", {"metadata": {"finalizers": ["a", "b"]}},
     {"metadata": {"finalizers": ["b", "c"]}}, {"metadata": {"finalizers": ["a", "b", "c"]}}),
    ("delete-from-primitive-list", {"metadata": {"finalizers": ["a", "b"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
     {"metadata": {"finalizers": ["b"]}}),
    ("retain-keys-drops-the-others",
     {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     {"spec": {"strategy": {"type": "Recreate"}}}),
    ("set-element-order-reorders-named-items", pod_spec(APP, SIDE),
     {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
               "containers": [{"name": "side", "image": "side:2"}]}},
     pod_spec({**SIDE, "image": "side:2"}, APP)),
    ("set-element-order-keeps-server-only-items-in-place",
     pod_spec({"name": "a"}, {"name": "s"}, {"name": "b"}),
     {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}},
     pod_spec({"name": "s"}, {"name": "b"}, {"name": "a"})),
    ("set-element-order-puts-new-named-items-first-in-order",
     pod_spec({"name": "a"}, {"name": "s"}),
     {"spec": {"$setElementOrder/containers": [{"name": "n"}, {"name": "a"}],
               "containers": [{"name": "n"}]}},
     pod_spec({"name": "n"}, {"name": "a"}, {"name": "s"})),
    ("new-map-written-without-directives", {},
     {"spec": {"template": {"$patch": "merge", "a": {"b": None, "c": 1}}}},
     {"spec": {"template": {"a": {"c": 1}}}}),
]


@pytest.mark.parametrize(("target", "patch", "want"), [c[1:] for c in SMP],
                         ids=[c[0] for c in SMP])
def test_strategic_merge_patch_uses_kubernetes_merge_keys(target: Any, patch: Any,
                                                          want: Any) -> None:
    before = copy.deepcopy(target)
    assert strategic_merge_patch(target, patch) == want
    assert target == before


SMP_ERRORS = [
    ("item-without-merge-key", pod_spec(APP), pod_spec({"image": "x"}), "merge key 'name'"),
    ("unknown-directive", {}, {"spec": {"$patch": "explode"}}, "unknown \\$patch"),
    ("not-an-object", {}, ["a"], "JSON object"),
    ("retain-keys-not-a-list", {}, {"spec": {"$retainKeys": "a"}}, "must be a list"),
]


@pytest.mark.parametrize(("target", "patch", "message"), [c[1:] for c in SMP_ERRORS],
                         ids=[c[0] for c in SMP_ERRORS])
def test_strategic_merge_patch_rejects_bad_patches(target: Any, patch: Any,
                                                   message: str) -> None:
    with pytest.raises(PatchError, match=message):
        strategic_merge_patch(target, patch)


@pytest.mark.parametrize(("path", "kind", "keys"), [
    (("spec", "template", "spec", "containers"), "map", ("name",)),
    (("spec", "template", "spec", "containers", "ports"), "map", ("containerPort", "protocol")),
    (("spec", "ports"), "map", ("port", "protocol")),
    (("spec", "containers", "env"), "map", ("name",)),
    (("spec", "tolerations"), "atomic", ()),
    (("spec", "containers", "args"), "atomic", ()),
    (("metadata", "finalizers"), "set", ()),
    (("status", "conditions"), "map", ("type",)),
], ids=["containers", "container-ports", "service-ports", "env", "tolerations", "args",
        "finalizers", "conditions"])
def test_list_strategy_matches_the_kubernetes_types(path: tuple[str, ...], kind: str,
                                                    keys: tuple[str, ...]) -> None:
    strategy = list_strategy(path)
    assert (strategy.kind, strategy.keys) == (kind, keys)
