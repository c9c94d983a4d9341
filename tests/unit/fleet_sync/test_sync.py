"""`fleet.sync.plan_sync`: the decisions of one pass, held as table and property tests.

The applier only executes a SyncPlan (tests/integration/test_adapter_*.py drive that
against the simulated clusters); here each invariant of the decision is held alone.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from fleet.render import MANAGED_BY, RECREATE, WORKLOAD_LABEL
from fleet.safety import copy_still_running
from fleet.sync import (
    DRAINING,
    HASH_ANNOTATION,
    INVALID,
    SUSPENDED,
    ObjKey,
    SyncPlan,
    obj_key,
    plan_cluster,
    plan_sync,
    stamp,
)

KINDS = {"Service": "v1", "Deployment": "apps/v1", "Job": "batch/v1"}
LABELS = ("a.train", "a.serve", "b.train", "b.batch")


def obj(kind: str, label: str | None, *, owned: bool = True, spec: int = 1,
        recreate: str | None = None) -> dict[str, Any]:
    labels = {MANAGED_BY: "aifleet"} if owned else {}
    if label is not None:
        labels[WORKLOAD_LABEL] = label
    team = (label or "z.x").split(".")[0]
    meta: dict[str, Any] = {"name": (label or "loose").replace(".", "-"), "labels": labels}
    if kind == "Namespace":
        return {"apiVersion": "v1", "kind": kind,
                "metadata": {"name": team, "labels": {MANAGED_BY: "aifleet"}}}
    meta["namespace"] = team
    if recreate is not None:
        meta["annotations"] = {RECREATE: recreate}
    return {"apiVersion": KINDS[kind], "kind": kind, "metadata": meta, "spec": {"n": spec}}


def live_of(objs: list[dict[str, Any]]) -> dict[ObjKey, dict[str, Any]]:
    """As the server returns applied objects: stamped, with server-set fields added."""
    out = {}
    for o in objs:
        s = stamp(o)
        s["metadata"] = {**s["metadata"], "uid": "u", "resourceVersion": "7"}
        out[obj_key(s)] = s
    return out


def unique(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One object per key (two workloads of a team share their Namespace)."""
    return list({obj_key(o): o for o in objs}.values())


def prunable(plan: SyncPlan) -> set[ObjKey]:
    return {k for k, _wl in plan.prune}


# ------------------------------------------------------------------------ tables


def test_unchanged_objects_cost_nothing_and_changed_ones_are_applied() -> None:
    a, b = obj("Job", "a.train"), obj("Deployment", "b.batch")
    live = live_of([a, b])
    plan = plan_sync([a, obj("Deployment", "b.batch", spec=2)], live)
    assert plan.unchanged == (obj_key(a),)
    assert [obj_key(o) for o in plan.apply] == [obj_key(b)]
    assert plan.apply[0]["metadata"]["annotations"][HASH_ANNOTATION]
    assert plan.prune == () and plan.refused is None


def test_a_create_only_field_changed_by_kueue_is_not_a_change() -> None:
    # created `suspend: true`, unsuspended by Kueue on admission: nothing to apply
    job = {**obj("Job", "a.train"), "spec": {"n": 1, "suspend": True}}
    live = live_of([job])
    live[obj_key(job)]["spec"] = {"n": 1, "suspend": False}
    assert plan_sync([job], live).unchanged == (obj_key(job),)
    # a new object is created with it; a real change is still applied
    assert [o["spec"]["suspend"] for o in plan_sync([job], {}).apply] == [True]
    changed = {**job, "spec": {"n": 2, "suspend": True}}
    assert [obj_key(o) for o in plan_sync([changed], live).apply] == [obj_key(job)]


def test_an_object_being_deleted_is_applied_again() -> None:
    a = obj("Job", "a.train")
    live = live_of([a])
    live[obj_key(a)]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert [obj_key(o) for o in plan_sync([a], live).apply] == [obj_key(a)]


def test_namespaces_first_then_by_kind_then_workload() -> None:
    objs = [obj("Job", "b.train"), obj("Service", "a.serve"), obj("Namespace", "a.serve"),
            obj("Deployment", "a.serve")]
    plan = plan_sync(objs, {})
    assert [o["kind"] for o in plan.apply] == ["Namespace", "Service", "Deployment", "Job"]
    assert [o["kind"] for o in plan.namespaces] == ["Namespace"]
    assert sorted(plan.by_workload()) == ["a.serve", "b.train"]


