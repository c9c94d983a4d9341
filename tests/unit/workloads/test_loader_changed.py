"""A commit read through a tree diff against the last one read (`load_changed`) equals a
whole read of it (`read_fleet`), and only Workload-file edits take that path."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleetdocs import base_fleet, cluster, workload
from tests.gitrepo import Content, GitRepo, Link
from workloads.gitsource import GitSource
from workloads.loader import read_fleet

Step = Callable[[random.Random, dict[str, str | bytes | Link]], dict[str, Content]]


def _edit(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    paths = sorted(p for p in files if p.startswith("workloads/"))
    path = rnd.choice(paths)
    name = path.rsplit("/", 1)[1].removesuffix(".yaml")
    team = path.split("/")[1]
    return {path: workload(name, team, data_class=rnd.choice(("eu-personal", "public")),
                           flavours=rnd.choice(("[h100-80gb]", "[a100-80gb, h100-80gb]")))}


def _add(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    team = rnd.choice(("nlp-team", "vision"))
    name = f"w{rnd.randrange(40)}"
    return {f"workloads/{team}/{name}.yaml": workload(name, team)}


def _delete(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    paths = sorted(p for p in files if p.startswith("workloads/"))
    return {rnd.choice(paths): None} if len(paths) > 1 else {}


def _break(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    paths = sorted(p for p in files if p.startswith("workloads/"))
    return {rnd.choice(paths): rnd.choice(("kind: [\n", "apiVersion: x\nkind: Workload\n"))}


def _duplicate(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    return {f"workloads/nlp-team/copy{rnd.randrange(3)}.yaml": workload("train")}


def _unplaceable(rnd: random.Random, files: dict[str, str | bytes | Link]
                 ) -> dict[str, Content]:
    return {"workloads/vision/odd.yaml": workload(
        "odd", "vision", flavours=rnd.choice(("[b200]", "[h100-80gb]")),
        data_class=rnd.choice(("nowhere", "public")))}


def _cluster(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    return {"clusters/us-east-1.yaml": cluster(
        "us-east-1", "US", (("h100-80gb", rnd.choice((16, 32)), 8), ("a100-80gb", 16, 8)))}


def _other(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    return {rnd.choice(("README.md", "workloads/nlp-team/notes.txt")): f"v{rnd.random()}"}


def _namespace(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    return {"workloads/aifleet-system/x.yaml": workload("x", "aifleet-system")}


def _link(rnd: random.Random, files: dict[str, str | bytes | Link]) -> dict[str, Content]:
    return {"workloads/vision/link.yaml": Link("../nlp-team/train.yaml")}


STEPS: tuple[Step, ...] = (_edit, _edit, _edit, _add, _add, _delete, _break, _duplicate,
                           _unplaceable, _cluster, _other, _namespace, _link)


@pytest.mark.parametrize("seed", range(6))
def test_a_commit_read_through_a_tree_diff_equals_a_whole_read(tmp_path: Path,
                                                               seed: int) -> None:
    rnd = random.Random(seed)
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    origin.commit(base_fleet())
    source = GitSource(str(origin.path), "main", tmp_path / "state",
                       controller_namespace="aifleet-system")
    diffed = 0
    for _ in range(30):
        if rnd.random() < 0.6:
            change = _edit(rnd, origin.files)
        else:
            change = rnd.choice(STEPS)(rnd, origin.files)
        sha = origin.commit(change or {"README.md": str(rnd.random())})
        if read_fleet(origin.path, sha).spec.errors and rnd.random() < 0.5:
            sha = origin.commit(base_fleet(), replace=True)  # repaired: diffs again
        head = source._fetch_sync()
        assert head == sha
        snap = source._read_sync(head)
        whole = read_fleet(origin.path, sha, controller_namespace="aifleet-system")
        assert snap.commit == whole.commit == sha
        assert snap.spec == whole.spec
        assert list(snap.spec.workloads) == list(whole.spec.workloads)
        assert snap.files == whole.files
        diffed += snap.edited is not None
    assert diffed > 0, "some commits took the tree diff"


def _source_at(tmp_path: Path, files: dict[str, Content]) -> tuple[GitRepo, GitSource]:
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    origin.commit(base_fleet())
    origin.commit(files)
    source = GitSource(str(origin.path), "main", tmp_path / "state")
    return origin, source


@pytest.mark.parametrize(("change", "diffed"), [
    ({"workloads/nlp-team/train.yaml": workload("train", data_class="public")}, True),
    ({"workloads/vision/new.yaml": workload("new", "vision")}, True),
    ({"README.md": "only docs"}, True),
    ({"clusters/eu-fra-1.yaml": cluster("eu-fra-1", "FR")}, False),
    ({"policies/residency.yaml": base_fleet()["policies/residency.yaml"] + "\n# c\n"}, False),
    ({"workloads/nlp-team/train.yaml": None}, False),
    ({"workloads/nlp-team/train.yaml": "kind: [\n"}, False),
    ({"workloads/nlp-team/other.yaml": workload("train")}, False),
], ids=["edit", "add", "no-fleet-file", "cluster", "policy", "delete", "broken",
        "duplicate-id"])
def test_only_workload_edits_are_read_through_the_diff(
        tmp_path: Path, change: dict[str, Content], diffed: bool) -> None:
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    origin.commit(base_fleet())
    source = GitSource(str(origin.path), "main", tmp_path / "state")
    source._read_sync(source._fetch_sync())
    parsed = source.cache.misses
    sha = origin.commit(change)
    snap = source._read_sync(source._fetch_sync())
    assert (snap.edited is not None) is diffed
    assert snap.spec == read_fleet(origin.path, sha).spec
    if diffed:
        assert source.cache.misses - parsed == sum(
            1 for p in change if p.startswith("workloads/")), "only changed files parsed"
        assert snap.edited is not None
        assert snap.edited[1] == frozenset(
            w for w in snap.spec.workloads if f"/{w.split('/')[1]}.yaml" in "".join(change))


def test_a_fleet_in_a_folder_of_the_repo_is_diffed_there(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    origin.commit({f"infra/fleet/{k}": v for k, v in base_fleet().items()})
    source = GitSource(str(origin.path), "main", tmp_path / "state", subdir="infra/fleet")
    source._read_sync(source._fetch_sync())
    sha = origin.commit({"infra/fleet/workloads/nlp-team/train.yaml": workload(
        "train", data_class="public"), "infra/other/workloads/x/y.yaml": "kind: [\n"})
    snap = source._read_sync(source._fetch_sync())
    fresh = GitSource(str(origin.path), "main", tmp_path / "fresh", subdir="infra/fleet")
    whole = fresh._read_sync(fresh._fetch_sync())
    assert snap.edited is not None and whole.edited is None
    assert snap.commit == whole.commit == sha
    assert snap.spec == whole.spec and snap.files == whole.files
    assert snap.spec.sources[("Workload", "nlp-team/train")].file == \
        "infra/fleet/workloads/nlp-team/train.yaml"
