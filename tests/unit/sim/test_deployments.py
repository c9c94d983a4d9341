"""The Deployment controller's arithmetic, and managedFields of status writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusters.sim import ssa
from clusters.sim.deployments import HASH_LABEL, _strip_hash, fenceposts, template_hash


def dep(replicas: int, surge: Any = "25%", unavailable: Any = "25%",
        kind: str = "RollingUpdate") -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": kind}
    if kind == "RollingUpdate":
        strategy["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"spec": {"replicas": replicas, "strategy": strategy}}


@pytest.mark.parametrize(("d", "expected"), [
    (dep(4), (1, 1)), (dep(3), (1, 0)), (dep(3, "50%", "50%"), (2, 1)),
    (dep(10, 0, 0), (0, 1)), (dep(5, 2, "0%"), (2, 0)), (dep(3, kind="Recreate"), (0, 0))],
    ids=["default-4", "default-3-rounds-unavailable-down", "percent-surge-rounds-up",
         "both-zero-means-one-unavailable", "absolute-surge", "recreate"])
def test_fenceposts_round_as_resolve_fenceposts(d: dict[str, Any],
                                                expected: tuple[int, int]) -> None:
    assert fenceposts(d) == expected


def test_template_hash_is_stable_safe_encoded_and_moves_with_collisions() -> None:
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    h = template_hash(t)
    assert h == template_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert template_hash(t, 1) != h


def test_a_status_write_is_recorded_in_its_own_status_entry() -> None:
    old = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "managedFields": [{
               "manager": "fleet", "operation": "Apply", "apiVersion": "apps/v1",
               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
           "spec": {"replicas": 2}, "status": {}}
    new = {**old, "status": {"replicas": 2, "readyReplicas": 2}}
    out = ssa.record_update(old, new, "kube-controller-manager", now="t",
                            subresource="status")
    entries = {(e["manager"], e.get("subresource")): e for e in
               out["metadata"]["managedFields"]}
    assert set(entries) == {("fleet", None), ("kube-controller-manager", "status")}
    assert entries[("kube-controller-manager", "status")]["fieldsV1"] == {
        "f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    assert entries[("fleet", None)]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


@given(st.fixed_dictionaries({}, optional={
    "metadata": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "labels": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["app", HASH_LABEL]), st.sampled_from(["a", "b"]))),
        "annotations": st.dictionaries(st.sampled_from(["x"]), st.just("y"))})),
    "spec": st.fixed_dictionaries({"containers": st.just([{"name": "c"}])})}))
def test_strip_hash_equals_the_deep_copy_without_the_label_and_leaves_the_template(
        template: dict[str, Any]) -> None:
    before = copy.deepcopy(template)
    expected = copy.deepcopy(template)
    ((expected.get("metadata") or {}).get("labels") or {}).pop(HASH_LABEL, None)
    got = _strip_hash(template)
    assert got == expected
    assert template_hash(got) == template_hash(expected)
    assert template == before
