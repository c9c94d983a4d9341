"""What the adapter keeps of the objects it owns (issue 22, item 1: memory): each owned
object is held once, in the applier's inventory, with `managedFields` reduced to what
drift reads; the owned kinds' informers keep metadata only. Drift is judged the same
on the slim copy as on the whole object, with the same manager named."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from clusters.slim import metadata_only, slim_live
from fleet.drift import diff
from fleet.sync import stamp
from tests.support.adapter import TEAM, Connected, connected, namespace, serving, stored, until

DEPLOYMENT = ("apps/v1", "Deployment", TEAM, "serve")


async def _applied(c: Connected) -> None:
    result = await c.adapter.apply([namespace(), *serving("serve")])
    assert result.ok
    await until(lambda: len(c.adapter.applier.live) == 3, what="informers caught up")
    # The deployment controller's status writes (a `status` managedFields entry).
    await until(lambda: (c.adapter.applier.live[DEPLOYMENT].get("status") or {}).get(
        "readyReplicas") == 1, what="the Deployment ready")


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["metadata"].get("managedFields") or [])


async def test_owned_objects_are_held_once_without_our_managed_fields(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        for inf in c.adapter.informers()[2:]:  # the owned kinds (after Nodes and Pods)
            for entry in inf.store.values():
                # metadata only: no spec, no status, no managedFields
                assert set(entry) == {"apiVersion", "kind", "metadata"}
                assert set(entry["metadata"]) <= {"name", "namespace", "uid",
                                                  "resourceVersion", "deletionTimestamp"}
        held = c.adapter.applier.live
        assert len(held) == 3
        for obj in held.values():
            managers = [e["manager"] for e in _entries(obj)]
            assert "aifleet" not in managers
            assert all("f:status" not in (e.get("fieldsV1") or {}) for e in _entries(obj))
        full = stored(c, "Deployment")["serve"]
        assert "aifleet" in [e["manager"] for e in _entries(full)]
        # what the status views and read-back read is all there
        dep = held[DEPLOYMENT]
        assert dep["spec"] == full["spec"] and dep["status"] == full["status"]
        assert dep["metadata"]["annotations"] == full["metadata"]["annotations"]
        assert len(json.dumps(dep)) * 3 < len(json.dumps(full)) * 2


async def test_drift_on_the_slim_copy_is_drift_on_the_whole_object(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await _applied(c)
        await c.cluster.edit("Deployment", TEAM, "serve", {
            "spec": {"replicas": 3},
            "metadata": {"annotations": {"team.example/owner": "alice"}}},
            manager="kubectl-edit")
        await c.cluster.edit("Deployment", TEAM, "serve", {"spec": {"paused": True}},
                             manager="rollout-pauser")
        full = stored(c, "Deployment")["serve"]
        want = stamp(serving("serve")[0])
        # a field claimed by another manager, one nobody claims (the latest writer is
        # named), and one that did not drift
        want["spec"]["template"]["spec"]["containers"][0]["image"] = "other:v2"
        drifted = diff(want, full)
        assert {f.path for f in drifted} >= {
            "spec.replicas", "spec.template.spec.containers[name=main].image"}
        assert diff(want, slim_live(full)) == drifted
        assert {(f.path, f.manager) for f in drifted} >= {("spec.replicas", "kubectl-edit")}


def test_slim_live_interns_keys_and_short_values_and_metadata_only_keeps_the_relist_keys() -> None:
    obj = json.loads(json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "t", "uid": "u", "resourceVersion": "9",
                     "labels": {"a": "b"},
                     "managedFields": [
                         {"manager": "aifleet", "operation": "Apply", "fieldsV1": {}},
                         {"manager": "k", "operation": "Update", "time": "t0",
                          "subresource": "status", "fieldsType": "FieldsV1",
                          "fieldsV1": {"f:status": {"f:x": {}}}}]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}))
    slim = slim_live(obj)
    assert slim["metadata"]["managedFields"] == [
        {"manager": "k", "operation": "Update", "time": "t0", "subresource": "status",
         "fieldsV1": {}}]
    assert all(k is sys.intern(k) for k in slim["spec"]["ports"][0])
    assert slim["kind"] is sys.intern("Service")  # short values too
    assert slim["metadata"]["labels"]["a"] is sys.intern("b")
    assert metadata_only(obj) == {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "s", "namespace": "t", "uid": "u", "resourceVersion": "9"}}
