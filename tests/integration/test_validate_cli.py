"""`fleet validate` and `fleet schema` as a user runs them (the real console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema

ROOT = Path(__file__).resolve().parents[2]


def fleet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_the_example_fleet_is_valid() -> None:
    r = fleet("validate", "examples/fleet", "--worktree")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""
    assert "11 clusters, 25 workloads (0 invalid), 0 errors" in r.stderr


def test_errors_print_as_file_line_message_and_exit_1(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(),
                 "workloads/nlp-team/bad.yaml": workload("bad", data_class="nowhere")})
    r = fleet("validate", str(repo.path))
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "workloads/nlp-team/bad.yaml:15: dataClass nowhere is not defined by any "
        "ResidencyPolicy"
    ]


def test_json_errors_have_the_shape_of_plan_schema_errors(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(), "workloads/nlp-team/bad.yaml": "a: [\n"})
    r = fleet("validate", str(repo.path), "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    schema = load_schema("plan.schema.json")
    jsonschema.validate(doc["errors"], schema["properties"]["errors"])
    assert doc["errors"][0]["file"] == "workloads/nlp-team/bad.yaml"
    assert doc["errors"][0]["line"] == 2


def test_unreadable_repo_exits_2_with_one_line(tmp_path: Path) -> None:
    r = fleet("validate", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.startswith("fleet: ")
    assert "not inside a Git repository" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    r = fleet("validate", str(repo.path), "--ref", "nope")
    assert r.returncode == 2 and "revision 'nope' not found" in r.stderr


def test_clean_repo_exits_0(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    assert fleet("validate", str(repo.path)).returncode == 0
    # REPO defaults to the current folder
    assert fleet("validate", cwd=repo.path).returncode == 0


def test_schema_prints_one_kind_or_all() -> None:
    r = fleet("schema", "Workload")
    assert r.returncode == 0
    assert json.loads(r.stdout)["title"] == "Workload"
    assert sorted(json.loads(fleet("schema").stdout)) == [
        "Cluster", "Guardrails", "Owners", "ResidencyPolicy", "TeamQuota", "Workload"]


def test_help_explains_each_command() -> None:
    r = fleet("--help")
    assert r.returncode == 0
    assert "validate" in r.stdout and "schema" in r.stdout
    assert "exit codes" in r.stdout


def test_a_folder_that_is_not_there_is_never_a_clean_result(tmp_path: Path) -> None:
    r = fleet("validate", str(tmp_path / "nonexistent"), "--worktree")
    assert r.returncode == 2 and "no such folder" in r.stderr and "0 errors" not in r.stderr


def test_a_tree_with_no_fleet_file_is_never_a_clean_result(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a fleet\n")
    r = fleet("validate", str(tmp_path), "--worktree")
    assert r.returncode == 2 and "no fleet file on disk" in r.stderr
    repo = GitRepo(tmp_path / "git")
    repo.commit({"README.md": "still not a fleet\n"})
    r = fleet("validate", str(repo.path))
    assert r.returncode == 2 and "no fleet file at HEAD" in r.stderr


def test_output_flag_spellings_are_one_flag(tmp_path: Path) -> None:
    """`-o json` as kubectl and flux write it; `--format` stays; `md` is `markdown`."""
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    short = fleet("validate", str(repo.path), "-o", "json")
    long = fleet("validate", str(repo.path), "--format", "JSON")
    assert short.returncode == long.returncode == 0
    assert json.loads(short.stdout) == json.loads(long.stdout)
    md = fleet("plan", str(repo.path), "-o", "md")
    assert md.returncode == 0 and md.stdout == fleet("plan", str(repo.path), "--format",
                                                    "markdown").stdout
    bad = fleet("validate", str(repo.path), "-o", "yml")
    assert bad.returncode == 2 and "unknown format 'yml'" in bad.stderr
