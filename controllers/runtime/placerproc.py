"""Placement in a worker process, so a big plan never starves the event loop.

A placement pass over thousands of workloads is seconds of pure Python. In a worker
thread it still holds the GIL most of that time: the loop that reads heartbeats, serves
`/api/v1/status` and answers webhooks waits behind it (issue 22 measured 2-5 s passes
and healthy clusters flapping to Unreachable). A process has its own interpreter.

`ProcessPlacer` keeps one worker process (a `ProcessPoolExecutor` of one, started from
a forkserver so the controller's threads and sockets are never forked) that owns a
`Replanner` for the life of the pool: the incremental baseline lives there, next to
the plans it speeds up. Each call sends what changed in the spec and the capacity
snapshot since the last call (`Delta`: all plain frozen data, picklable) and the
previous plan, and gets the plan back with the Replanner's counts (full / baseline /
incremental, for `/metrics`).

What comes back is a `PlanDelta`: the decisions that differ from the plan this side
holds from the last call (the worker keeps that plan too), which `apply_plan_delta`
lays over it. Unpickling a whole 20,000-workload plan cost the controller ~0.1-0.5 s
per commit (`python -m bench.commitpath`), more than the rest of the commit; a commit
changes a few decisions. When the previous plan sent is that held plan's placements
(the steady state), it is not sent either: the worker takes them from its copy.

A whole plan (the first, or after a lost call) is pickled by the pool. A
Pending workload's reasons are a `Diagnosis` whose Refusals the worker's planner
shares (`fleet.placement.diagnose`), and pickle writes a shared object once, so the
answer grows with the causes of refusal, not with clusters x Pending workloads: 1,000
clusters x 5,000 workloads all Unknown pickled to 24.7 MiB before, 0.4 MiB now
(`python -m bench.planreasons`, docs/placement.md "Pending diagnosis").

If the worker dies (killed, out of memory) the pool is broken: the call raises, the
placement loop retries, and the next call starts a fresh worker (its first plan is a
full one again).

The worker never outlives the controller. It holds the read end of a pipe (its
"lifeline") whose only write end is the controller's: when the controller closes it
(`close`, `aclose`) or dies (SIGKILL, OOM), a thread in the worker reads EOF and ends
the process, mid-plan too. Without it a SIGKILLed controller left its worker running
for good, orphaned to PID 1, and with it multiprocessing's forkserver and resource
tracker (the worker holds their pipes open, so neither saw its end). A clean stop
(`aclose`, from `Manager.run`) also waits until the worker is gone; the forkserver and
the resource tracker are per process (multiprocessing's own) and end with it.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, replace
from multiprocessing.connection import Connection
from typing import Any

import anyio
import structlog

from controllers.runtime.replanner import Replanner
from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.models import Workload
from fleet.placement.types import (
    Assignment,
    FlavourUsage,
    Plan,
    PreviousPlan,
    WorkloadPlacement,
)
from fleet.planning import placements
from fleet.spec import FleetSpec, placement_view

_REPLANNER: Replanner | None = None
"""The worker process's own Replanner (one per worker, created on its first plan)."""
_HELD: tuple[int, FleetSpec, CapacitySnapshot] | None = None
"""The worker's copy of the last spec and capacity it planned, under a sequence number."""
_PLANNED: tuple[int, Plan] | None = None
"""The worker's copy of the last plan it answered, under its call's sequence number."""

log = structlog.get_logger()

STOP_WITHIN = 10.0
"""Seconds `aclose` waits for the worker to be gone (it ends within milliseconds of
its lifeline closing; past this, the stop goes on and says so)."""

_SPEC_FIELDS = tuple(f.name for f in fields(FleetSpec) if f.name != "workloads")


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed since the spec and capacity held under `base` (0: nothing held).

    Pickling a 5,000-workload spec costs ~0.1-0.2 s of the controller's CPU, more than
    an incremental re-plan itself; a commit changes a few workloads. So the worker
    keeps the last spec, and each call sends only the Workload objects that differ,
    the workload order, the other spec fields that differ, and the capacity only if it
    differs. Unchanged workloads keep their identity in the worker, which is what the
    IncrementalPlanner's fast path compares first."""

    base: int
    seq: int
    order: tuple[WorkloadId, ...]
    workloads: Mapping[WorkloadId, Workload]
    other: Mapping[str, Any]
    capacity: CapacitySnapshot | None


