"""Bad input in a fleet repo: a precise error (file, line, message) and the rest still loads.

Every case commits a small valid fleet plus one bad file to a real Git repo made with
pygit2 in a temp dir, reads it at HEAD, and asserts the exact diagnostics and that the
valid workload `nlp-team/train` and both clusters still load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.diagnostics import Diagnostic
from tests.fleetdocs import base_fleet, cluster, workload
from tests.gitrepo import GitRepo, Link
from workloads.loader import read_fleet

W = "workloads/nlp-team"


class Prefix(str):
    """An expected message whose tail is a third-party library's own wording (libyaml's
    parser problems change between releases): only our prefix is asserted."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(str(self))

CASES: list[tuple[str, dict[str, str | bytes | Link], list[tuple[str, int | None, str]]]] = [
    (
        "malformed_yaml",
        {f"{W}/broken.yaml": "apiVersion: aifleet.dev/v1alpha1\nkind: Workload\nmetadata: [a, b\n"},
        [(f"{W}/broken.yaml", 4, Prefix("invalid YAML: "))],
    ),
    (
        "duplicate_keys",
        {f"{W}/dup.yaml": workload("dup").replace("  replicas: 2\n",
                                                   "  replicas: 2\n  replicas: 4\n")},
        [(f"{W}/dup.yaml", 10, "duplicate key 'replicas' (first at line 9)")],
    ),
    (
        "unknown_field",
        {f"{W}/typo.yaml": workload("typo").replace("    dataClass:", "    dataclass:")},
        [(f"{W}/typo.yaml", 15, "spec.placement.dataclass: unknown field "
                                "(not part of aifleet.dev/v1alpha1; check the spelling)")],
    ),
    (
        "wrong_kind",
        {f"{W}/kind.yaml": workload("kind").replace("kind: Workload", "kind: Deployment")},
        [(f"{W}/kind.yaml", 2, "unknown kind 'Deployment': expected one of Cluster, "
                               "ResidencyPolicy, TeamQuota, Workload, Guardrails, Owners")],
    ),
    (
        "kind_in_wrong_folder",
        {"clusters/oops.yaml": workload("oops")},
        [("clusters/oops.yaml", 2, "a Workload does not belong in clusters/: it goes in "
                                   "workloads/<team>/")],
    ),
    (
        "wrong_api_version",
        {f"{W}/api.yaml": workload("api").replace("aifleet.dev/v1alpha1", "aifleet.dev/v1")},
        [(f"{W}/api.yaml", 1, "apiVersion must be aifleet.dev/v1alpha1, got 'aifleet.dev/v1'")],
    ),
    (
        "namespace_not_folder",
        {f"{W}/ns.yaml": workload("ns", namespace="vision-team")},
        [(f"{W}/ns.yaml", 5, "metadata.namespace vision-team does not match its folder "
                             "workloads/nlp-team/ (the folder is the team)")],
    ),
    (
        "duplicate_workload_ids",
        {f"{W}/copy.yaml": workload("eval"), f"{W}/eval.yaml": workload("eval")},
        [
            (f"{W}/copy.yaml", 4, "workload id nlp-team/eval is defined more than once "
                                  f"({W}/copy.yaml, {W}/eval.yaml)"),
            (f"{W}/eval.yaml", 4, "workload id nlp-team/eval is defined more than once "
                                  f"({W}/copy.yaml, {W}/eval.yaml)"),
        ],
    ),
    (
        "undefined_data_class",
        {f"{W}/dc.yaml": workload("dc", data_class="us-phi")},
        [(f"{W}/dc.yaml", 15, "dataClass us-phi is not defined by any ResidencyPolicy")],
    ),
    (
        "undefined_flavour",
        {f"{W}/fl.yaml": workload("fl", flavours="[h100-80gb, b200-192gb]")},
        [(f"{W}/fl.yaml", 13, "flavour b200-192gb is not offered by any cluster")],
    ),
    (
        "undefined_cluster",
        {f"{W}/cl.yaml": workload("cl", extra_spec="    clusters: [eu-fra-1, eu-fra-9]\n")},
        [(f"{W}/cl.yaml", 16, "cluster eu-fra-9 does not exist")],
    ),
    (
        "symlink_file",
        {f"{W}/link.yaml": Link("../../../../etc/passwd")},
        [(f"{W}/link.yaml", None, "is a symlink: symlinks are never followed in a fleet "
                                  "repo; commit the file itself")],
    ),
    (
        "symlink_folder",
        {"workloads/evil-team": Link("/etc")},
        [("workloads/evil-team", None, "is a symlink: symlinks are never followed in a "
                                       "fleet repo; commit the file itself")],
    ),
    (
        "file_over_1_mib",
        {f"{W}/huge.yaml": b"# " + b"x" * (1024 * 1024) + b"\n"},
        [(f"{W}/huge.yaml", None, "file is 1048579 bytes, over the 1 MiB limit: not read")],
    ),
    (
        "workload_file_with_two_workloads",
        {f"{W}/two.yaml": workload("one") + "---\n" + workload("two")},
        [(f"{W}/two.yaml", 16, "a Workload file holds exactly one Workload; another one "
                               "starts at line 1: every Workload in this file is refused")],
    ),
    (
        "bad_country_code",
        {"clusters/xx-1.yaml": cluster("xx-1", "XX")},
        [("clusters/xx-1.yaml", 8, "spec.jurisdiction: 'XX' is not an ISO 3166-1 alpha-2 "
                                   "country code (e.g. DE, US, BR)")],
    ),
    (
        "credential_in_plain_env",
        {f"{W}/leak.yaml": workload("leak", extra_spec=(
            "  env:\n    EPOCHS: '3'\n    HF_TOKEN: hf_" + "x" * 34 + "\n"))},
        [(f"{W}/leak.yaml", 18, "env HF_TOKEN: the value looks like a Hugging Face token; "
                                "a credential must not be in Git: use `{secretKeyRef: "
                                "{name: <secret>, key: <key>}}` (the value is not shown)")],
    ),
    (
        "volume_with_two_sources",
        {f"{W}/vol.yaml": workload("vol", extra_spec=(
            "  volumes:\n    - name: data\n      mountPath: /data\n"
            "      persistentVolumeClaim: {claimName: d}\n      emptyDir: {}\n"))},
        [(f"{W}/vol.yaml", 17, "spec.volumes[0]: set exactly one of persistentVolumeClaim, "
                               "configMap, secret or emptyDir")],
    ),
    (
        "overlay_sets_the_gpu_count",
        {f"{W}/ovl.yaml": workload("ovl", extra_spec=(
            "  pod:\n    overlay:\n      spec:\n        containers:\n"
            "          - name: main\n            resources:\n"
            "              limits: {nvidia.com/gpu: '16'}\n"))},
        [(f"{W}/ovl.yaml", 22, "resources.limits.nvidia.com/gpu: aifleet owns the GPU count "
                               "(what placement counted); set resources.gpu.count")],
    ),
    (
        "unknown_gpu_allocation",
        {"clusters/dra-1.yaml": cluster("dra-1") + "  stack: {kueue: true, gpuAllocation: mig}\n"},
        [("clusters/dra-1.yaml", 11, "spec.stack.gpuAllocation: Input should be "
                                     "'device-plugin' or 'dra', got 'mig'")],
    ),
    (
        "spot_selector_names_the_product_label",
        {"clusters/spot-1.yaml": cluster("spot-1") + (
            "  spot:\n    nodeSelector: {nvidia.com/gpu.product: X}\n")},
        [("clusters/spot-1.yaml", 11, "spec.spot: nodeSelector nvidia.com/gpu.product: "
                                      "each offer's `product` sets it")],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_reported_precisely_and_the_rest_still_loads(
    tmp_path: Path,
    files: dict[str, str | bytes | Link],
    expected: list[tuple[str, int | None, str]],
) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), **files})

    spec = read_fleet(repo.path).spec

    assert [(d.file, d.line, d.message) for d in spec.errors] == expected
    assert "nlp-team/train" in spec.workloads
    assert sorted(spec.clusters) == ["eu-fra-1", "us-east-1"]


