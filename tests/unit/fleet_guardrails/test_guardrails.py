"""Guardrails in policies/: each rule, team overrides, image registries, and bad policies.

Every case commits a small valid fleet, a `policies/guardrails.yaml` and one workload to a
real Git repo, reads it at HEAD, and asserts the exact violations (file, line, message).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.guardrails import image_allowed, image_repository
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from workloads.loader import read_fleet

G = "policies/guardrails.yaml"
W = "workloads/nlp-team/big.yaml"

POLICY = """\
apiVersion: aifleet.dev/v1alpha1
kind: Guardrails
metadata:
  name: default
spec:
  defaults:
    maxGpusPerWorkload: 16
    maxReplicas: 4
    allowedFlavours: [h100-80gb]
    requiredLabels: [owner]
    allowedRegistries: [registry.internal]
  teams:
    vision-team:
      maxGpusPerWorkload: 64
"""

LABELS = "  labels: {owner: ana}\n"


def labelled(text: str, labels: str = LABELS) -> str:
    return text.replace("  namespace: ", labels + "  namespace: ", 1)


def read(tmp_path: Path, files: dict[str, str | bytes]):  # type: ignore[no-untyped-def]
    repo = GitRepo(tmp_path / "r")
    base = {**base_fleet(), "workloads/nlp-team/train.yaml": labelled(workload("train"))}
    repo.commit({**base, G: POLICY, **files})
    return read_fleet(repo.path).spec


CASES = [
    ("over_max_gpus", labelled(workload("big").replace("count: 8", "count: 8").replace(
        "replicas: 2", "replicas: 3")),
     [(W, 13, "workload requests 3 x 8 = 24 GPUs, over the limit of 16 per workload "
              f"(guardrail maxGpusPerWorkload fleet-wide, {G}:7)")]),
    ("over_max_replicas", labelled(workload("big").replace("replicas: 2", "replicas: 5")
                                   .replace("count: 8", "count: 1")),
     [(W, 10, f"replicas 5 is over the limit of 4 (guardrail maxReplicas fleet-wide, {G}:8)")]),
    ("flavour_not_allowed", labelled(workload("big", flavours="[h100-80gb, a100-80gb]")),
     [(W, 14, "flavour a100-80gb is not allowed (allowed: h100-80gb) "
              f"(guardrail allowedFlavours fleet-wide, {G}:9)")]),
    ("missing_label", workload("big"),
     [(W, 3, f"label owner is required and missing (guardrail requiredLabels fleet-wide, "
             f"{G}:10)")]),
    ("image_from_docker_hub", labelled(workload("big").replace(
        "registry.internal/trainer:v1", "pytorch/pytorch:2.3")),
     [(W, 9, "image pytorch/pytorch:2.3 (docker.io/pytorch/pytorch) is not from an allowed "
             f"registry (registry.internal) (guardrail allowedRegistries fleet-wide, {G}:11)")]),
    ("lookalike_registry_host", labelled(workload("big").replace(
        "registry.internal/", "registry.internal.evil.example/")),
     [(W, 9, "image registry.internal.evil.example/trainer:v1 "
             "(registry.internal.evil.example/trainer) is not from an allowed registry "
             f"(registry.internal) (guardrail allowedRegistries fleet-wide, {G}:11)")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_violation_is_reported_at_the_offending_field(
        tmp_path: Path, text: str, expected: list[tuple[str, int, str]]) -> None:
    spec = read(tmp_path, {W: text})
    got = [(d.file, d.line, d.message) for d in spec.errors]
    assert got == expected
    assert [(d.file, d.line, d.message) for d in spec.violations] == expected
    assert "nlp-team/big" in spec.invalid and "nlp-team/big" not in spec.workloads
    assert "nlp-team/train" in spec.workloads


def test_a_workload_within_every_guardrail_is_valid(tmp_path: Path) -> None:
    spec = read(tmp_path, {})
    assert spec.errors == () and spec.violations == ()
    assert list(spec.workloads) == ["nlp-team/train"]


def test_a_team_entry_replaces_only_the_rules_it_sets(tmp_path: Path) -> None:
    w = labelled(workload("big", team="vision-team").replace("replicas: 2", "replicas: 4"))
    spec = read(tmp_path, {"workloads/vision-team/big.yaml": w})
    assert "vision-team/big" in spec.workloads  # 32 GPUs: under the team's 64
    w5 = w.replace("replicas: 4", "replicas: 5")
    spec = read(tmp_path / "b", {"workloads/vision-team/big.yaml": w5})
    assert [d.message for d in spec.violations] == [
        f"replicas 5 is over the limit of 4 (guardrail maxReplicas fleet-wide, {G}:8)"]


def test_no_guardrails_means_no_limits(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(), W: workload("big").replace("replicas: 2", "replicas: 50")})
    spec = read_fleet(repo.path).spec
    assert spec.errors == () and "nlp-team/big" in spec.workloads


def test_defaults_defined_twice_is_an_error_and_the_first_stays(tmp_path: Path) -> None:
    second = POLICY.replace("name: default", "name: other").replace("maxReplicas: 4",
                                                                    "maxReplicas: 100")
    spec = read(tmp_path, {"policies/zz-more.yaml": second})
    assert [(d.file, d.line, d.message) for d in spec.errors] == [
        ("policies/zz-more.yaml", 6, f"guardrail defaults are already defined in {G}"),
        ("policies/zz-more.yaml", 13,
         f"guardrails for team vision-team are already defined in {G}")]
    assert spec.guardrails.rule("nlp-team", "max_replicas")[0] == 4


def test_unknown_guardrail_field_is_refused_with_its_line(tmp_path: Path) -> None:
    spec = read(tmp_path, {G: POLICY.replace("maxReplicas:", "maxReplica:")})
    assert [(d.file, d.line) for d in spec.errors] == [(G, 8)]
    assert "spec.defaults.maxReplica: unknown field" in spec.errors[0].message


@pytest.mark.parametrize(("image", "repository"), [
    ("ubuntu", "docker.io/library/ubuntu"),
    ("ubuntu:22.04", "docker.io/library/ubuntu"),
    ("pytorch/pytorch:2.3", "docker.io/pytorch/pytorch"),
    ("Registry.Internal/nlp/x:1", "registry.internal/nlp/x"),
    ("localhost:5000/x@sha256:abc", "localhost:5000/x"),
    ("ghcr.io/org/img@sha256:00", "ghcr.io/org/img"),
], ids=["bare", "tag", "hub_org", "host_case", "port_digest", "digest"])
def test_image_repository_follows_docker_reference_rules(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(("image", "allowed", "ok"), [
    ("registry.internal/nlp/x:1", ["registry.internal"], True),
    ("registry.internal/nlp/x:1", ["registry.internal/nlp"], True),
    ("registry.internal/nlpx/x:1", ["registry.internal/nlp"], False),
    ("registry.internal.evil.example/x", ["registry.internal"], False),
    ("ubuntu", ["docker.io/library"], True),
    ("ubuntu", ["registry.internal"], False),
    ("x", [], False),
], ids=["host", "path_prefix", "path_lookalike", "host_lookalike", "hub_library",
        "hub_refused", "none_allowed"])
def test_registries_match_by_whole_components(image: str, allowed: list[str], ok: bool) -> None:
    assert image_allowed(image, allowed) is ok
