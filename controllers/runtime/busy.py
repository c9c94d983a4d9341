"""A busy controller is not a broken cluster: the wiring of issue 22, item 0.

- `with_loop_lag`: the adapters' health clocks and request timeouts discount this
  process's event-loop lag (`controllers.runtime.looplag`, `clusters.health`);
- `Coalescer`: re-plans that capacity or health changes ask for run at most once per
  window, and the ones folded into another are counted;
- `place`: a plan from the placer, in its worker process when it has one
  (`controllers.runtime.placerproc`), else in a worker thread;
- `controller_summary`: what `/api/v1/status` says of the controller itself (loop lag,
  discounted timeouts, re-plans coalesced);
- `settle_after_plans`: the heap frozen after the first plan and after big plans
  (`controllers.runtime.gctune`), so the collector's full passes stop stalling the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from controllers.runtime.gctune import Settler
from controllers.runtime.looplag import LoopLag
from fleet.capacity import CapacitySnapshot
from fleet.placement.types import Plan, PreviousPlan
from fleet.spec import FleetSpec

log = structlog.get_logger()


def with_loop_lag(options: AdapterOptions, lag: LoopLag) -> AdapterOptions:
    """`options` whose health and timeouts discount `lag`, unless a test set its own."""
    return options if options.stalled is not None else replace(options, stalled=lag.stalled)


async def place(placer: Any, spec: FleetSpec, capacity: CapacitySnapshot,
                previous: PreviousPlan, commit: str | None) -> Plan:
    """The placer's plan, where it cannot starve the event loop when it can say so:
    a `place_async` runs it in its own process; a plain callable (a test's, or
    `--no-placement-process`) runs in a worker thread, which shares the GIL."""
    in_process = getattr(placer, "place_async", None)
    if in_process is not None:
        plan: Plan = await in_process(spec, capacity, previous, commit=commit)
        return plan
    # Pure, so a shutdown may abandon it rather than wait seconds for a big fleet.
    plan = await anyio.to_thread.run_sync(
        lambda: placer(spec, capacity, previous, commit=commit), abandon_on_cancel=True)
    return plan


async def warm(placer: Any) -> None:
    """Start the placer's worker process early, if it has one."""
    warming = getattr(placer, "warm", None)
    if warming is None:
        return
    try:
        await warming()
    except (OSError, RuntimeError) as e:  # BrokenProcessPool is a RuntimeError
        # Only a head start: the first plan starts the worker again, and the
        # placement loop retries (and says so) if it cannot.
        log.warning("placement_worker_not_started", error=f"{type(e).__name__}: {e}")


async def aclose(placer: Any) -> None:
    """Stop the placer's worker process, if it has one, and wait until it is gone."""
    closing = getattr(placer, "aclose", None)
    if closing is not None:
        await closing()


async def settle_after_plans(plan_changed: asyncio.Condition, settler: Settler) -> None:
    """After each plan (the first one: the state is loaded; then at most once a
    `settler.every`), freeze what lives, so full collections walk only what came since."""
    while True:
        async with plan_changed:
            await plan_changed.wait()
        settler.settle()


def controller_summary(loop_lag: LoopLag, adapters: Mapping[str, ClusterAdapter],
                       replans: Replans) -> dict[str, Any]:
    return {"eventLoop": loop_lag.summary(),
            "timeoutsDiscounted": sum(a.health.busy for a in adapters.values()),
            "replans": dict(replans.counts)}


REACHABLE = ("Healthy", "Degraded")
"""Placement treats these two alike (`fleet.placement.filters`, `core`): a flip between
them changes no decision, so it asks for no re-plan."""


def matters_to_placement(was: str, now: str) -> bool:
    return (was in REACHABLE) != (now in REACHABLE)


class Replans:
    """Re-plans asked for by capacity and health changes, and what became of them.

    `ask()` notes one request; `planned()` says a re-plan starts now and folds every
    request since the last one into it: all but one of them are `coalesced`. A health
    flip that placement cannot see (Healthy <-> Degraded) is `skipped`. The watch loop
    decides when (`controllers.runtime.placementloop`); this keeps the counts."""

    def __init__(self) -> None:
        self.counts = {"asked": 0, "planned": 0, "coalesced": 0, "skipped": 0}
        self.health_changes: dict[tuple[str, str], int] = {}
        """(cluster, new state) -> changes seen by the watch loop."""
        self._waiting = 0

    def ask(self) -> None:
        self.counts["asked"] += 1
        self._waiting += 1

    def skip(self) -> None:
        self.counts["skipped"] += 1

    @property
    def waiting(self) -> bool:
        return self._waiting > 0

    def planned(self) -> None:
        self.counts["planned"] += 1
        self.counts["coalesced"] += max(0, self._waiting - 1)
        self._waiting = 0

    def health_changed(self, cluster: str, now: str) -> None:
        key = (cluster, now)
        self.health_changes[key] = self.health_changes.get(key, 0) + 1
