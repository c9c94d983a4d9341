"""Models and residency of the fleet repo format, without Git."""

from __future__ import annotations

import pickle

import pydantic
import pytest

from fleet.jurisdictions import EEA_MEMBERS, EU_MEMBERS, ISO_3166_ALPHA2
from fleet.models import ResidencyPolicy, Workload, json_schemas
from fleet.residency import build_residency


def _policy(spec: dict[str, object], name: str = "p") -> ResidencyPolicy:
    return ResidencyPolicy.model_validate(
        {"apiVersion": "aifleet.dev/v1alpha1", "kind": "ResidencyPolicy",
         "metadata": {"name": name}, "spec": spec})


def test_builtin_groups_are_the_eu_27_and_the_eea() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert len(EU_MEMBERS) == 27 and "GB" not in EU_MEMBERS and "GR" in EU_MEMBERS
    assert {"IS", "LI", "NO"} == EEA_MEMBERS - EU_MEMBERS


@pytest.mark.parametrize(
    ("data_class", "jurisdiction", "allowed"),
    [
        ("eu-personal", "DE", True),
        ("eu-personal", "CH", False),
        ("eu-personal", "NO", False),
        ("eea-personal", "NO", True),
        ("latam", "BR", True),
        ("latam", "US", False),
        ("public", "JP", True),
        ("public", "ZZ", False),  # not a country: fail closed even for "*"
        ("undefined-class", "DE", False),
        (None, "US", True),  # default: public
    ],
    ids=lambda v: str(v),
)
def test_residency_is_fail_closed(data_class: str | None, jurisdiction: str,
                                  allowed: bool) -> None:
    pol = _policy({"groups": {"LATAM": ["BR", "AR"], "SOUTH": ["LATAM"]},
                   "dataClasses": {"public": {"allowed": ["*"]},
                                   "eu-personal": {"allowed": ["EU"]},
                                   "eea-personal": {"allowed": ["EEA"]},
                                   "latam": {"allowed": ["SOUTH"]}},
                   "default": "public"})
    residency, errors = build_residency([(pol, _src())])
    assert errors == []
    assert residency.allows(data_class, jurisdiction) is allowed


def test_group_cycles_and_unknown_groups_allow_nothing_and_are_reported() -> None:
    pol = _policy({"groups": {"A-GROUP": ["B-GROUP"], "B-GROUP": ["A-GROUP", "DE"]},
                   "dataClasses": {"x": {"allowed": ["NOWHERE"]}, "y": {"allowed": ["A-GROUP"]}}})
    residency, errors = build_residency([(pol, _src())])
    assert residency.allows("x", "DE") is False
    assert any("includes itself" in e.message for e in errors)
    assert any("unknown group NOWHERE" in e.message for e in errors)


def test_two_policies_merge_and_a_class_defined_twice_is_an_error() -> None:
    a = _policy({"dataClasses": {"public": {"allowed": ["*"]}}, "default": "public"}, "a")
    b = _policy({"dataClasses": {"public": {"allowed": ["US"]}, "us": {"allowed": ["US"]}}}, "b")
    residency, errors = build_residency([(a, _src("a.yaml")), (b, _src("b.yaml"))])
    assert sorted(residency.classes) == ["public", "us"]
    assert residency.classes["public"].anywhere
    assert [e.file for e in errors] == ["b.yaml"]
    assert "already defined in a.yaml" in errors[0].message


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"replicas": 0}, "greater than or equal to 1"),
        ({"type": "serving"}, "'training', 'inference' or 'batch'"),
        ({"placement": {"spread": {"minClusters": 2, "maxClusters": 3}}},
         "set placement.gang: false"),
        ({"inference": {"port": 80}}, "only for type inference"),
        ({"env": {"EPOCHS": 3}}, "an env value is a string"),
        ({"resources": {"gpu": {"count": 1, "flavours": ["a", "a"]}}}, "listed twice"),
    ],
    ids=["zero-replicas", "bad-type", "spread-on-gang", "inference-on-training",
         "env-not-string", "duplicate-flavour"],
)
def test_workload_shape_errors(patch: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {"type": "training", "image": "i",
                               "resources": {"gpu": {"count": 1, "flavours": ["a"]}}}
    spec.update(patch)
    with pytest.raises(pydantic.ValidationError, match=message):
        Workload.model_validate({"apiVersion": "aifleet.dev/v1alpha1", "kind": "Workload",
                                 "metadata": {"name": "w", "namespace": "t"}, "spec": spec})


def test_gang_defaults_by_type() -> None:
    def w(t: str) -> Workload:
        return Workload.model_validate({
            "apiVersion": "aifleet.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "t"},
            "spec": {"type": t, "image": "i",
                     "resources": {"gpu": {"count": 1, "flavours": ["a"]}}}})
    assert (w("training").spec.gang, w("batch").spec.gang, w("inference").spec.gang) == (
        True, True, False)


def test_json_schema_of_each_kind_rejects_unknown_fields() -> None:
    schemas = json_schemas()
    assert sorted(schemas) == ["Cluster", "Guardrails", "Owners", "ResidencyPolicy", "TeamQuota",
                               "Workload"]
    assert schemas["Workload"]["additionalProperties"] is False
    assert "dataClass" in str(schemas["Workload"])


def _src(file: str = "policies/p.yaml"):  # type: ignore[no-untyped-def]
    from fleet.diagnostics import SourceRef
    return SourceRef(file, 1, {})


def test_a_model_pickles_to_an_equal_model_with_the_same_fields_set() -> None:
    # Parsed files cross a pipe pickled (workloads.forkmap) and sit in the parse cache.
    w = Workload.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Workload",
        "metadata": {"name": "w", "namespace": "t", "labels": {"owner": "ana"}},
        "spec": {"type": "training", "image": "i", "replicas": 2,
                 "resources": {"gpu": {"count": 8, "flavours": ["h100", "a100"]}},
                 "placement": {"dataClass": "eu-personal"}}})
    back = pickle.loads(pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == w
    assert back.model_fields_set == w.model_fields_set
    assert back.spec.model_fields_set == w.spec.model_fields_set
    assert back.model_dump(by_alias=True) == w.model_dump(by_alias=True)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        back.spec.replicas = 3  # type: ignore[misc]
