"""`fleet.safety`, tenancy and identity: what a team folder may write, and which
workload a file speaks for. Table tests of the pure rules the loader calls."""

from __future__ import annotations

import pytest

from fleet.safety import (
    kept_from_previous,
    path_workload_id,
    reserved_key_problem,
    tenant_namespace_problem,
    workload_label_problem,
)


@pytest.mark.parametrize(("team", "refused"), [
    ("nlp-team", False),
    ("health-team", False),
    ("kubeflow", False),  # not kube-*: a team may be called that
    ("my-default", False),
    ("default", True),
    ("kube-system", True),
    ("kube-public", True),
    ("kube-node-lease", True),
    ("kube-anything", True),
    ("aifleet-system", True),
    ("aifleet-other", True),
    ("openshift-monitoring", True),
], ids=lambda v: str(v))
def test_system_namespaces_are_never_a_team(team: str, refused: bool) -> None:
    assert (tenant_namespace_problem(team) is not None) is refused


@pytest.mark.parametrize(("key", "refused"), [
    ("owner", False),
    ("app.kubernetes.io/name", False),
    ("example.com/aifleet.dev", False),
    ("notaifleet.dev/x", False),  # another domain that merely ends in the same letters
    ("aifleet.dev/workload", True),
    ("aifleet.dev/managed-by", True),
    ("aifleet.dev/lease-generation", True),
    ("aifleet.dev/anything", True),
    ("sim.aifleet.dev/exit-code", True),
    ("AIFLEET.DEV/x", True),
], ids=lambda v: str(v))
def test_the_controllers_prefix_is_reserved(key: str, refused: bool) -> None:
    assert (reserved_key_problem(key) is not None) is refused


@pytest.mark.parametrize(("path", "name", "expected"), [
    ("workloads/nlp-team/train.yaml", "train", "nlp-team/train"),
    ("workloads/nlp-team/train.yaml", None, "nlp-team/train"),
    ("workloads/nlp-team/train.yml", None, "nlp-team/train"),
    ("workloads/nlp-team/file.yaml", "other", "nlp-team/other"),
    ("workloads/nlp-team/sub/deep.yaml", None, "nlp-team/deep"),
    # the folder is the team, whatever the document says
    ("workloads/evil-team/x.yaml", "serve", "evil-team/serve"),
    ("workloads/x.yaml", "x", None),
    ("clusters/eu.yaml", "eu", None),
    ("policies/p.yaml", None, None),
], ids=lambda v: str(v))
def test_a_files_workload_id_comes_from_its_team_folder(path: str, name: str | None,
                                                         expected: str | None) -> None:
    assert path_workload_id(path, name) == expected


@pytest.mark.parametrize(("previous", "unreadable", "declared", "expected"), [
    ({"w/a.yaml": ["t/a"]}, ["w/a.yaml"], [], {"t/a": "w/a.yaml"}),
    # the file holds another name than its own: only the previous commit knows it
    ({"w/file.yaml": ["t/real"]}, ["w/file.yaml"], ["t/file"], {"t/real": "w/file.yaml"}),
    # the workload moved to a file that reads: not held back
    ({"w/a.yaml": ["t/a"]}, ["w/a.yaml"], ["t/a"], {}),
    # the file reads: nothing to keep
    ({"w/a.yaml": ["t/a"]}, [], [], {}),
    # a file the previous commit did not have
    ({}, ["w/new.yaml"], [], {}),
], ids=["unreadable", "name-not-path", "moved", "readable", "new-file"])
def test_a_workload_in_a_file_that_stops_reading_is_kept(
        previous: dict[str, list[str]], unreadable: list[str], declared: list[str],
        expected: dict[str, str]) -> None:
    assert kept_from_previous(previous, unreadable, declared) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("team", "name", "refused"), [
    ("nlp-team", "serve", False),
    ("t" * 31, "n" * 31, False),  # 63 with the dot
    ("t" * 31, "n" * 32, True),
    ("t" * 63, "n" * 63, True),
], ids=["short", "63", "64", "127"])
def test_a_workloads_inventory_label_fits_a_label_value(team: str, name: str,
                                                        refused: bool) -> None:
    assert (workload_label_problem(team, name) is not None) is refused


def test_the_controllers_own_namespace_is_never_a_team() -> None:
    """Its Lease, state and the members' credentials Secrets live there."""
    assert tenant_namespace_problem("ml-platform") is None
    problem = tenant_namespace_problem("ml-platform", "ml-platform")
    assert problem is not None and "controller's own" in problem
    assert tenant_namespace_problem("ml-platform", "ops") is None
    assert tenant_namespace_problem("kube-system", "ops") is not None  # still reserved
