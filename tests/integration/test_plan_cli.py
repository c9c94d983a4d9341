"""`fleet plan` and `fleet explain` as a user runs them (the real console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fleet.capacity import declared_capacity
from fleet.placement.registry import WEIGHTS
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema
from workloads.loader import read_fleet

ROOT = Path(__file__).resolve().parents[2]


def fleet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_example_plan_json_follows_the_schema_and_is_byte_identical() -> None:
    first = fleet("plan", "examples/fleet", "--format", "json")
    second = fleet("plan", "examples/fleet", "--format", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    jsonschema.validate(doc, load_schema("plan.schema.json"))
    assert len(doc["clusters"]) == 11 and len(doc["workloads"]) == 25
    assert doc["errors"] == []
    placed = [w for w in doc["workloads"] if w["status"] == "Placed"]
    assert placed and all(w["placements"] for w in placed)
    for w in doc["workloads"]:
        if w["status"] == "Pending":
            assert w["reasons"][0]["message"].startswith("0/11 clusters: ")
    by_cluster = {c["name"]: c for c in doc["clusters"]}
    for w in placed:
        for p in w["placements"]:
            usage = by_cluster[p["cluster"]]["gpus"][p["flavour"]]
            assert usage["allocated"] <= usage["capacity"]


@pytest.mark.parametrize(("fmt", "expect"), [
    ("text", "WORKLOAD"),
    ("markdown", "| Workload | Priority | Status | Where / why |"),
], ids=["text-table", "markdown-table"])
def test_human_formats_list_every_workload(fmt: str, expect: str) -> None:
    r = fleet("plan", "examples/fleet", "--format", fmt)
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
    assert "nlp-team/llama-finetune" in r.stdout
    assert "latam-team/fraud-batch" in r.stdout and "residency(br-personal)" in r.stdout


def test_invalid_documents_are_listed_and_the_rest_is_planned(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(),
                 "workloads/nlp-team/bad.yaml": workload("bad", data_class="nowhere")})
    r = fleet("plan", str(repo.path), "--format", "json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, load_schema("plan.schema.json"))
    status = {w["id"]: w["status"] for w in doc["workloads"]}
    assert status == {"nlp-team/bad": "Invalid", "nlp-team/train": "Placed"}
    assert doc["errors"][0]["file"] == "workloads/nlp-team/bad.yaml"
    bad = next(w for w in doc["workloads"] if w["id"] == "nlp-team/bad")
    assert bad["reasons"][0]["rule"] == "Invalid"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "capacity.json"),
    ('{"kind": "Plan"}', "kind must be CapacitySnapshot"),
], ids=["not-json", "wrong-kind"])
def test_bad_capacity_file_exits_2_with_one_line(tmp_path: Path, content: str,
                                                 message: str) -> None:
    path = tmp_path / "capacity.json"
    path.write_text(content)
    r = fleet("plan", "examples/fleet", "--capacity", str(path))
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_unreadable_repo_exits_2(tmp_path: Path) -> None:
    r = fleet("plan", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.startswith("fleet: ") and len(r.stderr.strip().splitlines()) == 1


def test_capacity_file_is_planned_with_unreachable_cluster_taking_nothing(
        tmp_path: Path) -> None:
    spec = read_fleet(str(ROOT / "examples/fleet")).spec
    doc = declared_capacity(spec.clusters).to_json()
    for c in doc["clusters"]:
        if c["name"] == "eu-fra-2":
            c["health"] = "Unreachable"
            c["unreachableSeconds"] = 30
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(doc))
    r = fleet("plan", "examples/fleet", "--capacity", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["source"]["capacitySource"] == "file"
    assert all(p["cluster"] != "eu-fra-2" for w in plan["workloads"]
               for p in w["placements"])


def test_capacity_file_with_full_kueue_queues_keeps_queued_jobs_off_those_clusters(
        tmp_path: Path) -> None:
    """The capacity document's `kueue` section (what a controller publishes): every
    team's queue on the two Kueue clusters full, so no training or batch Job goes
    there, while Deployments (not queued) still may."""
    spec = read_fleet(str(ROOT / "examples/fleet")).spec
    kueue = {"eu-fra-1", "us-east-1"}
    assert all(spec.clusters[c].spec.stack.kueue for c in kueue)  # type: ignore[index]
    teams = sorted({w.team for w in spec.workloads.values()})
    doc = declared_capacity(spec.clusters).to_json()
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(doc))
    plain = json.loads(fleet("plan", "examples/fleet", "--capacity", str(path),
                             "--format", "json").stdout)
    for c in doc["clusters"]:
        if c["name"] in kueue:
            c["kueue"] = {
                "clusterQueues": [{"name": t, "flavours": [
                    {"flavour": o.flavour, "nominalQuota": 8, "usedByOthers": 8}
                    for o in spec.clusters[c["name"]].spec.gpus]} for t in teams],
                "localQueues": [{"namespace": t, "name": t, "clusterQueue": t}
                                for t in teams]}
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(doc))
    r = fleet("plan", "examples/fleet", "--capacity", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)

    def queued_there(p: dict[str, Any]) -> list[str]:
        return sorted(w["id"] for w in p["workloads"] if w["type"] != "inference"
                      and any(x["cluster"] in kueue for x in w["placements"]))
    assert queued_there(plain)  # without the queues some Jobs went there
    assert queued_there(plan) == []


def test_explain_shows_every_cluster_with_filters_and_scores() -> None:
    r = fleet("explain", "nlp-team/llama-finetune", "examples/fleet", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["clusters"]) == 11
    rules = [f["rule"] for f in doc["clusters"][0]["flavours"][0]["filters"]]
    assert rules[:2] == ["Residency", "Flavour"]
    chosen = [c for c in doc["clusters"] if c["chosen"]]
    assert [c["cluster"] for c in chosen] == [p["cluster"] for p in doc["placements"]]
    feasible = [v for c in doc["clusters"] for v in c["flavours"] if v["feasible"]]
    assert all(set(v["scores"]) == set(WEIGHTS) for v in feasible)
    assert doc["weights"] == dict(WEIGHTS)
    text = fleet("explain", "nlp-team/llama-finetune", "examples/fleet")
    assert text.returncode == 0 and "Residency: dataClass eu-personal may not run in US" \
        in text.stdout


SPOT_CLUSTER = """\
apiVersion: aifleet.dev/v1alpha1
kind: Cluster
metadata: {name: us-spot-1}
spec:
  region: us-west-2
  jurisdiction: US
  gpus:
    - {flavour: h100-80gb, product: NVIDIA-H100-80GB-HBM3, count: 16, perNode: 8,
       pricePerHour: 1.2, spot: true}