class NeedFull(Exception):
    """The worker does not hold the delta's base (a new worker, or a lost call)."""


def delta(held: tuple[int, FleetSpec, CapacitySnapshot] | None, seq: int, spec: FleetSpec,
          capacity: CapacitySnapshot) -> Delta:
    if held is None:
        return Delta(0, seq, tuple(spec.workloads), dict(spec.workloads),
                     {n: getattr(spec, n) for n in _SPEC_FIELDS}, capacity)
    base, old, old_cap = held
    changed = {wid: w for wid, w in spec.workloads.items()
               if (o := old.workloads.get(wid)) is not w and o != w}
    other = {n: getattr(spec, n) for n in _SPEC_FIELDS
             if getattr(spec, n) is not getattr(old, n) and getattr(spec, n) != getattr(old, n)}
    same_cap = capacity is old_cap or capacity == old_cap
    return Delta(base, seq, tuple(spec.workloads), changed, other,
                 None if same_cap else capacity)


def apply_delta(held: tuple[int, FleetSpec, CapacitySnapshot] | None, d: Delta
                ) -> tuple[int, FleetSpec, CapacitySnapshot]:
    if d.base == 0:
        assert d.capacity is not None
        spec = FleetSpec(workloads=dict(d.workloads), **d.other)
        return d.seq, spec, d.capacity
    if held is None or held[0] != d.base:
        raise NeedFull(f"worker holds {held[0] if held else None}, delta is on {d.base}")
    _, old, old_cap = held
    ws = {wid: d.workloads[wid] if wid in d.workloads else old.workloads[wid]
          for wid in d.order}
    spec = replace(old, workloads=ws, **d.other)
    return d.seq, spec, d.capacity if d.capacity is not None else old_cap


@dataclass(frozen=True, slots=True)
class PlanDelta:
    """A plan, as what differs from the plan answered under `base` (0: all of it).

    `workloads` holds the decisions that differ (or are new), `order` the plan's
    workload ids when they are not the base's, `usage` when it differs; the rest of a
    `Plan` is small and always sent. `placed`: how many workloads the plan places
    (`fleet.planning.placements`), so the controller can tell cheaply whether the next
    previous plan is this plan's placements."""

    base: int
    seq: int
    commit: str | None
    order: tuple[WorkloadId, ...] | None
    workloads: Mapping[WorkloadId, WorkloadPlacement]
    usage: Mapping[ClusterName, Mapping[Flavour, FlavourUsage]] | None
    capacity_digest: str
    policy_version: str
    placed: int


def plan_delta(held: tuple[int, Plan] | None, seq: int, plan: Plan) -> PlanDelta:
    """`plan` against `held` (None: all of it)."""
    placed = sum(1 for wp in plan.workloads.values() if wp.status == "Placed" and wp.assignments)
    if held is None:
        return PlanDelta(0, seq, plan.commit, tuple(plan.workloads), dict(plan.workloads),
                         plan.usage, plan.capacity_digest, plan.policy_version, placed)
    base, old = held
    changed = {wid: wp for wid, wp in plan.workloads.items()
               if (o := old.workloads.get(wid)) is not wp and o != wp}
    same_order = len(plan.workloads) == len(old.workloads) and all(
        a == b for a, b in zip(plan.workloads, old.workloads, strict=True))
    same_usage = plan.usage is old.usage or plan.usage == old.usage
    return PlanDelta(base, seq, plan.commit, None if same_order else tuple(plan.workloads),
                     changed, None if same_usage else plan.usage, plan.capacity_digest,
                     plan.policy_version, placed)


def apply_plan_delta(held: tuple[int, Plan] | None, d: PlanDelta) -> Plan:
    """The plan `d` stands for, laid over `held` (unchanged decisions keep their
    objects)."""
    if d.base == 0:
        assert d.order is not None and d.usage is not None
        return Plan(d.commit, {wid: d.workloads[wid] for wid in d.order}, d.usage,
                    d.capacity_digest, d.policy_version)
    if held is None or held[0] != d.base:
        raise NeedFull(f"holding plan {held[0] if held else None}, delta is on {d.base}")
    old = held[1]
    if d.order is None:
        workloads = dict(old.workloads)
        workloads.update(d.workloads)
    else:
        workloads = {wid: d.workloads[wid] if wid in d.workloads else old.workloads[wid]
                     for wid in d.order}
    return Plan(d.commit, workloads, old.usage if d.usage is None else d.usage,
                d.capacity_digest, d.policy_version)


