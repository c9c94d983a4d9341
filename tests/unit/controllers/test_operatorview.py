"""Status fields for SREs: per-placement sync, per-cluster counts and failover clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers.runtime.fleetstate import ClusterView
from controllers.status.operatorview import add_operator_fields
from controllers.status.statusdoc import DriftItem, PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.spec import FleetSpec
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from workloads.loader import read_fleet

FRA, PAR = "eu-fra-1", "eu-par-1"
TRAIN, SERVE = WorkloadId("nlp-team/train"), WorkloadId("nlp-team/serve")
TOLERATE_60 = ("    tolerations:\n"
               "      - {key: aifleet.dev/unreachable, operator: Exists, "
               "tolerationSeconds: 60}\n")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> FleetSpec:
    repo = GitRepo(tmp_path_factory.mktemp("repo"))
    files = base_fleet()
    files["workloads/nlp-team/serve.yaml"] = workload("serve", data_class="public",
                                                      extra_spec=TOLERATE_60)
    repo.commit(files)
    out = read_fleet(Path(repo.path)).spec
    assert not out.errors, out.errors
    return out


def doc() -> dict[str, Any]:
    def placed(cluster: str) -> dict[str, Any]:
        return {"cluster": cluster, "replicas": 1, "flavour": "h100-80gb", "gpus": 8}
    return {"clusters": [{"name": FRA}, {"name": PAR}],
            "workloads": [{"id": TRAIN, "placements": [placed(FRA), placed(PAR)]},
                          {"id": SERVE, "placements": [placed(FRA)]}]}


def live(sync: str = "Synced") -> dict[tuple[ClusterName, WorkloadId], PlacementLive]:
    return {(ClusterName(FRA), TRAIN): PlacementLive(sync, "Running", "c1"),
            (ClusterName(FRA), SERVE): PlacementLive("Failed", "Failed", "c1")}


def test_each_placement_and_cluster_says_synced_drifted_failed(spec: FleetSpec) -> None:
    d = doc()
    drift = [DriftItem(FRA, TRAIN, ("spec.replicas",), "kubectl-edit", False)]
    add_operator_fields(d, spec=spec, views={FRA: ClusterView("Healthy", None)},
                        live=live(), drift=drift, failover_grace=None)
    train = d["workloads"][0]["placements"]
    assert [(p["sync"], p["health"]) for p in train] == [("OutOfSync", "Running"),
                                                          ("Applying", "Unknown")]
    assert d["clusters"][0]["workloads"] == {"placed": 2, "synced": 0, "drifted": 1,
                                             "failed": 1}
    assert d["clusters"][1]["workloads"] == {"placed": 1, "synced": 0, "drifted": 0,
                                             "failed": 0}
    assert "unreachableForSeconds" not in d["clusters"][0]


@pytest.mark.parametrize(("grace", "want"), [(None, 60), (5.0, 5.0)],
                         ids=["shortest-toleration", "fleet-wide-grace"])
def test_an_unreachable_cluster_has_a_failover_clock_and_no_all_clear(
        spec: FleetSpec, grace: float | None, want: float) -> None:
    d = doc()
    add_operator_fields(d, spec=spec, views={FRA: ClusterView("Unreachable", 12.34)},
                        live=live(), drift=[], failover_grace=grace)
    fra = d["clusters"][0]
    assert (fra["unreachableForSeconds"], fra["failoverGraceSeconds"]) == (12.3, want)
    assert fra["workloads"]["synced"] == 0
    p = d["workloads"][0]["placements"][0]
    assert (p["sync"], p["health"], p["lastSync"]) == ("Unknown", "Unknown", "Synced")
