"""The filter plugins: the hard rules of placement, in the order they are applied.

Each filter is a small class with a `name` (the `rule` of its Reasons), whether it is
`static` (depends only on the workload's placement fields and the cluster, so its
verdict can be cached) and whether it is judged `per_flavour`. The order of `FILTERS`
is the order of a diagnosis: a cluster is counted under the first rule it fails, as
kube-scheduler reports the first failing plugin per node. Residency comes first, since
it is never violated whatever else happens.

*Keep* (sticky) and *new* placements differ only in Health, Cordon and Taint, the way
Kubernetes treats running pods: a cordoned cluster and a NoSchedule taint keep what
runs, a NoExecute taint evicts it, and an Unreachable (or Unknown) cluster keeps it
until `unreachableGraceSeconds` have passed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from fleet.ids import Flavour
from fleet.placement.context import WorkloadContext
from fleet.placement.framework import Filter, FilterResult, fits
from fleet.placement.snapshot import ClusterInfo, Snapshot
from fleet.placement.state import State, largest_free


class Residency:
    name = "Residency"
    static = True
    per_flavour = False

    def __init__(self, allows: Callable[[str | None, str], bool]) -> None:
        self._allows = allows

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return w.data_class

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
    static = True
    per_flavour = False

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return (w.static_key.split("|", 3)[2], w.only_clusters)

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
    static = True
    per_flavour = False

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return (w.keep, w.static_key.rsplit("|", 1)[1])

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
    static = True
    per_flavour = False

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return (w.keep, w.grace_seconds if w.keep else 0)

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if c.health in ("Healthy", "Degraded"):
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
    static = True
    per_flavour = False

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return w.keep

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        if c.cordoned and not w.keep:
            return FilterResult(self.name, "Unschedulable",
                                "cordoned: keeps what runs, takes nothing new", "cordoned")
        return fits(self.name)


class FlavourOffer:
    name = "Flavour"
    static = True
    per_flavour = True

    def key(self, w: WorkloadContext, flavour: Flavour | None) -> Hashable:
        return (flavour, w.count)

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
    name = "Capacity"
    static = False
    per_flavour = True

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        assert flavour is not None and state is not None
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


class Quota:
    name = "Quota"
    static = False
    per_flavour = True

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def filter(self, w: WorkloadContext, c: ClusterInfo, flavour: Flavour | None,
               state: State | None) -> FilterResult:
        from fleet.placement.quota import quota_check

        assert flavour is not None and state is not None
        gpus = w.replicas_needed(c.name) * w.count
        why = quota_check(self._snap, state, w.team, flavour, gpus)
        if why is None:
            return fits(self.name)
        return FilterResult(self.name, "Unschedulable", why, f"quota ({why})")


def default_filters(snap: Snapshot, allows: Callable[[str | None, str], bool]
                    ) -> tuple[Filter, ...]:
    """Every filter, in diagnosis order."""
    return (Residency(allows), FlavourOffer(), Selector(), Taint(), Health(), Cordon(),
            Capacity(), Quota(snap))
