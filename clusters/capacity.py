"""Capacity discovery: GPUs per node, from Nodes, Pods and (where served) ResourceSlices.

Per node we keep allocatable `nvidia.com/gpu`, the GPU product (node label
`nvidia.com/gpu.product`, as GPU feature discovery sets it), taints, readiness,
cordon, and the GPUs requested by its non-terminal pods (a pod's GPUs count against
its node until it is Succeeded or Failed; extended resources are never overcommitted,
and requests equal limits, so limits stand in when requests are absent).

Pods are folded in incrementally (each pod's contribution is remembered and replaced
on the next event), so an event costs O(1) whatever the cluster's size. GPU pods not
yet bound to a node are kept too: they are demand that the controller's re-plan must
count as its own workloads' (reserved, not yet started).

Kueue (where the cluster serves `kueue.x-k8s.io/v1beta2`): a queued Job waits for its
ClusterQueue's quota even on free nodes, so the adapter also reads, per ClusterQueue,
its cohort and its `nvidia.com/gpu` quota per ResourceFlavor (`nominalQuota`,
`borrowingLimit`, `lendingLimit`), what it reserves (`status.flavorsReservation`,
Kueue's own figure: what admitted and quota-reserving Workloads hold) and, of that, what
our own Workloads reserve (a Workload is ours when its podSets' pod templates carry the
managed-by aifleet label; `status.admission.clusterQueue` says where), and the
LocalQueues it owns (namespace, name -> `spec.clusterQueue`). `KueueQuota.queues()` is
that view; the controller maps ResourceFlavors to fleet flavours and placement bounds
each team by its own queue (`fleet.placement.queues`). The nodes are not capped by
quota any more: a Deployment is not queued, and one team's free quota is not
another's. Not modelled: cpu/memory quota, hierarchical Cohort objects, DRA
device-class mappings.

Dynamic Resource Allocation: where the cluster serves `resource.k8s.io/v1`, each
ResourceSlice (v1 shape: `spec.nodeName`, `spec.driver`, `spec.pool.name`,
`spec.devices[].attributes.<name>.string`) lists devices per node; GPUs published only
there (no device-plugin resource) are counted from them, with the GPU driver's
`productName` as the product, spelled as GPU feature discovery labels it (spaces as
dashes, so `NVIDIA H100 80GB HBM3` is `NVIDIA-H100-80GB-HBM3`), and a MIG device
(`type: mig`) as `<productName>-MIG-<profile>` (GFD's MIG product name). A node's
devices may span several slices of its pool. A device is taken while a ResourceClaim's
`status.allocation.devices.results` names it (driver, pool, device); free devices are
the node's devices minus the taken ones, and a claim labelled managed-by aifleet (the
labels of a ResourceClaimTemplate's `spec.metadata` are copied onto the claims made from
it) counts as ours, as our pods do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clusters.client import JSON
from fleet.render.inverse import pod_gpus
from fleet.render.keys import GPU_RESOURCE, MANAGED_BY, PRODUCT_LABEL


@dataclass(slots=True)
class NodeState:
    name: str
    product: str | None
    allocatable: int
    ready: bool
    unschedulable: bool
    taints: tuple[tuple[str, str | None, str], ...]
    used: int = 0
    used_ours: int = 0
    """GPUs held by pods of workloads we manage (labelled managed-by aifleet)."""
    dra_devices: int = 0
    dra_product: str | None = None
    dra_used: int = 0
    """Devices of this node allocated to ResourceClaims."""
    dra_used_ours: int = 0

    @property
    def held(self) -> int:
        """GPUs held on this node: pods' `nvidia.com/gpu` and DRA devices in claims."""
        return self.used + self.dra_used

    @property
    def held_ours(self) -> int:
        """Of `held`, by our own workloads' pods and claims."""
        return self.used_ours + self.dra_used_ours

    @property
    def gpus(self) -> int:
        return self.allocatable if self.allocatable else self.dra_devices

    @property
    def gpu_product(self) -> str | None:
        return self.product or self.dra_product

    @property
    def free(self) -> int:
        if not self.ready or self.unschedulable:
            return 0
        return max(0, self.gpus - self.held)

    @property
    def free_for_us(self) -> int:
        """Free GPUs when our own workloads' pods are counted as theirs, not as used.

        A re-plan places every workload we manage again (sticky), consuming capacity as
        it goes; handing it this figure keeps a running workload's GPUs available to it
        and never to someone else, so nothing moves and nothing is double-booked.
        """
        if not self.ready or self.unschedulable:
            return 0
        return max(0, self.gpus - (self.held - self.held_ours))


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def slim_pod(pod: JSON) -> JSON:
    """The fields of a Pod that capacity and `pods()` read; the rest is not cached.

    A fleet's pod cache is the controller's biggest (one entry per replica); full pods
    carry env, volumes, probes and status history nobody here reads.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    keep_meta = ("name", "namespace", "uid", "resourceVersion", "labels",
                 "creationTimestamp", "deletionTimestamp")
    return {
        "apiVersion": pod.get("apiVersion"), "kind": pod.get("kind"),
        "metadata": {k: meta[k] for k in keep_meta if k in meta},
        "spec": {"nodeName": spec.get("nodeName"),
                 "containers": [{"name": c.get("name"), "resources": c.get("resources") or {}}
                                for c in spec.get("containers") or []]},
        "status": _slim_status(pod.get("status") or {}),
    }


def slim_node(node: JSON) -> JSON:
    """The fields of a Node that `on_node` reads (issue 22, item 1: a full Node carries
    images, addresses and a dozen conditions; an idle cluster's node cache was most of
    its decoded JSON)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return {
        "apiVersion": node.get("apiVersion"), "kind": node.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion", "labels")
                     if k in meta},
        "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
        "status": {"allocatable": status.get("allocatable") or {},
                   "conditions": [c for c in status.get("conditions") or []
                                  if isinstance(c, dict) and c.get("type") == "Ready"]},
    }


