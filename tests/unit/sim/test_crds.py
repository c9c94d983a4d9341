"""CRDs in the simulator: one cluster's registry, pruning, defaulting, schema causes."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from clusters.sim import SimCluster, SimClusterSpec
from clusters.sim.api import parse_path
from clusters.sim.crds import CRDS, prune_and_default, validate_crd, validate_value
from clusters.sim.errors import SimError
from clusters.sim.resources import resource_list, served_as, version_priority

SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "size": {"type": "integer"},
        "mode": {"type": "string", "default": "fast"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "port": {"x-kubernetes-int-or-string": True},
        "tags": {"type": "array", "items": {"type": "string"}},
    }}}}


def _crd(versions: tuple[str, ...] = ("v1",), group: str = "example.aifleet.dev"
         ) -> dict[str, Any]:
    return {"metadata": {"name": f"widgets.{group}"}, "spec": {
        "group": group, "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": v, "served": True, "storage": i == 0,
                      "schema": {"openAPIV3Schema": SCHEMA}}
                     for i, v in enumerate(versions)]}}


def test_a_crd_serves_its_kind_on_its_own_cluster_only() -> None:
    one, two = SimCluster(SimClusterSpec("one", ())), SimCluster(SimClusterSpec("two", ()))
    one.store.create(CRDS, _crd(("v1beta1", "v1")))
    assert parse_path("/apis/example.aifleet.dev/v1/namespaces/a/widgets",
                      one.store.resources) is not None
    assert parse_path("/apis/example.aifleet.dev/v1/namespaces/a/widgets",
                      two.store.resources) is None
    doc = resource_list("example.aifleet.dev", "v1beta1", one.store.resources.all())
    assert doc is not None and doc["resources"][0]["kind"] == "Widget"
    crd = one.store.get(CRDS, "", "widgets.example.aifleet.dev")
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert crd["spec"]["names"]["listKind"] == "WidgetList"  # defaulted
    one.store.delete(CRDS, "", "widgets.example.aifleet.dev")
    assert parse_path("/apis/example.aifleet.dev/v1/namespaces/a/widgets",
                      one.store.resources) is None


def test_deleting_a_crd_deletes_its_objects() -> None:
    c = SimCluster(SimClusterSpec("one", ()))
    c.store.create(CRDS, _crd())
    res = c.store.resources.lookup("widgets")
    c.store.create(res, {"metadata": {"name": "w", "namespace": "default"},
                         "spec": {"size": 1}})
    assert [o["spec"] for o in c.objects("Widget")] == [{"size": 1, "mode": "fast"}]
    c.store.delete(CRDS, "", "widgets.example.aifleet.dev")
    assert c.store.list(res) == []
    with pytest.raises(KeyError):
        c.store.resources.lookup("widgets")


def test_pruning_keeps_declared_and_preserved_fields_and_fills_defaults() -> None:
    unknown: list[str] = []
    obj = {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"}, "junk": 1,
           "spec": {"size": 1, "colour": "red", "free": {"a": {"b": 1}},
                    "tags": ["x"]}}
    out = prune_and_default(obj, SCHEMA, "", unknown, root=True)
    assert out == {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
                   "spec": {"size": 1, "free": {"a": {"b": 1}}, "tags": ["x"],
                            "mode": "fast"}}
    assert unknown == ["junk", "spec.colour"]


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"size": "3"}, "spec.size",
     'Invalid value: "string": spec.size in body must be of type integer: "string"'),
    ({"size": True}, "spec.size",
     'Invalid value: "boolean": spec.size in body must be of type integer: "boolean"'),
    ({"tags": [1]}, "spec.tags[0]",
     'Invalid value: "integer": spec.tags[0] in body must be of type string: "integer"'),
    ({"port": 1.5}, "spec.port",
     'Invalid value: "number": spec.port in body must be of type integer: "number"'),
], ids=["string-for-integer", "bool-for-integer", "item-type", "int-or-string"])
def test_schema_type_errors_are_worded_as_kube_openapi_words_them(
        spec: dict[str, Any], field: str, message: str) -> None:
    causes = list(validate_value({"spec": spec}, SCHEMA, ""))
    assert causes == [(field, "FieldValueInvalid", message)]


def test_int_or_string_and_whole_floats_pass() -> None:
    assert list(validate_value({"spec": {"port": "http", "size": 2.0}}, SCHEMA, "")) == []


def test_a_schema_without_types_is_not_structural() -> None:
    crd = _crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}
    assert validate_crd(crd) == [(
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
        "FieldValueRequired", "Required value: must not be empty for specified object "
        "fields")]


def test_an_invalid_crd_is_a_422_from_the_store() -> None:
    c = SimCluster(SimClusterSpec("one", ()))
    bad = _crd()
    bad["spec"]["scope"] = "Global"
    with pytest.raises(SimError) as e:
        c.store.create(CRDS, bad)
    assert e.value.code == 422
    assert "supported values" in e.value.status()["details"]["causes"][0]["message"]


def test_versions_sort_as_kube_aware_versions() -> None:
    versions = ["v1alpha1", "v2", "v1beta2", "foo", "v1", "v1beta1"]
    assert sorted(versions, key=version_priority) == [
        "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]


async def test_every_served_version_shows_the_same_objects_in_its_own_apiversion() -> None:
    c = SimCluster(SimClusterSpec("one", ()))
    crd = _crd(("v1", "v1beta1"))  # v1 stores
    c.store.create(CRDS, crd)
    await asyncio.sleep(0)  # the establishing controller runs on the loop
    beta = parse_path("/apis/example.aifleet.dev/v1beta1/widgets", c.store.resources)
    ga = parse_path("/apis/example.aifleet.dev/v1/widgets", c.store.resources)
    assert beta is not None and ga is not None
    c.store.create(beta[0], {"metadata": {"name": "w", "namespace": "default"},
                             "spec": {"size": 1}})
    [stored] = c.store.list(ga[0])
    assert served_as(ga[0], stored)["apiVersion"] == "example.aifleet.dev/v1"
    assert served_as(beta[0], stored)["apiVersion"] == "example.aifleet.dev/v1beta1"
    # v1beta1 no longer served: its objects stay, served in v1.
    live = c.store.get(CRDS, "", "widgets.example.aifleet.dev")
    spec = copy.deepcopy(live["spec"])
    spec["versions"][1]["served"] = False
    c.store.replace(CRDS, {**live, "spec": spec}, live)
    await asyncio.sleep(0)
    assert parse_path("/apis/example.aifleet.dev/v1beta1/widgets", c.store.resources) is None
    assert [o["metadata"]["name"] for o in c.store.list(ga[0])] == ["w"]


async def test_changing_a_crds_names_keeps_its_objects() -> None:
    c = SimCluster(SimClusterSpec("one", ()))
    c.store.create(CRDS, _crd())
    await asyncio.sleep(0)
    res = c.store.resources.lookup("widgets")
    c.store.create(res, {"metadata": {"name": "w", "namespace": "default"},
                         "spec": {"size": 1}})
    live = c.store.get(CRDS, "", "widgets.example.aifleet.dev")
    spec = copy.deepcopy(live["spec"])
    spec["names"]["shortNames"] = ["wdg"]
    c.store.replace(CRDS, {**live, "spec": spec}, live)
    await asyncio.sleep(0)
    assert [o["metadata"]["name"] for o in c.objects("wdg")] == ["w"]


def test_pattern_and_min_items_are_checked_in_the_go_openapi_words() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "pattern": "^[a-z]+$"},
        "items": {"type": "array", "minItems": 1, "items": {"type": "string"}}}}
    causes = list(validate_value({"name": "Bad1", "items": []}, schema, ""))
    assert causes == [
        ("name", "FieldValueInvalid",
         "Invalid value: \"Bad1\": name in body should match '^[a-z]+$'"),
        ("items", "FieldValueInvalid",
         "Invalid value: 0: items in body should have at least 1 items")]
