"""An applier whose cluster is not its controller's to keep (`Applier.owns` False: the
shard or the leader Lease let go) sees another replica's writes there: no drift is
reported, none corrected, and what it had applied is forgotten, so a re-take cannot
correct the cluster back to it (docs/safety.md, "The source and leadership")."""

from __future__ import annotations

import copy
from typing import Any, cast

from clusters.apply import Applier, DriftReport
from clusters.client import KubeClient
from tests.unit.clusters.test_apply_status_only import DEPLOYMENT, live

KEY = ("apps/v1", "Deployment", "team-a", "w")


def newer(rv: int, image: str) -> dict[str, Any]:
    """The Deployment as another writer left it: a new image, a new generation."""
    obj = live(DEPLOYMENT, rv, generation=rv)
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return obj


def applier(reports: list[DriftReport], held: list[bool]) -> Applier:
    a = Applier(cast(KubeClient, None), self_heal=False, on_drift=reports.append)
    a.owns = lambda: held[-1]
    a.desired[KEY] = copy.deepcopy(DEPLOYMENT)
    a.observe("ADDED", live(DEPLOYMENT, 1))
    return a


def test_while_held_another_writers_change_is_drift() -> None:
    reports: list[DriftReport] = []
    a = applier(reports, [True])
    a.observe("MODIFIED", newer(2, "img:2"))
    assert [r.key for r in reports] == [KEY]  # the control: the same event is drift


def test_once_let_go_the_new_holders_writes_are_not_drift() -> None:
    reports: list[DriftReport] = []
    held = [True]
    a = applier(reports, held)
    held.append(False)  # the shard's Lease let go
    a.observe("MODIFIED", newer(2, "img:2"))
    a.observe("MODIFIED", newer(3, "img:3"))
    a.observe("DELETED", newer(3, "img:3"))  # pruned by the new holder: not drift either
    assert reports == [] and a.desired == {}
    # Re-taken: nothing applied here yet, so nothing to correct towards (the reconcile
    # of the head applies first); the inventory was kept all along.
    held.append(True)
    a.observe("ADDED", newer(4, "img:4"))
    assert reports == [] and KEY in a.live


def test_drift_is_looked_for_again_once_the_head_is_applied_after_a_re_take() -> None:
    reports: list[DriftReport] = []
    held = [True]
    a = applier(reports, held)
    held.append(False)
    a.observe("MODIFIED", newer(2, "img:2"))
    held.append(True)
    a.desired[KEY] = newer(2, "img:2")  # as the reconcile's apply leaves it
    for m in ("managedFields", "resourceVersion", "uid", "generation"):
        a.desired[KEY]["metadata"].pop(m, None)
    a.desired[KEY].pop("status", None)
    a.observe("MODIFIED", newer(3, "img:other"))
    assert [r.key for r in reports] == [KEY]