def test_invalid_workloads_are_listed_as_invalid_not_dropped(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(),
                 f"{W}/typo.yaml": workload("typo").replace("    dataClass:", "    dataclass:"),
                 f"{W}/two.yaml": workload("one") + "---\n" + workload("two")})
    spec = read_fleet(repo.path).spec
    assert sorted(spec.invalid) == ["nlp-team/one", "nlp-team/two", "nlp-team/typo"]
    assert sorted(spec.workloads) == ["nlp-team/train"]


def test_alias_bomb_is_refused_in_bounded_time(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
        prev = name
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), "policies/bomb.yaml": "\n".join(lines) + "\n"})

    spec = read_fleet(repo.path).spec  # 9**9 nodes if expanded: finishing shows it was not

    assert [(d.file, d.line) for d in spec.errors] == [("policies/bomb.yaml", 6)]
    assert "alias bomb" in spec.errors[0].message
    assert "nlp-team/train" in spec.workloads


def test_deep_nesting_is_refused_instead_of_crashing(tmp_path: Path) -> None:
    # libyaml's recursive composer segfaults on this; our event-driven reader refuses it
    # (newer libyaml stops it first, in its own words: which one says so is not the point).
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), "policies/deep.yaml": "[" * 100_000 + "]" * 100_000})
    spec = read_fleet(repo.path).spec
    assert [(d.file, d.line) for d in spec.errors] == [("policies/deep.yaml", 1)]
    assert "nlp-team/train" in spec.workloads
    assert sorted(spec.clusters) == ["eu-fra-1", "us-east-1"]


def test_more_than_10000_documents_are_refused(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), "policies/many.yaml": "---\na: 1\n" * 10_001})
    spec = read_fleet(repo.path).spec
    assert [(d.file, d.message) for d in spec.errors] == [
        ("policies/many.yaml", "more than 10000 documents in one file: the file is refused")
    ]
    assert spec.errors[0].line == 20_001  # the `---` that starts document 10,001


def test_diagnostic_format_is_file_colon_line_colon_message() -> None:
    d = Diagnostic("workloads/a/b.yaml", 3, "boom")
    assert d.format() == "workloads/a/b.yaml:3: boom"
    assert Diagnostic("x.yaml", None, "boom").format() == "x.yaml: boom"


def test_our_own_nesting_limit_names_itself(tmp_path: Path) -> None:
    # 100 levels: below any libyaml limit, above ours (64): our words, our line.
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), "policies/deep.yaml": "\n" + "[" * 100 + "]" * 100 + "\n"})
    spec = read_fleet(repo.path).spec
    assert [(d.file, d.line, d.message) for d in spec.errors] == [
        ("policies/deep.yaml", 2, "nested deeper than 64 levels")
    ]
    assert "nlp-team/train" in spec.workloads
