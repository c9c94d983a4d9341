"""What makes the manager look again: adapter changes, time, and leadership.

Split from `controllers.runtime.manager` to keep each module readable: the watch loop turns
what the adapters learn (capacity version, health, listed or not) into triggers -- a
re-plan, a cluster reconcile -- including leadership gained
(`controllers.runtime.leadership`). Also the rule for a commit that is unusable as a
whole.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from controllers.runtime import busy
from workloads.loader import Snapshot

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


async def watch_loop(m: Manager) -> None:
    """Adapter changes -> triggers. A new cluster, one that listed, and leadership
    re-plan at once; a health change that placement can see (reachable or not) and
    capacity changes (every pod start moves it; they matter only while a workload is
    Pending) ask for one, and those asks are coalesced into at most one re-plan per
    window of five times the last placement's cost (`busy.Replans` counts them): a
    controller busy enough to see health flap does not also re-plan per flap."""
    seen: dict[str, tuple[Any, ...]] = {}
    known: dict[str, object] = {}
    """The adapter each `seen` entry is of: a reconnected cluster (its credentials
    Secret changed) is a new adapter, listed afresh, so it counts as new."""
    last_plan = time.monotonic()
    capacity_dirty = False
    while True:
        await anyio.sleep(m.tick)
        urgent = False
        for name, a in list(m.adapters.items()):
            state = (a.capacity_version, a.health_state, a.synced.is_set())
            before = seen.get(name) if known.get(name) is a else None
            seen[name], known[name] = state, a
            if before == state:
                continue
            if before is None or before[1:] != state[1:]:
                m.queue.add(name)
            if before is None or before[2] != state[2]:
                urgent = True
            elif before[1] != state[1]:
                note_health(m, name, str(before[1]), str(state[1]))
                if busy.matters_to_placement(str(before[1]), str(state[1])):
                    m.replans.ask()
                else:
                    m.replans.skip()
            if before is not None and before[0] != state[0]:
                capacity_dirty = True
        if m.leadership.newly_leading():
            m._rebuild_previous = True
            urgent = True
            for name in m.adapters:
                m.queue.add(name)
        unreachable = any(a.health_state == "Unreachable" for a in m.adapters.values())
        since = time.monotonic() - last_plan
        # Capacity alone can only help workloads still Pending; and a re-plan costs
        # CPU that apply and the informers need, so space them by its own cost.
        plan = m.desired.plan
        pending = plan is not None and any(
            wp.status == "Pending" for wp in plan.workloads.values())
        if capacity_dirty and pending:
            capacity_dirty = False
            m.replans.ask()
        spacing = max(m.capacity_replan_every, 5 * m.last_placement_seconds)
        if urgent or since >= m.settings.resync_interval or (
                (unreachable or m.replans.waiting) and since >= spacing):
            last_plan = time.monotonic()
            capacity_dirty = False
            m.replans.planned()
            m.trigger_plan()


def note_health(m: Manager, name: str, was: str, now: str) -> None:
    """A cluster's health change, into the events feed (with the failover grace the
    page counts down when it went Unreachable)."""
    m.replans.health_changed(name, now)
    why = f"was {was}"
    if now == "Unreachable":
        grace = m.settings.failover_grace
        why += ("; no answer; its workloads fail over "
                + (f"{grace:g} s after the first unanswered request" if grace is not None
                   else "after each one's unreachable toleration"))
    m.feed.note(f"Cluster{now}", cluster=name, reason=why, acting=m.may_act())



def whole_commit_problems(snap: Snapshot) -> str:
    """Errors that make a commit unusable as a whole, or "" (see docs/controller.md).

    A broken Cluster or policy file would drop a cluster or fail residency closed for
    everything: applying that would move or prune workloads on the strength of a typo.
    A broken Workload file only makes that workload invalid (protected, not pruned).
    """
    fleet_kinds = {"Cluster", "ResidencyPolicy", "TeamQuota", "Guardrails", "Owners"}
    for d in snap.spec.errors:
        path = "/" + d.file
        in_fleet_folder = ("/clusters/" in path or "/policies/" in path) \
            and "/workloads/" not in path
        if d.kind != "Workload" and (d.kind in fleet_kinds or in_fleet_folder):
            return str(d)
    return ""
