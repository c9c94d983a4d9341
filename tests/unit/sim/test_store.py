"""The store's server rules: versions, generation, no-op writes, history, deletion."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.sim.errors import SimError
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store, Watcher

NS, CM, DEPLOY, JOB, POD = (BY_KIND[k] for k in
                            ("Namespace", "ConfigMap", "Deployment", "Job", "Pod"))


def store(history: int = 1000) -> Store:
    s = Store("t", history)
    s.create(NS, {"metadata": {"name": "a"}})
    return s


def cm(name: str = "x", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "a"}, "data": data}


def deploy() -> dict[str, Any]:
    return {"metadata": {"name": "d", "namespace": "a"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}


def test_every_write_gets_a_higher_resource_version() -> None:
    s = store()
    a = s.create(CM, cm("a"))
    b = s.create(CM, cm("b"))
    new = copy.deepcopy(a)
    new["data"] = {"k": "v"}
    c = s.replace(CM, new, a)
    versions = [int(o["metadata"]["resourceVersion"]) for o in (a, b, c)]
    assert versions == sorted(set(versions))


def test_a_replace_that_changes_nothing_writes_nothing() -> None:
    s = store()
    a = s.create(CM, cm(k="v"))
    rv = s.rv
    assert s.replace(CM, copy.deepcopy(a), a) is a and s.rv == rv


def test_generation_counts_spec_changes_only() -> None:
    s = store()
    d = s.create(DEPLOY, deploy())
    labelled = copy.deepcopy(d)
    labelled["metadata"]["labels"] = {"x": "y"}
    d2 = s.replace(DEPLOY, labelled, d)
    scaled = copy.deepcopy(d2)
    scaled["spec"]["replicas"] = 4
    d3 = s.replace(DEPLOY, scaled, d2)
    assert [o["metadata"]["generation"] for o in (d, d2, d3)] == [1, 1, 2]


def test_a_deployments_annotations_raise_its_generation_a_jobs_do_not() -> None:
    """kube-apiserver's Deployment strategy (`PrepareForUpdate`): "annotation updates
    bump the generation because annotations are copied from deployments to their
    replica sets"; the Job strategy counts the spec alone."""
    s = store()
    d = s.create(DEPLOY, deploy())
    noted = copy.deepcopy(d)
    noted["metadata"]["annotations"] = {"team": "a"}
    assert s.replace(DEPLOY, noted, d)["metadata"]["generation"] == 2
    job = s.create(JOB, {"metadata": {"name": "j", "namespace": "a"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "c", "image": "i:1"}]}}}})
    noted_job = copy.deepcopy(job)
    noted_job["metadata"]["annotations"] = {"team": "a"}
    assert s.replace(JOB, noted_job, job)["metadata"]["generation"] == 1


def test_a_deployments_status_write_may_change_its_annotations_not_its_labels() -> None:
    """Its status strategy resets spec and labels only (how the deployment controller
    records `deployment.kubernetes.io/revision` with `UpdateStatus`); no generation
    change, and the annotation is the status writer's in managedFields."""
    s = store()
    d = s.create(DEPLOY, deploy())
    new = copy.deepcopy(d)
    new["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    new["metadata"]["labels"] = {"x": "y"}
    new["spec"]["replicas"] = 9
    new["status"] = {"replicas": 0}
    out = s.replace(DEPLOY, new, d, manager="kube-controller-manager",
                    subresource="status")
    meta = out["metadata"]
    assert meta["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert "labels" not in meta and out["spec"] == d["spec"]
    assert meta["generation"] == 1 and out["status"] == {"replicas": 0}
    entry = next(e for e in meta["managedFields"] if e.get("subresource") == "status")
    assert entry["fieldsV1"]["f:metadata"] == {
        "f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}
    other = s.create(JOB, {"metadata": {"name": "j", "namespace": "a"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "c", "image": "i:1"}]}}}})
    noted = copy.deepcopy(other)
    noted["metadata"]["annotations"] = {"x": "y"}
    noted["status"] = {"active": 1}
    # a Job's status strategy resets spec alone (jobStatusStrategy): the request's
    # annotations are stored (tests/unit/sim/test_status_writes.py has every kind)
    assert s.replace(JOB, noted, other, manager="m",
                     subresource="status")["metadata"]["annotations"] == {"x": "y"}


def test_a_main_resource_write_cannot_change_status() -> None:
    s = store()
    d = s.create(DEPLOY, deploy())
    new = copy.deepcopy(d)
    new["status"] = {"replicas": 99}
    assert s.replace(DEPLOY, new, d)["status"] == d["status"]


