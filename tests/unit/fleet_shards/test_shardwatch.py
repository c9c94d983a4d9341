"""Getting ready for a shard whose holder stopped renewing (`fleet.shardwatch`): pure,
the Leases' remaining seconds given as read (no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.shards import LeaseView, lease_moves
from fleet.shardwatch import lapsing, next_look, to_ready

DURATION = 5.0
EVERY = DURATION / 3


@pytest.mark.parametrize(("ends_in", "wait"), [
    ({}, EVERY),                                      # nothing held: every period
    ({0: ("b", 4.0), 1: ("c", 3.5)}, EVERY),          # live holders: never close
    ({0: ("b", 4.0), 1: ("c", 2.0)}, 2.0 - EVERY),    # c missed a renew: get ready
    ({0: ("b", 4.0), 1: ("c", 1.0)}, 1.1),            # ready already: take at its end
    ({0: ("me", 0.5), 1: ("b", 4.0)}, EVERY),         # its own is renewed, not taken
    ({0: ("b", -0.5), 1: ("c", 2.5)}, 2.5 - EVERY),   # b's lapsed one was this round's
], ids=["none", "live", "lapsing", "ready", "own", "lapsed"])
def test_the_next_round_is_a_renew_period_before_a_missed_lease_ends_and_at_its_end(
        ends_in: dict[int, tuple[str, float]], wait: float) -> None:
    assert next_look(EVERY, ends_in, "me", within=EVERY, slack=0.1) == pytest.approx(wait)


@given(st.floats(DURATION - EVERY, DURATION), st.floats(0, DURATION))
def test_a_live_holders_lease_never_gets_anyone_ready(left: float, since: float) -> None:
    """A live holder renews every period: right after a read its Lease has at least
    duration - every left, more than `every`."""
    ends = {0: ("b", left), 1: ("me", since)}
    views = [LeaseView(0, "b"), LeaseView(1, "me")]
    assert lapsing(ends, "me", within=EVERY) == set()
    assert to_ready(views, ends, "me", within=EVERY) == set()
    assert next_look(EVERY, ends, "me", within=EVERY, slack=0.1) == pytest.approx(EVERY)


def test_the_replica_that_would_take_a_dead_holders_shard_gets_ready() -> None:
    views = [LeaseView(0, "a"), LeaseView(1, "dead")]
    ends = {0: ("a", 4.5), 1: ("dead", 1.0)}
    assert to_ready(views, ends, "a", within=EVERY) == {1}
    # a lapsed one is taken, not made ready
    assert to_ready(views, {0: ("a", 4.5), 1: ("dead", -0.1)}, "a", within=EVERY) == set()


def test_a_replica_at_its_share_does_not_get_ready() -> None:
    """Two survivors of three: the dead one's shard goes to the one below its share;
    the other connects nothing (it would only spend the CPU the taker needs)."""
    views = [LeaseView(0, "a"), LeaseView(1, "a"), LeaseView(2, "b"), LeaseView(3, "dead")]
    ends = {0: ("a", 4.0), 1: ("a", 4.0), 2: ("b", 4.0), 3: ("dead", 0.5)}
    assert to_ready(views, ends, "b", within=EVERY) == {3}
    assert to_ready(views, ends, "a", within=EVERY) == set()


replicas = st.sampled_from(["a", "b", "c", "dead"])


@given(st.lists(st.tuples(replicas, st.floats(-1, DURATION)), min_size=1, max_size=6),
       st.sampled_from(["a", "b", "c"]))
def test_what_is_made_ready_is_what_the_round_after_the_lapse_takes(
        held: list[tuple[str, float]], me: str) -> None:
    """The shards made ready are exactly those of the lapsing ones this replica
    acquires once they lapsed (`lease_moves` over the Leases read then), if nothing
    else changed meanwhile."""
    ends = {s: (who, left) for s, (who, left) in enumerate(held)}
    live = [LeaseView(s, who if left >= 0 else None) for s, (who, left) in enumerate(held)]
    soon = lapsing(ends, me, within=EVERY)
    later = [LeaseView(v.shard, None) if v.shard in soon else v for v in live]
    taken = set(lease_moves(later, me).acquire)
    assert to_ready(live, ends, me, within=EVERY) == soon & taken
    assert all(ends[s][0] != me and 0 <= ends[s][1] <= EVERY for s in soon)
