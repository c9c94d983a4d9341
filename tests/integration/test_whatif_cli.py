"""`fleet whatif` as a user runs it, on a real Git repo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[2]


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "fleet.git", bare=True)
    r.commit({
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE", (("h100-80gb", 32, 8),)),
        "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR", (("h100-80gb", 32, 8),)),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 64, 8),)),
        "policies/residency.yaml": POLICY,
        "workloads/nlp-team/train.yaml": workload("train"),
    })
    r.commit({"policies/residency.yaml": POLICY.replace("eu-personal: {allowed: [EU]}",
                                                        "eu-personal: {allowed: [DE]}")},
             "residency: DE only", branch="de-only")
    return r


def test_a_region_outage_shows_the_move_and_where_to(tmp_path: Path) -> None:
    r = repo(tmp_path)
    out = fleet("whatif", str(r.path), "--down", "r-eu-fra-1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("what if region r-eu-fra-1 down (fleet @ ")
    assert lines[0].endswith(", declared capacity)")
    assert lines[1] == "1 move, 0 become Pending, 0 newly placed; 0 unchanged"
    assert lines[3].split()[:1] == ["MOVES"]
    assert lines[4].split()[:7] == ["nlp-team/train", "eu-fra-1", "2x8", "h100-80gb",
                                    "eu-par-1", "2x8", "h100-80gb"]
    assert "Unreachable for 301s, past the 300s grace" in lines[4]


def test_a_policy_branch_that_strands_a_workload_says_why_in_json(tmp_path: Path) -> None:
    r = repo(tmp_path)
    out = fleet("whatif", str(r.path), "--policy-ref", "de-only", "--drain", "eu-fra-1",
                "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["scenario"] == "drain eu-fra-1, repo at de-only"
    [change] = doc["changes"]
    assert (change["workload"], change["kind"], change["to"]) == ("nlp-team/train", "Pending",
                                                                  [])
    assert change["from"] == [{"cluster": "eu-fra-1", "flavour": "h100-80gb", "replicas": 2,
                               "gpusPerReplica": 8}]
    assert change["why"].startswith("0/3 clusters: ")
    assert "cordoned" in change["why"] and "residency(eu-personal)" in change["why"]


def test_bad_scenarios_exit_2_with_one_line(tmp_path: Path) -> None:
    r = repo(tmp_path)
    out = fleet("whatif", str(r.path), "--drain", "nope")
    assert out.returncode == 2 and out.stderr == "fleet: no cluster nope\n"
    out = fleet("whatif", str(r.path), "--capacity", "h100-80gb=half")
    assert out.returncode == 2 and "is not FLAVOUR=PERCENT%" in out.stderr


def test_a_policy_branch_is_read_as_the_controller_would(tmp_path: Path) -> None:
    # The branch adds a team folder named like the controller's namespace: with that
    # namespace, its workload is Invalid there, so nothing new is placed.
    r = repo(tmp_path)
    r.commit({"workloads/ml-platform/tuner.yaml": workload("tuner", "ml-platform",
                                                           data_class="public")},
             "a team named like the controller's namespace", branch="tuner")

    def placed(*args: str) -> list[str]:
        out = fleet("whatif", str(r.path), "--policy-ref", "tuner", "--format", "json",
                    *args)
        assert out.returncode == 0, out.stderr
        return [c["workload"] for c in json.loads(out.stdout)["changes"]]

    assert placed("--controller-namespace", "ops") == ["ml-platform/tuner"]
    assert placed("--controller-namespace", "ml-platform") == []
