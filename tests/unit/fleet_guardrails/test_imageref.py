"""Image references by the OCI distribution grammar: anything else is refused, and
comes from no registry."""

from __future__ import annotations

import pytest

from fleet.guardrails import image_allowed
from fleet.imageref import image_reference_problem

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize("image", [
    "ubuntu",
    "ubuntu:22.04",
    "library/ubuntu",
    "registry.internal/trainer:v1",
    "registry.internal/nlp/vllm-server:0.9.2",
    "localhost:5000/a/b:1.0",
    "registry.internal:443/team/x__y:TAG_1",
    f"registry.internal/a@{DIGEST}",
    f"registry.internal/a:v1@{DIGEST}",
    "[::1]:5000/x",
    "a.b-c/d-e---f.g_h:1",
])
def test_valid_references_are_accepted(image: str) -> None:
    assert image_reference_problem(image) is None


@pytest.mark.parametrize("image", [
    "registry.internal/trainer:v1\nregistry.evil/x",
    "registry.internal/trainer:v1\n",
    "registry.internal/a b",
    " registry.internal/a",
    "registry.internal/../evil/x",
    "registry.internal/a..b",
    "registry.internal//a",
    "registry.internal/A",
    "registry.internal/a:",
    "registry.internal/a:v1:v2",
    "registry.internal/a@sha256:abc",
    "registry.internal/a\tb",
    "registry.internal/a;rm",
    "-registry.internal/a",
    "registry.internal/" + "a" * 300,
], ids=repr)
def test_anything_else_is_refused_and_comes_from_no_registry(image: str) -> None:
    assert image_reference_problem(image) is not None
    assert not image_allowed(image, ["registry.internal"])
