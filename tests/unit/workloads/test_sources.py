"""Where the fleet is read from: a commit of a (bare) repo, a subfolder, or the worktree."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from workloads.errors import RepoNotFound, RevisionNotFound
from workloads.loader import ParseCache, read_fleet


def test_reads_a_ref_without_a_checkout(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    first = repo.commit(base_fleet())
    repo.commit({"workloads/nlp-team/eval.yaml": workload("eval")})
    assert sorted(read_fleet(repo.path).spec.workloads) == ["nlp-team/eval", "nlp-team/train"]
    old = read_fleet(repo.path, first)
    assert old.commit == first
    assert sorted(old.spec.workloads) == ["nlp-team/train"]


def test_reads_a_bare_repository(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "bare.git", bare=True)
    sha = repo.commit(base_fleet())
    snap = read_fleet(repo.path, "main")
    assert snap.commit == sha
    assert list(snap.spec.workloads) == ["nlp-team/train"]


def test_a_folder_inside_the_repo_is_the_fleet_and_paths_stay_repo_relative(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "r")
    files = {f"infra/fleet/{k}": v for k, v in base_fleet().items()}
    files["infra/fleet/workloads/nlp-team/bad.yaml"] = "kind: [\n"
    repo.commit(files)
    spec = read_fleet(repo.path / "infra" / "fleet").spec
    assert list(spec.workloads) == ["nlp-team/train"]
    assert [d.file for d in spec.errors] == ["infra/fleet/workloads/nlp-team/bad.yaml"]


def test_missing_revision_and_missing_repo_are_errors_not_crashes(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    with pytest.raises(RevisionNotFound):
        read_fleet(repo.path, "no-such-branch")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoNotFound):
        read_fleet(tmp_path / "plain")


def test_worktree_reads_uncommitted_edits(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    (repo.path / "workloads/nlp-team/new.yaml").write_text(workload("new"))
    assert "nlp-team/new" not in read_fleet(repo.path).spec.workloads
    assert "nlp-team/new" in read_fleet(repo.path, worktree=True).spec.workloads


def test_worktree_never_follows_symlinks_to_files_or_folders(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_fleet())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(workload("secret", team="evil-team"))
    os.symlink(outside, repo.path / "workloads" / "evil-team")
    os.symlink(outside / "secret.yaml", repo.path / "workloads/nlp-team/secret.yaml")
    spec = read_fleet(repo.path, worktree=True).spec
    assert sorted(d.file for d in spec.errors) == [
        "workloads/evil-team", "workloads/nlp-team/secret.yaml"
    ]
    assert all("symlink" in d.message for d in spec.errors)
    assert "evil-team/secret" not in spec.workloads
    assert "nlp-team/train" in spec.workloads


def test_worktree_outside_git_shows_paths_as_given(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "plain"
    for rel, content in base_fleet().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(str(content))
    (root / "workloads/nlp-team/bad.yaml").write_text("a: [")
    monkeypatch.chdir(tmp_path)
    spec = read_fleet("plain", worktree=True).spec
    assert [d.file for d in spec.errors] == ["plain/workloads/nlp-team/bad.yaml"]


def test_a_new_commit_parses_only_the_files_that_changed(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    files = dict(base_fleet())
    for i in range(20):
        files[f"workloads/nlp-team/w{i}.yaml"] = workload(f"w{i}")
    repo.commit(files)
    cache = ParseCache()
    read_fleet(repo.path, cache=cache)
    assert (cache.hits, cache.misses) == (0, 24)
    repo.commit({"workloads/nlp-team/w3.yaml": workload("w3", flavours="[a100-80gb]")})
    spec = read_fleet(repo.path, cache=cache).spec
    assert (cache.hits, cache.misses) == (23, 25)
    assert spec.workloads["nlp-team/w3"].spec.resources.gpu.flavours == ("a100-80gb",)
    assert len(cache.entries) == 24  # the old w3 is gone


def test_submodules_and_non_yaml_files_are_ignored(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(), "workloads/nlp-team/README.md": "# notes", "README.md": "x"})
    assert read_fleet(repo.path).spec.errors == ()
    assert isinstance(repo.repo, pygit2.Repository)
