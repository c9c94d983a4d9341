"""`fleet plan --base --head` on real Git repos with two branches, as a PR check runs it.

Each case builds a fleet repo with pygit2 (base on `main`, the change on a `feature`
branch), runs the real `fleet` console entry point in a subprocess, and checks the
output: each kind of change, a guardrail violation, a protected-path change, a
displaced workload of another team, a stale plan; the Markdown against golden files
(`tests/integration/golden/*.md`; regenerate with `AIFLEET_REGEN_GOLDEN=1`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controllers.cli import main
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema
from workloads.changes import MergeConflict, read_change

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("AIFLEET_REGEN_GOLDEN") == "1"


def fleet_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process, as CI runs it."""
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    """`fleet ARGS` in this process (the same `main`, without a new interpreter per call,
    to keep the suite fast); exit code, stdout and stderr as a subprocess would give."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["fleet", *args], code, out.getvalue(), err.getvalue())


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
    """Two EU clusters of 16 H100 each, one US; nlp-team and vision-team workloads.

    Placed (deterministic): train on eu-fra-1, det on eu-par-1, eval on us-east-1; both
    EU clusters are full.
    """
    return {
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE"),
        "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR"),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 32, 8),)),
        "policies/residency.yaml": POLICY,
        "policies/quotas.yaml": QUOTAS,
        "policies/owners.yaml": OWNERS,
        "policies/guardrails.yaml": GUARDRAILS,
        "workloads/nlp-team/train.yaml": wl("train", "nlp-team", replicas=2),
        "workloads/nlp-team/eval.yaml": wl("eval", "nlp-team", count=4, dc="public")
        + "    clusters: [us-east-1]\n",
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


def test_a_pr_that_breaks_a_workload_file_keeps_the_workload_it_held(tmp_path: Path) -> None:
    # the file is named det.yaml but the base read it as vision-team/det: renamed to
    # main.yaml in base, broken in the PR, only the base says what it held
    files = base_files()
    files["workloads/vision-team/main.yaml"] = files.pop("workloads/vision-team/det.yaml")
    repo = GitRepo(tmp_path / "fleet")
    base = repo.commit(files, "base", replace=True)
    repo.repo.references.create("refs/heads/feature", base)
    saved = dict(repo.files)
    repo.commit({"workloads/vision-team/main.yaml": "kind: [\n"}, "broken", branch="feature")
    repo.files = saved
    change = read_change(repo.path, "main", "feature")
    assert "vision-team/det" in change.base.spec.workloads
    assert "vision-team/det" in change.head.spec.invalid  # kept, as the controller would


# ----------------------------------------------------------------- the command


def plan_json(repo: GitRepo, *extra: str) -> tuple[int, dict[str, Any]]:
    r = fleet("plan", str(repo.path), "--base", "main", "--head", "feature",
              "--format", "json", *extra)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in doc["workloads"]}


def where(w: dict[str, Any]) -> list[str]:
    return sorted(p["cluster"] for p in w["placements"])


def base_placement(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The base plan, from a change that changes nothing."""
    repo = two_branches(tmp_path / "probe", {})
    code, doc = plan_json(repo)
    assert code == 0 and doc["diff"]["counts"]["Unchanged"] == 3
    return by_id(doc)


