"""`clusters.shardlease.view_of`: a shard Lease as the balancing reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusters.leader import EXPIRY_SLACK, _fmt, next_attempt
from clusters.shardlease import WANTED_BY, expiry_of, view_of
from fleet.shards import LeaseView, shard_index

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def lease(holder: str | None, renewed_ago: float, wanted: tuple[str, float] | None = None,
          duration: int = 15) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "aifleet-shard-0"}
    if wanted is not None:
        meta["annotations"] = {WANTED_BY: f"{wanted[0]} {_fmt(NOW - timedelta(seconds=wanted[1]))}"}
    return {"metadata": meta, "spec": {
        "holderIdentity": holder, "leaseDurationSeconds": duration,
        "renewTime": _fmt(NOW - timedelta(seconds=renewed_ago))}}


@pytest.mark.parametrize(("doc", "view"), [
    (None, LeaseView(0, None)),
    (lease("a", 1), LeaseView(0, "a")),
    (lease("a", 16), LeaseView(0, None)),
    (lease("", 1), LeaseView(0, None)),
    (lease("a", 1, ("b", 3)), LeaseView(0, "a", "b")),
    (lease("a", 1, ("b", 30)), LeaseView(0, "a")),
    (lease(None, 1, ("b", 3)), LeaseView(0, None, "b")),
], ids=["missing", "held", "expired", "let-go", "wanted", "old-mark-ignored",
        "let-go-for-the-asker"])
def test_view_of_a_shard_lease(doc: dict[str, Any] | None, view: LeaseView) -> None:
    assert view_of(0, doc, NOW, 15.0) == view


@pytest.mark.parametrize(("name", "index"), [
    ("aifleet-shard-0", 0), ("aifleet-shard-12", 12), ("aifleet-shard-", None),
    ("aifleet-shard-01", None), ("aifleet-shard-1-status", None),
    ("aifleet-controller", None),
])
def test_shard_index_of_a_lease_name(name: str, index: int | None) -> None:
    assert shard_index(name) == index


@pytest.mark.parametrize(("doc", "expiry"), [
    (lease("a", 1), ("a", NOW + timedelta(seconds=14))),
    (lease("a", 16), ("a", NOW - timedelta(seconds=1))),
    (lease("", 1), None),
    (lease(None, 1, ("b", 3)), None),
], ids=["live", "lapsed", "let-go", "free"])
def test_expiry_of_a_lease_is_its_renew_time_plus_its_duration(
        doc: dict[str, Any], expiry: tuple[str, datetime] | None) -> None:
    assert expiry_of(doc, 15.0) == expiry


@pytest.mark.parametrize(("ok", "expires_in", "wait"), [
    (True, None, 5.0),           # holding it, or nobody else does: every renew period
    (False, None, 1.0),          # a failure: soon again (client-go's RetryPeriod)
    (True, 2.0, 2.0 + EXPIRY_SLACK),   # another's Lease lapses in 2 s: just after that
    (True, 9.0, 5.0),            # ... not before a period is up if it lapses later
    (True, -1.0, EXPIRY_SLACK),  # read as lapsed already: take it now
], ids=["period", "retry", "at-expiry", "period-first", "lapsed"])
def test_a_candidate_tries_a_lease_just_after_another_holders_lapses(
        ok: bool, expires_in: float | None, wait: float) -> None:
    assert next_attempt(5.0, 1.0, ok=ok, expires_in=expires_in) == pytest.approx(wait)


@pytest.mark.parametrize(("ok", "expires_in", "wait"), [
    (True, 90.0, 2.0),    # another holder's Lease runs long: looked at every 2 s
    (True, 0.5, 0.5 + EXPIRY_SLACK),  # ... unless it lapses sooner
    (True, None, 100.0),  # holding it (or nobody does): every renew period
    (False, None, 1.0),   # a failure: the retry
], ids=["held-elsewhere", "lapses-sooner", "holding", "retry"])
def test_a_candidate_looks_at_a_held_lease_often_enough_to_take_one_let_go(
        ok: bool, expires_in: float | None, wait: float) -> None:
    assert next_attempt(100.0, 1.0, ok=ok, expires_in=expires_in,
                        look_every=2.0) == pytest.approx(wait)