def test_stale_resource_version_is_a_conflict() -> None:
    s = store()
    a = s.create(CM, cm())
    stale = copy.deepcopy(a)
    s.replace(CM, {**copy.deepcopy(a), "data": {"k": "1"}}, a)
    stale["data"] = {"k": "2"}
    with pytest.raises(SimError) as err:
        s.replace(CM, stale, s.get(CM, "a", "x"))
    assert err.value.code == 409 and err.value.reason == "Conflict"


def test_watch_history_older_than_the_ring_is_expired() -> None:
    s = store(history=3)
    first = s.rv
    for i in range(5):
        s.create(CM, cm(f"c{i}"))
    with pytest.raises(SimError) as err:
        list(s.history_since(first))
    assert err.value.code == 410
    assert [e.rv for e in s.history_since(s.rv - 2)] == [s.rv - 1, s.rv]


def test_watchers_see_objects_leave_their_selector_as_deleted() -> None:
    s = store()
    seen: list[tuple[str, str]] = []
    w = Watcher(CM, "a", lambda o: o["metadata"].get("labels", {}).get("t") == "1",
                lambda t, o: seen.append((t, o["metadata"]["resourceVersion"])))
    s.watchers.add(w)
    a = s.create(CM, {**cm(), "metadata": {**cm()["metadata"], "labels": {"t": "1"}}})
    moved = copy.deepcopy(a)
    moved["metadata"]["labels"] = {"t": "2"}
    s.replace(CM, moved, a)
    assert [t for t, _ in seen] == ["ADDED", "DELETED"]
    assert seen[1][1] == str(s.rv)


def test_job_deletion_orphans_pods_by_default_and_background_deletes_them() -> None:
    s = store()
    job = s.create(JOB, {"metadata": {"name": "j", "namespace": "a"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "c", "image": "i:1"}]}}}})
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "j",
           "uid": job["metadata"]["uid"]}
    for n in ("p1", "p2"):
        s.create(POD, {"metadata": {"name": n, "namespace": "a", "ownerReferences": [ref]},
                       "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    s.delete(JOB, "a", "j")
    pods = s.list(POD, "a")
    assert len(pods) == 2 and all("ownerReferences" not in p["metadata"] for p in pods)


def test_namespace_deletion_cascades_then_removes_the_namespace() -> None:
    s = store()
    s.create(CM, cm())
    s.delete(NS, "", "a")
    assert s.list(CM) == [] and s.find(NS, "", "a") is None


def test_creating_in_a_terminating_namespace_is_forbidden() -> None:
    s = store()
    held = cm("held")
    held["metadata"]["finalizers"] = ["x/y"]
    s.create(CM, held)
    s.delete(NS, "", "a")
    assert s.get(NS, "", "a")["status"]["phase"] == "Terminating"
    with pytest.raises(SimError) as err:
        s.create(CM, cm("new"))
    assert err.value.code == 403


def bound_pod(name: str = "p", grace: int | None = None, node: str = "n1",
              phase: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i:1"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": name, "namespace": "a"}, "spec": spec}


def test_deleting_a_bound_pod_starts_graceful_termination_with_its_grace_period() -> None:
    s = store()
    s.create(POD, bound_pod())
    out = s.delete(POD, "a", "p")
    meta = out["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30  # the defaulted terminationGrace...
    assert meta["generation"] == 2
    assert s.find(POD, "a", "p") is not None  # still there, holding its node's resources
    # a second delete may only shorten it; 0 removes the pod at once
    assert s.delete(POD, "a", "p", grace_seconds=60)["metadata"][
        "deletionGracePeriodSeconds"] == 30
    assert s.delete(POD, "a", "p", grace_seconds=5)["metadata"][
        "deletionGracePeriodSeconds"] == 5
    s.delete(POD, "a", "p", grace_seconds=0)
    assert s.find(POD, "a", "p") is None


@pytest.mark.parametrize(("pod", "grace"), [
    (bound_pod(node=""), None), (bound_pod(grace=0), None), (bound_pod(), 0)],
    ids=["unbound", "zero-grace-spec", "grace-period-0-option"])
def test_pods_that_need_no_grace_go_at_once(pod: dict[str, Any], grace: int | None) -> None:
    s = store()
    s.create(POD, pod)
    s.delete(POD, "a", "p", grace_seconds=grace)
    assert s.find(POD, "a", "p") is None


def test_a_status_write_during_termination_does_not_remove_the_pod() -> None:
    s = store()
    s.create(POD, bound_pod())
    live = s.delete(POD, "a", "p")
    s.replace(POD, {**live, "status": {"phase": "Running"}}, live, subresource="status")
    assert s.find(POD, "a", "p") is not None