def test_each_kind_of_change_in_one_pr(tmp_path: Path) -> None:
    before = base_placement(tmp_path)
    assert [where(before[w]) for w in ("nlp-team/train", "vision-team/det", "nlp-team/eval")
            ] == [["eu-fra-1"], ["eu-par-1"], ["us-east-1"]]
    # train's data becomes public and it is pinned to the US: it moves
    pinned = wl("train", "nlp-team", replicas=2, dc="public") + "    clusters: [us-east-1]\n"
    repo = two_branches(tmp_path, {
        "workloads/nlp-team/new.yaml": wl("new", "nlp-team", count=2, dc="public"),
        "workloads/nlp-team/eval.yaml": None,
        "workloads/nlp-team/train.yaml": pinned,
    })
    code, doc = plan_json(repo)
    w = by_id(doc)
    assert code == 0
    assert {k: v["change"] for k, v in w.items()} == {
        "nlp-team/new": "Added", "nlp-team/eval": "Removed", "nlp-team/train": "Moved",
        "vision-team/det": "Unchanged"}
    assert where(w["nlp-team/train"]) == ["us-east-1"]
    assert [p["cluster"] for p in w["nlp-team/train"]["before"]] == ["eu-fra-1"]
    assert w["nlp-team/eval"]["placements"] == [] and w["nlp-team/eval"]["before"]
    assert doc["source"]["base"] != doc["source"]["commit"]
    jsonschema.validate(doc, load_schema("plan.schema.json"))


def test_fewer_replicas_on_the_same_cluster_is_resized(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": wl("train", "nlp-team")})
    code, doc = plan_json(repo)
    train = by_id(doc)["nlp-team/train"]
    assert code == 0 and train["change"] == "Resized" and train["specChanged"]
    assert [p["replicas"] for p in train["before"]] == [2]
    assert [p["replicas"] for p in train["placements"]] == [1]
    assert doc["diff"]["costPerHour"]["before"] - doc["diff"]["costPerHour"]["after"] == 20.0


def test_a_guardrail_violation_fails_the_plan_with_file_and_line(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/hub.yaml": wl(
        "hub", "nlp-team", image="pytorch/pytorch:2.3")})
    code, doc = plan_json(repo)
    assert code == 1
    assert doc["errors"] == [{
        "file": "workloads/nlp-team/hub.yaml", "line": 8, "kind": "Workload",
        "name": "nlp-team/hub", "guardrail": True,
        "message": "image pytorch/pytorch:2.3 (docker.io/pytorch/pytorch) is not from an "
                   "allowed registry (registry.internal) (guardrail allowedRegistries "
                   "fleet-wide, policies/guardrails.yaml:7)"}]
    assert by_id(doc)["nlp-team/hub"]["status"] == "Invalid"
    text = fleet("plan", str(repo.path), "--base", "main", "--head", "feature")
    assert text.returncode == 1
    assert "workloads/nlp-team/hub.yaml:8: image pytorch/pytorch:2.3" in text.stdout


def test_protected_paths_and_another_teams_folder_need_approval(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 32, 8),),
                                           labels="{tier: dev}"),
        "workloads/vision-team/det.yaml": wl("det", "vision-team", replicas=1),
        "workloads/nlp-team/new.yaml": wl("new", "nlp-team", count=2, dc="public"),
    })
    code, doc = plan_json(repo, "--team", "nlp-team")
    assert code == 0  # approvals are listed, not failed: the forge enforces them
    assert [(a["file"], a["kind"], a["owners"]) for a in doc["diff"]["approvals"]] == [
        ("clusters/us-east-1.yaml", "protected", ["@acme/platform"]),
        ("workloads/vision-team/det.yaml", "other-team", ["@acme/vision-leads"])]
    md = fleet("plan", str(repo.path), "--base", "main", "--head", "feature", "--format",
               "markdown", "--team", "nlp-team").stdout
    assert "🔒 needs approval from @acme/platform, @acme/vision-leads" in md.splitlines()[1]


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {})
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "nope")
    assert r.returncode == 2 and "revision 'nope' not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = fleet("plan", str(repo.path), "--base", "main")
    assert r.returncode == 2 and "--base and --head go together" in r.stderr


