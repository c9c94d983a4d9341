"""`fleet plan --base --head` on real Git repos with two branches, as a PR check runs it.

Each case builds a fleet repo with pygit2 (base on `main`, the change on a `feature`
branch), runs the real `fleet` console entry point in a subprocess, and checks the
output: each kind of change, a guardrail violation, a protected-path change, a
displaced workload of another team, a stale plan; the Markdown against golden files
(`tests/integration/golden/*.md`; regenerate with `AIFLEET_REGEN_GOLDEN=1`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from workloads.changes import MergeConflict, read_change

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("AIFLEET_REGEN_GOLDEN") == "1"


def fleet(*args: str, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})})


QUOTAS = """\
apiVersion: aifleet.dev/v1alpha1
kind: TeamQuota
metadata: {name: nlp-team}
spec:
  gpus: [{flavour: h100-80gb, nominal: 32}]
"""

OWNERS = """\
apiVersion: aifleet.dev/v1alpha1
kind: Owners
metadata: {name: default}
spec:
  rules:
    - {path: "clusters/**", owners: ["@acme/platform"]}
    - {path: "policies/**", owners: ["@acme/platform"]}
    - {path: "workloads/vision-team/", owners: ["@acme/vision-leads"]}
"""

GUARDRAILS = """\
apiVersion: aifleet.dev/v1alpha1
kind: Guardrails
metadata: {name: default}
spec:
  defaults:
    maxGpusPerWorkload: 32
    allowedRegistries: [registry.internal]
"""


def wl(name: str, team: str, replicas: int = 1, count: int = 8, dc: str = "eu-personal",
       image: str = "registry.internal/trainer:v1") -> str:
    return (workload(name, team, data_class=dc)
            .replace("replicas: 2", f"replicas: {replicas}")
            .replace("count: 8", f"count: {count}")
            .replace("registry.internal/trainer:v1", image))


def base_files() -> dict[str, str | bytes | None]:
    """Two EU clusters of 16 H100 each, one US; nlp-team and vision-team workloads."""
    return {
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE"),
        "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR"),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 32, 8),)),
        "policies/residency.yaml": POLICY,
        "policies/quotas.yaml": QUOTAS,
        "policies/owners.yaml": OWNERS,
        "policies/guardrails.yaml": GUARDRAILS,
        "workloads/nlp-team/train.yaml": wl("train", "nlp-team", replicas=2),
        "workloads/nlp-team/eval.yaml": wl("eval", "nlp-team", count=4, dc="public"),
        "workloads/vision-team/det.yaml": wl("det", "vision-team", replicas=2),
    }


def two_branches(tmp_path: Path, change: dict[str, str | bytes | None]) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet")
    base = repo.commit(base_files(), "base")
    repo.repo.references.create("refs/heads/feature", base)
    saved = dict(repo.files)
    repo.commit(change, "the change", branch="feature")
    repo.files = saved
    return repo


# ----------------------------------------------------------------- the Git side


def test_changed_files_are_the_pr_files_relative_to_the_fleet(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team"),
                                   "workloads/nlp-team/eval.yaml": None,
                                   "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR",
                                                                     labels="{tier: dev}")})
    change = read_change(repo.path, "main", "feature")
    assert [(f.path, f.status) for f in change.files] == [
        ("clusters/eu-par-1.yaml", "modified"), ("workloads/nlp-team/eval.yaml", "deleted"),
        ("workloads/nlp-team/new.yaml", "added")]
    assert not change.merged
    assert "nlp-team/new" in change.head.spec.workloads
    assert "nlp-team/new" not in change.base.spec.workloads


def test_a_base_that_moved_on_is_merged_in_memory(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team")})
    repo.commit({"workloads/vision-team/seg.yaml": wl("seg", "vision-team")}, "meanwhile")
    change = read_change(repo.path, "main", "feature")
    assert change.merged
    assert {"nlp-team/new", "vision-team/seg"} <= set(change.head.spec.workloads)
    assert [f.path for f in change.files] == ["workloads/nlp-team/new.yaml"]


def test_a_conflicting_change_cannot_be_planned(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": wl("train", "nlp-team",
                                                                        replicas=3)})
    repo.commit({"workloads/nlp-team/train.yaml": wl("train", "nlp-team", replicas=1)}, "x")
    with pytest.raises(MergeConflict, match=r"workloads/nlp-team/train\.yaml"):
        read_change(repo.path, "main", "feature")
