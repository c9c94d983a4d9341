"""Desired state per cluster: per-workload commits, stale copies, protected workloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.runtime.desired import DesiredState
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement import place
from fleet.placement.types import Assignment, Plan, WorkloadPlacement
from fleet.render import intent_hash, render, render_cluster
from fleet.spec import FleetSpec
from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import GitRepo
from tests.unit.fleet_placement.builders import cluster, declared, fleet
from tests.unit.fleet_placement.builders import workload as built
from workloads.loader import read_fleet

FRA, USE = ClusterName("eu-fra-1"), ClusterName("us-east-1")
TRAIN, EVAL, BAD = (WorkloadId("nlp-team/train"), WorkloadId("nlp-team/eval"),
                    WorkloadId("nlp-team/bad"))
H100 = Flavour("h100-80gb")


@pytest.fixture
def specs(tmp_path: Path) -> tuple[FleetSpec, FleetSpec, str, str]:
    repo = GitRepo(tmp_path)
    files = base_fleet()
    files["workloads/nlp-team/eval.yaml"] = workload("eval", data_class="public")
    files["workloads/nlp-team/bad.yaml"] = workload("bad", flavours="[no-such-gpu]")
    c1 = repo.commit(files)
    c2 = repo.commit({"workloads/nlp-team/eval.yaml": workload(
        "eval", data_class="public").replace("trainer:v1", "trainer:v2")})
    return read_fleet(tmp_path, c1).spec, read_fleet(tmp_path, c2).spec, c1, c2


def plan(commit: str, eval_on: ClusterName = USE) -> Plan:
    return Plan(commit, {
        TRAIN: WorkloadPlacement(TRAIN, "Placed", (Assignment(FRA, H100, 2, 8),)),
        EVAL: WorkloadPlacement(EVAL, "Placed", (Assignment(eval_on, H100, 2, 8),)),
        BAD: WorkloadPlacement(BAD, "Invalid"),
    })


def commit_of(objects: list[dict], name: str) -> str:  # type: ignore[type-arg]
    obj = next(o for o in objects if o["metadata"]["name"] == name and o["kind"] == "Job")
    return str(obj["metadata"]["annotations"]["aifleet.dev/source-commit"])


def test_only_the_changed_workload_gets_the_new_commit(
        specs: tuple[FleetSpec, FleetSpec, str, str]) -> None:
    s1, s2, c1, c2 = specs
    d = DesiredState(render)
    assert d.adopt_spec(s1, c1) == {TRAIN, EVAL}
    d.plan = plan(c1)
    assert d.adopt_spec(s2, c2) == {EVAL}
    d.plan = plan(c2)
    fra, labels = d.objects_for(FRA)
    use, _ = d.objects_for(USE)
    assert fra[0]["kind"] == "Namespace"
    assert labels == {"nlp-team.train": TRAIN}
    assert commit_of(fra, "train") == c1
    assert commit_of(use, "eval") == c2


def test_copies_placed_elsewhere_only_are_stale_and_invalid_ones_protected(
        specs: tuple[FleetSpec, FleetSpec, str, str]) -> None:
    s1, _s2, c1, _c2 = specs
    d = DesiredState(render)
    d.adopt_spec(s1, c1)
    d.plan = plan(c1, eval_on=FRA)
    assert d.stale_on(USE, {"nlp-team.eval", "nlp-team.bad", "other.gone"}) == {"nlp-team.eval"}
    assert d.stale_on(FRA, {"nlp-team.eval", "nlp-team.train"}) == set()
    assert d.protected() == {"nlp-team.bad"}


@pytest.mark.parametrize("same_intent", [True, False], ids=["intent-unchanged", "changed"])
def test_after_a_restart_the_live_commit_is_kept_only_if_the_intent_is_the_same(
        specs: tuple[FleetSpec, FleetSpec, str, str], same_intent: bool) -> None:
    _s1, s2, c1, c2 = specs
    d = DesiredState(render)
    d.adopt_spec(s2, c2)
    d.plan = plan(c2)
    live_intent = intent_hash(s2.workloads[EVAL]) if same_intent else "0" * 64
    kept = d.adopt_live({EVAL: (c1, live_intent)})
    assert kept == (1 if same_intent else 0)
    use, _ = d.objects_for(USE)
    assert commit_of(use, "eval") == (c1 if same_intent else c2)


def test_the_controller_applies_what_render_cluster_renders() -> None:
    """`fleet render` and the controller share `cluster_objects`: same objects, same
    order, for the same plan and commit."""
    c = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8), ("l40s-48gb", 16, 4)))
    spec = fleet(c, built("train", wtype="training", replicas=4, count=8),
                 built("serve", wtype="inference", replicas=3, count=1,
                       flavours=("l40s-48gb",)),
                 built("other", "vision-team", count=1))
    plan = place(spec, declared(spec), commit="c1")
    d = DesiredState(render)
    d.adopt_spec(spec, "c1")
    d.plan = plan
    objects, labels = d.objects_for(ClusterName("eu-fra-1"))
    assert objects == render_cluster(spec, plan, ClusterName("eu-fra-1"), "c1")
    assert set(labels.values()) == {w for w, p in plan.workloads.items()
                                    if p.status == "Placed"}



class CountingDict(dict):  # type: ignore[type-arg]
    """A plan's workloads that count the passes over them."""

    passes = 0

    def items(self):  # type: ignore[no-untyped-def]
        CountingDict.passes += 1
        return super().items()

    def values(self):  # type: ignore[no-untyped-def]
        CountingDict.passes += 1
        return super().values()