def test_prune_leaves_namespaces_unowned_held_and_out_of_scope_objects() -> None:
    keep = obj("Deployment", "a.serve")
    live = live_of([keep, obj("Namespace", "b.train"), obj("Job", "b.train"),
                    obj("Job", "a.train"), obj("Service", "b.batch", owned=False),
                    obj("Deployment", "b.batch")])
    plan = plan_sync([keep], live, hold={"a.train"})
    assert {k[3] for k in prunable(plan)} == {"b-train", "b-batch"}
    assert all(k[1] != "Namespace" for k in prunable(plan))
    scoped = plan_sync([keep], live, scope={"b.batch"})
    assert [(k[1], wl) for k, wl in scoped.prune] == [("Deployment", "b.batch")]
    assert plan_sync([keep], live, prune=False).prune == ()


def test_pruning_everything_is_refused_unless_allowed() -> None:
    live = live_of([obj("Job", "a.train"), obj("Namespace", "a.train")])
    refused = plan_sync([obj("Namespace", "a.train")], live)
    assert refused.refused is not None and "allow_empty" in refused.refused
    assert plan_sync([], live, allow_empty=True).refused is None
    assert plan_sync([], live, scope={"a.train"}).refused is None  # a scoped pass


def test_a_kueue_clusters_team_queues_do_not_make_an_empty_render_look_full() -> None:
    queue = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
             "metadata": {"name": "a", "namespace": "a", "labels": {MANAGED_BY: "aifleet"}},
             "spec": {"clusterQueue": "a"}}
    live = live_of([obj("Job", "a.train"), obj("Namespace", "a.train"), queue])
    refused = plan_sync([obj("Namespace", "a.train"), queue], live)
    assert refused.refused is not None and "allow_empty" in refused.refused
    kept = plan_sync([obj("Namespace", "a.train"), queue, obj("Job", "a.serve")], live)
    assert kept.refused is None and [k[3] for k in prunable(kept)] == ["a-train"]


def test_a_failed_apply_holds_back_only_its_own_workload() -> None:
    live = live_of([obj("Job", "a.train"), obj("Job", "b.train")])
    plan = plan_sync([obj("Deployment", "a.serve")], live)
    assert plan.prune_after(["a.train"]) == (obj_key(obj("Job", "b.train")),)
    assert plan.prune_after([]) == tuple(sorted(prunable(plan)))
    assert plan.prune_after([None]) is None  # a Namespace failed: nobody's prune is safe


def test_only_live_jobs_with_recreate_on_change_may_be_recreated() -> None:
    on = obj("Job", "a.train", recreate="onChange")
    never = obj("Job", "b.train", recreate="never")
    legacy = obj("Job", "b.batch")  # no annotation: applied before the policy existed
    deploy = obj("Deployment", "a.serve")
    live = live_of([on, never, legacy, deploy])
    changed = [{**o, "spec": {"n": 9}} for o in (on, never, legacy, deploy)]
    plan = plan_sync([*changed, obj("Job", "b.x", recreate="onChange")], live)
    assert plan.recreate == {obj_key(on), obj_key(legacy)}


# ------------------------------------------------------------------------ properties

_desired = st.lists(st.tuples(st.sampled_from(["Service", "Deployment", "Job", "Namespace"]),
                              st.sampled_from(LABELS), st.integers(1, 2)),
                    max_size=8, unique_by=lambda t: (t[0], t[1]))
_live = st.lists(st.tuples(st.sampled_from(["Service", "Deployment", "Job", "Namespace"]),
                           st.sampled_from((*LABELS, None)), st.integers(1, 2), st.booleans()),
                 max_size=10, unique_by=lambda t: (t[0], t[1]))
_labels = st.sets(st.sampled_from(LABELS))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_desired, _live, _labels, st.one_of(st.none(), _labels), st.booleans())
def test_plan_sync_invariants(desired_t: list[tuple[str, str, int]],
                              live_t: list[tuple[str, str | None, int, bool]],
                              hold: set[str], scope: set[str] | None,
                              allow_empty: bool) -> None:
    desired = unique([obj(k, lb, spec=n) for k, lb, n in desired_t])
    live = live_of(unique([obj(k, lb, spec=n, owned=o) for k, lb, n, o in live_t]))
    plan = plan_sync(desired, live, hold=hold, scope=scope, allow_empty=allow_empty)
    keys = {obj_key(o) for o in desired}
    applied = [obj_key(o) for o in plan.apply]
    # every desired object is unchanged or applied, never both, never twice
    assert sorted([*plan.unchanged, *applied]) == sorted(keys)
    assert set(plan.desired) == keys
    # unchanged means the live copy carries the same content hash
    for k in plan.unchanged:
        assert live[k]["metadata"]["annotations"][HASH_ANNOTATION] == \
            stamp(next(o for o in desired if obj_key(o) == k))["metadata"]["annotations"][
                HASH_ANNOTATION]
    # Namespaces are applied before anything else
    kinds = [k[1] for k in applied]
    assert kinds == sorted(kinds, key=lambda k: k != "Namespace")
    # prune: only owned, live, undesired, non-Namespace objects, never a held workload's
    for k, wl in plan.prune:
        o = live[k]
        assert o["metadata"]["labels"].get(MANAGED_BY) == "aifleet"
        assert k not in keys and k[1] != "Namespace" and wl not in hold
        assert scope is None or wl in scope
    # an owned, undesired object outside hold and scope-limits is pruned (nothing leaks)
    for k, o in live.items():
        wl = o["metadata"]["labels"].get(WORKLOAD_LABEL)
        if o["metadata"]["labels"].get(MANAGED_BY) == "aifleet" and k not in keys and \
                k[1] != "Namespace" and wl not in hold and (scope is None or wl in scope):
            assert k in prunable(plan)
    # a refusal happens only when the pass would leave the cluster with nothing
    if plan.refused is not None:
        assert scope is None and not allow_empty and plan.prune
        assert all(k[1] == "Namespace" for k in keys)
    # a failure holds back its own workload's prune and nobody else's
    for failed in LABELS:
        after = plan.prune_after([failed])
        assert after is not None
        assert set(after) == {k for k, wl in plan.prune if wl != failed}
    # recreate is only ever offered for live Jobs being applied
    assert all(k[1] == "Job" and k in live and k in applied for k in plan.recreate)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_desired)
