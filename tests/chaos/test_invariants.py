"""The chaos test's oracle, table-tested: each invariant check finds what it must and
nothing else (a check that never fires would hide every violation)."""

from __future__ import annotations

import pytest

from tests.chaos.fleet import cluster_doc, cluster_path, initial_files
from tests.chaos.invariants import Judge
from tests.chaos.steps import ALLOW_MASS, ALLOW_RETIRE, Files, Generator, Step
from tests.chaos.world import Live

CHAT, DETECT, TRAIN = "nlp-team/chat", "vision-team/detect", "nlp-team/train-a"


def judge(*changes: tuple[Files, str]) -> Judge:
    """A judge over a line of commits: the first fleet, then each (files, message)."""
    gen = Generator(0, leader_elect=False)
    gen.committed(Step("init", "", files=initial_files(), message="Initial fleet"), "c0")
    for i, (files, message) in enumerate(changes, 1):
        gen.committed(Step("commit", "", files=files, message=message), f"c{i}")
    model = gen.model
    return Judge(model, lambda new, old: model.is_ancestor(old, new))


def without(*paths: str) -> Files:
    return {p: d for p, d in initial_files().items() if p not in paths}


def live(**on: list[str]) -> Live:
    """live(eu_fra_1=[CHAT]) -> {"eu-fra-1": {CHAT: {"Deployment"}}}"""
    out: Live = {c: {} for c in ("eu-fra-1", "eu-par-1", "us-east-1", "us-west-1")}
    for c, ws in on.items():
        out[c.replace("_", "-")] = {w: {"Job" if "train" in w else "Deployment"} for w in ws}
    return out


def test_residency_follows_the_applied_commits_jurisdictions() -> None:
    relabelled = dict(initial_files())
    relabelled[cluster_path("eu-par-1")] = cluster_doc("eu-par-1", "US").encode()
    j = judge((relabelled, "eu-par-1 is in US"))
    on_par = live(eu_par_1=[CHAT, DETECT])
    j.observe_applied("c0")
    assert j.residency(on_par, ()) == []
    j.observe_applied("c1")
    assert j.residency(on_par, ()) == [
        "2 residency: nlp-team/chat (eu-personal) runs on eu-par-1 (US)"]
    assert j.residency(on_par, ("eu-par-1",)) == []  # a down cluster cannot be cleaned


@pytest.mark.parametrize(("after", "down", "found"), [
    (live(eu_fra_1=[TRAIN]), (), []),
    (live(eu_fra_1=[TRAIN], eu_par_1=[TRAIN]), (), ["5 gang twice: nlp-team/train-a has a "
                                                    "Job on ['eu-fra-1', 'eu-par-1']"]),
    (live(eu_fra_1=[TRAIN], eu_par_1=[TRAIN]), ("eu-fra-1",), []),
    (live(eu_fra_1=[CHAT], eu_par_1=[CHAT]), (), []),  # spread inference: not a gang
], ids=["one", "two-reachable", "stale-copy-on-a-down-cluster", "spread-inference"])
def test_a_gang_job_on_two_reachable_clusters_is_found(after: Live, down: tuple[str, ...],
                                                        found: list[str]) -> None:
    assert judge().gangs(after, down) == found


