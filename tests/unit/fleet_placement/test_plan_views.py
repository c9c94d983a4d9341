"""The plan as JSON (schema), text and Markdown, and `explain`'s table."""

from __future__ import annotations

import pickle

import jsonschema

from fleet.ids import WorkloadId
from fleet.placement import explain, place
from fleet.placement.types import Plan
from fleet.plan_json import plan_to_json
from fleet.plan_text import to_markdown, to_text
from fleet.spec import FleetSpec
from tests.specs import load_schema
from tests.unit.fleet_placement.builders import cluster, declared, fleet, workload


def spec_and_plan() -> tuple[FleetSpec, Plan]:
    spec = fleet(cluster("de-1", "DE"), cluster("us-1", "US"),
                 workload("fits", data_class="eu-personal", count=8),
                 workload("too-big", data_class="eu-personal", replicas=3, count=8),
                 workload("bad", flavours=("z100",)))
    return spec, place(spec, declared(spec), commit="abc")


def test_json_follows_the_schema_with_every_workload_and_error() -> None:
    spec, plan = spec_and_plan()
    doc = plan_to_json(plan, spec, declared(spec))
    jsonschema.validate(doc, load_schema("plan.schema.json"))
    status = {w["id"]: w["status"] for w in doc["workloads"]}
    assert status == {"nlp-team/bad": "Invalid", "nlp-team/fits": "Placed",
                      "nlp-team/too-big": "Pending"}
    assert doc["source"]["commit"] == "abc" and doc["source"]["capacityDigest"]
    assert [e["file"] for e in doc["errors"]] == ["doc4.yaml"]
    de = next(c for c in doc["clusters"] if c["name"] == "de-1")
    assert de["gpus"]["h100-80gb"] == {"capacity": 16, "allocated": 8}
    fits = next(w for w in doc["workloads"] if w["id"] == "nlp-team/fits")
    assert fits["placements"] == [{"cluster": "de-1", "replicas": 1,
                                   "flavour": "h100-80gb", "gpus": 8}]
    assert fits["dataClass"] == "eu-personal" and fits["team"] == "nlp-team"


def test_text_and_markdown_show_where_or_why() -> None:
    spec, plan = spec_and_plan()
    text = to_text(plan, spec)
    assert "3 workloads, 1 placed, 1 pending, 1 invalid" in text
    assert "de-1 1x8 h100-80gb" in text
    assert "0/2 clusters: 1 residency(eu-personal), 1 capacity" in text
    assert "doc4.yaml:1: flavour z100 is not offered by any cluster" in text
    md = to_markdown(plan, spec)
    assert "| `nlp-team/fits` | 0 | Placed | de-1 1x8 h100-80gb |" in md


def test_explain_judges_every_cluster_at_the_moment_of_the_decision() -> None:
    spec, _ = spec_and_plan()
    ex = explain(spec, declared(spec), "nlp-team/too-big")
    assert ex.placement.status == "Pending" and not ex.keep
    by = {c.cluster: c.flavours[0] for c in ex.clusters}
    assert by["us-1"].filters[0].rule == "Residency"
    assert not by["us-1"].filters[0].ok
    capacity = next(r for r in by["de-1"].filters if r.rule in ("Capacity", "Gang"))
    assert not capacity.ok  # 8 of 16 GPUs were taken by `fits` (placed before it)
    assert by["de-1"].total is None
    fits = explain(spec, declared(spec), "nlp-team/fits")
    chosen = [c for c in fits.clusters if c.chosen]
    assert [c.cluster for c in chosen] == ["de-1"]
    assert dict(chosen[0].flavours[0].scores)["FlavourPreference"] == 100
    assert fits.placement.assignments[0].cluster == "de-1"
    assert explain(spec, declared(spec), "nlp-team/bad").clusters == ()
    assert WorkloadId("nlp-team/bad") in spec.invalid


def test_a_plan_pickles_to_an_equal_plan() -> None:
    # `fleet plan --base --head` caches the base plan pickled in the Git directory.
    _, plan = spec_and_plan()
    back = pickle.loads(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == plan
    assert {p.status for p in back.workloads.values()} == {"Placed", "Pending", "Invalid"}
    assert all(p.reasons for p in back.workloads.values())
