"""The filter plugins: the hard rules of placement, in the order they are applied.

Each filter is a small class with a `name` (the `rule` of its Reasons), its `kind`
(`fleet.placement.framework`: static, room or total) and whether it is judged
`per_flavour`. They are registered by name in `fleet.placement.registry`, whose
profile orders them: the order of a diagnosis, where a cluster is counted under the
first rule it fails, as kube-scheduler reports the first failing plugin per node.
Residency comes first, since it is never violated whatever else happens.

*Keep* (sticky) and *new* placements differ only in Health, Cordon and Taint, the way
Kubernetes treats running pods: a cordoned cluster and a NoSchedule taint keep what
runs, a NoExecute taint evicts it, and an Unreachable (or Unknown) cluster keeps it
until `unreachableGraceSeconds` have passed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from fleet.ids import ClusterName, Flavour
from fleet.placement.context import WorkloadContext
from fleet.placement.framework import FilterKind, FilterResult, fits, no_key
from fleet.placement.quota import quota_check
from fleet.placement.snapshot import ClusterInfo, NodeKey, Snapshot
from fleet.placement.state import State, largest_free
from fleet.render.keys import team_queue
from fleet.spec import FleetSpec


class Residency:
    name = "Residency"
    kind: FilterKind = "static"
    per_flavour = False

    def __init__(self, snap: Snapshot, spec: FleetSpec) -> None:
        self._snap, self._spec = snap, spec
        self._allows = spec.residency.allows

    key_field = "data_class"

    def key(self, w: WorkloadContext) -> Hashable:
        return w.data_class

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return self._snap.allowed_clusters(self._spec, w.data_class)

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if self._allows(w.data_class, c.jurisdiction):
            return fits(self.name)
        dc = w.data_class or "default"
        return FilterResult(self.name, "Never",
                            f"dataClass {dc} may not run in {c.jurisdiction}",
                            f"residency({dc})")


class Selector:
    name = "Selector"
    kind: FilterKind = "static"
    per_flavour = False

    def key(self, w: WorkloadContext) -> Hashable:
        selector = w.selector.model_dump_json() if w.selector is not None else ""
        return (selector, w.only_clusters)

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if w.only_clusters and c.name not in w.only_clusters:
            return FilterResult(self.name, "Never", "not in placement.clusters",
                                "not in placement.clusters")
        if w.selector is not None and not w.selector.matches(dict(c.labels)):
            return FilterResult(self.name, "Never", "labels do not match clusterSelector",
                                "selector")
        return fits(self.name)


class Taint:
    name = "Taint"
    kind: FilterKind = "static"
    per_flavour = False

    def key(self, w: WorkloadContext) -> Hashable:
        # the tolerations' fields, as plain tuples: hashed and compared in C (the
        # models' own __hash__/__eq__ run Python for every workload that has some)
        return tuple([(t.key, t.operator, t.value, t.effect, t.toleration_seconds)
                      for t in w.tolerations]) if w.tolerations else ()

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        for t in c.taints:
            if t.effect == "PreferNoSchedule" or (w.keep and t.effect == "NoSchedule"):
                continue
            if not any(tol.tolerates(t) for tol in w.tolerations):
                return FilterResult(self.name, "Never",
                                    f"taint {t.key}:{t.effect} is not tolerated",
                                    f"taint({t.key})")
        return fits(self.name)


class Health:
    name = "Health"
    kind: FilterKind = "static"
    per_flavour = False

    key_field = "grace_seconds"

    def key(self, w: WorkloadContext) -> Hashable:
        return w.grace_seconds

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if c.seen:
            return fits(self.name)
        if w.keep:
            gone = c.unreachable_seconds
            if gone is None or gone < w.grace_seconds:
                return fits(self.name)
            return FilterResult(self.name, "Unschedulable",
                                f"{c.health} for {gone:.0f}s, past the {w.grace_seconds}s "
                                "grace: failing over", f"health({c.health})")
        return FilterResult(self.name, "Unschedulable",
                            f"cluster is {c.health}: nothing new is placed there",
                            f"health({c.health})")


class Cordon:
    name = "Cordon"
    kind: FilterKind = "static"
    per_flavour = False

    key = staticmethod(no_key)

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if c.cordoned and not w.keep:
            return FilterResult(self.name, "Unschedulable",
                                "cordoned: keeps what runs, takes nothing new", "cordoned")
        return fits(self.name)


class FlavourOffer:
    name = "Flavour"
    kind: FilterKind = "static"
    per_flavour = True

    key_field = "count"

    def key(self, w: WorkloadContext) -> Hashable:
        return w.count

    def index(self, w: WorkloadContext, flavour: Flavour | None
              ) -> frozenset[ClusterName] | None:
        return None

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None
        offer = c.offers.get(flavour)
        if offer is None:
            return FilterResult(self.name, "Never", f"offers no {flavour}", f"no {flavour}")
        if w.count > offer.per_node:
            return FilterResult(self.name, "Never",
                                f"{flavour} nodes have {offer.per_node} GPUs, a replica "
                                f"needs {w.count}", f"no {flavour} node of {w.count}",
                                needs_per_node=w.count, largest_free=offer.per_node)
        return fits(self.name)


class Capacity:
    """Room on the nodes: every replica the option needs, `count` GPUs on one node each,
    at once. A running workload is not checked on a cluster whose nodes are not seen
    (Unreachable, Unknown): it keeps what runs there until Health fails it over."""

    name = "Capacity"
    kind: FilterKind = "room"
    per_flavour = True

    def room(self, w: WorkloadContext, state: State) -> Callable[[NodeKey], int]:
        return state.fitter(w.count)

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None and state is not None
        if w.keep and not c.seen:
            return fits(self.name)
        key = (c.name, flavour)
        need = w.replicas_needed(c.name)
        room = state.room(key, w.count)
        if room >= need:
            return fits(self.name)
        largest = largest_free(state.frees(key))
        rule = "Gang" if w.gang and need > 1 and largest >= w.count else self.name
        if largest < w.count:
            msg = f"{flavour}: needs {w.count} on one node, largest free {largest}"
        else:
            msg = (f"{flavour}: needs {need} replicas of {w.count} GPUs at once, "
                   f"room for {room}")
        return FilterResult(rule, "Unschedulable", msg, "capacity",
                            needs_per_node=w.count, largest_free=largest)

    def summarize(self, w: WorkloadContext, rejected: list[FilterResult]) -> str:
        need = rejected[0].needs_per_node
        largest = max(r.largest_free for r in rejected)
        detail = (f"needs {need} on one node, largest free {largest}" if largest < need
                  else f"needs {1 if w.spread else w.replicas} x {need} GPUs at once")
        return f"{len(rejected)} capacity ({detail})"


class Quota:
    """The team's quota (`fleet.placement.quota`), judged on all the GPUs the workload
    takes of a flavour."""

    name = "Quota"
    kind: FilterKind = "total"
    per_flavour = True

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self._fits = fits(self.name)

    def judge(self, w: WorkloadContext, flavour: Flavour, gpus: int, state: State
              ) -> FilterResult:
        why = quota_check(self._snap, state, w.team, flavour, gpus)
        if why is None:
            return self._fits
        return FilterResult(self.name, "Unschedulable", why, f"quota ({why})")

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None and state is not None
        return self.judge(w, flavour, w.replicas_needed(c.name) * w.count, state)


UNBOUNDED = 1 << 30
"""The room of an option no Kueue queue bounds (the nodes' room is the bound)."""
NO_QUEUE = "no Kueue queue"


class KueueQueue:
    """On a Kueue cluster, room in the team's ClusterQueue (`fleet.placement.queues`):
    the replicas of a queued workload (training, batch) its free quota admits there.
    A workload kept where it runs is not judged here (Kueue never takes back what it
    admitted, and one waiting there keeps its place in the queue); its GPUs are charged
    to the queue all the same, before anything new."""

    name = "KueueQueue"
    kind: FilterKind = "room"
    per_flavour = True

    def __init__(self, snap: Snapshot) -> None:
        self._queues = snap.queues

    def room(self, w: WorkloadContext, state: State) -> Callable[[NodeKey], int] | None:
        if not w.queued or not self._queues:
            return None  # nothing to bound: the planner skips this filter
        queues, team, count = self._queues, w.team, w.count

        def room(key: NodeKey) -> int:
            cq = queues.queue_of(key[0], team)
            if cq is None:
                return UNBOUNDED
            if not cq:
                return 0
            return max(0, queues.available(key[0], cq, key[1], state)) // count
        return room

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None and state is not None
        if w.keep or not w.queued:
            return fits(self.name)
        cq = self._queues.queue_of(c.name, w.team)
        if cq is None:
            return fits(self.name)
        if not cq:
            ns, name = team_queue(w.team)
            return FilterResult(
                self.name, "Unschedulable",
                f"no Kueue queue for {w.team}: LocalQueue {ns}/{name} points to "
                f"ClusterQueue {self._queues.pointed_to(c.name, w.team)}, which does not "
                "exist", NO_QUEUE)
        need = w.replicas_needed(c.name) * w.count
        free = self._queues.available(c.name, cq, flavour, state)
        if need <= free:
            return fits(self.name)
        q = self._queues.quota(c.name, cq, flavour)
        cohort = self._queues.cohort(c.name, cq)
        detail = "no quota" if q is None else (
            f"nominal {q.nominal}" + (f", cohort {cohort}" if cohort else ""))
        return FilterResult(
            self.name, "Unschedulable",
            f"Kueue ClusterQueue {cq}: {max(0, free)} {flavour} GPUs of quota free "
            f"({detail}), needs {need}", f"Kueue queue {cq}",
            needs_per_node=need, largest_free=max(0, free))

    def summarize(self, w: WorkloadContext, rejected: list[FilterResult]) -> str:
        full = [r for r in rejected if r.summary != NO_QUEUE]
        parts = []
        if full:
            parts.append(f"{len(full)} Kueue queue full ({w.team}: needs "
                         f"{full[0].needs_per_node} GPUs, most free "
                         f"{max(r.largest_free for r in full)})")
        if len(full) < len(rejected):
            parts.append(f"{len(rejected) - len(full)} {NO_QUEUE}")
        return ", ".join(parts)