def test_a_saved_plan_goes_stale_when_base_fleet_head_or_capacity_change(
        tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team",
                                                                      count=2, dc="public")})
    saved = tmp_path / "plan.json"
    r = fleet("plan", str(repo.path), "--base", "main", "--head", "feature", "--format", "json")
    saved.write_text(r.stdout)
    doc = json.loads(r.stdout)
    assert doc["source"]["baseRef"] == "main" and doc["source"]["headRef"] == "feature"
    assert len(doc["source"]["capacityDigest"]) == 64

    def verify() -> subprocess.CompletedProcess[str]:
        return fleet("plan", "--verify", str(saved), str(repo.path))

    ok = verify()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"plan {saved}: still holds"

    # base moves, but no fleet file changes: the plan still holds
    repo.commit({"README.md": "fleet repo\n"}, "docs only")
    r = verify()
    assert r.returncode == 0 and "but no fleet file changed" in r.stdout

    # capacity changes (a cluster file on base grows): stale
    repo.commit({"clusters/us-east-1.yaml": cluster("us-east-1", "US",
                                                    (("h100-80gb", 48, 8),))}, "grow")
    r = verify()
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("STALE base main moved to ")
    assert lines[0].endswith("and fleet files changed: plan again")
    assert lines[2].startswith("STALE capacity changed")
    assert lines[-1] == f"plan {saved}: is stale"


