"""The last plan's placements, kept in the state directory across restarts.

After a restart the controller rebuilds the previous plan from what runs
(`fleetstate.previous_from_live`), so its first plan moves nothing. A cluster that is
down at that moment cannot say what runs on it: without more, its workloads would have
no previous placement and be placed afresh at once, turning a short controller restart
during an outage into a failover that skips the grace period (and pulls long training
jobs off a cluster that may be back in a minute).

So every plan's placements are also written to `<state dir>/last-plan.json`, and a
restart takes the placements on clusters that have not listed from it: those workloads
are then *kept* on the down cluster, like any workload of an Unreachable cluster, until
the failover grace runs out (counted from the restart: never shorter than asked).

The file is a `controllers.persist.statefile`: versioned JSON that survives an upgrade, written
atomically, owner-only; a missing, unreadable or foreign file is ignored with a warning
(the restart then behaves as if it were missing: what is down is placed afresh).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from controllers.persist import statefile
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, PreviousPlan
from fleet.planning import placements

if TYPE_CHECKING:
    from controllers.persist.sharedplan import SharedPlan

log = structlog.get_logger()

FILE = "last-plan.json"
VERSION = 1




def to_doc(placed: Mapping[WorkloadId, tuple[Assignment, ...]], commit: str | None
           ) -> dict[str, Any]:
    return {"commit": commit,
            "workloads": {wid: [[a.cluster, a.flavour, a.replicas, a.gpus_per_replica]
                                for a in assignments]
                          for wid, assignments in sorted(placed.items())}}


def from_doc(doc: Mapping[str, Any]) -> PreviousPlan:
    """The placements of `to_doc`'s document; ValueError/TypeError/KeyError when it is
    not one."""
    return {WorkloadId(str(wid)): assignments_of(rows)
            for wid, rows in doc["workloads"].items()}


def assignments_of(rows: Any) -> tuple[Assignment, ...]:
    """One workload's assignments, from its rows of `to_doc`'s document;
    ValueError/TypeError when they are not such rows."""
    return tuple(sorted(
        Assignment(ClusterName(str(c)), Flavour(str(f)), _count(r), _count(g))
        for c, f, r, g in rows))


def save(state_dir: Path, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
         commit: str | None) -> None:
    """Write the placements (`controllers.persist.statefile`: atomic, owner-only)."""
    statefile.write(state_dir / FILE, VERSION, to_doc(placed, commit))


def load(state_dir: Path) -> PreviousPlan:
    """The placements last saved, or {} (with a warning when a file is there but cannot
    be used)."""
    doc = statefile.read(state_dir / FILE, VERSION)
    if doc is None:
        return {}
    try:
        return from_doc(doc)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        statefile.unusable(state_dir / FILE, e)
        return {}


def _count(v: object) -> int:
    if type(v) is not int or v < 1:
        raise ValueError(f"expected a positive integer, got {v!r}")
    return v


def with_unlisted(live: PreviousPlan, last: PreviousPlan, listed: Set[str],
                  clusters: Set[str]) -> PreviousPlan:
    """The previous plan after a restart: what runs on the clusters that listed, plus,
    from the last plan, what ran on the repo's clusters that did not (down at startup)."""
    out = {wid: list(a) for wid, a in live.items()}
    for wid, assignments in last.items():
        for a in assignments:
            if a.cluster in listed or a.cluster not in clusters:
                continue
            have = out.setdefault(wid, [])
            if all(x.cluster != a.cluster for x in have):
                have.append(a)
    return {wid: tuple(sorted(a)) for wid, a in sorted(out.items()) if a}


class LastPlan:
    """The last plan's placements in a state directory, and (with `shared`) in the home
    cluster for every replica: saved after every plan that changes them, restored after
    a restart for the clusters that did not list (the home cluster's copy first)."""

    def __init__(self, state_dir: Path, shared: SharedPlan | None = None) -> None:
        self.state_dir = state_dir
        self.shared = shared
        self._saved: dict[WorkloadId, tuple[Assignment, ...]] | None = None
        self._shared_saved: tuple[dict[WorkloadId, tuple[Assignment, ...]],
                                  str | None] | None = None

    async def restore(self, from_live: PreviousPlan, *, listed: Set[str],
                      clusters: Set[str]) -> PreviousPlan:
        """`with_unlisted` with the saved placements; says which clusters it filled in."""
        last = await self.shared.read() if self.shared is not None else None
        source = "cluster"
        if last is None:
            last, source = load(self.state_dir), "file"
        previous = with_unlisted(from_live, last, listed, clusters)
        unlisted = {a.cluster for assignments in previous.values() for a in assignments
                    if a.cluster not in listed}
        if unlisted:
            log.info("previous_from_last_plan", clusters=sorted(unlisted), source=source,
                     workloads=sum(1 for assignments in previous.values()
                                   if any(a.cluster in unlisted for a in assignments)))
        return previous

    async def save(self, plan: Plan, commit: str | None) -> None:
        """Write the plan's placements (the file in a worker thread) when they changed."""
        placed = placements(plan)
        if placed != self._saved:
            try:
                await anyio.to_thread.run_sync(lambda: save(self.state_dir, placed, commit))
                self._saved = placed
            except OSError as e:  # a full disk must not stop placement: say it, go on
                log.warning("last_plan_not_saved", error=f"{type(e).__name__}: {e}")
        # Written again for a new commit even when the placements are the same: shard
        # owners follow the leader's plan only once it is of the commit they serve.
        if self.shared is not None and (placed, commit) != self._shared_saved \
                and await self.shared.write(placed, commit):
            self._shared_saved = (placed, commit)