@pytest.mark.parametrize(("change", "before", "after", "found"), [
    ((without(), "noop"), live(eu_fra_1=[CHAT]), live(eu_par_1=[CHAT]), []),
    ((without(), "noop"), live(eu_fra_1=[CHAT]), live(),
     ["3 lost: nlp-team/chat (file still in the repo) ran on ['eu-fra-1'] and now runs "
      "nowhere"]),
    ((without("workloads/nlp-team/chat.yaml"), "rm chat"), live(eu_fra_1=[CHAT]), live(), []),
    ((without(cluster_path("eu-fra-1")), "retire"), live(eu_fra_1=[CHAT]), live(), []),
    ((without(cluster_path("eu-fra-1"), cluster_path("eu-par-1")), "retire two"),
     live(eu_fra_1=[CHAT, DETECT]), live(eu_par_1=[CHAT], us_east_1=[DETECT]),
     ["3 mass deletion: head c1 removes 2 Cluster files ['eu-fra-1', 'eu-par-1'] without "
      "`Fleet-Allow: retire` (vs applied c0), yet deleted ['nlp-team/chat@eu-fra-1', "
      "'vision-team/detect@eu-fra-1']"]),
    ((without(cluster_path("eu-fra-1"), cluster_path("eu-par-1")),
      f"retire two\n\n{ALLOW_RETIRE}"),
     live(eu_fra_1=[DETECT]), live(us_east_1=[DETECT]), []),
    ((without(cluster_path("eu-fra-1"), cluster_path("eu-par-1")), "retire two"),
     live(eu_fra_1=[TRAIN], us_east_1=[TRAIN]), live(us_east_1=[TRAIN]), []),
    ((without(cluster_path("eu-fra-1"), cluster_path("eu-par-1")), "retire two"),
     live(eu_fra_1=[CHAT], us_east_1=[CHAT]), live(us_east_1=[CHAT]),
     ["3 mass deletion: head c1 removes 2 Cluster files ['eu-fra-1', 'eu-par-1'] without "
      "`Fleet-Allow: retire` (vs applied c0), yet deleted ['nlp-team/chat@eu-fra-1']"]),
    ((without(*[p for p in initial_files() if p.startswith("workloads/nlp-team/")]), "rm"),
     live(eu_fra_1=[CHAT, DETECT]), live(eu_fra_1=[DETECT]),
     ["3 mass deletion: head c1 deletes 4/12 workload files without `Fleet-Allow: "
      "mass-deletion` (vs applied c0), yet deleted ['nlp-team/chat@eu-fra-1']"]),
    ((without(*[p for p in initial_files() if p.startswith("workloads/nlp-team/")]),
      f"rm\n\n{ALLOW_MASS}"), live(eu_fra_1=[CHAT]), live(), []),
], ids=["moved", "lost", "its-file-deleted", "one-cluster-retired", "two-retired",
        "two-retired-allowed", "two-retired-stale-gang-copy-cleaned",
        "two-retired-spread-replica-drained", "mass-deletion", "mass-deletion-allowed"])
def test_nothing_is_lost_without_leave(change: tuple[Files, str], before: Live, after: Live,
                                       found: list[str]) -> None:
    j = judge(change)
    assert j.nothing_lost(before, after, "c0", "c1") == found


def test_a_corrupt_file_still_protects_its_workload() -> None:
    corrupt = dict(initial_files())
    corrupt["workloads/nlp-team/chat.yaml"] = b"kind: Wrokload\n"
    j = judge((corrupt, "edit"))
    assert j.nothing_lost(live(eu_fra_1=[CHAT]), live(), "c0", "c1") != []


def test_a_refused_rollbacks_files_keep_nothing_in_force() -> None:
    """A workload deleted by the applied commit, main force-pushed back to a commit that
    still has its file (refused: not a descendant): its last copy going is no loss --
    while the same file in a head the controller may apply still protects it."""
    j = judge((without("workloads/vision-team/detect.yaml"), f"rm\n\n{ALLOW_MASS}"))
    j.model.head = "c0"  # main forced back; the controller keeps c1 applied
    assert j.nothing_lost(live(eu_par_1=[DETECT]), live(), "c1", "c1") == []
    assert j.nothing_lost(live(eu_par_1=[DETECT]), live(), "c0", "c0") == [
        "3 lost: vision-team/detect (file still in the repo) ran on ['eu-par-1'] and now "
        "runs nowhere"]


def test_the_applied_commit_never_moves_back() -> None:
    j = judge((without(), "one"), (without(), "two"))
    assert j.observe_applied("c2") == []
    assert j.observe_applied("c2") == []
    assert j.observe_applied("c1") == [
        "4 rollback applied: applied commit c1 is not a descendant of the earlier applied c2"]
    assert j.observe_applied("c2") == []  # the way back forward is not reported again


def test_deleting_one_of_three_workloads_is_not_a_mass_deletion() -> None:
    others = [p for p in initial_files() if p.startswith("workloads/")
              and p not in ("workloads/nlp-team/chat.yaml", "workloads/vision-team/detect.yaml",
                            "workloads/nlp-team/train-a.yaml")]
    three = without(*others)
    two = {p: d for p, d in three.items() if p != "workloads/nlp-team/chat.yaml"}
    j = judge((three, f"trim\n\n{ALLOW_MASS}"), (two, "rm chat"))
    assert j.nothing_lost(live(eu_fra_1=[CHAT]), live(), "c1", "c2") == []