def _place_in_worker(d: Delta, previous: PreviousPlan | None, commit: str | None,
                     rebase_after: int, plan_base: int, previous_held: bool
                     ) -> tuple[PlanDelta, dict[str, int]]:
    """Plan in the worker; answer with what differs from the plan answered under
    `plan_base` (0: the controller holds none). `previous_held`: the previous plan is
    that plan's placements (not sent)."""
    global _REPLANNER, _HELD, _PLANNED
    _HELD = apply_delta(_HELD, d)
    held = _PLANNED if _PLANNED is not None and _PLANNED[0] == plan_base else None
    if previous_held:
        if held is None:
            raise NeedFull(f"no plan {plan_base} to take the previous plan from")
        previous = placements(held[1])
    if _REPLANNER is None:
        _REPLANNER = Replanner(rebase_after=rebase_after)
    _, spec, capacity = _HELD
    plan = _REPLANNER(spec, capacity, previous, commit=commit)
    _PLANNED = (d.seq, plan)
    return plan_delta(held, d.seq, plan), dict(_REPLANNER.counts)


def _is_placements_of(previous: PreviousPlan | None, plan: Plan, placed: int) -> bool:
    """`previous == placements(plan)`, cheaply: same size, and each entry the plan's
    own assignments (the same objects, in the steady state)."""
    if previous is None or len(previous) != placed:
        return False
    workloads = plan.workloads
    for wid, a in previous.items():
        wp = workloads.get(wid)
        if wp is None or wp.status != "Placed" or (wp.assignments is not a
                                                   and wp.assignments != a):
            return False
    return True


def _ready() -> bool:
    return True


def _hold_lifeline(lifeline: Connection) -> None:
    """The worker's initializer: end this process when the controller closes its end
    of `lifeline` or dies (either way the pipe reads EOF)."""
    threading.Thread(target=_exit_at_eof, args=(lifeline,), daemon=True,
                     name="aifleet-placement-lifeline").start()


def _exit_at_eof(lifeline: Connection) -> None:
    try:
        while True:
            lifeline.recv_bytes()  # nothing is ever sent: this returns only at EOF
    except (EOFError, OSError):
        pass
    os._exit(0)  # mid-plan too: whoever wanted the plan is gone