def test_a_second_pass_after_applying_everything_is_a_no_op(
        desired_t: list[tuple[str, str, int]]) -> None:
    desired = unique([obj(k, lb, spec=n) for k, lb, n in desired_t])
    live = live_of(desired)
    plan = plan_sync(desired, live)
    assert plan.apply == () and plan.prune == () and plan.refused is None
    assert len(plan.unchanged) == len(desired)


# ------------------------------------------------------------ one cluster, by workload

def _cluster(**over: Any) -> Any:
    objects = [obj("Namespace", "a.train"), obj("Job", "a.train"), obj("Deployment", "a.serve"),
               obj("Job", "b.train")]
    facts: dict[str, Any] = dict(
        stale=set(), suspended=set(), protected=set(), kept={}, live_here=set(),
        draining=set(), anything_placed=True)
    facts.update(over)
    return plan_cluster(objects, {"a.train": "a/train", "a.serve": "a/serve",
                                  "b.train": "b/train"}, **facts)


def test_a_suspended_workload_is_neither_deleted_applied_nor_pruned() -> None:
    sync = _cluster(suspended={"a.serve", "b.batch"}, stale={"b.batch", "a.x"})
    assert sync.stale == {"a.x"}
    assert "a.serve" not in sync.apply and sync.suspended == {"a.serve": "a/serve"}
    assert all(workload_of_(o) != "a.serve" for o in sync.objects)
    assert sync.hold["a.serve"] == SUSPENDED and sync.hold["b.batch"] == SUSPENDED


def test_a_workload_still_on_a_retiring_cluster_waits_unless_it_runs_here() -> None:
    sync = _cluster(draining={"a.train", "b.train"}, live_here={"b.train"})
    assert set(sync.waiting) == {"a.train"}
    assert set(sync.apply) == {"a.serve", "b.train"}
    kinds = [(o["kind"], workload_of_(o)) for o in sync.objects]
    assert ("Job", "a.train") not in kinds and ("Namespace", None) in kinds


def test_a_moved_gang_waits_while_another_answering_cluster_holds_it() -> None:
    sync = _cluster(gangs={"a.train", "b.train"},
                    held_elsewhere={"a.train": {"eu-par-1"}, "b.train": {"eu-par-1"},
                                    "a.serve": {"eu-par-1"}},
                    live_here={"b.train"})
    # a.train starts nowhere before its old copy went; b.train already runs here (its
    # copy elsewhere goes as a stale copy there); a.serve is no gang: it may overlap
    assert set(sync.waiting) == {"a.train"}
    assert "eu-par-1" in sync.waiting["a.train"]
    assert "never runs on two clusters" in sync.waiting["a.train"]
    assert set(sync.apply) == {"a.serve", "b.train"}
    assert ("Job", "a.train") not in [(o["kind"], workload_of_(o)) for o in sync.objects]
    # a drain names itself; a suspended gang neither waits nor starts
    assert _cluster(draining={"a.serve"}).waiting == {"a.serve": DRAINING}
    held = _cluster(gangs={"a.train"}, held_elsewhere={"a.train": {"x"}},
                    suspended={"a.train"})
    assert not held.waiting and "a.train" not in held.apply


def test_invalid_and_kept_copies_are_held_with_why() -> None:
    sync = _cluster(protected={"c.bad"}, kept={"c.away": "placed only on clusters that ..."},
                    anything_placed=False)
    assert sync.hold == {"c.away": "placed only on clusters that ...", "c.bad": INVALID}
    assert sync.kept == {"c.away"} and not sync.allow_empty


