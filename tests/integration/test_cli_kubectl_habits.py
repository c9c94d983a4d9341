"""kubectl/flux habits of the `fleet` CLI, from the outside (a subprocess each): `-o yaml`
is the `-o json` document, colours only at a terminal without NO_COLOR, `fleet get`
with label selectors, `fleet wait`, `fleet version`, `fleet completion`, and
`fleet plan --detailed-exitcode`."""

from __future__ import annotations

import copy
import json
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controllers.server import Endpoints, bound_port, build_app, serve
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema
from tests.support.status import DOC

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "fleet")
FLEET = [sys.executable, "-m", "controllers.cli"]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FLEET_SERVER", "FLEET_TEAM")}
    out.update(extra)
    return out


def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEET, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env(**extra), check=False)


# ------------------------------------------------------------------ -o yaml


@pytest.mark.parametrize("args", [
    ["validate", EXAMPLE, "--worktree"],
    ["plan", EXAMPLE, "--worktree"],
    ["explain", "nlp-team/llama-finetune", EXAMPLE, "--worktree"],
    ["whatif", EXAMPLE, "--worktree", "--drain", "eu-fra-1"],
], ids=["validate", "plan", "explain", "whatif"])
def test_yaml_output_is_the_json_document(args: list[str]) -> None:
    as_json = run(*args, "-o", "json")
    as_yaml = run(*args, "-o", "yaml")
    assert as_json.returncode == as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert not as_yaml.stdout.lstrip().startswith("{")  # block style, not JSON in YAML


def test_an_unknown_output_format_names_the_choices() -> None:
    r = run("plan", EXAMPLE, "--worktree", "-o", "toml")
    assert r.returncode == 2 and "unknown format 'toml'" in r.stderr and "yaml" in r.stderr


# ------------------------------------------------------------------ colours


