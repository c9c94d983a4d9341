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

from workloads.loader import Snapshot

if TYPE_CHECKING:
    from controllers.runtime.manager import Manager

log = structlog.get_logger()


async def watch_loop(m: Manager) -> None:
    """Adapter changes -> triggers. Health, sync and leadership re-plan at once;
    capacity changes (every pod start moves it) only while a workload is Pending (they
    matter to nothing else), spaced by five times the last placement's cost."""
    seen: dict[str, tuple[Any, ...]] = {}
    last_plan = time.monotonic()
    capacity_dirty = False
    while True:
        await anyio.sleep(m.tick)
        urgent = False
        for name, a in list(m.adapters.items()):
            state = (a.capacity_version, a.health_state, a.synced.is_set())
            before = seen.get(name)
            seen[name] = state
            if before == state:
                continue
            if before is None or before[1:] != state[1:]:
                urgent = True
                m.queue.add(name)
            if before is not None and before[1] != state[1]:
                note_health(m, name, str(before[1]), str(state[1]))
            else:
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
        spacing = max(m.capacity_replan_every, 5 * m.last_placement_seconds)
        if urgent or since >= m.settings.resync_interval or (
                (unreachable or (capacity_dirty and pending)) and since >= spacing):
            last_plan = time.monotonic()
            capacity_dirty = False
            m.trigger_plan()


def note_health(m: Manager, name: str, was: str, now: str) -> None:
    """A cluster's health change, into the events feed (with the failover grace the
    page counts down when it went Unreachable)."""
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