def workload_of_(o: dict[str, Any]) -> str | None:
    value = o["metadata"].get("labels", {}).get(WORKLOAD_LABEL)
    return None if value is None else str(value)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_desired, _live, _labels, _labels, _labels, st.sets(st.sampled_from([*LABELS, None])))
def test_an_invalid_suspended_or_kept_workloads_copy_is_never_pruned(
        desired_t: list[tuple[str, str, int]],
        live_t: list[tuple[str, str | None, int, bool]],
        invalid: set[str], suspended: set[str], kept: set[str],
        failed: set[str | None]) -> None:
    # Through both levels, as the reconciler calls them: whatever is desired, live or
    # fails, no object of an Invalid (or unparseable: held the same way), suspended or
    # kept workload is ever among what the pass deletes.
    desired = unique([obj(k, lb, spec=n) for k, lb, n in desired_t
                      if lb not in invalid])  # an Invalid workload is placed nowhere new
    live = live_of(unique([obj(k, lb, spec=n, owned=o) for k, lb, n, o in live_t]))
    apply = {lb: lb.replace(".", "/") for lb in {workload_of_(o) for o in desired} if lb}
    sync = plan_cluster(desired, apply, stale=set(), suspended=suspended, protected=invalid,
                        kept=dict.fromkeys(kept, "kept"), live_here=set(), draining=set(),
                        anything_placed=True)
    plan = plan_sync(sync.objects, live, hold=set(sync.hold))
    pruned = plan.prune_after(failed) or ()
    held = invalid | suspended | kept
    assert all(workload_of_(live[k]) not in held for k in pruned)
    assert all(workload_of_(o) not in suspended for o in plan.apply)


# A gang moved from cluster A to cluster B, both answering; the two clusters' passes run
# in any order, A's deletes fail for a while, A may stop answering and come back, its
# pods terminate some time after its Job is deleted. Each pass is decided by
# `plan_cluster` as the reconciler calls it and executed as the reconciler does (stale
# copies first, nothing else in a pass whose stale delete failed).
_actions = st.lists(st.one_of(
    st.sampled_from(["pass-a", "pass-b", "pods-terminated-a", "down-a", "up-a"]),
    st.tuples(st.just("fail-a"), st.integers(1, 3))), max_size=30)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_actions)
def test_a_moved_gang_never_starts_while_its_old_copy_runs_on_a_cluster_that_answers(
        actions: list[Any]) -> None:
    gang, job = "a.train", obj("Job", "a.train")
    a = {"job": True, "pod": "Running", "up": True, "failing": 0}
    b_runs = False

    def a_pass() -> None:
        if not a["up"]:
            return  # the reconciler does not act on a cluster that does not answer
        sync = plan_cluster([], {}, stale={gang} if a["job"] else set(), suspended=set(),
                            protected=set(), kept={}, live_here={gang} if a["job"] else set(),
                            draining=set(), anything_placed=True)
        if gang in sync.stale:
            if a["failing"]:
                a["failing"] -= 1  # the delete failed: nothing else this pass
                return
            a["job"] = False
            a["pod"] = "Terminating" if a["pod"] else None

    def b_pass() -> None:
        nonlocal b_runs
        phase = {"Running": "Running", "Terminating": "Running", None: None}[a["pod"]]
        holds = a["up"] and copy_still_running(bool(a["job"]), [phase] if phase else [])
        sync = plan_cluster([obj("Namespace", gang), job], {gang: "a/train"}, stale=set(),
                            suspended=set(), protected=set(), kept={},
                            live_here={gang} if b_runs else set(), draining=set(),
                            anything_placed=True, gangs={gang},
                            held_elsewhere={gang: {"a"}} if holds else {})
        if gang in sync.apply and not b_runs:
            # the new copy starts only where the old one cannot be on a cluster that
            # answers: gone there, or its cluster away (a failover)
            assert not a["up"] or (not a["job"] and a["pod"] is None)
            b_runs = True
        if holds and not b_runs:
            assert gang in sync.waiting and "a" in sync.waiting[gang]

    for act in actions:
        if act == "pass-a":
            a_pass()
        elif act == "pass-b":
            b_pass()
        elif act == "pods-terminated-a":
            a["pod"] = None if a["pod"] == "Terminating" else a["pod"]
        elif act in ("down-a", "up-a"):
            a["up"] = act == "up-a"
        else:
            a["failing"] += act[1]
    # and it gets there: once A answers and takes deletes, the gang ends on B only
    a.update(up=True, failing=0)
    a_pass()
    a["pod"] = None
    b_pass()
    assert b_runs and not a["job"]