def _at_a_terminal(*args: str, **extra: str) -> str:
    """stdout of `fleet ARGS` when it is a terminal (a pseudo-terminal here)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*FLEET, *args], cwd=ROOT, stdout=follower,
                              stderr=subprocess.PIPE, timeout=120, env=env(**extra),
                              check=False)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
        assert proc.returncode == 0, proc.stderr
        return b"".join(chunks).decode()
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


def test_tables_are_coloured_only_at_a_terminal_without_no_color() -> None:
    args = ("whatif", EXAMPLE, "--worktree", "--drain", "eu-fra-1")
    assert "\x1b[1mMOVES" in _at_a_terminal(*args)
    assert "\x1b[" not in _at_a_terminal(*args, NO_COLOR="")
    assert "\x1b[" not in _at_a_terminal(*args, NO_COLOR="1")
    piped = run(*args)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout and "MOVES" in piped.stdout


# ------------------------------------------------------------------ a status server


def labelled_doc() -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    doc["clusters"][0]["labels"] = {"tier": "prod", "gpu-generation": "hopper"}
    doc["clusters"][1]["labels"] = {"tier": "dev"}
    labels = [{"tier": "prod", "owner": "alice"}, {"tier": "dev"}, {}]
    for w, lab in zip(doc["workloads"], labels, strict=True):
        w["labels"] = lab
        w["team"] = w["id"].split("/")[0]
    doc["workloads"][0]["health"] = "Running"
    return doc


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async def nothing() -> None:
        return None

    doc = labelled_doc()
    ep = Endpoints(status=lambda: doc, capacity=dict, metrics=str,
                   ready=lambda: (True, "ok"), on_git_hook=nothing, version="9.8.7")
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


async def arun(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(run, *args, **extra)


def test_the_labelled_document_follows_the_status_schema() -> None:
    jsonschema.validate(labelled_doc(), load_schema("status.schema.json"))


async def test_get_workloads_lists_every_team_and_filters_by_label(url: str) -> None:
    r = await arun("get", "workloads", "--server", url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["WORKLOAD", "STATUS", "SYNC", "HEALTH", "CLUSTERS", "GPUS"]
    assert [ln.split()[0] for ln in lines[1:]] == [
        "nlp-team/llama-finetune", "vision-team/detector", "search-team/ranker"]
    assert "nlp-team/llama-finetune  Placed   Synced     Running  eu-fra-1  32" in r.stdout
    r = await arun("get", "wl", "-l", "tier=prod", "--server", url)
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["nlp-team/llama-finetune"]
    r = await arun("get", "workloads", "-l", "tier in (prod,dev),owner!=alice",
                   "--server", url)
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["vision-team/detector"]
    r = await arun("get", "workloads", "-l", "!tier", "--server", url)
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["search-team/ranker"]


async def test_get_workloads_team_scope_and_all_teams(url: str) -> None:
    r = await arun("get", "workloads", "--server", url, FLEET_TEAM="vision-team")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == ["vision-team/detector"]
    r = await arun("get", "workloads", "-A", "--server", url, FLEET_TEAM="vision-team")
    assert len(r.stdout.splitlines()) == 4
    r = await arun("get", "workloads", "--team", "nope", "--server", url)
    assert r.returncode == 2 and "no workloads of team nope" in r.stderr


async def test_get_wide_json_and_yaml(url: str) -> None:
    r = await arun("get", "workloads", "-o", "wide", "--server", url)
    assert "DATACLASS" in r.stdout and "owner=alice,tier=prod" in r.stdout
    as_json = json.loads((await arun("get", "clusters", "-o", "json", "-l", "tier=prod",
                                     "--server", url)).stdout)
    assert as_json["kind"] == "ClusterList"
    assert [c["name"] for c in as_json["items"]] == ["eu-fra-1"]
    as_yaml = yaml.safe_load((await arun("get", "clusters", "-o", "yaml", "-l", "tier=prod",
                                         "--server", url)).stdout)
    assert as_yaml == as_json
    r = await arun("get", "clusters", "-o", "wide", "--server", url)
    assert "gpu-generation=hopper,tier=prod" in r.stdout and "UNREACHABLE FOR" in r.stdout


async def test_get_nothing_matching_is_said_on_stderr_and_a_bad_selector_is_refused(
        url: str) -> None:
    r = await arun("get", "clusters", "-l", "tier=staging", "--server", url)
    assert r.returncode == 0 and r.stdout == "" and "No clusters found." in r.stderr
    r = await arun("get", "clusters", "-l", "tier in prod", "--server", url)
    assert r.returncode == 2 and "cannot read 'tier in prod'" in r.stderr
    r = await arun("get", "pods", "--server", url)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = await arun("get", "clusters", "--server", "http://127.0.0.1:9")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ wait


async def test_wait_exits_0_when_met_1_on_timeout_with_the_last_state_2_unreachable(
        url: str) -> None:
    r = await arun("wait", "nlp-team/llama-finetune", "--for=running", "--timeout", "30s",
                   "--server", url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("nlp-team/llama-finetune: running")
    r = await arun("wait", "vision-team/detector", "--for=placed", "--timeout", "1s",
                   "--interval", "0.2s", "--server", url)
    assert r.returncode == 1
    assert "not placed after 1s: status Pending" in r.stderr
    assert "0/2 clusters: 1 residency" in r.stderr
    r = await arun("wait", "search-team/ranker", "--for=synced", "--timeout", "1s",
                   "--interval", "0.2s", "--server", url)
    assert r.returncode == 1 and "sync OutOfSync" in r.stderr
    # Not yet on the commit just pushed: never an early all-clear.
    r = await arun("wait", "nlp-team/llama-finetune", "--for=running", "--timeout", "1s",
                   "--interval", "0.2s", "--commit", "b" * 40, "--server", url)
    assert r.returncode == 1 and f"applied commit {'a' * 12}, not {'b' * 40}" in r.stderr
    r = await arun("wait", "nlp-team/llama-finetune", "--for=running", "--commit", "a" * 7,
                   "--server", url)
    assert r.returncode == 0, r.stderr
    r = await arun("wait", "nlp-team/llama-finetune", "--for=running", "--commit", "HEAD",
                   "--server", url)
    assert r.returncode == 2 and "a commit sha" in r.stderr
    r = await arun("wait", "x/y", "--for=synced", "--timeout", "1s", "--server",
                   "http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot read status" in r.stderr
    for bad in (["--for=done"], ["--for=synced", "--timeout", "soon"],
                ["--for=synced", "--timeout", "0s"]):
        r = await arun("wait", "x/y", *bad, "--server", url)
        assert r.returncode == 2 and "Traceback" not in r.stderr


# ------------------------------------------------------------------ version


async def test_version_of_the_client_and_of_the_controller(url: str) -> None:
    from controllers.version import version

    r = await arun("version", "--server", url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Client version: {version()}\nController version: 9.8.7 ({url})\n"
    doc = yaml.safe_load((await arun("version", "--server", url, "-o", "yaml")).stdout)
    assert doc == {"client": {"version": version()},
                   "server": {"url": url, "version": "9.8.7"}}
    r = await arun("version")
    assert r.returncode == 0 and r.stdout == f"Client version: {version()}\n"
    r = await arun("--version")
    assert r.returncode == 0 and r.stdout == f"fleet {version()}\n"
    r = await arun("version", "--server", "http://127.0.0.1:9")
    assert r.returncode == 2 and r.stdout.startswith("Client version:")
    assert len(r.stderr.strip().splitlines()) == 1 and "no controller version" in r.stderr


# ------------------------------------------------------------------ completion


def test_bash_completion_loads_and_completes_commands_kinds_and_formats() -> None:
    fleet_bin = Path(sys.executable).parent / "fleet"
    assert fleet_bin.exists()
    path = f"{fleet_bin.parent}:{os.environ.get('PATH', '')}"
    script = ("source <(fleet completion bash) && complete -p fleet && "
              "COMP_WORDS=(fleet s); COMP_CWORD=1; _fleet; echo \"${COMPREPLY[*]}\"; "
              "COMP_WORDS=(fleet get ''); COMP_CWORD=2; _fleet; echo \"${COMPREPLY[0]} "
              "${COMPREPLY[1]}\"; "
              "COMP_WORDS=(fleet get -o ''); COMP_CWORD=3; _fleet; echo \"${COMPREPLY[*]}\"")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                       env=env(PATH=path), cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "complete -F _fleet fleet"
    assert lines[1] == "schema sim status suspend sync"
    assert lines[2] == "workloads clusters"
    assert lines[3] == "text wide json yaml"


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command(shell: str) -> None:
    from controllers.commands import COMMANDS

    r = run("completion", shell)
    assert r.returncode == 0, r.stderr
    for name in COMMANDS:
        assert name in r.stdout
    r = run("completion", "tcsh")
    assert r.returncode == 2 and "invalid choice" in r.stderr


# ------------------------------------------------------------------ plan --detailed-exitcode


@pytest.fixture
def change_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit({"clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE"),
                 "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR"),
                 "policies/residency.yaml": POLICY,
                 "workloads/nlp-team/train.yaml": workload("train")}, "base")
    repo.repo.references.create("refs/heads/same", repo.repo.head.target)
    repo.repo.references.create("refs/heads/bigger", repo.repo.head.target)
    repo.repo.references.create("refs/heads/broken", repo.repo.head.target)
    saved = dict(repo.files)
    repo.commit({"workloads/nlp-team/eval.yaml": workload("eval")}, "add eval",
                branch="bigger")
    repo.files = dict(saved)
    repo.commit({"README.md": "not a fleet file\n"}, "docs only", branch="same")
    repo.files = dict(saved)
    repo.commit({"workloads/nlp-team/train.yaml": workload("train").replace(
        "registry.internal/trainer:v1", "not a reference at all")}, "bad", branch="broken")
    return repo


@pytest.mark.parametrize(("head", "plain", "detailed"), [
    ("same", 0, 0), ("bigger", 0, 2), ("broken", 1, 1)],
    ids=["no-change", "changes", "errors"])
def test_detailed_exitcode_says_whether_merging_changes_anything(
        change_repo: GitRepo, head: str, plain: int, detailed: int) -> None:
    args = ("plan", str(change_repo.path), "--base", "main", "--head", head)
    assert run(*args).returncode == plain
    r = run(*args, "--detailed-exitcode")
    assert r.returncode == detailed, r.stderr
    assert "Traceback" not in r.stderr


def test_detailed_exitcode_errors_are_1_never_2(change_repo: GitRepo) -> None:
    r = run("plan", str(change_repo.path), "--base", "main", "--head", "nope",
            "--detailed-exitcode")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run("plan", str(change_repo.path), "--detailed-exitcode")
    assert r.returncode == 1 and "use it with --base and --head" in r.stderr