class ProcessPlacer:
    def __init__(self, *, rebase_after: int = 50) -> None:
        self.rebase_after = rebase_after
        self.counts = {"full": 0, "baseline": 0, "incremental": 0}
        """How the worker made each plan, summed over the workers this placer started."""
        self._base = dict(self.counts)
        self._pool: ProcessPoolExecutor | None = None
        self._lifeline_ends: tuple[Connection, ...] = ()
        """Both ends of the worker's lifeline (`_hold_lifeline`): closing them ends it."""
        self._held: tuple[int, FleetSpec, CapacitySnapshot] | None = None
        """What the worker holds, as far as this side knows (None: send it all)."""
        self._planned: tuple[int, Plan, int] | None = None
        """The last plan answered (its call's sequence number, the plan, how many it
        places): the base of the next answer (None: ask for all of it)."""
        self._last_change: tuple[Plan, Plan, frozenset[WorkloadId]] | None = None
        self._placements: tuple[Plan, dict[WorkloadId, tuple[Assignment, ...]]] | None = None
        """A plan and its placements (`placements`), made from the plan before's and the
        decisions changed when known."""
        """The plan the last answer was laid over, the plan made of it, and the ids of
        the decisions it changed (`changes`)."""
        self.received_decisions = 0
        """Workload decisions received from the worker so far (a commit: those it moved)."""
        self._seq = 0
        self.workers_started = 0
        self.sent_workloads = 0
        """Workload objects sent to the worker so far (a commit of k: k more)."""

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["controllers.runtime.placerproc"])
            # Only this process holds `keep`; the worker gets `held` (its fd is passed
            # when the worker starts, so ours stays open until the pool is closed).
            held, keep = ctx.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                             initializer=_hold_lifeline, initargs=(held,))
            self._lifeline_ends = (held, keep)
            self.workers_started += 1
            self._base = dict(self.counts)  # a new worker counts from zero
            self._held = self._planned = None
        return self._pool

    async def place_async(self, spec: FleetSpec, capacity: CapacitySnapshot,
                          previous: PreviousPlan | None, *, commit: str | None) -> Plan:
        spec = placement_view(spec)  # what the worker needs, held there for good
        for _ in range(2):
            pool = self._executor()
            self._seq += 1
            d = delta(self._held, self._seq, spec, capacity)
            planned = self._planned
            self._held = self._planned = None  # unknown until this call answers
            self._last_change = None
            known = self._placements
            held = planned is not None and (
                (known is not None and known[0] is planned[1] and previous is known[1])
                or _is_placements_of(previous, planned[1], planned[2]))
            try:
                # Submitting starts the worker when there is none, and that blocks
                # until the forkserver forked it (its first start imports the
                # placement code, a second or more): in a thread, not in the loop.
                future = await anyio.to_thread.run_sync(
                    pool.submit, _place_in_worker, d, None if held else previous, commit,
                    self.rebase_after, planned[0] if planned is not None else 0, held)
                answer, counts = await asyncio.wrap_future(future)
                plan = apply_plan_delta(
                    (planned[0], planned[1]) if planned is not None else None, answer)
            except NeedFull:
                continue
            except BrokenProcessPool:
                self.close()  # the next call starts a new worker
                raise
            self._held = (self._seq, spec, capacity)
            self._last_change = (planned[1], plan, frozenset(answer.workloads)) \
                if planned is not None and answer.base != 0 and answer.order is None \
                else None
            self._planned = (self._seq, plan, answer.placed)
            self._placements = self._placements_after(planned[1] if planned else None, plan)
            self.sent_workloads += len(d.workloads)
            self.received_decisions += len(answer.workloads)
            self.counts = {k: self._base.get(k, 0) + n for k, n in counts.items()}
            return plan
        raise RuntimeError("the placement worker refused a full spec")  # pragma: no cover

    def placements(self, plan: Plan) -> PreviousPlan:
        """`fleet.planning.placements(plan)` (shared: not to be changed); for the plan
        this placer last answered, made from the plan before's and the decisions it
        changed, O(changed) but for a copy; and when it is the next call's previous
        plan, the worker takes it from its own copy without a comparison here."""
        known = self._placements
        if known is not None and known[0] is plan:
            return known[1]
        placed = placements(plan)
        self._placements = (plan, placed)
        return placed

    def _placements_after(self, old: Plan | None, plan: Plan
                          ) -> tuple[Plan, dict[WorkloadId, tuple[Assignment, ...]]] | None:
        known, changed = self._placements, self.changes(old, plan)
        if known is None or known[0] is not old or changed is None:
            return None
        placed = dict(known[1])
        for wid in changed:
            wp = plan.workloads[wid]
            if wp.status == "Placed" and wp.assignments:
                placed[wid] = wp.assignments
            else:
                placed.pop(wid, None)
        return plan, placed

    def changes(self, old: Plan | None, new: Plan) -> frozenset[WorkloadId] | None:
        """The workloads whose decisions `new` changed from `old`, when `new` is the plan
        this placer last answered and `old` the plan it was laid over (a `PlanDelta`
        with the same ids in the same order: every other decision is `old`'s object);
        None when that is not known (then the caller looks at every decision)."""
        last = self._last_change
        if last is None or old is None or last[0] is not old or last[1] is not new:
            return None
        return last[2]

    async def warm(self) -> None:
        """Start the worker now (in a thread: it blocks until forked), so the first
        plan does not wait for it: at start it overlaps the clusters' first listing."""
        pool = self._executor()
        future = await anyio.to_thread.run_sync(pool.submit, _ready)
        await asyncio.wrap_future(future)

    def close(self) -> None:
        """End the worker (mid-plan too), without waiting for it to be gone."""
        pool = self._release()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """End the worker and wait until it is gone (`Manager.run` stops with this):
        a stopped controller leaves no process behind."""
        pool = self._release()
        if pool is None:
            return
        with anyio.move_on_after(STOP_WITHIN) as waited:
            # joins the pool's thread, which joins the worker
            await anyio.to_thread.run_sync(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True),
                abandon_on_cancel=True)
        if waited.cancelled_caught:
            log.warning("placement_worker_not_stopped", within_seconds=STOP_WITHIN)

    def _release(self) -> ProcessPoolExecutor | None:
        """Forget the pool and close the worker's lifeline: the worker ends now."""
        pool, self._pool = self._pool, None
        for end in self._lifeline_ends:
            end.close()
        self._lifeline_ends = ()
        return pool
