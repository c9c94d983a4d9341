"""The last plan's placements survive a restart (and an upgrade), and fill in only the
clusters that could not say what runs on them."""

from __future__ import annotations

import json
from pathlib import Path

from controllers.persist import lastplan
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, Reason, WorkloadPlacement


def a(cluster: str, replicas: int = 1, flavour: str = "h100-80gb") -> Assignment:
    return Assignment(ClusterName(cluster), Flavour(flavour), replicas, 8)


W, V = WorkloadId("nlp-team/train"), WorkloadId("nlp-team/serve")


def test_saved_placements_read_back_equal_and_owner_only(tmp_path: Path) -> None:
    plan = Plan("abc", {
        W: WorkloadPlacement(W, "Placed", (a("de-1"),), (Reason("chosen"),)),
        V: WorkloadPlacement(V, "Placed", (a("de-1"), a("fr-1", 2))),
        WorkloadId("nlp-team/big"): WorkloadPlacement(WorkloadId("nlp-team/big"), "Pending"),
    })
    placed = lastplan.placements(plan)
    assert set(placed) == {W, V}
    lastplan.save(tmp_path / "state", placed, "abc")
    path = tmp_path / "state" / lastplan.FILE
    assert path.stat().st_mode & 0o077 == 0
    assert lastplan.load(tmp_path / "state") == placed
    assert [p.name for p in (tmp_path / "state").iterdir()] == [lastplan.FILE]  # no temp left


def test_a_missing_damaged_or_foreign_file_is_no_previous_plan(tmp_path: Path) -> None:
    assert lastplan.load(tmp_path) == {}
    path = tmp_path / lastplan.FILE
    for text in ("{not json", json.dumps({"version": 99, "workloads": {}}),
                 json.dumps({"version": 1, "workloads": {"t/w": [["c", "f", 0, 8]]}}),
                 json.dumps({"version": 1, "workloads": {"t/w": [["c", "f"]]}}),
                 json.dumps([1, 2])):
        path.write_text(text)
        assert lastplan.load(tmp_path) == {}, text


def test_only_clusters_that_did_not_list_are_filled_in_from_the_last_plan() -> None:
    live = {V: (a("fr-1", 2),)}
    last = {W: (a("de-1"),), V: (a("de-1"), a("fr-1", 2)),
            WorkloadId("t/x"): (a("gone-1"),), WorkloadId("t/y"): (a("fr-1"),)}
    out = lastplan.with_unlisted(live, last, listed={"fr-1"}, clusters={"de-1", "fr-1"})
    # de-1 did not list: what the last plan put there is back; fr-1 listed: only live
    # counts there (t/y no longer runs on it); gone-1 is not in the repo any more.
    assert out == {W: (a("de-1"),), V: (a("de-1"), a("fr-1", 2))}


def test_retiring_clusters_and_how_to_reach_them_survive_a_restart(tmp_path: Path) -> None:
    from clusters.kubeconfig import ConnectionSpec
    from controllers.persist.statefile import RETIRING, load_retiring
    from controllers.runtime.retirement import Retirement

    first = Retirement(tmp_path)
    first.reach.update({"de-1": ConnectionSpec("de-1", "/etc/kube/fleet", "de-ctx"),
                        "fr-1": ConnectionSpec("fr-1")})
    assert first.update({"de-1", "fr-1"}, in_repo={"fr-1"}) == ["de-1"]
    assert load_retiring(tmp_path) == {"de-1": ConnectionSpec("de-1", "/etc/kube/fleet",
                                                              "de-ctx")}
    # A restart: de-1 is still out of the repo (drain it), unless it came back.
    assert Retirement(tmp_path).restore(in_repo={"fr-1"}) == load_retiring(tmp_path)
    assert Retirement(tmp_path).restore(in_repo={"de-1", "fr-1"}) == {}
    assert first.done("de-1") and not first.done("de-1")
    assert load_retiring(tmp_path) == {}
    (tmp_path / RETIRING).write_text('{"version": 1, "clusters": {"x": {"context": 3}}}')
    assert load_retiring(tmp_path) == {}  # damaged: ignored, with a warning


def test_the_home_cluster_copy_round_trips_and_refuses_what_it_did_not_write() -> None:
    import base64
    import gzip

    import pytest

    from controllers.persist import sharedplan

    placed = {W: (a("de-1"),), V: (a("de-1"), a("fr-1", 2))}
    data = sharedplan.encode(placed, "abc")
    assert sharedplan.decode(data) == placed
    assert len(data) < 400  # gzipped, base64: small next to the 1 MiB object limit
    for bad in ("not base64!", base64.b64encode(b"not gzip").decode(),
                base64.b64encode(gzip.compress(b'{"version": 2}')).decode()):
        with pytest.raises((ValueError, OSError, EOFError)):
            sharedplan.decode(bad)


def test_a_retiring_cluster_reached_through_its_secret_keeps_the_secrets_name_only(
        tmp_path: Path) -> None:
    from clusters.kubeconfig import ConnectionSpec
    from controllers.persist.statefile import RETIRING, load_retiring
    from controllers.runtime.retirement import Retirement

    first = Retirement(tmp_path)
    first.reach["de-1"] = ConnectionSpec("de-1", None, "de-1", secret="de-1")
    assert first.update({"de-1"}, in_repo=set()) == ["de-1"]
    # After a restart it is drained through the same Secret, not the default kubeconfig.
    assert load_retiring(tmp_path) == {"de-1": ConnectionSpec("de-1", None, "de-1",
                                                              secret="de-1")}
    saved = json.loads((tmp_path / RETIRING).read_text())
    assert saved["clusters"]["de-1"] == {"kubeconfig": None, "context": "de-1",
                                         "secret": "de-1"}
