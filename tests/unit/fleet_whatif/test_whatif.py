"""What-if on the real placement core: drains, region outages, lost capacity, policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.capacity import declared_capacity
from fleet.spec import FleetSpec
from fleet.whatif import Scenario, check, whatif
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from workloads.loader import read_fleet

TRAIN, PUB = "nlp-team/train", "web-team/pub"


def fleet(tmp_path: Path, policy: str = POLICY) -> FleetSpec:
    repo = GitRepo(tmp_path / "r")
    repo.commit({
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE", (("h100-80gb", 32, 8),)),
        "clusters/eu-par-1.yaml": cluster("eu-par-1", "FR", (("h100-80gb", 32, 8),)),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 64, 8),)),
        "policies/residency.yaml": policy,
        "workloads/nlp-team/train.yaml": workload("train"),
        "workloads/web-team/pub.yaml": workload("pub", "web-team", data_class="public"),
    })
    spec = read_fleet(repo.path).spec
    assert spec.errors == ()
    return spec


def clusters_of(result_plan: object, wid: str) -> list[str]:
    return [a.cluster for a in result_plan.workloads[wid].assignments]  # type: ignore[attr-defined]


def test_no_change_moves_nothing(tmp_path: Path) -> None:
    spec = fleet(tmp_path)
    result = whatif(spec, declared_capacity(spec.clusters), Scenario())
    assert result.changes == ()
    assert result.after.workloads[TRAIN].status == "Placed"


@pytest.mark.parametrize("how", ["drain", "down"])
def test_losing_the_eu_cluster_of_eu_data_moves_it_to_the_other_eu_cluster(
        tmp_path: Path, how: str) -> None:
    spec = fleet(tmp_path)
    cap = declared_capacity(spec.clusters)
    home = clusters_of(whatif(spec, cap, Scenario()).baseline, TRAIN)[0]
    other = ({"eu-fra-1", "eu-par-1"} - {home}).pop()
    scenario = Scenario(drain=(home,)) if how == "drain" else Scenario(down=(f"r-{home}",))
    result = whatif(spec, cap, scenario)
    [change] = [c for c in result.changes if c.workload == TRAIN]
    assert change.kind == "Moved"
    assert [a.cluster for a in change.before] == [home]
    assert [a.cluster for a in change.after.assignments] == [other]


def test_with_no_eu_cluster_left_eu_data_goes_pending_never_to_the_us(tmp_path: Path) -> None:
    spec = fleet(tmp_path)
    result = whatif(spec, declared_capacity(spec.clusters),
                    Scenario(drain=("eu-fra-1", "eu-par-1")))
    [change] = [c for c in result.changes if c.workload == TRAIN]
    assert change.kind == "Pending"
    assert "residency(eu-personal)" in change.why and "cordoned" in change.why
    assert result.count("Pending") == 1


def test_three_quarters_of_the_h100s_gone_leave_no_eu_node_pair_for_the_gang(
        tmp_path: Path) -> None:
    spec = fleet(tmp_path)
    result = whatif(spec, declared_capacity(spec.clusters),
                    Scenario(capacity={"h100-80gb": -0.75}))
    after = result.after.workloads
    assert after[TRAIN].status == "Pending"
    assert "capacity" in next(c.why for c in result.changes if c.workload == TRAIN)
    assert after[PUB].status == "Placed"  # the US cluster keeps 2 of its 8 nodes


def test_a_policy_change_from_a_branch_moves_what_it_no_longer_allows(tmp_path: Path) -> None:
    spec = fleet(tmp_path / "a")
    france_only = fleet(tmp_path / "b", POLICY.replace("eu-personal: {allowed: [EU]}",
                                                       "eu-personal: {allowed: [FR]}"))
    result = whatif(spec, declared_capacity(spec.clusters), Scenario(),
                    changed_spec=france_only)
    assert clusters_of(result.after, TRAIN) == ["eu-par-1"]


def test_a_scenario_naming_what_does_not_exist_is_refused(tmp_path: Path) -> None:
    spec = fleet(tmp_path)
    assert check(Scenario(drain=("nope",), down=("mars",), capacity={"b200": -0.5}), spec) == [
        "no cluster nope",
        "no region mars (regions: r-eu-fra-1, r-eu-par-1, r-us-east-1)",
        "no flavour b200",
    ]
