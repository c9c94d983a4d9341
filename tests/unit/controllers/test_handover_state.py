"""The home cluster's copy wins over the state dir's (`controllers.runtime.handover`):
what each state-keeping part takes from it, and what it refuses, table-driven."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clusters.kubeconfig import ConnectionSpec
from controllers.persist.statefile import load_held, save_held, save_retiring
from controllers.runtime.deletions import DeletionGuard
from controllers.runtime.retirement import Retirement
from controllers.runtime.suspension import FILE, Suspensions
from fleet.safety import DeletionLimits

A, B, C = "a" * 40, "b" * 40, "c" * 40
HOLDS = [{"reason": "MassDeletion", "message": "9 of 13", "allow": "Fleet-Allow: mass-deletion"}]


def test_the_homes_suspensions_replace_the_local_ones_and_are_saved(tmp_path: Path) -> None:
    local = Suspensions.load(tmp_path)
    local.change(suspend=True, workload="old/one")
    home = {"version": 1, "workloads": {"team/serve": "2026-12-03T10:00:00Z"},
            "clusters": {"eu-fra-1": "2026-12-03T10:01:00Z"}}
    assert local.replace(home)
    assert local.holds("eu-par-1", "team/serve") and local.holds("eu-fra-1", "x/y")
    assert not local.holds("eu-par-1", "old/one")
    assert json.loads((tmp_path / FILE).read_text()) == home  # the local cache follows


@pytest.mark.parametrize("doc", [
    {"version": 2, "workloads": {}, "clusters": {}},
    {"version": 1, "workloads": {"team/serve": 5}, "clusters": {}},
    {"version": 1, "workloads": ["team/serve"], "clusters": {}},
], ids=["other-version", "not-text", "not-a-map"])
def test_a_suspensions_copy_that_is_not_one_changes_nothing(tmp_path: Path,
                                                            doc: dict[str, Any]) -> None:
    local = Suspensions.load(tmp_path)
    local.change(suspend=True, workload="team/serve")
    assert not local.replace(doc)
    assert local.workloads.keys() == {"team/serve"}


def guard(tmp_path: Path) -> DeletionGuard:
    return DeletionGuard(tmp_path, DeletionLimits())


def test_a_hold_in_the_home_is_served_at_start_by_a_replica_that_never_saw_it(
        tmp_path: Path) -> None:
    g = guard(tmp_path)
    hold = g.take_shared({"version": 1, "commit": C, "base": B, "holds": HOLDS},
                         {"version": 1, "commit": B})
    assert hold == (C, B, HOLDS)
    assert g.last_adopted == B
    assert g.restored_base(C) == B  # serve the leader's base, judge C later
    assert g.holds[0].reason == "MassDeletion"
    assert load_held(tmp_path) == (C, B, HOLDS)  # and cached locally
    assert g.shared_docs()["held"] == {"commit": C, "base": B, "holds": HOLDS}


def test_a_home_that_holds_nothing_clears_a_stale_local_hold(tmp_path: Path) -> None:
    save_held(tmp_path, C, A, HOLDS)  # this replica's own, from long ago
    g = guard(tmp_path)
    assert g.take_shared({"version": 1, "commit": None, "base": None, "holds": []},
                         None) is None
    assert g.restored_base(C) is None  # the old base is not served
    assert load_held(tmp_path) is None
    assert g.shared_docs()["held"]["commit"] is None


@pytest.mark.parametrize("held", [
    None,
    {"version": 1, "commit": C, "base": B, "holds": "not a list"},
    {"version": 1, "commit": 7, "base": B, "holds": []},
    {"version": 1, "commit": C, "base": None, "holds": HOLDS},
    {"version": 3, "commit": C, "base": B, "holds": HOLDS},
], ids=["no-copy", "holds-not-a-list", "commit-not-text", "no-base", "other-version"])
def test_a_held_copy_that_cannot_be_served_leaves_the_local_state(
        tmp_path: Path, held: dict[str, Any] | None) -> None:
    save_held(tmp_path, C, A, HOLDS)
    g = guard(tmp_path)
    assert g.take_shared(held, None) is None
    assert g.restored_base(C) == A  # the local file still holds


def test_a_retiring_cluster_in_the_home_is_restored_to_be_drained(tmp_path: Path) -> None:
    r = Retirement(tmp_path)
    assert r.restore({"eu-fra-1"}) == {}  # nothing local
    home_dir = tmp_path / "leader"
    save_retiring(home_dir, {"eu-par-1": ConnectionSpec("eu-par-1", "/k", "par", None)})
    doc = json.loads((home_dir / "retiring.json").read_text())
    assert r.take(doc)
    assert r.restore({"eu-fra-1"}) == {"eu-par-1": ConnectionSpec("eu-par-1", "/k", "par",
                                                                  None)}
    assert r.names == {"eu-par-1"}
    assert r.to_doc() == {k: v for k, v in doc.items() if k != "version"}
    assert not r.take(doc)  # already draining it: nothing new
    assert not r.take({"version": 1, "clusters": {"x": {"kubeconfig": 5}}})
