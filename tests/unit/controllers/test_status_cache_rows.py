"""The status cache's build holds one row's dict at a time, and its bytes are those of
the whole document serialised at once.

A first build of a 50,000-workload fleet built every row's dict, then serialised them:
all the dicts at once were the largest part of the replica's peak that serves
`/api/v1/status` (docs/controller.md "Where the leader's extra peak went"). Here a
`Manager` with a spec and a plan and no clusters (every row Pending or Placed with no
live state), its `StatusCache` built in steps as the refresher builds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.placement import synthetic_spec
from controllers.runtime.manager import Manager
from controllers.settings import Settings
from controllers.status import fleetdoc
from controllers.status.bodies import dumps
from controllers.status.cache import StatusCache
from controllers.status.fleetdoc import WorkloadRow
from fleet.capacity import declared_capacity
from fleet.placement import place

COMMIT = "c0" * 20


def manager(tmp_path: Path, workloads: int, clusters: int = 4, seed: int = 7) -> Manager:
    m = Manager(Settings(repo=str(tmp_path), state_dir=tmp_path))
    spec = synthetic_spec(clusters, workloads, seed=seed)
    m.desired.adopt_spec(spec, COMMIT, None)
    m.desired.set_plan(place(spec, declared_capacity(spec.clusters), {}, commit=COMMIT),
                       None)
    return m


def build(cache: StatusCache) -> tuple[Any, list[WorkloadRow], int]:
    gen = cache._steps()
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def test_each_row_is_serialised_before_the_next_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = manager(tmp_path, 60)
    made: list[WorkloadRow] = []
    real = fleetdoc.build_row

    def counted(*args: Any) -> WorkloadRow:
        # every row built before this one no longer holds its dict, only its text
        assert all(r.row is None and r.text is not None for r in made)
        row = real(*args)
        made.append(row)
        return row

    monkeypatch.setattr(fleetdoc, "build_row", counted)
    cache = StatusCache(m)
    _, rows, built = build(cache)
    assert built == len(made) == len(rows) == 60
    assert all(r.row is None and isinstance(r.text, bytes) for r in rows)


@pytest.mark.parametrize("workloads", [0, 1, 37])
def test_the_body_is_the_whole_document_serialised_at_once(
        tmp_path: Path, workloads: int) -> None:
    m = manager(tmp_path, workloads)
    cache = StatusCache(m)
    doc, rows, _ = build(cache)
    raw = cache._raw(doc, rows)
    whole = fleetdoc.document(m)
    assert raw == (dumps(whole) + "\n").encode()
    assert len(json.loads(raw)["workloads"]) == workloads


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clusters=st.integers(1, 6), workloads=st.integers(0, 40), seed=st.integers(0, 99),
       again=st.booleans())
def test_any_fleet_is_served_as_the_whole_document(
        tmp_path: Path, clusters: int, workloads: int, seed: int, again: bool) -> None:
    """Over random fleets (some workloads Pending where capacity runs out), a first
    build, and a second that reuses every row, are the document built whole."""
    m = manager(tmp_path, workloads, clusters, seed)
    cache = StatusCache(m)
    doc, rows, _ = build(cache)
    if again:
        cache._rows = {r.wid: r for r in rows}
        doc, rows, built = build(cache)
        assert built == 0
    assert cache._raw(doc, rows) == (dumps(fleetdoc.document(m)) + "\n").encode()


def test_a_held_row_holds_no_dict_and_one_key_tuple(tmp_path: Path) -> None:
    """Issue 22 (each replica <= 1 GiB at 1,000 x 50,000): every workload's row is held
    between builds. Held: its text, one flat key tuple (no tuple in it of its own
    making), one flat tally tuple; no per-row dict (of its own, of the row, of
    tallies)."""
    m = manager(tmp_path, 30, clusters=3)
    cache = StatusCache(m)
    _, rows, _ = build(cache)
    assert rows
    for r in rows:
        assert not hasattr(r, "__dict__")
        assert r.row is None and isinstance(r.text, bytes)
        assert type(r.key) is tuple and isinstance(r.key[0], int)
        assert type(r.tally) is tuple and len(r.tally) % 5 == 0
        held = [getattr(r, s) for s in WorkloadRow.__slots__]
        assert not any(isinstance(x, dict | list) for x in held)
        assert not any(isinstance(x, dict | list) for x in (*r.key, *r.tally))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clusters=st.integers(1, 6), workloads=st.integers(0, 40), seed=st.integers(0, 99))
def test_the_held_tallies_sum_to_what_the_rows_built_whole_count(
        tmp_path: Path, clusters: int, workloads: int, seed: int) -> None:
    """The clusters' `workloads` counts from the packed tallies are those of
    `add_operator_fields` over the whole document."""
    from controllers.status.operatorview import Counts, Graces
    m = manager(tmp_path, workloads, clusters, seed)
    cache = StatusCache(m)
    _, rows, _ = build(cache)
    counts: Counts = {}
    graces: Graces = {}
    for r in rows:
        r.add_to(counts, graces)
    whole = fleetdoc.document(m)
    for c in whole["clusters"]:
        assert counts.get(c["name"], {"placed": 0, "synced": 0, "drifted": 0,
                                      "failed": 0}) == c["workloads"]
    assert sum(n["placed"] for n in counts.values()) == sum(
        len(w["placements"]) for w in whole["workloads"])