def test_a_push_to_head_makes_the_plan_stale(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team",
                                                                      count=2, dc="public")})
    saved = tmp_path / "plan.json"
    saved.write_text(fleet("plan", str(repo.path), "--base", "main", "--head", "feature",
                           "--format", "json").stdout)
    saved_files = dict(repo.files)
    repo.files = {**base_files(), "workloads/nlp-team/new.yaml": wl("new", "nlp-team")}
    repo.commit({}, "second push", branch="feature")
    repo.files = saved_files
    r = fleet("plan", "--verify", str(saved), str(repo.path), "--format", "json")
    assert r.returncode == 1
    checks = json.loads(r.stdout)["checks"]
    assert [c["ok"] for c in checks] == [True, False, True]
    assert "head feature is now" in checks[1]["message"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = fleet("plan", "--verify", str(bad), str(repo.path))
    assert r.returncode == 2 and "not a plan written by" in r.stderr


DEDICATED = (cluster("eu-fra-1", "DE")
             + "  taints:\n    - {key: dedicated, value: vision-team, effect: NoExecute}\n")
VISION_BIG = (wl("seg", "vision-team", replicas=2)
              + "    tolerations: [{key: dedicated, operator: Equal, value: vision-team}]\n")


def test_a_workload_of_another_team_displaced_by_the_change_is_called_out(
        tmp_path: Path) -> None:
    # vision-team dedicates eu-fra-1 to itself (NoExecute) for a new workload: nlp-team's
    # train, which runs there, cannot stay, and the other EU cluster has no room.
    assert where(base_placement(tmp_path)["nlp-team/train"]) == ["eu-fra-1"]
    repo = two_branches(tmp_path, {"clusters/eu-fra-1.yaml": DEDICATED,
                                   "workloads/vision-team/seg.yaml": VISION_BIG})
    code, doc = plan_json(repo)
    assert code == 0
    assert doc["diff"]["displaced"] == ["nlp-team/train"]
    assert doc["diff"]["authorTeam"] == "vision-team"
    train = by_id(doc)["nlp-team/train"]
    assert (train["change"], train["status"], train["specChanged"]) == ("Moved", "Pending", False)
    assert any(r["rule"] == "Taint" and r["cluster"] == "eu-fra-1" for r in train["reasons"])
    assert where(by_id(doc)["vision-team/seg"]) == ["eu-fra-1"]
    text = fleet("plan", str(repo.path), "--base", "main", "--head", "feature").stdout
    assert "!! DISPLACED Moved     nlp-team/train: eu-fra-1 (2x8 h100-80gb) -> Pending" in text


# ----------------------------------------------------------------- posting to the forge

TOKEN = "ghp_s3cr3t_never_printed_0123456789"
API = "https://api.github.test"


def test_post_keeps_one_sticky_comment_and_sets_the_plan_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import httpx
    import respx
    import structlog

    repo = two_branches(tmp_path, {"workloads/nlp-team/hub.yaml": wl(
        "hub", "nlp-team", image="pytorch/pytorch:2.3")})
    head = str(repo.repo.references["refs/heads/feature"].target)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", API)
    argv = ["plan", str(repo.path), "--base", "main", "--head", "feature", "--format",
            "markdown", "--post", "github", "--forge-repo", "acme/fleet", "--pr", "42",
            "--details-url", "https://ci.test/run/1"]
    comments: list[dict[str, Any]] = []

    def list_comments(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=comments)

    def create(request: httpx.Request) -> httpx.Response:
        comments.append({"id": 555, "body": json.loads(request.content)["body"]})
        return httpx.Response(201, json=comments[-1])

    with structlog.testing.capture_logs() as logs, respx.mock(assert_all_called=True) as mock:
        mock.get(url__startswith=f"{API}/repos/acme/fleet/issues/42/comments").mock(
            side_effect=list_comments)
        post = mock.post(f"{API}/repos/acme/fleet/issues/42/comments").mock(side_effect=create)
        patch = mock.patch(f"{API}/repos/acme/fleet/issues/comments/555").respond(200, json={})
        status = mock.post(f"{API}/repos/acme/fleet/statuses/{head}").respond(201, json={})
        assert main(argv) == 1  # the guardrail violation fails the check
        first = capsys.readouterr()
        assert main(argv) == 1  # the second push: the same comment is edited
        second = capsys.readouterr()

    assert post.call_count == 1 and patch.call_count == 1
    body = json.loads(post.calls.last.request.content)["body"]
    assert body == first.out  # the comment is exactly the Markdown printed
    assert json.loads(patch.calls.last.request.content) == {"body": second.out}
    assert post.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = json.loads(status.calls.last.request.content)
    assert sent == {"state": "failure", "context": "aifleet/plan",
                    "description": "1 guardrail violation",
                    "target_url": "https://ci.test/run/1"}
    assert "plan comment created on acme/fleet#42" in first.err
    assert "plan comment updated on acme/fleet#42" in second.err
    for text in (first.out, first.err, second.out, second.err, repr(logs)):
        assert TOKEN not in text


def test_post_without_a_token_says_which_variable_and_exits_2(
        tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {})
    r = fleet("plan", str(repo.path), "--base", "main", "--head", "feature", "--post",
              "gitlab", "--forge-repo", "12", "--pr", "3")
    assert r.returncode == 2 and "set GITLAB_TOKEN" in r.stderr


# ----------------------------------------------------------------- golden Markdown

GOLDEN_CASES: list[tuple[str, dict[str, str | bytes | None], list[str], int]] = [
    ("mixed_change", {
        "workloads/nlp-team/new.yaml": wl("new", "nlp-team", count=2, dc="public"),
        "workloads/nlp-team/eval.yaml": None,
        "workloads/nlp-team/train.yaml": wl("train", "nlp-team", image=(
            "registry.internal/trainer:v2")),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 32, 8),),
                                           labels="{tier: dev}"),
    }, ["--team", "nlp-team"], 0),
    ("guardrail_violation", {
        "workloads/nlp-team/hub.yaml": wl("hub", "nlp-team", image="pytorch/pytorch:2.3"),
        "workloads/nlp-team/huge.yaml": wl("huge", "nlp-team", replicas=8),
    }, [], 1),
    ("displaced_other_team", {"clusters/eu-fra-1.yaml": DEDICATED,
                              "workloads/vision-team/seg.yaml": VISION_BIG}, [], 0),
    ("no_change", {}, [], 0),
]


@pytest.mark.parametrize(("name", "change", "extra", "code"),
                         GOLDEN_CASES,
                         ids=[c[0] for c in GOLDEN_CASES])
