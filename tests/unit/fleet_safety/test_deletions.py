"""The deletions section of `fleet.safety`: what a commit may delete of what runs, and
the `Fleet-Allow:` trailers that allow more. One row per invariant (docs/safety.md)."""

from __future__ import annotations

from collections.abc import Mapping, Set

import pytest

from fleet.safety import (
    DeletionLimits,
    allowances,
    drainable,
    held_deletions,
    invalid_copy_kept,
    invalid_copy_stale,
)

A, B, C = "eu-fra-1", "eu-par-1", "us-east-1"


def ws(prefix: str, n: int) -> set[str]:
    return {f"t/{prefix}{i}" for i in range(n)}


FLEET: dict[str, set[str]] = {A: ws("a", 10), B: ws("b", 10), C: ws("c", 2)}
ALL = set().union(*FLEET.values())
DEFAULTS = DeletionLimits()


def reasons(live: Mapping[str, Set[str]], *, clusters: Set[str] = frozenset(FLEET),
            workloads: Set[str] = frozenset(ALL), protected: Set[str] = frozenset(),
            allow: Set[str] = frozenset(), limits: DeletionLimits = DEFAULTS
            ) -> list[str]:
    return [h.reason for h in held_deletions(
        live, clusters_after=clusters, workloads_after=workloads, protected=protected,
        allow=allow, limits=limits)]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, []),
    ({"workloads": ALL - ws("a", 3)}, []),  # 3 of a cluster's 10: not more than 3
    ({"workloads": ALL - ws("a", 4)}, ["MassDeletion"]),  # 4 of 10 on eu-fra-1: > 30%
    ({"workloads": ALL - ws("a", 4), "allow": {"mass-deletion"}}, []),
    ({"workloads": ALL - ws("c", 2)}, []),  # 2 of 2 on a small cluster: ordinary
    ({"workloads": ALL - ws("a", 2) - ws("b", 2) - ws("c", 2)}, []),  # 6 of 22 fleet-wide
    ({"workloads": ALL - ws("a", 3) - ws("b", 3) - ws("c", 2)}, ["MassDeletion"]),  # 8/22
    ({"workloads": ALL - ws("a", 10), "protected": ws("a", 10)}, []),  # Invalid: kept
    ({"clusters": {A, B}}, []),  # one cluster retired, its 2 workloads re-placed
    ({"clusters": {A, C}}, ["MassDeletion"]),  # one cluster, but 10 of 22 drained: 45%
    ({"clusters": {A}}, ["RetireLimit", "MassDeletion"]),
    ({"clusters": {A}, "allow": {"retire"}}, ["MassDeletion"]),
    ({"clusters": {A}, "allow": {"retire", "mass-deletion"}}, []),
    ({"clusters": {A}, "limits": DeletionLimits(max_retire_per_commit=2),
      "allow": {"mass-deletion"}}, []),
    ({"clusters": set()}, ["EmptyFleet", "RetireLimit", "MassDeletion"]),
    ({"workloads": set(), "protected": ALL}, ["EmptyFleet"]),  # all Invalid: a folder move
    ({"clusters": set(), "allow": {"retire", "mass-deletion"}}, []),
], ids=["unchanged", "three-of-ten", "four-of-ten", "four-of-ten-allowed", "small-cluster",
        "spread-thin", "fleet-fraction", "invalid-is-protected", "retire-one-small",
        "retire-one-big", "retire-two", "retire-two-allowed-retire-only", "retire-two-allowed",
        "retire-limit-configured", "no-clusters", "no-valid-workloads", "no-clusters-allowed"])
def test_held_deletions(kwargs: dict[str, object], expected: list[str]) -> None:
    assert reasons(FLEET, **kwargs) == expected  # type: ignore[arg-type]


def test_retiring_one_big_cluster_is_a_mass_deletion_of_the_fleet() -> None:
    # eu-par-1 holds 10 of 22: draining it moves 45% of the fleet at once.
    holds = held_deletions(FLEET, clusters_after={A, C}, workloads_after=ALL)
    assert [h.reason for h in holds] == ["MassDeletion"]


def test_an_empty_fleet_with_nothing_running_is_not_held() -> None:
    assert reasons({A: set()}, clusters=set(), workloads=set()) == []
    # The retire limit holds even for clusters that run nothing: one per commit.
    assert reasons({A: set(), B: set()}, clusters=set(), workloads=set()) == ["RetireLimit"]


