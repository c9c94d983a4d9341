"""Quantities as kube-apiserver stores them (apimachinery `CanonicalizeBytes`)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.drift import diff
from fleet.quantity import FORMAT_WRONG, SUFFIX_WRONG, QuantityError, canonical, same


@pytest.mark.parametrize(("sent", "stored"), [
    ("0.5", "500m"), ("1024Mi", "1Gi"), ("2000m", "2"), ("1000", "1k"), (8, "8"),
    (0.5, "500m"), ("1.5Gi", "1536Mi"), ("0.5Gi", "512Mi"), ("100Mi", "100Mi"),
    ("1000Ki", "1000Ki"), ("1.5", "1500m"), ("100m", "100m"), ("1e3", "1e3"),
    ("1000e0", "1e3"), ("1E3", "1e3"), ("512Gi", "512Gi"), ("4096Mi", "4Gi"),
    ("0.5Ki", "512"), ("1.1Ki", "1126400m"), ("0.1n", "1n"), ("1.", "1"), (".5", "500m"),
    ("+3", "3"), ("-1", "-1"), ("0", "0"), ("0.0", "0"), ("1500", "1500"),
])
def test_canonical_as_the_api_server_writes_it(sent: object, stored: str) -> None:
    assert canonical(sent) == stored
    assert canonical(stored) == stored  # canonical is a fixed point


@pytest.mark.parametrize(("bad", "why"), [
    ("abc", FORMAT_WRONG), ("1.5.5", FORMAT_WRONG), ("1x", FORMAT_WRONG), ("", FORMAT_WRONG),
    ("1e", SUFFIX_WRONG), ("1Mi5", SUFFIX_WRONG), ("6GiB", FORMAT_WRONG),
])
def test_what_is_no_quantity_is_refused_in_the_servers_words(bad: str, why: str) -> None:
    with pytest.raises(QuantityError, match="^" + re.escape(why) + "$"):
        canonical(bad)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(
    ["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"]))
def test_canonical_keeps_the_value(n: int, suffix: str) -> None:
    q = f"{n}{suffix}"
    assert same(q, canonical(q)) and canonical(canonical(q)) == canonical(q)


def test_drift_compares_quantities_canonically_and_nothing_else() -> None:
    want = {"spec": {"containers": [{"name": "a", "resources": {
        "requests": {"cpu": "0.5", "memory": "1024Mi", "nvidia.com/gpu": 8}},
        "env": [{"name": "X", "value": "1000"}]}]}}
    live = {"spec": {"containers": [{"name": "a", "resources": {
        "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "8"}},
        "env": [{"name": "X", "value": "1k"}]}]}}
    assert [d.path for d in diff(want, live)] == ["spec.containers[name=a].env[name=X].value"]
    live["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "600m"
    assert "spec.containers[name=a].resources.requests.cpu" in {
        d.path for d in diff(want, live)}