def test_markdown_comment_matches_the_golden_file(
        tmp_path: Path, name: str, change: dict[str, str | bytes | None], extra: list[str],
        code: int) -> None:
    repo = two_branches(tmp_path, change)
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature",
                      "--format", "markdown", *extra)
    assert r.returncode == code, r.stderr
    golden = GOLDEN / f"{name}.md"
    if REGEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(r.stdout)
    assert golden.exists(), f"no {golden}: run with AIFLEET_REGEN_GOLDEN=1 and review it"
    assert r.stdout == golden.read_text()


# ----------------------------------------------------------------- the cache in .git


def test_the_next_plan_of_the_same_base_reads_the_cache_and_says_the_same(
        tmp_path: Path) -> None:
    from workloads import diskcache

    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team",
                                                                      count=2, dc="public")})
    args = ("plan", str(repo.path), "--base", "main", "--head", "feature", "--format", "json")
    first = fleet(*args)
    parsed = diskcache.load(repo.repo, "parsed")
    assert isinstance(parsed, dict)
    assert {k[0] for k in parsed} >= {"workloads/nlp-team/new.yaml",
                                      "workloads/nlp-team/train.yaml"}
    cache = Path(repo.repo.path) / "aifleet-cache"
    assert sorted(p.name for p in cache.iterdir()) == ["base-plan.pickle", "parsed.pickle"]
    assert all((p.stat().st_mode & 0o077) == 0 for p in cache.iterdir())
    second = fleet(*args)
    assert second.stdout == first.stdout and second.returncode == first.returncode


def test_validating_head_leaves_the_plan_nothing_to_parse_that_head_shares(
        tmp_path: Path) -> None:
    from workloads import diskcache
    from workloads.loader import ParseCache

    repo = two_branches(tmp_path, {"workloads/nlp-team/new.yaml": wl("new", "nlp-team",
                                                                      count=2, dc="public")})
    assert fleet("validate", str(repo.path), "--ref", "feature").returncode == 0
    cache = ParseCache()
    stored = diskcache.load(repo.repo, "parsed")
    assert isinstance(stored, dict) and stored
    cache.entries = stored
    read_change(repo.path, "main", "feature", cache)
    assert cache.misses == 0 and cache.hits > 0  # base's files are all in head


@pytest.mark.parametrize("spoil", ["group_writable", "garbage", "other_code"],
                         ids=["group_writable", "garbage", "other_code"])
def test_a_cache_that_cannot_be_trusted_is_ignored(tmp_path: Path, spoil: str) -> None:
    from workloads import diskcache

    repo = GitRepo(tmp_path / "r")
    repo.commit(base_files())
    assert diskcache.save(repo.repo, "x", {"a": 1}, key="k")
    assert diskcache.load(repo.repo, "x", key="k") == {"a": 1}
    assert diskcache.load(repo.repo, "x", key="other") is None
    path = Path(repo.repo.path) / "aifleet-cache" / "x.pickle"
    if spoil == "group_writable":
        path.chmod(0o664)
    elif spoil == "garbage":
        path.write_bytes(b"not a pickle")
    else:  # written by another version of aifleet
        import pickle

        path.write_bytes(pickle.dumps((("another version", "k"), {"a": 1})))
    assert diskcache.load(repo.repo, "x", key="k") is None


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads import diskcache

    monkeypatch.setenv("AIFLEET_NO_CACHE", "1")
    repo = GitRepo(tmp_path / "r")
    repo.commit(base_files())
    assert not diskcache.save(repo.repo, "x", 1)
    assert not (Path(repo.repo.path) / "aifleet-cache").exists()


