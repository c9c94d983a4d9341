"""Re-planning after a few workloads changed, with exactly the result of a full plan.

`IncrementalPlanner(spec, capacity, previous)` plans once, recording for every decision
the state keys it read -- ("n", cluster, flavour) for a cluster's nodes, ("f", flavour)
for the ranking of a whole flavour, ("q", team, flavour) for quota usage, ("k", ...)
for a Kueue ClusterQueue's usage -- and what it
wrote, plus, per key, the timeline of its values through the keep phase.
`replan(spec, previous)` then gives `Planner(spec, capacity).plan(previous)` without
running the whole pass again:

- Keep phase: only the changed workloads, and the kept workloads that read a key whose
  value changed before them, are decided again, each against the key values *at its
  position* (the recorded timeline, or the live value of a key already changed). A
  decision that writes what it wrote before changes nothing downstream; one that writes
  differently marks those keys, and their later readers are visited in turn.
- New phase: starts from the recorded state after the keep phase with the changed keys
  patched in; a recorded decision is reused when its workload did not change and it
  read no changed key, else decided again.

Every other decision is reused as recorded. This is exact because a decision is a pure
function of the workload, its previous assignments and the values of the keys it read;
a property test checks replan == full plan on random fleets and edits. In a steady
state (previous = the last plan, so nearly everything is kept) the work is the changed
workload, its cluster's co-tenants, its team's quota readers and the pending ones of
its flavour, not the fleet.

The fleet itself (clusters, residency, quotas, capacity) is the planner's snapshot: if
it changes, `replan` falls back to a full plan. The baseline stays the recorded run;
build a new `IncrementalPlanner` to move it.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleet.capacity import CapacitySnapshot
from fleet.ids import ClusterName, Flavour, Team, WorkloadId
from fleet.placement.core import Decision, OrderKey, Planner, apply, with_reasons
from fleet.placement.queues import CohortKey, Member, QueueKey
from fleet.placement.snapshot import NodeKey
from fleet.placement.state import Hist, Key, State, queue_key, recorded_queue
from fleet.placement.types import FlavourUsage, Plan, PreviousPlan, Reason, WorkloadPlacement
from fleet.spec import FleetSpec

Value = Hist | int


@dataclass(frozen=True, slots=True)
class _Entry:
    key: OrderKey
    wid: WorkloadId
    reads: frozenset[Key]
    decision: Decision


@dataclass(slots=True)
class _Log:
    keep: list[_Entry] = field(default_factory=list)
    new: list[_Entry] = field(default_factory=list)
    after_keep: State | None = None

    def decided(self, key: OrderKey, wid: WorkloadId, reads: set[Key], d: Decision) -> None:
        (self.keep if key[0] == 0 else self.new).append(_Entry(key, wid, frozenset(reads), d))

    def kept_all(self, state: State) -> None:
        self.after_keep = state.copy()


def writes(d: Decision | None) -> dict[Key, Value]:
    """What a decision adds to each key (histogram delta, or quota GPUs)."""
    out: dict[Key, Value] = {}
    if d is None or not d.kept:
        return out
    for (c, f), delta in d.nodes:
        out[("n", c, f)] = delta
    for (t, f), g in d.quota:
        k = ("q", t, f)
        prev = out.get(k, 0)
        assert isinstance(prev, int)
        out[k] = prev + g
    for queue, g in d.queues:
        out[recorded_queue(queue)] = g  # one entry per queue in a decision
    return out


def _add(v: Value, delta: Value) -> Value:
    if isinstance(v, int):
        assert isinstance(delta, int)
        return v + delta
    assert isinstance(delta, tuple)
    return tuple(a + b for a, b in zip(v, delta, strict=True))


class _AtPosition(State):
    """The keep phase's state as it was at one position: timeline values, or the live
    value of keys that changed."""

    __slots__ = ("_inc", "_live", "_pos")

    def __init__(self, inc: IncrementalPlanner, live: Mapping[Key, Value], pos: OrderKey
                 ) -> None:
        super().__init__({})
        self._inc, self._live, self._pos = inc, live, pos

    def _value(self, k: Key) -> Value:
        found = self._live.get(k)
        return found if found is not None else self._inc.value_before(k, self._pos)

    def frees(self, key: NodeKey) -> Hist:
        v = self._value(("n", key[0], key[1]))
        assert isinstance(v, tuple)
        return v

    def fit(self, count: int, key: NodeKey) -> int:
        h = self.frees(key)
        return sum(h[v] * (v // count) for v in range(count, len(h)))

    def total(self, key: NodeKey) -> int:
        return sum(v * n for v, n in enumerate(self.frees(key)))

    def used(self, team: Team, flavour: Flavour) -> int:
        v = self._value(("q", team, flavour))
        assert isinstance(v, int)
        return v

    def queue_used(self, key: QueueKey) -> int:
        v = self._value(recorded_queue(key))
        assert isinstance(v, int)
        return v

    def cohort_used(self, key: CohortKey, members: tuple[Member, ...],
                    recorded: tuple[Key, ...]) -> int:
        return sum(max(0, others + self.queue_used(qk) - g) for qk, g, others in members)


class IncrementalPlanner:
    def __init__(self, spec: FleetSpec, capacity: CapacitySnapshot,
                 previous: PreviousPlan | None = None, *, commit: str | None = None) -> None:
        self.spec, self.capacity = spec, capacity
        self.previous: PreviousPlan = previous or {}
        self.planner = Planner(spec, capacity)
        self.decided = 0
        """Decisions the last `replan` made again (the rest were reused): its work."""
        log = _Log()
        self.plan = self.planner.plan(self.previous, commit=commit, record=log)
        assert log.after_keep is not None
        self._after_keep = log.after_keep
        self._keep = {e.key: e for e in log.keep}
        self._keep_of = {e.wid: e for e in log.keep}
        self._new_of = {e.wid: e for e in log.new}
        self._decisions: dict[WorkloadId, Decision] = {
            e.wid: e.decision for e in log.keep if e.decision.kept}
        self._decisions.update((e.wid, e.decision) for e in log.new)
        self._readers: dict[Key, list[OrderKey]] = {}
        for e in log.keep:
            for k in e.reads:
                self._readers.setdefault(k, []).append(e.key)
        self._timeline: dict[Key, tuple[list[OrderKey], list[Value]]] = {}
        for e in log.keep:
            for k, delta in writes(e.decision).items():
                keys, values = self._timeline.setdefault(k, ([], []))
                before = values[-1] if values else self._initial(k)
                keys.append(e.key)
                values.append(_add(before, delta))

    def _initial(self, k: Key) -> Value:
        if k[0] in ("q", "k"):
            return 0
        return self.planner.snap.nodes.get((ClusterName(k[1]), Flavour(k[2])), ())

    def value_before(self, k: Key, pos: OrderKey) -> Value:
        """The recorded value of `k` just before the decision at `pos` (keep phase)."""
        found = self._timeline.get(k)
        if found is None:
            return self._initial(k)
        keys, values = found
        i = bisect.bisect_left(keys, pos)
        return values[i - 1] if i else self._initial(k)

    def replan(self, spec: FleetSpec, previous: PreviousPlan | None = None, *,
               commit: str | None = None) -> Plan:
        prev = previous if previous is not None else self.previous
        commit = commit if commit is not None else self.plan.commit
        if not self.planner.same_fleet(spec):
            return Planner(spec, self.capacity).plan(prev, commit=commit)
        changed = self._changed(spec, prev)
        self.decided = 0
        planner = self.planner.rebind(spec)
        keep_decisions, live = self._replay_keep(planner, spec, prev, changed)
        return self._replay_new(planner, spec, prev, changed, keep_decisions, live, commit)

    def _changed(self, spec: FleetSpec, prev: PreviousPlan) -> set[WorkloadId]:
        old_ws, new_ws = self.spec.workloads, spec.workloads
        out = {w for w in old_ws.keys() ^ new_ws.keys()}
        for wid, w in new_ws.items():
            o = old_ws.get(wid)
            if o is not None and o is not w and o != w:
                out.add(wid)
        if prev is not self.previous:
            for wid in self.previous.keys() | prev.keys():
                if self.previous.get(wid, ()) != prev.get(wid, ()):
                    out.add(wid)
        return out

    def _replay_keep(self, planner: Planner, spec: FleetSpec, prev: PreviousPlan,
                     changed: set[WorkloadId]
                     ) -> tuple[dict[WorkloadId, Decision | None], dict[Key, Value]]:
        """Decisions of the keep phase that differ from the recording (failed keeps
        included), and the live values of the keys they changed."""
        heap: list[OrderKey] = []
        for wid in changed:
            old = self._keep_of.get(wid)
            if old is not None:
                heap.append(old.key)
            w = spec.workloads.get(wid)
            if w is not None and prev.get(wid):
                heap.append((0, -w.spec.priority, wid))
        heapq.heapify(heap)
        live: dict[Key, Value] = {}
        redone: dict[WorkloadId, Decision | None] = {}
        seen: set[OrderKey] = set()
        while heap:
            pos = heapq.heappop(heap)
            if pos in seen:
                continue
            seen.add(pos)
            wid = WorkloadId(pos[2])
            old = self._keep.get(pos)
            w = spec.workloads.get(wid)
            member = (w is not None and bool(prev.get(wid))
                      and (0, -w.spec.priority, wid) == pos)
            new: Decision | None = None
            if member:
                ctx = planner.context(wid, prev.get(wid, ()), keep=True)
                new = planner.decide(ctx, _AtPosition(self, live, pos))
                self.decided += 1
                redone[wid] = new
            elif old is not None:
                redone.setdefault(old.wid, None)  # its recorded keep no longer applies
            old_w = writes(old.decision) if old is not None else {}
            new_w = writes(new)
            for k in old_w.keys() | new_w.keys():
                if k in live:
                    if k in new_w:
                        live[k] = _add(live[k], new_w[k])
                elif old_w.get(k) != new_w.get(k):
                    before = self.value_before(k, pos)
                    live[k] = _add(before, new_w[k]) if k in new_w else before
                    for r in self._readers.get(k, ()):
                        if r > pos and r not in seen:
                            heapq.heappush(heap, r)
        return redone, live

    def _replay_new(self, planner: Planner, spec: FleetSpec, prev: PreviousPlan,
                    changed: set[WorkloadId], redone: dict[WorkloadId, Decision | None],
                    live: dict[Key, Value], commit: str | None) -> Plan:
        state = self._after_keep.copy()
        dirty: set[Key] = set()
        for k, v in live.items():
            dirty.add(k)
            if k[0] == "n":
                assert isinstance(v, tuple)
                state.put((ClusterName(k[1]), Flavour(k[2])), v)
                dirty.add(("f", k[2], ""))
            elif k[0] == "k":
                assert isinstance(v, int)
                state.set_queue_used(queue_key(k), v)
            else:
                assert isinstance(v, int)
                state.set_used(Team(k[1]), Flavour(k[2]), v)
        decisions = dict(self._decisions)
        kept: set[WorkloadId] = set()
        for wid, d in redone.items():
            decisions.pop(wid, None)
            if d is not None and d.kept:
                decisions[wid] = d
                kept.add(wid)
        # the new phase: recorded members still not kept, plus changed and newly failed
        members = {e.wid for e in self._new_of.values()} - kept
        members |= {wid for wid in redone if wid not in kept}
        members |= {wid for wid in changed if wid not in kept}
        order = sorted((1, -spec.workloads[w].spec.priority, w) for w in members
                       if w in spec.workloads)
        for w in members:
            if w not in spec.workloads:
                decisions.pop(w, None)
        # a recorded new-phase decision that is not made again at the same position
        # took (or left) capacity the later ones saw
        positions = set(order)
        for e in self._new_of.values():
            if e.key not in positions or e.wid in changed or e.wid in redone:
                for k in writes(e.decision):
                    dirty.add(k)
                    if k[0] == "n":
                        dirty.add(("f", k[2], ""))
        for pos in order:
            wid = WorkloadId(pos[2])
            old = self._new_of.get(wid)
            if (old is not None and old.key == pos and wid not in changed
                    and wid not in redone and not (old.reads & dirty)):
                d = old.decision
            else:
                ctx = planner.context(wid, prev.get(wid, ()), keep=False)
                d = with_reasons(planner.decide(ctx, state), self._failed_keep(wid, redone))
                self.decided += 1
                old_w = writes(old.decision) if old is not None else {}
                new_w = writes(d)
                for k in old_w.keys() | new_w.keys():
                    if old_w.get(k) != new_w.get(k) or old is None or old.key != pos:
                        dirty.add(k)
                        if k[0] == "n":
                            dirty.add(("f", k[2], ""))
            apply(state, d)
            decisions[wid] = d
        touched = changed | members | redone.keys()
        return self._patch(spec, {w: (decisions[w].placement if w in decisions else None)
                                  for w in touched if w in decisions or w in self._decisions},
                           commit, planner)

    def _failed_keep(self, wid: WorkloadId, redone: Mapping[WorkloadId, Decision | None]
                     ) -> Sequence[Reason]:
        """Why the workload could not stay where it runs, if it was judged for that."""
        d = redone[wid] if wid in redone else (
            self._keep_of[wid].decision if wid in self._keep_of else None)
        return d.placement.reasons if d is not None and not d.kept else ()

    def _patch(self, spec: FleetSpec, placements: Mapping[WorkloadId, WorkloadPlacement | None],
               commit: str | None, planner: Planner) -> Plan:
        """The recorded plan with these workloads' placements replaced (None: gone):
        what `Planner.assemble` would build, without walking every workload."""
        base = self.plan
        out = dict(base.workloads)
        delta: dict[tuple[ClusterName, Flavour], int] = {}
        for wid, p in placements.items():
            old = out.get(wid)
            if old is not None:
                for a in old.assignments:
                    k = (a.cluster, a.flavour)
                    delta[k] = delta.get(k, 0) - a.gpus
            if p is None:
                out.pop(wid, None)
            else:
                out[wid] = p
                for a in p.assignments:
                    k = (a.cluster, a.flavour)
                    delta[k] = delta.get(k, 0) + a.gpus
        if spec.invalid is not self.spec.invalid and spec.invalid != self.spec.invalid:
            for wid in self.spec.invalid.keys() - spec.invalid.keys():
                if wid not in spec.workloads:
                    out.pop(wid, None)
            for wid, diags in spec.invalid.items():
                out[wid] = WorkloadPlacement(wid, "Invalid", (), tuple(
                    Reason(d.format(), None, "Invalid") for d in diags))
        if out.keys() != base.workloads.keys():
            out = dict(sorted(out.items()))
        usage = dict(base.usage)
        for (c, f), d in sorted(delta.items()):
            if d:
                per = dict(usage[c])
                u = per[f]
                per[f] = FlavourUsage(u.capacity, u.allocated + d)
                usage[c] = per
        return Plan(commit=commit, workloads=out, usage=usage,
                    capacity_digest=planner.capacity_digest,
                    policy_version=spec.residency.version)