def test_the_message_says_how_many_where_and_how_to_allow() -> None:
    (hold,) = held_deletions(FLEET, clusters_after=set(FLEET), workloads_after=ALL - ws("a", 9))
    assert hold.reason == "MassDeletion" and hold.clusters == (A,) and hold.workloads == 9
    assert "9 of 22" in hold.message and f"{A} 9/10" in hold.message
    assert "Fleet-Allow: mass-deletion" in hold.message and hold.allow == "mass-deletion"
    (hold,) = held_deletions(FLEET, clusters_after={C}, workloads_after=ALL,
                             allow={"mass-deletion"})
    assert hold.reason == "RetireLimit" and hold.clusters == (A, B) and hold.workloads == 20
    assert "Fleet-Allow: retire" in hold.message


def test_the_fraction_is_a_setting() -> None:
    strict = DeletionLimits(max_deletion_fraction=0.1, min_deletions=0)
    assert reasons(FLEET, workloads=ALL - ws("a", 2), limits=strict) == ["MassDeletion"]
    assert reasons(FLEET, workloads=ALL - ws("a", 1), limits=strict) == []


@pytest.mark.parametrize(("message", "expected"), [
    ("retire old services", set()),
    ("retire\n\nFleet-Allow: mass-deletion", {"mass-deletion"}),
    ("retire\n\nfleet-allow:  Retire , mass-deletion\n", {"retire", "mass-deletion"}),
    ("retire\n\nFleet-Allow: retire\nFleet-Allow: mass-deletion", {"retire", "mass-deletion"}),
    ("Fleet-Allow: retire", {"retire"}),  # a one-line message is its own last paragraph
    ("Fleet-Allow: retire\n\nbody that talks about it", set()),  # not a trailer
    ("x\n\nSigned-off-by: a\nFleet-Allow: retire", {"retire"}),
    ("x\n\nFleet-Allow:", set()),
    ("", set()),
], ids=["none", "one", "two-on-a-line", "two-lines", "subject-only", "not-last-paragraph",
        "among-trailers", "empty-value", "empty-message"])
def test_allowances_are_the_trailers_of_the_head_commit(message: str, expected: set[str]) -> None:
    assert allowances(message) == expected


def test_a_drain_never_deletes_an_invalid_workloads_copy() -> None:
    assert drainable({"t.a", "t.b"}, {"t.b"}) == {"t.a"}
    assert drainable({"t.b"}, {"t.b"}) == set()


@pytest.mark.parametrize(("kept", "expected"), [
    ({A: FLEET[A], B: FLEET[B], C: FLEET[C]}, []),
    ({A: FLEET[A] - ws("a", 4), B: FLEET[B], C: FLEET[C]}, ["MassDeletion"]),  # moved away
    ({A: FLEET[A] - ws("a", 3), B: FLEET[B], C: set()}, []),  # 3 and 2: under both limits
    ({A: set(), B: set(), C: set()}, ["MassDeletion"]),  # the plan places nothing
], ids=["plan-keeps-all", "plan-moves-four-of-ten", "plan-moves-few", "plan-places-nothing"])
def test_the_plan_decides_what_a_fleet_change_moves_away(
        kept: dict[str, set[str]], expected: list[str]) -> None:
    # A policy or Cluster change removes no Workload file, yet its plan may move many.
    holds = held_deletions(FLEET, clusters_after=set(FLEET), workloads_after=ALL, kept=kept)
    assert [h.reason for h in holds] == expected


@pytest.mark.parametrize(("allowed", "kept"), [(True, True), (None, True), (False, False)],
                         ids=["allowed-here", "unknown-version", "residency-forbids"])
def test_an_invalid_workloads_copy_is_kept_unless_residency_forbids_it(
        allowed: bool | None, kept: bool) -> None:
    assert invalid_copy_kept(allowed) is kept


@pytest.mark.parametrize(("cluster", "last", "running", "stale"), [
    ("a", ("b",), {"b"}, True),       # failed over to b, which runs it: a's copy is stale
    ("a", ("b",), set(), False),      # b does not run it (yet): a's copy may be the only one
    ("a", ("a",), {"b"}, False),      # its last placement is here: its good state
    ("a", None, {"b"}, False),        # last placement unknown: kept
], ids=["failed-over", "not-running-there", "placed-here", "unknown"])
def test_an_invalid_workloads_stale_copy(cluster: str, last: tuple[str, ...] | None,
                                        running: set[str], stale: bool) -> None:
    assert invalid_copy_stale(cluster, last, running) is stale