def _slim_status(status: JSON) -> JSON:
    """The phase, and the PodScheduled condition while the scheduler refuses the pod
    (its message says why: `0/8 nodes are available: 8 Insufficient cpu.`)."""
    out: JSON = {"phase": status.get("phase")}
    refused = [c for c in status.get("conditions") or []
               if isinstance(c, dict) and c.get("type") == "PodScheduled"
               and c.get("status") == "False"]
    if refused:
        out["conditions"] = [{k: refused[0][k] for k in ("type", "status", "reason", "message")
                              if k in refused[0]}]
    return out


def slim_claim(claim: JSON) -> JSON:
    """The fields of a ResourceClaim capacity reads: who it is, whether it is ours, and
    which devices it holds (the claim cache can be as big as the pod cache)."""
    meta = claim.get("metadata") or {}
    results = ((((claim.get("status") or {}).get("allocation") or {}).get("devices") or {})
               .get("results") or [])
    return {"apiVersion": claim.get("apiVersion"), "kind": claim.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "labels") if k in meta},
            "status": {"allocation": {"devices": {"results": [
                {k: r.get(k) for k in ("request", "driver", "pool", "device")}
                for r in results]}}} if results else {}}


def _device_product(device: JSON) -> str | None:
    """A DRA GPU's product as GFD would label it (see module docstring)."""
    attrs = device.get("attributes") or {}

    def text(name: str) -> str | None:
        value = attrs.get(name) or attrs.get(f"gpu.nvidia.com/{name}") or {}
        got = value.get("string") if isinstance(value, dict) else None
        return str(got) if got else None
    product = text("productName")
    if product is None:
        return None
    product = product.replace(" ", "-")
    profile = text("profile")
    return f"{product}-MIG-{profile}" if text("type") == "mig" and profile else product


