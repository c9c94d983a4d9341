"""Label and field selector parsing, as `k8s.io/apimachinery/pkg/labels` parses them."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.sim.errors import SimError
from clusters.sim.selectors import field_matcher, label_matcher, match_labels


def obj(name: str, ns: str = "a", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


OBJS = [obj("gold", tier="gold", team="x"), obj("silver", tier="silver"), obj("none")]


@pytest.mark.parametrize(("selector", "expected"), [
    ("", ["gold", "silver", "none"]),
    ("tier=gold", ["gold"]),
    ("tier = gold", ["gold"]),
    ("tier!=gold", ["silver", "none"]),
    ("tier in (gold, silver)", ["gold", "silver"]),
    ("tier notin (gold)", ["silver", "none"]),
    ("team", ["gold"]),
    ("!team", ["silver", "none"]),
    ("tier in (gold,silver),!team", ["silver"]),
], ids=["empty", "eq", "eq-spaces", "neq", "in", "notin", "exists", "not-exists",
        "and-with-set-commas"])
def test_label_selector_requirements(selector: str, expected: list[str]) -> None:
    m = label_matcher(selector)
    got = [o["metadata"]["name"] for o in OBJS if m is None or m(o)]
    assert got == expected


@pytest.mark.parametrize("bad", ["tier in gold", "!tier=gold", "ti er=x", "tier=(x"],
                         ids=["in-without-parens", "negated-eq", "space-in-key", "paren"])
def test_malformed_label_selectors_are_bad_requests(bad: str) -> None:
    with pytest.raises(SimError) as err:
        label_matcher(bad)
    assert err.value.code == 400


def test_field_selector_on_name_and_namespace() -> None:
    m = field_matcher("metadata.name!=gold,metadata.namespace=a")
    assert m is not None
    assert [o["metadata"]["name"] for o in OBJS if m(o)] == ["silver", "none"]


def test_unknown_field_selector_is_a_bad_request() -> None:
    with pytest.raises(SimError) as err:
        field_matcher("spec.replicas=3")
    assert err.value.code == 400 and "spec.replicas" in err.value.message


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({"matchLabels": {"app": "x"}}, {"app": "x", "b": "c"}, True),
    ({"matchLabels": {"app": "x"}}, {"app": "y"}, False),
    ({"matchExpressions": [{"key": "k", "operator": "In", "values": ["a"]}]}, {"k": "a"},
     True),
    ({"matchExpressions": [{"key": "k", "operator": "DoesNotExist"}]}, {"k": "a"}, False),
    (None, {}, True),
], ids=["labels-match", "labels-differ", "expr-in", "expr-does-not-exist", "empty"])
def test_label_selector_objects(selector: dict[str, Any] | None, labels: dict[str, str],
                                expected: bool) -> None:
    assert match_labels(selector, labels) is expected