def test_the_plan_is_indexed_by_cluster_once_per_plan(
        specs: tuple[FleetSpec, FleetSpec, str, str]) -> None:
    from fleet.render import placed_on
    s1, _s2, c1, _c2 = specs
    d = DesiredState(render)
    d.adopt_spec(s1, c1)
    d.plan = Plan(c1, CountingDict(plan(c1).workloads))
    CountingDict.passes = 0
    answers = {c: (d.placed_on(c), d.signature(c), d.protected_on(c)) for c in (FRA, USE)}
    for _ in range(50):  # as every finished reconcile asks every cluster's signature
        for c in (FRA, USE):
            assert (d.placed_on(c), d.signature(c), d.protected_on(c)) == answers[c]
    assert CountingDict.passes <= 3  # once per plan, not once per question
    assert answers[FRA][0] == placed_on(plan(c1), FRA) == {TRAIN: Assignment(FRA, H100, 2, 8)}
    assert answers[USE][0] == placed_on(plan(c1), USE) == {EVAL: Assignment(USE, H100, 2, 8)}
    # a new plan is indexed anew: the answers follow it
    d.plan = plan(c1, eval_on=FRA)
    assert set(d.placed_on(FRA)) == {TRAIN, EVAL} and d.placed_on(USE) == {}
    # a returned dict is the caller's own: changing it changes nothing here
    d.placed_on(FRA).clear()
    assert set(d.placed_on(FRA)) == {TRAIN, EVAL}


def test_render_missing_renders_each_new_workload_once_and_objects_for_then_renders_none(
        specs: tuple[FleetSpec, FleetSpec, str, str]) -> None:
    s1, s2, c1, c2 = specs
    rendered: list[str] = []

    def counting(wl, a, c, commit):  # type: ignore[no-untyped-def]
        rendered.append(str(wl.id))
        return render(wl, a, c, commit)

    d = DesiredState(counting)
    d.adopt_spec(s1, c1)
    d.plan = plan(c1, eval_on=FRA)
    steps = list(d.render_missing(FRA))  # one step (a yield to the loop) per render
    assert len(steps) == 2 and sorted(rendered) == [EVAL, TRAIN]
    objects, _ = d.objects_for(FRA)
    assert objects and len(rendered) == 2  # all from the cache
    assert list(d.render_missing(FRA)) == []
    d.adopt_spec(s2, c2)  # eval's intent changed: only it is rendered again
    assert len(list(d.render_missing(FRA))) == 1 and rendered[-1] == EVAL
    d.objects_for(FRA)
    assert len(rendered) == 3


def _state(d: DesiredState) -> tuple[object, ...]:
    return (d.spec, d.head, d.version, list(d.workload_commit.items()),
            list(d.last_valid.items()), list(d.data_class.items()))


def test_adopting_only_the_edited_workloads_ends_as_adopting_the_whole_spec(
        tmp_path: Path) -> None:
    """A commit read through a tree diff names the workloads it edited: adopting only
    those leaves the desired state as a whole pass over the spec does."""
    repo = GitRepo(tmp_path)
    files = base_fleet()
    files["workloads/nlp-team/eval.yaml"] = workload("eval", data_class="public")
    c1 = repo.commit(files)
    c2 = repo.commit({
        "workloads/nlp-team/eval.yaml": workload("eval", data_class="public").replace(
            "trainer:v1", "trainer:v2"),
        "workloads/vision/seg.yaml": workload("seg", "vision", data_class="public"),
        "workloads/nlp-team/a-new.yaml": workload("a-new", data_class="public")})
    s1, s2 = read_fleet(tmp_path, c1).spec, read_fleet(tmp_path, c2).spec
    assert not s1.invalid and not s2.invalid
    whole, edited = DesiredState(render), DesiredState(render)
    for d in (whole, edited):
        d.adopt_spec(s1, c1)
        d.plan = plan(c1)
    expected = {EVAL, WorkloadId("vision/seg"), WorkloadId("nlp-team/a-new")}
    assert whole.adopt_spec(s2, c2) == expected
    assert edited.adopt_spec(s2, c2, {TRAIN, *expected}) == expected
    assert _state(edited) == _state(whole)
    assert edited.workload_commit[TRAIN] == c1 and edited.workload_commit[EVAL] == c2