"""


def test_plan_and_explain_name_the_spot_rule_in_their_reasons(tmp_path: Path) -> None:
    """`placement.spot: require` with spot capacity only where residency forbids it:
    Pending, and the diagnosis and explain say Spot; `prefer` picks the spot offer."""
    repo = GitRepo(tmp_path / "r")
    repo.commit({**base_fleet(), "clusters/us-spot-1.yaml": SPOT_CLUSTER,
                 "workloads/nlp-team/train.yaml": workload(
                     "train", extra_spec="    spot: require\n"),
                 "workloads/nlp-team/sweep.yaml": workload(
                     "sweep", data_class="public", wtype="batch",
                     extra_spec="    spot: prefer\n")})
    r = fleet("plan", str(repo.path), "--format", "json")
    assert r.returncode == 0, r.stderr
    by = {w["id"]: w for w in json.loads(r.stdout)["workloads"]}
    train = by["nlp-team/train"]
    assert train["status"] == "Pending"
    assert train["reasons"][0]["message"] == (
        "0/3 clusters: 2 residency(eu-personal), 1 no spot h100-80gb")
    assert {"cluster": "eu-fra-1", "rule": "Spot",
            "message": "h100-80gb is on-demand, the workload requires spot"} in [
        {k: x[k] for k in ("cluster", "rule", "message")} for x in train["reasons"]]
    assert [p["cluster"] for p in by["nlp-team/sweep"]["placements"]] == ["us-spot-1"]
    ex = fleet("explain", "nlp-team/train", str(repo.path))
    assert ex.returncode == 0, ex.stderr
    row = next(line for line in ex.stdout.splitlines() if "eu-fra-1" in line)
    assert row.split()[2:4] == ["Spot:", "h100-80gb"], row
    assert "Spot x3" in ex.stdout
    sweep = json.loads(fleet("explain", "nlp-team/sweep", str(repo.path), "--format",
                             "json").stdout)
    scores = {c["cluster"]: c["flavours"][0]["scores"] for c in sweep["clusters"]}
    assert scores["us-spot-1"]["Spot"] == 100 and scores["eu-fra-1"]["Spot"] == 0


def test_explain_of_an_unknown_workload_exits_2() -> None:
    r = fleet("explain", "nlp-team/nope", "examples/fleet")
    assert r.returncode == 2 and "no workload nlp-team/nope" in r.stderr


def test_post_without_a_token_says_so_before_any_work_or_output(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "fleet")
    base = repo.commit(base_fleet())
    head = repo.commit({"workloads/nlp-team/extra.yaml": workload("extra")})
    r = fleet("plan", str(repo.path), "--base", base, "--head", head, "--post", "github",
              "--forge-repo", "acme/fleet", "--pr", "7", "--format", "markdown")
    assert r.returncode == 2
    assert r.stdout == ""  # the plan is not printed first and then refused
    assert "no token: set GITHUB_TOKEN" in r.stderr
