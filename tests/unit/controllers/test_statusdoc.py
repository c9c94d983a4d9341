"""The FleetStatus document: exactly the shared schema, and what each field means."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from controllers.status.statusdoc import DriftItem, PlacementLive, SourceState, status_document
from fleet.capacity import CapacitySnapshot, ClusterCapacity, NodeCapacity
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import (
    Assignment,
    Diagnosis,
    PlacementStatus,
    Plan,
    Reason,
    Refusal,
    WorkloadPlacement,
)
from fleet.spec import FleetSpec
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema
from workloads.loader import read_fleet

FRA, USE = ClusterName("eu-fra-1"), ClusterName("us-east-1")
TRAIN, SERVE, BAD = (WorkloadId("nlp-team/train"), WorkloadId("nlp-team/serve"),
                     WorkloadId("nlp-team/bad"))
H100 = Flavour("h100-80gb")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> FleetSpec:
    repo = GitRepo(tmp_path_factory.mktemp("repo"))
    files = base_fleet()
    files["workloads/nlp-team/serve.yaml"] = workload("serve", data_class="public")
    files["workloads/nlp-team/bad.yaml"] = workload("bad", flavours="[no-such-gpu]")
    repo.commit(files)
    return read_fleet(Path(repo.path)).spec


def snapshot(fra_health: str = "Healthy") -> CapacitySnapshot:
    nodes = tuple(NodeCapacity(f"fra-{i}", H100, 8, used_by_others=2 if i == 0 else 0)
                  for i in range(2))
    return CapacitySnapshot({
        FRA: ClusterCapacity(FRA, fra_health, None, nodes),  # type: ignore[arg-type]
        USE: ClusterCapacity(USE, "Healthy", None, (NodeCapacity("use-0", H100, 8),)),
    })


def plan() -> Plan:
    return Plan("c2", {
        TRAIN: WorkloadPlacement(TRAIN, "Placed", (Assignment(FRA, H100, 1, 8),)),
        SERVE: WorkloadPlacement(SERVE, "Pending", (), (Reason("0/2 clusters: capacity"),)),
        BAD: WorkloadPlacement(BAD, "Invalid"),
    })


def build(spec: FleetSpec, live: dict[tuple[ClusterName, WorkloadId], PlacementLive],
          drift: list[DriftItem] | None = None) -> dict:  # type: ignore[type-arg]
    return status_document(
        spec=spec, plan=plan(), snapshot=snapshot(),
        source=SourceState("c2", "c1", ({"type": "SourceUnavailable", "status": "True",
                                         "reason": "FetchFailed", "message": "x"},)),
        live=live, drift=drift or [])


def test_document_matches_the_shared_schema(spec: FleetSpec) -> None:
    doc = build(spec, {(FRA, TRAIN): PlacementLive("Synced", "Running", "c1")},
                [DriftItem("eu-fra-1", TRAIN, ("spec.replicas",), "kubectl-edit", True)])
    jsonschema.validate(doc, load_schema("status.schema.json"))
    assert doc["source"] == {"observedCommit": "c2", "appliedCommit": "c1",
                             "conditions": [{"type": "SourceUnavailable", "status": "True",
                                             "reason": "FetchFailed", "message": "x"}]}


@pytest.mark.parametrize(("live", "drift", "sync"), [
    ({}, [], "Applying"),
    ({(FRA, TRAIN): PlacementLive("Synced", "Running", "c1")}, [], "Synced"),
    ({(FRA, TRAIN): PlacementLive("Failed", "Unknown", None)}, [], "Failed"),
    ({(FRA, TRAIN): PlacementLive("Synced", "Running", "c1")},
     [DriftItem("eu-fra-1", TRAIN, ("spec.replicas",), "kubectl-edit", False)], "OutOfSync"),
], ids=["not-reconciled-yet", "synced", "failed", "open-drift"])
def test_sync_is_the_worst_over_placements(spec: FleetSpec, live: dict,  # type: ignore[type-arg]
                                           drift: list[DriftItem], sync: str) -> None:
    doc = build(spec, live, drift)
    row = next(w for w in doc["workloads"] if w["id"] == TRAIN)
    assert row["sync"] == sync


def test_rows_say_status_reasons_and_where(spec: FleetSpec) -> None:
    doc = build(spec, {(FRA, TRAIN): PlacementLive("Synced", "Running", "c1")})
    rows = {w["id"]: w for w in doc["workloads"]}
    assert rows[TRAIN]["placements"] == [
        {"cluster": "eu-fra-1", "replicas": 1, "flavour": "h100-80gb", "gpus": 8}]
    assert rows[TRAIN]["commit"] == "c1"
    assert rows[SERVE]["status"] == "Pending"
    assert rows[SERVE]["reasons"] == [{"message": "0/2 clusters: capacity"}]
    assert rows[BAD]["status"] == "Invalid"
    assert "no-such-gpu" in rows[BAD]["reasons"][0]["message"]
    assert rows[BAD]["reasons"][0]["file"].endswith("bad.yaml")


def test_cluster_gpus_count_allocation_and_what_others_hold(spec: FleetSpec) -> None:
    doc = build(spec, {})
    fra = next(c for c in doc["clusters"] if c["name"] == "eu-fra-1")
    assert fra["jurisdiction"] == "DE"
    assert fra["gpus"]["h100-80gb"] == {"capacity": 16, "allocated": 8, "free": 6,
                                        "largestFreeBlock": 8}


def _refused_by(n: int, status: PlacementStatus = "Pending",
                assignments: tuple[Assignment, ...] = ()) -> WorkloadPlacement:
    """A workload every one of `n` clusters refused (a Reason each, as `fleet.placement`
    diagnoses a Pending workload), after its diagnosis line."""
    return WorkloadPlacement(SERVE, status, assignments, (
        Reason(f"0/{n} clusters: {n} Unknown", None, "Health"),
        *(Reason("cluster health is Unknown", ClusterName(f"c{i:04d}"), "Health")
          for i in range(n))))


@pytest.mark.parametrize("clusters", [5, 20, 21, 1000])
def test_a_rows_reasons_do_not_grow_with_the_clusters_that_refused_it(
        spec: FleetSpec, clusters: int) -> None:
    """Issue 22: one status dict per (refusing cluster, Pending workload) grew the heap
    with clusters x workloads. The diagnosis line stays, then the first CLUSTER_REASONS
    clusters, then one line of how many more."""
    from controllers.status.statusdoc import CLUSTER_REASONS, plan_reasons
    rows = plan_reasons(_refused_by(clusters))
    assert rows[0] == {"message": f"0/{clusters} clusters: {clusters} Unknown",
                       "rule": "Health"}
    shown = [r for r in rows if r.get("rule") == "Health" and "cluster" in r]
    assert [r["cluster"] for r in shown] == [f"c{i:04d}"
                                             for i in range(min(clusters, CLUSTER_REASONS))]
    more = clusters - CLUSTER_REASONS
    assert len(rows) == 1 + min(clusters, CLUSTER_REASONS) + (more > 0)
    if more > 0:
        assert rows[-1]["rule"] == "Truncated"
        assert rows[-1]["message"].startswith(f"and {more} more cluster")
        assert f"fleet explain {SERVE}" in rows[-1]["message"]


def test_reasons_about_the_clusters_a_workload_is_placed_on_are_all_kept() -> None:
    from controllers.status.statusdoc import CLUSTER_REASONS, plan_reasons
    on = (Assignment(ClusterName("c0990"), H100, 1, 8),
          Assignment(ClusterName("c0999"), H100, 1, 8))
    rows = plan_reasons(_refused_by(1000, "Placed", on))
    assert {"c0990", "c0999"} <= {r.get("cluster") for r in rows}
    assert len(rows) == 1 + CLUSTER_REASONS + 2 + 1
    assert rows[-1]["message"].startswith("and 978 more clusters")


def _diagnosed(n: int, lead_refused: int, status: PlacementStatus = "Pending",
               assignments: tuple[Assignment, ...] = ()) -> WorkloadPlacement:
    """A workload refused by `n` clusters as the plan keeps it (`Diagnosis`): two
    causes over alternate clusters, after `lead_refused` reasons about clusters (why it
    could not stay) and the diagnosis line."""
    lead = (*(Reason("cannot stay: nodes lost", ClusterName(f"c{i:04d}"), "Capacity")
              for i in range(lead_refused)),
            Reason(f"0/{n} clusters: {n} refused", None, "Unschedulable"))
    names = [ClusterName(f"c{i:04d}") for i in range(n)]
    return WorkloadPlacement(SERVE, status, assignments, Diagnosis(lead, (
        Refusal("cluster health is Unknown", "Health", tuple(names[::2])),
        Refusal("labels do not match clusterSelector", "Selector", tuple(names[1::2])))))


@pytest.mark.parametrize(("clusters", "lead_refused", "placed_on"), [
    (5, 0, ()), (20, 0, ()), (21, 0, ()), (1000, 0, ()), (1000, 1, ()), (30, 25, ()),
    (1000, 0, ("c0990", "c0999")), (1000, 0, ("elsewhere",))],
    ids=["5", "20", "21", "1000", "1000-lead", "30-lead-25", "1000-placed-on-refused",
         "1000-placed-elsewhere"])
def test_a_rows_reasons_of_a_diagnosis_are_those_of_the_tuple_it_reads_as(
        clusters: int, lead_refused: int, placed_on: tuple[str, ...]) -> None:
    """The plan keeps a Pending workload's reasons by cause; its row makes only the
    Reasons it shows and reads exactly as it did from one Reason per cluster (also
    where a follower's plan placed it on a cluster its own diagnosis refused)."""
    from controllers.status.statusdoc import plan_reasons
    on = tuple(Assignment(ClusterName(c), H100, 1, 8) for c in placed_on)
    wp = _diagnosed(clusters, lead_refused, "Placed" if on else "Pending", on)
    assert isinstance(wp.reasons, Diagnosis)
    rows = plan_reasons(wp)
    assert rows == plan_reasons(WorkloadPlacement(wp.id, wp.status, on, tuple(wp.reasons)))
    assert rows[-1]["rule"] == "Truncated" or clusters + lead_refused <= 20


def test_a_document_with_truncated_reasons_matches_the_shared_schema(spec: FleetSpec) -> None:
    p = plan()
    doc = status_document(
        spec=spec, plan=Plan(p.commit, {**p.workloads, SERVE: _refused_by(300)}),
        snapshot=snapshot(), source=SourceState("c2", "c1", ()), live={}, drift=[])
    jsonschema.validate(doc, load_schema("status.schema.json"))
    row = next(w for w in doc["workloads"] if w["id"] == SERVE)
    assert len(row["reasons"]) == 22
