"""The controller tests' shared fleet (`tests/support/controller.py`) is itself valid."""

from __future__ import annotations

from pathlib import Path

from tests.support.controller import RANK, SERVE, TRAIN, fleet_files


def test_the_test_fleet_is_valid(tmp_path: Path) -> None:
    from tests.gitrepo import GitRepo
    from workloads.loader import read_fleet

    repo = GitRepo(tmp_path)
    repo.commit(fleet_files())
    spec = read_fleet(tmp_path).spec
    assert spec.errors == ()
    assert sorted(spec.workloads) == sorted([TRAIN, SERVE, RANK])