def _terminal(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass(slots=True)
class CapacityTracker:
    """Informer handlers keep this current; `nodes` is the view the snapshot is cut from."""

    nodes: dict[str, NodeState] = field(default_factory=dict)
    _pods: dict[tuple[str, str], tuple[str | None, int, bool]] = field(default_factory=dict)
    _pending_used: dict[str, tuple[int, int]] = field(default_factory=dict)
    """GPUs of pods bound to nodes we have not seen yet (pod event before node event)."""
    _slices: dict[str, tuple[str, tuple[tuple[str, str, str], ...], str | None]] = field(
        default_factory=dict)
    """ResourceSlice name -> (node, its devices as (driver, pool, device), product)."""
    _node_slices: dict[str, set[str]] = field(default_factory=dict)
    _device_node: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _allocated: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    """Devices allocated to a ResourceClaim -> whether the claim is ours."""
    _claims: dict[tuple[str, str], tuple[tuple[tuple[str, str, str], ...], bool]] = field(
        default_factory=dict)
    kueue: KueueQuota = field(default_factory=lambda: KueueQuota())
    """Kueue's queues and what they reserve, where the cluster serves Kueue."""
    unbound_gpus: int = 0
    """GPUs requested by non-terminal pods not yet bound to a node."""
    version: int = 0
    """Bumped on every change that can move a free-GPU figure: cheap change detection."""

    def on_node(self, event: str, node: JSON) -> None:
        meta = node.get("metadata") or {}
        name = str(meta.get("name"))
        if event == "DELETED":
            self.nodes.pop(name, None)
            self.version += 1
            return
        status = node.get("status") or {}
        spec = node.get("spec") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        taints = tuple((str(t.get("key")), t.get("value"), str(t.get("effect")))
                       for t in spec.get("taints") or [])
        old = self.nodes.get(name)
        state = NodeState(
            name=name,
            product=(meta.get("labels") or {}).get(PRODUCT_LABEL),
            allocatable=_quantity((status.get("allocatable") or {}).get(GPU_RESOURCE, 0)),
            ready=ready,
            unschedulable=bool(spec.get("unschedulable")),
            taints=taints,
            used=old.used if old else self._pending_used.get(name, (0, 0))[0],
            used_ours=old.used_ours if old else self._pending_used.pop(name, (0, 0))[1],
        )
        self._dra_figures(state)
        if old != state:
            self.version += 1
        self.nodes[name] = state

    def on_pod(self, event: str, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        self._unapply(self._pods.pop(key, None))
        if event == "DELETED" or _terminal(pod):
            return
        gpus = pod_gpus(pod)
        if not gpus:
            return
        node = (pod.get("spec") or {}).get("nodeName") or None
        ours = (meta.get("labels") or {}).get(MANAGED_BY) == "aifleet"
        contrib = (str(node) if node else None, gpus, ours)
        self._pods[key] = contrib
        self._apply(contrib, +1)

    def _unapply(self, contrib: tuple[str | None, int, bool] | None) -> None:
        if contrib is not None:
            self._apply(contrib, -1)

    def _apply(self, contrib: tuple[str | None, int, bool], sign: int) -> None:
        node, gpus, ours = contrib
        self.version += 1
        if node is None:
            self.unbound_gpus += sign * gpus
        elif node in self.nodes:
            self.nodes[node].used += sign * gpus
            if ours:
                self.nodes[node].used_ours += sign * gpus
        else:
            used, mine = self._pending_used.get(node, (0, 0))
            self._pending_used[node] = (used + sign * gpus, mine + (sign * gpus if ours else 0))

    # ------------------------------------------------------------ DRA

    def on_resource_slice(self, event: str, rs: JSON) -> None:
        meta, spec = rs.get("metadata") or {}, rs.get("spec") or {}
        name = str(meta.get("name") or id(rs))
        old = self._slices.pop(name, None)
        if old is not None:
            self._node_slices.get(old[0], set()).discard(name)
        for key in (old[1] if old else ()):
            self._device_node.pop(key, None)
        node = spec.get("nodeName")
        if event != "DELETED" and node:
            driver = str(spec.get("driver", ""))
            pool = str((spec.get("pool") or {}).get("name", ""))
            keys = tuple((driver, pool, str(d.get("name", "")))
                         for d in spec.get("devices") or [])
            product = next((p for p in map(_device_product, spec.get("devices") or []) if p),
                           None)
            self._slices[name] = (str(node), keys, product)
            self._node_slices.setdefault(str(node), set()).add(name)
            for key in keys:
                self._device_node[key] = str(node)
        for n in {old[0] if old else None, node} - {None}:
            self._refresh_dra(str(n))

    def on_resource_claim(self, event: str, claim: JSON) -> None:
        meta = claim.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        touched: set[str] = set()
        for dev in self._claims.pop(key, ((), False))[0]:
            self._allocated.pop(dev, None)
            touched.add(self._device_node.get(dev, ""))
        if event != "DELETED":
            results = ((((claim.get("status") or {}).get("allocation") or {})
                        .get("devices") or {}).get("results") or [])
            devs = tuple((str(r.get("driver", "")), str(r.get("pool", "")),
                          str(r.get("device", ""))) for r in results)
            ours = (meta.get("labels") or {}).get(MANAGED_BY) == "aifleet"
            if devs:
                self._claims[key] = (devs, ours)
            for dev in devs:
                self._allocated[dev] = ours
                touched.add(self._device_node.get(dev, ""))
        for n in touched - {""}:
            self._refresh_dra(n)

    def _refresh_dra(self, node: str) -> None:
        state = self.nodes.get(node)
        if state is not None and self._dra_figures(state):
            self.version += 1

    def _dra_figures(self, state: NodeState) -> bool:
        """Set a node's DRA devices, product and allocated devices; True if they moved."""
        before = (state.dra_devices, state.dra_product, state.dra_used, state.dra_used_ours)
        mine = [self._slices[n] for n in sorted(self._node_slices.get(state.name, ()))]
        keys = [k for _, ks, _ in mine for k in ks]
        products = [p for _, _, p in mine if p]
        state.dra_devices = len(keys)
        state.dra_product = products[0] if products else None
        taken = [self._allocated[k] for k in keys if k in self._allocated]
        state.dra_used, state.dra_used_ours = len(taken), sum(1 for ours in taken if ours)
        return before != (state.dra_devices, state.dra_product, state.dra_used,
                          state.dra_used_ours)

    def on_resource_flavor(self, event: str, rf: JSON) -> None:
        self.kueue.on_flavour(event, rf)
        self.version += 1

    def on_cluster_queue(self, event: str, cq: JSON) -> None:
        self.kueue.on_cluster_queue(event, cq)
        self.version += 1

    def on_kueue_workload(self, event: str, wl: JSON) -> None:
        # every event, not only those that move our reservations: the status page's
        # fingerprint reads this version to show a Workload Kueue keeps queued
        self.kueue.on_workload(event, wl)
        self.version += 1

    def on_local_queue(self, event: str, lq: JSON) -> None:
        self.kueue.on_local_queue(event, lq)
        self.version += 1

    def view(self) -> list[NodeState]:
        """The nodes by name."""
        return [self.nodes[n] for n in sorted(self.nodes)]

    def by_product(self) -> Mapping[str, list[NodeState]]:
        out: dict[str, list[NodeState]] = {}
        for name in sorted(self.nodes):
            n = self.nodes[name]
            if n.gpu_product and n.gpus:
                out.setdefault(n.gpu_product, []).append(n)
        return out


# ---------------------------------------------------------------------- Kueue


@dataclass(frozen=True, slots=True)
class FlavourQuota:
    """One ResourceFlavor of a ClusterQueue, in `nvidia.com/gpu`."""

    nominal: int
    borrowing_limit: int | None
    lending_limit: int | None


@dataclass(frozen=True, slots=True)
class QueueView:
    """One ClusterQueue as placement needs it (`KueueQuota.queues`)."""

    name: str
    cohort: str | None
    flavours: tuple[tuple[str, str | None, FlavourQuota, int, int], ...]
    """(ResourceFlavor, the GPU product its nodeLabels select, quota, reserved by
    Workloads not ours, reserved by ours), in the queue's order."""


@dataclass(frozen=True, slots=True)
class KueueView:
    cluster_queues: tuple[QueueView, ...]
    local_queues: tuple[tuple[tuple[str, str], str], ...]
    """((namespace, name), ClusterQueue) of the LocalQueues we own."""


def _limit(value: Any) -> int | None:
    return None if value is None else _quantity(value)


def _gpu_quotas(cq: JSON) -> dict[str, FlavourQuota]:
    """ResourceFlavor -> `nvidia.com/gpu` quota of one ClusterQueue, in its order."""
    out: dict[str, FlavourQuota] = {}
    for group in (cq.get("spec") or {}).get("resourceGroups") or []:
        for fl in group.get("flavors") or []:
            for r in fl.get("resources") or []:
                if r.get("name") == GPU_RESOURCE:
                    out[str(fl.get("name"))] = FlavourQuota(
                        _quantity(r.get("nominalQuota", 0)), _limit(r.get("borrowingLimit")),
                        _limit(r.get("lendingLimit")))
    return out


def _gpu_usage(cq: JSON) -> dict[str, int]:
    """ResourceFlavor -> `nvidia.com/gpu` reserved in the ClusterQueue (its status)."""
    out: dict[str, int] = {}
    for fl in (cq.get("status") or {}).get("flavorsReservation") or []:
        for r in fl.get("resources") or []:
            if r.get("name") == GPU_RESOURCE:
                out[str(fl.get("name"))] = _quantity(r.get("total", 0))
    return out


def slim_workload(wl: JSON) -> JSON:
    """A Kueue Workload as `KueueQuota.on_workload` reads it: whether it is ours and
    what it reserves (pod templates can be big; only their labels are kept)."""
    sets = [{"template": {"metadata": {"labels": ((ps.get("template") or {}).get(
        "metadata") or {}).get("labels") or {}}}}
        for ps in (wl.get("spec") or {}).get("podSets") or []]
    status = wl.get("status") or {}
    return {"metadata": wl.get("metadata") or {},
            "spec": {"podSets": sets, "queueName": (wl.get("spec") or {}).get("queueName")},
            "status": {"conditions": status.get("conditions") or [],
                       "admission": status.get("admission") or {}}}


def _ours(workload: JSON) -> bool:
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        labels = ((ps.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY) == "aifleet":
            return True
    return False


def _reserved(workload: JSON) -> tuple[str, dict[str, int]] | None:
    """(ClusterQueue, ResourceFlavor -> GPUs) an admitted, unfinished Workload reserves."""
    status = workload.get("status") or {}
    if any(c.get("type") == "Finished" and c.get("status") == "True"
           for c in status.get("conditions") or []):
        return None
    admission = status.get("admission") or {}
    out: dict[str, int] = {}
    for a in admission.get("podSetAssignments") or []:
        flavour = (a.get("flavors") or {}).get(GPU_RESOURCE)
        if flavour:
            gpus = _quantity((a.get("resourceUsage") or {}).get(GPU_RESOURCE, 0))
            out[str(flavour)] = out.get(str(flavour), 0) + gpus
    return (str(admission.get("clusterQueue") or ""), out) if out else None


@dataclass(slots=True)
class KueueQuota:
    """ResourceFlavors, ClusterQueues, our LocalQueues and our Workloads (see the module
    docstring); `queues()` is what placement reads."""

    flavours: dict[str, str | None] = field(default_factory=dict)
    """ResourceFlavor -> the GPU product its nodeLabels select."""
    quotas: dict[str, dict[str, FlavourQuota]] = field(default_factory=dict)
    """ClusterQueue -> ResourceFlavor -> its GPU quota."""
    cohorts: dict[str, str | None] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """ClusterQueue -> ResourceFlavor -> reserved GPUs."""
    ours: dict[tuple[str, str], tuple[str, dict[str, int]]] = field(default_factory=dict)
    """Our admitted Workloads -> (ClusterQueue, ResourceFlavor -> reserved GPUs)."""
    local: dict[tuple[str, str], str] = field(default_factory=dict)
    """Our LocalQueues: (namespace, name) -> ClusterQueue."""

    def on_flavour(self, event: str, rf: JSON) -> None:
        name = str((rf.get("metadata") or {}).get("name"))
        if event == "DELETED":
            self.flavours.pop(name, None)
            return
        labels = (rf.get("spec") or {}).get("nodeLabels") or {}
        self.flavours[name] = labels.get(PRODUCT_LABEL)

    def on_cluster_queue(self, event: str, cq: JSON) -> None:
        name = str((cq.get("metadata") or {}).get("name"))
        for d in (self.quotas, self.usage, self.cohorts):
            d.pop(name, None)
        if event != "DELETED":
            self.quotas[name] = _gpu_quotas(cq)
            self.usage[name] = _gpu_usage(cq)
            self.cohorts[name] = (cq.get("spec") or {}).get("cohortName") or None

    def on_local_queue(self, event: str, lq: JSON) -> None:
        meta = lq.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        self.local.pop(key, None)
        target = (lq.get("spec") or {}).get("clusterQueue")
        if event != "DELETED" and target:
            self.local[key] = str(target)

    def on_workload(self, event: str, wl: JSON) -> bool:
        """Fold one Workload event in; True if what ours reserve changed."""
        meta = wl.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        before = self.ours.pop(key, None)
        if event != "DELETED" and _ours(wl):
            reserved = _reserved(wl)
            if reserved is not None:
                self.ours[key] = reserved
        return self.ours.get(key) != before

    def queues(self) -> KueueView:
        """Every ClusterQueue's GPU quota and reservation (others' and ours apart), and
        our LocalQueues, sorted: what the controller turns into the capacity snapshot."""
        ours: dict[tuple[str, str], int] = {}
        for cq, reserved in self.ours.values():
            for rf, gpus in reserved.items():
                ours[(cq, rf)] = ours.get((cq, rf), 0) + gpus
        out = []
        for name in sorted(self.quotas):
            used = self.usage.get(name, {})
            flavours = []
            for rf, q in self.quotas[name].items():
                mine = ours.get((name, rf), 0)
                others = max(0, used.get(rf, 0) - mine)
                flavours.append((rf, self.flavours.get(rf), q, others, mine))
            out.append(QueueView(name, self.cohorts.get(name), tuple(flavours)))
        return KueueView(tuple(out), tuple(sorted(self.local.items())))
