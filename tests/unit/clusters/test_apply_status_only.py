"""The applier does not walk the desired manifest again for a version of an owned
object that differs from one already found matching in status alone (issue 22: the
simulated clusters' status writes were most of the owned objects' watch events).

`status_only` is checked case by case, and the applier with it against the same
applier comparing every version (its record of matches cleared before each event):
for sequences of versions the API server could send (generation raised with every
change to what is not metadata or status, and for Deployments with annotations too),
the drift reported is the same, report by report."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters import apply
from clusters.apply import Applier, status_only
from clusters.client import KubeClient
from fleet.drift import diff

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "w", "namespace": "team-a",
                 "labels": {"app.kubernetes.io/managed-by": "aifleet",
                            "aifleet.dev/workload": "w"},
                 "annotations": {"aifleet.dev/source-commit": "abc"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
             "template": {"metadata": {"labels": {"app": "w"}},
                          "spec": {"containers": [{"name": "main", "image": "img:1"}]}}}}
JOB: dict[str, Any] = {
    "apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": "t", "namespace": "team-a",
                 "labels": {"app.kubernetes.io/managed-by": "aifleet",
                            "aifleet.dev/workload": "t"}},
    "spec": {"parallelism": 1, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "img:1"}]}}}}


def live(desired: dict[str, Any], rv: int, generation: int = 1,
         status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(desired)
    obj["metadata"].update(uid="u1", resourceVersion=str(rv), generation=generation,
                           managedFields=[{"manager": "kube-controller-manager",
                                           "operation": "Update", "subresource": "status",
                                           "fieldsV1": {"f:status": {}}, "time": str(rv)}])
    obj["status"] = status or {}
    return obj


def test_a_status_write_is_status_only() -> None:
    old = live(DEPLOYMENT, 5)
    assert status_only(old, live(DEPLOYMENT, 6, status={"replicas": 1}))
    assert status_only(live(JOB, 5), live(JOB, 9, status={"active": 1}))


def test_anything_drift_reads_is_not() -> None:
    old = live(DEPLOYMENT, 5)
    bumped = live(DEPLOYMENT, 6, generation=2)
    assert not status_only(old, bumped)
    relabelled = live(DEPLOYMENT, 6)
    relabelled["metadata"]["labels"] = {**relabelled["metadata"]["labels"], "x": "y"}
    assert not status_only(old, relabelled)
    dropped = live(DEPLOYMENT, 6)
    del dropped["metadata"]["annotations"]
    assert not status_only(old, dropped)
    added = live(DEPLOYMENT, 6)
    added["metadata"]["finalizers"] = ["x"]
    assert not status_only(old, added)
    other_version = live(DEPLOYMENT, 6)
    other_version["apiVersion"] = "apps/v1beta2"
    assert not status_only(old, other_version)


def test_kinds_whose_generation_does_not_follow_their_spec_are_always_compared() -> None:
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "s", "namespace": "a"}, "spec": {"ports": [{"port": 1}]}}
    assert not status_only(live(service, 1), live(service, 2))
    no_generation = live(DEPLOYMENT, 5)
    del no_generation["metadata"]["generation"]
    later = copy.deepcopy(no_generation)
    later["metadata"]["resourceVersion"] = "6"
    assert not status_only(no_generation, later)


STEPS = st.sampled_from(["status", "replicas", "image", "back", "label", "annotation",
                         "desired", "desired-back"])


def _server_step(kind: dict[str, Any], obj: dict[str, Any], step: str, n: int,
                 base: dict[str, Any]) -> dict[str, Any]:
    """The next version the API server would send after `step` (by another writer)."""
    new = copy.deepcopy(obj)
    meta = new["metadata"]
    meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
    bump = False
    if step == "status":
        new["status"] = {"observed": n}
    elif step == "replicas" and kind is DEPLOYMENT:
        new["spec"]["replicas"] = n % 3
        bump = True
    elif step in ("image", "replicas"):
        new["spec"]["template"]["spec"]["containers"][0]["image"] = f"img:{n % 3}"
        bump = True
    elif step == "back":
        new["spec"] = copy.deepcopy(base["spec"])
        bump = new["spec"] != obj["spec"]
    elif step == "label":
        meta["labels"] = {**meta["labels"], "extra": str(n % 2)}
    elif step == "annotation":
        meta["annotations"] = {**(meta.get("annotations") or {}), "note": str(n % 2)}
        bump = kind is DEPLOYMENT  # the Deployment strategy counts annotations
    if bump:
        meta["generation"] += 1
    return new


def _reports(a: Applier) -> list[tuple[Any, ...]]:
    return [(r.key, tuple((f.path, repr(f.live), f.manager) for f in r.fields))
            for r in a.drift_log]


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([DEPLOYMENT, JOB]), steps=st.lists(STEPS, max_size=25))
def test_the_drift_reported_is_that_of_comparing_every_version(
        kind: dict[str, Any], steps: list[str]) -> None:
    client = cast(KubeClient, None)
    fast, every = (Applier(client, self_heal=False) for _ in range(2))
    key = ("apps/v1" if kind is DEPLOYMENT else "batch/v1", kind["kind"], "team-a",
           kind["metadata"]["name"])
    want = copy.deepcopy(kind)
    for a in (fast, every):
        a.desired[key] = want
    obj = live(kind, 1)
    for a in (fast, every):
        a.observe("ADDED", copy.deepcopy(obj))
    for n, step in enumerate(steps):
        if step in ("desired", "desired-back"):
            want = copy.deepcopy(kind)
            if step == "desired":
                want["metadata"]["labels"] = {**want["metadata"]["labels"], "v": str(n)}
            for a in (fast, every):
                a.desired[key] = want
            continue
        obj = _server_step(kind, obj, step, n, kind)
        every._clean.clear()
        for a in (fast, every):
            a.observe("MODIFIED", copy.deepcopy(obj))
        assert _reports(fast) == _reports(every)
        assert fast._reported == every._reported


def test_status_writes_after_a_match_are_not_walked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    walks: list[int] = []
    monkeypatch.setattr(apply, "diff", lambda want, got: walks.append(1) or diff(want, got))
    a = Applier(cast(KubeClient, None), self_heal=False)
    key = ("apps/v1", "Deployment", "team-a", "w")
    a.desired[key] = copy.deepcopy(DEPLOYMENT)
    a.observe("ADDED", live(DEPLOYMENT, 1))
    assert a._clean[key][1] == "1" and len(walks) == 1
    for rv in range(2, 5):
        a.observe("MODIFIED", live(DEPLOYMENT, rv, status={"replicas": rv}))
        assert a._clean[key][1] == str(rv)  # carried on by the status-only check
    assert len(walks) == 1
    drifted = live(DEPLOYMENT, 5)
    drifted["spec"]["replicas"] = 3
    drifted["metadata"]["generation"] = 2
    a.observe("MODIFIED", drifted)
    assert key not in a._clean and [r.fields[0].path for r in a.drift_log] == [
        "spec.replicas"]
    still = copy.deepcopy(drifted)
    still["metadata"]["resourceVersion"] = "6"
    still["status"] = {"replicas": 3}
    a.observe("MODIFIED", still)
    assert key not in a._clean  # a version with drift is never the base
    assert len(a.drift_log) == 1  # the same drift, reported once
    a.observe("MODIFIED", live(DEPLOYMENT, 7, generation=3))  # put back by its owner
    assert a._clean[key][1] == "7" and not a._reported
