"""TeamQuota -> Kueue objects on a Kueue cluster (fleet/render/kueue.py): the quota a
team sees on the PR plan is the ClusterQueue's nominalQuota, and only clusters whose
`spec.stack.kueue` is true get them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, FlavourUsage, Plan, WorkloadPlacement
from fleet.plandiff import diff_plans
from fleet.render import render_cluster
from fleet.spec import FleetSpec
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from workloads.loader import read_fleet

QUOTAS = """\
apiVersion: aifleet.dev/v1alpha1
kind: TeamQuota
metadata: {name: nlp-team}
spec:
  cohort: research
  gpus:
    - {flavour: h100-80gb, nominal: 24, borrowingLimit: 8}
---
apiVersion: aifleet.dev/v1alpha1
kind: TeamQuota
metadata: {name: vision-team}
spec:
  gpus: [{flavour: a100-80gb, nominal: 16}]
"""
TRAIN = WorkloadId("nlp-team/train")


def spec_of(tmp_path: Path) -> FleetSpec:
    repo = GitRepo(tmp_path)
    repo.commit({
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE", (("h100-80gb", 32, 8),
                                                              ("a100-80gb", 16, 8)))
        + "  stack: {kueue: true, jobset: true}\n",
        "clusters/us-east-1.yaml": cluster("us-east-1", "US"),
        "policies/residency.yaml": POLICY, "policies/quotas.yaml": QUOTAS,
        "workloads/nlp-team/train.yaml": workload("train"),
        "workloads/search-team/rank.yaml": workload("rank", team="search-team"),
    })
    result = read_fleet(repo.path)
    assert not result.spec.errors, result.spec.errors
    return result.spec


def plan(*on: tuple[str, str]) -> Plan:
    ps = {WorkloadId(w): WorkloadPlacement(WorkloadId(w), "Placed", (
        Assignment(ClusterName(c), Flavour("h100-80gb"), 1, 8),), ()) for w, c in on}
    usage = {ClusterName("eu-fra-1"): {Flavour("h100-80gb"): FlavourUsage(32, 8)}}
    return Plan("c", ps, usage)


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def gpu_quota(cq: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["resources"][0] for g in cq["spec"]["resourceGroups"]
            if g["coveredResources"] == ["nvidia.com/gpu"] for f in g["flavors"]}


def test_the_quota_on_the_pr_plan_is_the_cluster_queues_nominal_quota(
        tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    head = plan(("nlp-team/train", "eu-fra-1"))
    d = diff_plans(spec, plan(), spec, head, render=lambda *a: "")
    [team] = [t for t in d.teams if t.team == "nlp-team"]
    objs = render_cluster(spec, head, ClusterName("eu-fra-1"), "c")
    cq = by_kind(objs, "ClusterQueue")["nlp-team"]
    h100 = gpu_quota(cq)["h100-80gb"]
    assert (team.flavour, team.nominal, team.borrowing) == ("h100-80gb", 24, 8)
    assert (h100["nominalQuota"], h100["borrowingLimit"]) == (team.nominal, team.borrowing)
    assert cq["spec"]["cohortName"] == "research"
    assert gpu_quota(cq)["a100-80gb"] == {"name": "nvidia.com/gpu", "nominalQuota": 0}


def test_every_quota_team_gets_a_queue_and_a_team_without_quota_gets_the_cluster(
        tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    objs = render_cluster(spec, plan(("nlp-team/train", "eu-fra-1"),
                                     ("search-team/rank", "eu-fra-1")),
                          ClusterName("eu-fra-1"), "c")
    assert sorted(by_kind(objs, "ClusterQueue")) == ["nlp-team", "search-team",
                                                     "vision-team"]
    assert {n: q["spec"]["clusterQueue"] for n, q in by_kind(objs, "LocalQueue").items()} \
        == {"nlp-team": "nlp-team", "search-team": "search-team",
            "vision-team": "vision-team"}
    # every LocalQueue's namespace is rendered before it
    names = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert names == ["nlp-team", "search-team", "vision-team"]
    vision = by_kind(objs, "ClusterQueue")["vision-team"]
    assert "cohortName" not in vision["spec"]  # no cohort: no borrowingLimit either
    assert gpu_quota(vision)["a100-80gb"] == {"name": "nvidia.com/gpu", "nominalQuota": 16}
    search = gpu_quota(by_kind(objs, "ClusterQueue")["search-team"])
    assert {f: r["nominalQuota"] for f, r in search.items()} == {"h100-80gb": 32,
                                                                 "a100-80gb": 16}
    flavours = by_kind(objs, "ResourceFlavor")
    assert flavours["h100-80gb"]["spec"]["nodeLabels"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB"}
    assert all(o["metadata"]["labels"]["aifleet.dev/managed-by"] == "aifleet"
               for o in objs if o["apiVersion"].startswith("kueue.x-k8s.io/"))


def test_a_cluster_without_kueue_gets_no_kueue_objects(tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    objs = render_cluster(spec, plan(("nlp-team/train", "us-east-1")),
                          ClusterName("us-east-1"), "c")
    assert not [o for o in objs if o["apiVersion"].startswith("kueue.x-k8s.io/")]
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"] == ["nlp-team"]
