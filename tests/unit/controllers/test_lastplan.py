"""The last plan's placements survive a restart (and an upgrade), and fill in only the
clusters that could not say what runs on them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ---------------------------------------------------------------- saved by change

def plan_of(placed: dict[WorkloadId, tuple[Assignment, ...]], ids: list[WorkloadId]
            ) -> Plan:
    return Plan("c", {w: WorkloadPlacement(w, "Placed", placed[w]) if w in placed
                      else WorkloadPlacement(w, "Pending") for w in ids})


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.integers(0, 9), st.none() | st.sampled_from(
    ("de-1", "fr-1", "nl-1")), max_size=4), min_size=1, max_size=12), st.integers(0, 12))
def test_placements_saved_by_change_read_back_as_the_whole_plan(
        tmp_path: Path, edits: list[dict[int, str | None]], whole_at: int) -> None:
    """Each plan saved with the decisions it changed reads back (as a restart would) as
    its whole placements; lines pile up until the file is written whole again, and a
    plan not laid over the one saved is written whole."""
    state = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
    ids = [WorkloadId(f"t/w{i}") for i in range(10)]
    placed = {w: (a("de-1"),) for w in ids[:5]}
    saver = lastplan.LastPlan(state)
    old = plan_of(placed, ids)
    lines = 0

    async def run() -> None:
        nonlocal old, placed, lines
        await saver.save(old, "c0")
        for n, edit in enumerate(edits):
            placed = dict(placed)
            for i, c in edit.items():
                if c is None:
                    placed.pop(ids[i], None)
                else:
                    placed[ids[i]] = (a(c, 1 + n % 2),)
            new = plan_of(placed, ids)
            changed = {ids[i] for i in edit}
            new = Plan(new.commit, {w: new.workloads[w] if w in changed else old.workloads[w]
                                    for w in ids})
            await saver.save(new, f"c{n + 1}", changed=changed,
                             base=None if n == whole_at else old)
            assert lastplan.load(state) == lastplan.placements(new)
            old = new

    asyncio.run(run())


def test_a_one_workload_change_appends_one_line_and_leaves_the_file(tmp_path: Path) -> None:
    ids = [WorkloadId(f"t/w{i}") for i in range(200)]
    placed = {w: (a("de-1"),) for w in ids}
    first = plan_of(placed, ids)
    saver = lastplan.LastPlan(tmp_path)

    async def run() -> None:
        await saver.save(first, "c1")
        whole = (tmp_path / lastplan.FILE).read_bytes()
        plan = first
        for n in range(lastplan.COMPACT_MIN):
            moved = dict(placed, **{ids[n]: (a("fr-1"),)})
            new = Plan("c", {**plan.workloads, ids[n]: plan_of(moved, ids).workloads[ids[n]]})
            await saver.save(new, f"c{n + 2}", changed={ids[n]}, base=plan)
            plan = new
            assert (tmp_path / lastplan.FILE).read_bytes() == whole
            rows = (tmp_path / lastplan.CHANGES).read_text().splitlines()
            assert len(rows) == n + 1 and list(json.loads(rows[-1])["workloads"]) == [ids[n]]
        assert lastplan.load(tmp_path) == lastplan.placements(plan)
        # past COMPACT_MIN lines the next save writes the file whole, the lines go
        new = Plan("c", {**plan.workloads, ids[199]: WorkloadPlacement(ids[199], "Pending")})
        await saver.save(new, "last", changed={ids[199]}, base=plan)
        assert not (tmp_path / lastplan.CHANGES).exists()
        assert (tmp_path / lastplan.FILE).read_bytes() != whole
        assert lastplan.load(tmp_path) == lastplan.placements(new)
        assert ids[199] not in lastplan.load(tmp_path)

    asyncio.run(run())


def test_a_torn_line_or_lines_of_an_older_file_are_not_read(tmp_path: Path) -> None:
    base = {W: (a("de-1"),)}
    lastplan.save(tmp_path, base, "c1", "gen-a")
    lastplan.append_changes(tmp_path, "gen-a", "c2", {V: (a("fr-1"),)})
    assert lastplan.load(tmp_path) == {W: (a("de-1"),), V: (a("fr-1"),)}
    with (tmp_path / lastplan.CHANGES).open("a") as f:
        f.write('{"generation":"gen-a","commit":"c3","workloads":{"nlp-team/tr')  # torn
    lastplan.append_changes(tmp_path, "gen-a", "c4", {W: None})
    assert lastplan.load(tmp_path) == {W: (a("de-1"),), V: (a("fr-1"),)}
    # a crash after the whole file was written under a new generation, before the old
    # lines were removed: they are not laid over it
    lastplan.statefile.write(tmp_path / lastplan.FILE, lastplan.VERSION,
                             {**lastplan.to_doc(base, "c5"), "generation": "gen-b"})
    assert lastplan.load(tmp_path) == base
    assert (tmp_path / lastplan.CHANGES).stat().st_mode & 0o077 == 0