def test_a_plan_that_cannot_run_says_so_on_the_pr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import respx

    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": wl("train", "nlp-team",
                                                                        replicas=3)})
    repo.commit({"workloads/nlp-team/train.yaml": wl("train", "nlp-team", replicas=1)}, "x")
    head = str(repo.repo.references["refs/heads/feature"].target)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", API)
    with respx.mock(assert_all_called=True) as mock:
        mock.get(url__startswith=f"{API}/repos/acme/fleet/issues/9/comments").respond(
            200, json=[])
        comment = mock.post(f"{API}/repos/acme/fleet/issues/9/comments").respond(
            201, json={"id": 1})
        status = mock.post(f"{API}/repos/acme/fleet/statuses/{head}").respond(201, json={})
        r = fleet("plan", str(repo.path), "--base", "main", "--head", "feature", "--post",
                  "github", "--forge-repo", "acme/fleet", "--pr", "9")
    assert r.returncode == 2 and "conflicts in workloads/nlp-team/train.yaml" in r.stderr
    body = json.loads(comment.calls.last.request.content)["body"]
    assert body.startswith("<!-- aifleet-plan -->\n## aifleet plan: ⚠️ could not run\n")
    assert "conflicts in workloads/nlp-team/train.yaml" in body
    assert json.loads(status.calls.last.request.content) == {
        "state": "error", "context": "aifleet/plan", "description": "the plan could not run"}
    assert TOKEN not in r.stdout + r.stderr


# ----------------------------------------------------------------- truthful labels


def test_an_invalid_workload_is_kept_running_not_counted_as_freed(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": "kind: [\n"})
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature",
                      "--format", "json")
    assert r.returncode == 1, r.stderr  # head has an error: the broken file
    doc = json.loads(r.stdout)
    train = by_id(doc)["nlp-team/train"]
    assert train["label"] == "Invalid (kept running)"
    cost = doc["diff"]["costPerHour"]
    assert cost["after"] == cost["before"] and cost["teams"] == {}
    assert all(t["before"] == t["after"] for t in doc["diff"]["teams"])
    assert all(f["before"] == f["after"] for f in doc["diff"]["flavours"].values())
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature")
    line = next(x for x in r.stdout.splitlines() if "nlp-team/train:" in x)
    assert line.startswith("Invalid (kept running) nlp-team/train: eu-fra-1")
    assert "kept running on eu-fra-1" in line
    assert "gpus nlp-team" not in r.stdout  # no GPUs freed


def test_a_data_class_change_is_a_change_even_when_nothing_moves(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": wl(
        "train", "nlp-team", replicas=2, dc="public")})
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "nlp-team/train:" in x)
    assert line.startswith("Changed") and "Unchanged" not in line
    assert "dataClass eu-personal -> public" in r.stdout
    assert "1 changed" in r.stdout.splitlines()[1]
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature",
                      "--format", "markdown")
    assert "| `nlp-team/train` | Changed |" in r.stdout


def test_the_base_side_of_the_manifest_diff_shows_the_base_commit(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {"workloads/nlp-team/train.yaml": wl(
        "train", "nlp-team", image="registry.internal/trainer:v2", replicas=2)})
    r = fleet_process("plan", str(repo.path), "--base", "main", "--head", "feature",
                      "--format", "json")
    doc = json.loads(r.stdout)
    base, head = doc["source"]["base"], doc["source"]["commit"]
    text = doc["diff"]["manifests"]["eu-fra-1"]
    assert f"-    aifleet.dev/source-commit: {base}" in text
    assert f"+    aifleet.dev/source-commit: {head}" in text
    assert f"-    aifleet.dev/source-commit: {head}" not in text
    # det's objects are not touched by the change: not in the diff at all
    assert "vision-team/det" not in "".join(doc["diff"]["manifests"].values())


def test_verify_on_a_plan_of_one_commit_says_so_in_one_line(tmp_path: Path) -> None:
    repo = two_branches(tmp_path, {})
    r = fleet_process("plan", str(repo.path), "--format", "json")
    saved = tmp_path / "plain.json"
    saved.write_text(r.stdout)
    r = fleet_process("plan", str(repo.path), "--verify", str(saved))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "KeyError" not in r.stderr
    assert "is a plan of one commit: --verify checks a plan of a change" in r.stderr
    assert r.stdout == ""
