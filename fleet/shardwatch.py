"""Which shards a replica gets ready to take before their Leases lapse, and when it
looks at the Leases again.

A live holder renews its shard Leases every third of their duration (the renew period
`every`), so right after a read a live holder's Lease has at least duration - every
left. One with `every` or less left has missed a whole renew: its holder is most likely
dead or hung, and the Lease lapses within `every`. Taking it must still wait for the
lapse (the fence: nothing is written to a cluster of a shard before its Lease is held),
but connecting to its clusters and listing them is reading only, and took 2-4 s of
the takeover after the take (issue 22, `bench.shards` at 60 x 1,200: taken 3.9 s after
the kill, connected +1.0-2.0 s, listed +1.2-3.0 s). Begun `every` before the lapse, it
overlaps the wait instead.

Only the replica that would take the shard (`fleet.shards.lease_moves` over the Leases
as if the suspect ones had lapsed) gets ready: every survivor connecting to a dead
replica's clusters would spend the CPU the taker needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from fleet.shards import LeaseView, lease_moves


def lapsing(ends_in: Mapping[int, tuple[str, float]], me: str, *, within: float
            ) -> set[int]:
    """The shards whose Lease another replica holds and which end within `within`
    seconds, not yet ended (`ends_in`: shard -> (holder, seconds until its hold ends),
    as read)."""
    return {s for s, (holder, left) in ends_in.items()
            if holder != me and 0 <= left <= within}


def to_ready(views: Sequence[LeaseView], ends_in: Mapping[int, tuple[str, float]],
             me: str, *, within: float) -> set[int]:
    """The lapsing shards (`lapsing`) this replica would take if they had lapsed:
    their clusters are connected and listed now, written only once taken."""
    soon = lapsing(ends_in, me, within=within)
    if not soon:
        return set()
    lapsed = [replace(v, holder=None) if v.shard in soon else v for v in views]
    return soon & set(lease_moves(lapsed, me).acquire)


def next_look(every: float, ends_in: Mapping[int, tuple[str, float]], me: str, *,
              within: float, slack: float) -> float:
    """Seconds until the next Lease round: every `every`, or sooner -- when another
    holder's Lease comes within `within` of its end (to get ready, `to_ready`), and
    `slack` after it ends (to take it, as `fleet.shards.next_round`). A live holder's
    Lease never comes that close, so a round of live holders is every `every`."""
    wait = every
    for holder, left in ends_in.values():
        if holder == me or left < 0:
            continue  # its own is renewed; a lapsed one was this round's
        wait = min(wait, left - within if left > within else left + slack)
    return max(0.0, wait)
