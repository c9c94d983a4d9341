"""A Workload file that does not read is still the workload its path names.

Findings 2, 3, 11 of issue 15 and the smaller tenancy ones, at the loader: a scalar
PyYAML cannot construct is a `file:line` error; a file that no longer parses keeps its
path-derived id (and the id the previous commit had there) Invalid, so the controller
protects what it runs; a file speaks only for its own team folder; system namespaces,
the controller's label prefix and malformed image references are refused. Each case is
a real Git repo made with pygit2; the fuzz test feeds mutated files to the loader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.spec import FleetSpec
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from workloads.loader import load_entries, parse_file, read_fleet
from workloads.source import FileEntry, git_files, resolve_tree

W = "workloads/nlp-team"
GOOD = workload("serve", data_class="public")

CORRUPT: dict[str, bytes] = {
    "unclosed-brace": GOOD.replace("flavours: [h100-80gb]", "flavours: {h100-80gb").encode(),
    "non-utf8-byte": GOOD.replace("public", "publ\xefc").encode("latin-1"),
    "duplicate-key": GOOD.replace("  replicas: 2\n", "  replicas: 2\n  replicas: 3\n").encode(),
    "tab-indent": GOOD.replace("  replicas: 2\n", "\treplicas: 2\n").encode(),
    "kind-typo": GOOD.replace("kind: Workload", "kind: Workolad").encode(),
}


def read(tmp_path: Path, files: dict[str, str | bytes]) -> FleetSpec:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), **files})
    return read_fleet(repo.path).spec


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_file_that_no_longer_parses_keeps_its_workload_invalid(tmp_path: Path,
                                                                 kind: str) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), f"{W}/serve.yaml": GOOD})
    before = read_fleet(repo.path).spec
    assert "nlp-team/serve" in before.workloads
    repo.commit({f"{W}/serve.yaml": CORRUPT[kind]})
    for spec in (read_fleet(repo.path).spec, read_fleet(repo.path, worktree=True).spec,
                 load_entries(list(git_files(resolve_tree(repo.repo, "HEAD", ""))))):
        # its path names it, with or without the history
        assert "nlp-team/serve" not in spec.workloads
        assert "nlp-team/serve" in spec.invalid, kind
        assert all(d.file == f"{W}/serve.yaml" and d.line for d in spec.invalid["nlp-team/serve"])
        assert "nlp-team/train" in spec.workloads


def test_history_names_the_workload_of_a_file_named_otherwise(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), f"{W}/api.yaml": GOOD})  # file api.yaml, workload serve
    repo.commit({"workloads/nlp-team/other.yaml": workload("other")}, "unrelated")
    repo.commit({f"{W}/api.yaml": CORRUPT["unclosed-brace"]})
    for spec in (read_fleet(repo.path).spec, read_fleet(repo.path, worktree=True).spec):
        assert "nlp-team/serve" in spec.invalid
        assert "nlp-team/api" not in spec.invalid  # the history knows better than the path
        kept = spec.invalid["nlp-team/serve"][-1]
        assert kept.file == f"{W}/api.yaml" and kept.line is not None
        assert "earlier commit" in kept.message
        assert not {d.message for d in spec.errors} & {kept.message}  # not an error twice
    # through a second broken version too: the last version that reads counts
    repo.commit({f"{W}/api.yaml": CORRUPT["tab-indent"]})
    assert "nlp-team/serve" in read_fleet(repo.path).spec.invalid
    # but not once the file was deleted in between: then it is a new file
    repo.commit({f"{W}/api.yaml": None})
    repo.commit({f"{W}/api.yaml": CORRUPT["tab-indent"]})
    assert "nlp-team/serve" not in read_fleet(repo.path).spec.invalid


def test_a_workload_that_moved_to_a_file_that_reads_is_not_held_back(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({**base_fleet(), f"{W}/api.yaml": GOOD})
    repo.commit({f"{W}/api.yaml": CORRUPT["duplicate-key"], f"{W}/serve.yaml": GOOD})
    spec = read_fleet(repo.path).spec
    assert "nlp-team/serve" in spec.workloads


def test_a_name_guessed_from_a_broken_files_path_yields_to_a_declared_one(
        tmp_path: Path) -> None:
    # serve.yaml is broken, and api.yaml now declares nlp-team/serve: that one is planned
    spec = read(tmp_path, {f"{W}/serve.yaml": CORRUPT["unclosed-brace"],
                           f"{W}/api.yaml": GOOD})
    assert "nlp-team/serve" in spec.workloads
    assert "nlp-team/serve" not in spec.invalid


def test_a_file_cannot_freeze_another_teams_workload(tmp_path: Path) -> None:
    spec = read(tmp_path, {
        "workloads/health-team/serve.yaml": workload("serve", "health-team",
                                                     data_class="public"),
        "workloads/evil-team/serve.yaml": workload("serve", "evil-team",
                                                   namespace="health-team"),
    })
    assert "health-team/serve" in spec.workloads
    assert list(spec.invalid) == ["evil-team/serve"]
    d = spec.invalid["evil-team/serve"][0]
    assert (d.file, d.line) == ("workloads/evil-team/serve.yaml", 5)
    assert "does not match its folder" in d.message


@pytest.mark.parametrize("team", ["kube-system", "default", "aifleet-system", "kube-public"])
def test_a_system_namespace_is_no_team_folder(tmp_path: Path, team: str) -> None:
    spec = read(tmp_path, {f"workloads/{team}/x.yaml": workload("x", team,
                                                                 data_class="public")})
    assert f"{team}/x" not in spec.workloads
    assert [d.format() for d in spec.errors] == [
        f"workloads/{team}/x.yaml:5: namespace {team} is reserved to the cluster or the "
        "controller (kube-*, default, aifleet-*, openshift-*): a team folder may not use it"]


def test_a_name_too_long_for_the_inventory_label_is_refused_at_its_line(
        tmp_path: Path) -> None:
    name = "n" * (63 - len("nlp-team.") + 1)
    spec = read(tmp_path, {f"{W}/{name}.yaml": workload(name, data_class="public")})
    assert f"nlp-team/{name}" in spec.invalid
    (d,) = spec.errors
    assert (d.file, d.line) == (f"{W}/{name}.yaml", 4)
    assert "over Kubernetes' 63" in d.message


@pytest.mark.parametrize(("field", "key"), [
    ("labels", "aifleet.dev/workload"),
    ("labels", "aifleet.dev/managed-by"),
    ("annotations", "aifleet.dev/lease-generation"),
    ("annotations", "sim.aifleet.dev/exit-code"),
])
def test_the_controllers_label_prefix_is_refused(tmp_path: Path, field: str, key: str) -> None:
    doc = GOOD.replace("spec:\n", f"  {field}:\n    owner: nlp\n    {key}: x\n" + "spec:\n", 1)
    spec = read(tmp_path, {f"{W}/serve.yaml": doc})
    assert "nlp-team/serve" in spec.invalid
    assert [d.format() for d in spec.errors] == [
        f"{W}/serve.yaml:8: metadata.{field}.{key}: the aifleet.dev/ prefix is reserved "
        "to the controller; a workload may not set it"]


@pytest.mark.parametrize("image", [
    '"registry.internal/trainer:v1\\nx"', '"registry.internal/a b"',
    "registry.internal/../evil/x", "registry.internal/a..b"])
def test_an_image_that_is_no_reference_is_refused_at_its_line(tmp_path: Path,
                                                              image: str) -> None:
    doc = GOOD.replace("registry.internal/trainer:v1", image)
    spec = read(tmp_path, {f"{W}/serve.yaml": doc})
    assert "nlp-team/serve" in spec.invalid
    (d,) = spec.errors
    assert (d.file, d.line) == (f"{W}/serve.yaml", 8)
    assert "is not an image reference" in d.message


BIG = "9" * 4301


@pytest.mark.parametrize(("old", "new", "line", "says"), [
    ("  replicas: 2\n", f"  replicas: {BIG}\n", 9, "more than 4300 digits"),
    ("  replicas: 2\n", f"  replicas: !!int {BIG}\n", 9, "more than 4300 digits"),
    ("registry.internal/trainer:v1", "2001-13-45", 8, "not a valid one"),
    ("spec:\n", "  annotations:\n    review-by: 2025-02-30\nspec:\n", 7, "not a valid one"),
    ("spec:\n", "  annotations:\n    review-by: !!timestamp 2025-02-30\nspec:\n", 7,
     "not a valid one"),
    ("  replicas: 2\n", "  replicas: !!float abc\n", 9, "cannot be read as a YAML float"),
], ids=["int", "tagged-int", "image-date", "annotation-date", "tagged-date", "tagged-float"])
def test_a_scalar_yaml_cannot_construct_is_a_file_line_error(
        tmp_path: Path, old: str, new: str, line: int, says: str) -> None:
    doc = GOOD.replace(old, new, 1)
    spec = read(tmp_path, {f"{W}/serve.yaml": doc})
    (d,) = spec.errors
    assert (d.file, d.line) == (f"{W}/serve.yaml", line)
    assert says in d.message and BIG not in d.message
    assert "nlp-team/serve" in spec.invalid
    assert "nlp-team/train" in spec.workloads


def _entry(path: str, data: bytes) -> FileEntry:
    return FileEntry(path, path, len(data), "", lambda: data)


FLEET = {p: (c.encode() if isinstance(c, str) else c) for p, c in base_fleet().items()}
SEED = {**FLEET, f"{W}/serve.yaml": GOOD.encode()}

mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 16)),
    st.tuples(st.just("replace"), st.integers(0, 10_000),
              st.sampled_from([b"\t", b"{", b"[", b"}", b"]", b"&a", b"*a", b"!!int ",
                               b"!!timestamp ", b"2025-02-30", b"9" * 4301, b"\xff",
                               b"\x00", b": ", b"\n- ", b"---\n", b"<<: ", b"'", b'"',
                               b"~", b".inf", b"0x", b"1_0", b"2001-12-14t21:59:43.10-99:00"])),
)


def _mutate(data: bytes, steps: list[tuple[str, int, object]]) -> bytes:
    for op, at, arg in steps:
        i = at % (len(data) + 1)
        if op == "insert" or op == "replace":
            assert isinstance(arg, bytes)
            data = data[:i] + arg + data[i + (len(arg) if op == "replace" else 0):]
        else:
            assert isinstance(arg, int)
            data = data[:i] + data[i + arg:]
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from([f"{W}/serve.yaml", "workloads/kube-system/serve.yaml",
                             "clusters/eu-fra-1.yaml", "policies/residency.yaml"]),
       steps=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_fleet_files_never_raise_from_the_loader(
        path: str, steps: list[tuple[str, int, object]]) -> None:
    data = _mutate(SEED.get(path, GOOD.encode()), steps)
    parsed = parse_file(path, path, data)
    if path.startswith("workloads/") and parsed.errors:
        assert parsed.invalid or parsed.path_id or any(
            d.kind == "Workload" for d, _ in parsed.documents)
    files = {**SEED, path: data}
    load_entries([_entry(p, d) for p, d in sorted(files.items())])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes_never_raise_from_the_loader(data: bytes) -> None:
    files = {**SEED, f"{W}/serve.yaml": data}
    spec = load_entries([_entry(p, d) for p, d in sorted(files.items())])
    assert "nlp-team/serve" in spec.workloads or "nlp-team/serve" in spec.invalid \
        or not spec.errors or all(not d.file.startswith(W) for d in spec.errors)


def test_a_kind_that_is_a_list_is_an_error_not_a_crash(tmp_path: Path) -> None:
    # found by the fuzz test: `kind not in KINDS` raised TypeError (a list is unhashable)
    spec = read(tmp_path, {"policies/broken.yaml": "apiVersion: aifleet.dev/v1alpha1\n"
                                                   "kind:\n- ResidencyPolicy\n",
                           f"{W}/serve.yaml": GOOD.replace("kind: Workload",
                                                           "kind: [Workload]")})
    assert {(d.file, d.line) for d in spec.errors} == {
        ("policies/broken.yaml", 2), (f"{W}/serve.yaml", 2)}
    assert "nlp-team/serve" in spec.invalid


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(mutation, min_size=1, max_size=6))
def test_read_fleet_of_a_mutated_commit_never_raises_and_keeps_the_workload(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, object]]) -> None:
    # the whole path a controller takes: Git, the parse, the history walk, assemble
    repo = GitRepo(tmp_path_factory.mktemp("fleet"))
    repo.commit({**base_fleet(), f"{W}/api.yaml": GOOD})
    data = _mutate(GOOD.encode(), steps)
    repo.commit({f"{W}/api.yaml": data})
    spec = read_fleet(repo.path).spec
    assert "nlp-team/train" in spec.workloads
    parsed = parse_file(f"{W}/api.yaml", f"{W}/api.yaml", data)
    if parsed.errors and not any(d.kind == "Workload" for d, _ in parsed.documents):
        # unreadable as a Workload: what it held before is kept (or it names it itself)
        assert "nlp-team/serve" in spec.invalid
