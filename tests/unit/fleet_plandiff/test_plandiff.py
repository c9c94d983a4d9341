"""The plan diff core on hand-built plans: each kind of change, displacement, per-cluster
manifest diffs (rendering only what changed), GPUs per team against quota, and cost.

Specs are read from real Git repos; plans are built with small builders, since this
tests the comparison, not placement (the CLI tests run the real placement).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.owners import PathFlag
from fleet.placement.types import Assignment, FlavourUsage, Plan, Reason, WorkloadPlacement
from fleet.plandiff import diff_plans
from fleet.plandiff_render import MARKER, to_json, to_markdown, to_text
from fleet.spec import FleetSpec
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from tests.specs import load_schema
from workloads.loader import read_fleet

QUOTA = """\
apiVersion: aifleet.dev/v1alpha1
kind: TeamQuota
metadata: {name: vision-team}
spec:
  gpus: [{flavour: h100-80gb, nominal: 16}]
"""


def spec_of(tmp_path: Path, files: dict[str, str | bytes]) -> FleetSpec:
    repo = GitRepo(tmp_path)
    repo.commit({**base_fleet(), "policies/quota.yaml": QUOTA,
                 "workloads/vision-team/det.yaml": workload("det", team="vision-team"),
                 **files})
    return read_fleet(repo.path).spec


def placed(wid: str, *shares: tuple[str, int], flavour: str = "h100-80gb",
           reasons: tuple[Reason, ...] = ()) -> WorkloadPlacement:
    return WorkloadPlacement(WorkloadId(wid), "Placed", tuple(
        Assignment(ClusterName(c), Flavour(flavour), n, 8) for c, n in shares), reasons)


def pending(wid: str, why: str, rule: str = "Capacity") -> WorkloadPlacement:
    return WorkloadPlacement(WorkloadId(wid), "Pending", (), (Reason(why, None, rule),))


def plan(commit: str, *ps: WorkloadPlacement, used: int = 0) -> Plan:
    usage = {ClusterName("eu-fra-1"): {Flavour("h100-80gb"): FlavourUsage(16, used)}}
    return Plan(commit, {p.id: p for p in sorted(ps, key=lambda p: p.id)}, usage)


CALLS: list[tuple[str, str]] = []


def render(spec: FleetSpec, wid: WorkloadId, a: Assignment, commit: str | None) -> str:
    CALLS.append((wid, a.cluster))
    image = spec.workloads[wid].spec.image
    return (f"# {wid}\nkind: Job\nname: {wid.split('/')[1]}\nreplicas: {a.replicas}\n"
            f"image: {image}\ngpu: {a.gpus_per_replica} {a.flavour}\n")


TRAIN, DET, NEW = "nlp-team/train", "vision-team/det", "nlp-team/new"


@pytest.mark.parametrize(("before", "after", "change"), [
    (None, placed(TRAIN, ("eu-fra-1", 2)), "Added"),
    (placed(TRAIN, ("eu-fra-1", 2)), None, "Removed"),
    (placed(TRAIN, ("eu-fra-1", 2)), placed(TRAIN, ("us-east-1", 2)), "Moved"),
    (placed(TRAIN, ("eu-fra-1", 2)), pending(TRAIN, "no capacity"), "Moved"),
    (placed(TRAIN, ("eu-fra-1", 2)), placed(TRAIN, ("eu-fra-1", 1)), "Resized"),
    (placed(TRAIN, ("eu-fra-1", 2)), placed(TRAIN, ("eu-fra-1", 2)), "Unchanged"),
    (placed(TRAIN, ("eu-fra-1", 2)),
     WorkloadPlacement(WorkloadId(TRAIN), "Invalid", (), (Reason("bad", None, "Invalid"),)),
     "Unchanged"),
], ids=["added", "removed", "moved", "placed_to_pending", "resized", "unchanged",
        "invalid_keeps_running"])
def test_each_kind_of_change(tmp_path: Path, before: WorkloadPlacement | None,
                             after: WorkloadPlacement | None, change: str) -> None:
    spec = spec_of(tmp_path, {})
    d = diff_plans(spec, plan("b", *[p for p in (before,) if p]), spec,
                   plan("h", *[p for p in (after,) if p]), render=render)
    assert [(w.id, w.change) for w in d.workloads] == [(TRAIN, change)]


def test_another_teams_workload_pushed_out_is_called_out_as_displaced(tmp_path: Path) -> None:
    base = spec_of(tmp_path / "b", {})
    head = spec_of(tmp_path / "h", {f"workloads/{NEW}.yaml": workload("new")})
    d = diff_plans(
        base, plan("b", placed(TRAIN, ("eu-fra-1", 1)), placed(DET, ("eu-fra-1", 1))),
        head, plan("h", placed(TRAIN, ("eu-fra-1", 1)), placed(NEW, ("eu-fra-1", 1)),
                   pending(DET, "0/2 clusters: 2 Capacity (needs 16 h100-80gb)")),
        render=render, author_team="nlp-team")
    assert [w.id for w in d.displaced] == [DET]
    det = d.displaced[0]
    assert det.change == "Moved" and not det.spec_changed
    assert det.why == ("Capacity: 0/2 clusters: 2 Capacity (needs 16 h100-80gb)",)
    md = to_markdown(d)
    assert "> [!CAUTION]" in md and f"**`{DET}`** (vision-team): eu-fra-1 (1x8 h100-80gb) " \
        "→ Pending" in md
    assert "!! DISPLACED Moved     vision-team/det" in to_text(d)
    assert to_json(d)["diff"]["displaced"] == [DET]


def test_own_team_and_edited_workloads_are_not_displaced(tmp_path: Path) -> None:
    base = spec_of(tmp_path / "b", {})
    head = spec_of(tmp_path / "h", {"workloads/vision-team/det.yaml": workload(
        "det", team="vision-team").replace("replicas: 2", "replicas: 1")})
    d = diff_plans(base, plan("b", placed(TRAIN, ("eu-fra-1", 2)), placed(DET, ("eu-fra-1", 2))),
                   head, plan("h", placed(TRAIN, ("us-east-1", 2)), placed(DET, ("eu-fra-1", 1))),
                   render=render, author_team="nlp-team")
    assert d.displaced == ()  # train is nlp-team's own; det's own file changed
    assert {w.id: (w.change, w.spec_changed) for w in d.workloads} == {
        TRAIN: ("Moved", False), DET: ("Resized", True)}


def test_without_an_author_team_the_teams_whose_files_changed_are_the_authors(
        tmp_path: Path) -> None:
    base = spec_of(tmp_path / "b", {})
    head = spec_of(tmp_path / "h", {f"workloads/{NEW}.yaml": workload("new")})
    d = diff_plans(base, plan("b", placed(DET, ("eu-fra-1", 2))), head,
                   plan("h", placed(NEW, ("eu-fra-1", 2)), pending(DET, "full")), render=render)
    assert [w.id for w in d.displaced] == [DET]


def test_manifest_diff_renders_only_what_changed(tmp_path: Path) -> None:
    base = spec_of(tmp_path / "b", {})
    head = spec_of(tmp_path / "h", {"workloads/nlp-team/train.yaml": workload("train").replace(
        "trainer:v1", "trainer:v2")})
    CALLS.clear()
    d = diff_plans(base, plan("b", placed(TRAIN, ("eu-fra-1", 2)), placed(DET, ("us-east-1", 2))),
                   head, plan("h", placed(TRAIN, ("eu-fra-1", 2)), placed(DET, ("us-east-1", 2))),
                   render=render)
    assert sorted(CALLS) == [(TRAIN, "eu-fra-1"), (TRAIN, "eu-fra-1")]
    assert list(d.manifests) == ["eu-fra-1"]
    assert d.manifests["eu-fra-1"].splitlines() == [
        "--- base/eu-fra-1/nlp-team/train", "+++ head/eu-fra-1/nlp-team/train",
        "@@ -2,5 +2,5 @@", " kind: Job",
        " name: train", " replicas: 2", "-image: registry.internal/trainer:v1",
        "+image: registry.internal/trainer:v2", " gpu: 8 h100-80gb"]
    assert [(w.change, w.spec_changed) for w in d.changed] == [("Unchanged", True)]


def test_a_move_shows_in_both_clusters_diffs(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {})
    d = diff_plans(spec, plan("b", placed(TRAIN, ("eu-fra-1", 2))), spec,
                   plan("h", placed(TRAIN, ("us-east-1", 2))), render=render)
    assert sorted(d.manifests) == ["eu-fra-1", "us-east-1"]
    assert "-name: train" in d.manifests["eu-fra-1"]
    assert "+name: train" in d.manifests["us-east-1"]


def test_gpus_per_team_against_quota_and_cost_per_hour(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {})
    d = diff_plans(spec, plan("b", placed(DET, ("eu-fra-1", 1)), used=8), spec,
                   plan("h", placed(DET, ("eu-fra-1", 2)), placed(TRAIN, ("us-east-1", 1)),
                        used=16), render=render)
    assert [(t.team, t.flavour, t.gpus.before, t.gpus.after, t.nominal) for t in d.teams] == [
        ("nlp-team", "h100-80gb", 0, 8, None), ("vision-team", "h100-80gb", 8, 16, 16)]
    # pricePerHour 2.5 per GPU in the test clusters
    assert (d.cost.before, d.cost.after) == (8 * 250, 24 * 250)
    assert {t: (u.before, u.after) for t, u in d.team_cost.items()} == {
        "nlp-team": (0, 2000), "vision-team": (2000, 4000)}
    assert d.flavours["h100-80gb"][1].before == 8 and d.flavours["h100-80gb"][1].after == 16
    md = to_markdown(d)
    assert "| vision-team | h100-80gb | 8 | 16 (+8) | 16 |" in md
    assert "| **fleet** | $20.00/h | $60.00/h (+$40.00/h) |" in md


def test_errors_and_violations_fail_the_plan_and_flags_do_not(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {"workloads/nlp-team/bad.yaml": workload("bad", data_class="x")})
    flag = PathFlag("clusters/eu-fra-1.yaml", "protected", ("@platform",), "needs @platform")
    d = diff_plans(spec, plan("b"), spec, plan("h"), render=render, flags=[flag])
    assert d.failed and len(d.errors) == 1 and d.violations == ()
    md = to_markdown(d)
    assert md.startswith(MARKER + "\n## aifleet plan: ❌ 1 error · 🔒 needs approval from "
                         "@platform\n")
    assert "- `workloads/nlp-team/bad.yaml:15`: dataClass x is not defined" in md
    clean = diff_plans(spec_of(tmp_path / "c", {}), plan("b"), spec_of(tmp_path / "d", {}),
                       plan("h"), render=render, flags=[flag])
    assert not clean.failed


def test_markdown_fits_a_comment_by_leaving_out_long_cluster_diffs(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {})
    d = diff_plans(spec, plan("b", placed(TRAIN, ("eu-fra-1", 2))), spec,
                   plan("h", placed(TRAIN, ("us-east-1", 2))), render=render)
    md = to_markdown(d, budget=10)
    assert "<details>" not in md
    assert "- **eu-fra-1** (+0 -6): too long for a comment" in md


def test_gpus_without_a_price_are_unknown_cost_not_free(tmp_path: Path) -> None:
    from tests.fleetdocs import cluster

    spec = spec_of(tmp_path, {"clusters/us-east-1.yaml": cluster(
        "us-east-1", "US", (("h100-80gb", 32, 8),)).replace(", pricePerHour: 2.5", "")})
    d = diff_plans(spec, plan("b"), spec, plan("h", placed(TRAIN, ("us-east-1", 2))),
                   render=render)
    assert (d.cost.after, d.unpriced.after) == (0, 16)
    assert "Not priced (no `pricePerHour`): 0 -> 16 GPUs; their cost is unknown, not zero." \
        in to_markdown(d)
    assert to_json(d)["diff"]["costPerHour"]["unpricedGpus"] == {"before": 0, "after": 16}


@pytest.mark.parametrize(("wtype", "recreate", "said", "field"), [
    ("batch", None, "recreate: never keeps the running Job", "spec.completions"),
    ("batch", "onChange", "recreate: onChange deletes the running Job", "spec.completions"),
    # Indexed completions could change with parallelism, but WORLD_SIZE is in the
    # pod template: a training job's size is its world size
    ("training", None, "recreate: never keeps the running Job", "spec.template"),
], ids=["batch-never", "batch-on-change", "training-world-size"])
def test_a_job_change_the_api_refuses_in_place_says_re_create_needed(
        tmp_path: Path, wtype: str, recreate: str | None, said: str, field: str) -> None:
    policy = f"  recreate: {recreate}\n" if recreate else ""
    base = spec_of(tmp_path / "b", {"workloads/nlp-team/train.yaml": workload(
        "train", wtype=wtype) + policy})
    head = spec_of(tmp_path / "h", {"workloads/nlp-team/train.yaml": workload(
        "train", wtype=wtype).replace("replicas: 2", "replicas: 1") + policy})
    d = diff_plans(base, plan("b1", placed("nlp-team/train", ("eu-fra-1", 2))),
                   head, plan("h1", placed("nlp-team/train", ("eu-fra-1", 1))), render=render)
    w = next(x for x in d.workloads if x.id == "nlp-team/train")
    row = next(r for r in to_json(d)["workloads"] if r["id"] == "nlp-team/train")
    ((cluster, reason),) = w.recreate
    assert cluster == "eu-fra-1" and field in reason and said in reason
    assert row["recreateNeeded"] == [{"cluster": "eu-fra-1", "reason": reason}]
    jsonschema.validate(to_json(d), load_schema("plan.schema.json"))  # an extra field
    assert f"re-create needed on eu-fra-1: {reason}" in to_text(d)
    assert "re-create needed on eu-fra-1" in to_markdown(d)
