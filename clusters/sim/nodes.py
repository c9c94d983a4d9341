"""What a simulated cluster is made of: GPU nodes, declared once, rendered as v1 Nodes.

A `SimClusterSpec` is the whole static description of one simulated cluster: its name
and its nodes. `spec_from_cluster` derives it from a fleet Cluster file the way a real
cluster would present the same hardware: one node per whole node of each GPU offer,
named `<cluster>-<flavour>-<i>` (the names `fleet.capacity.declared_nodes` uses, so
declared and live capacity line up), with the labels NVIDIA GPU feature discovery sets
(`nvidia.com/gpu.product`, `.count`, `.memory`). Fleet-level taints of a Cluster file
are placement rules of ours, not node taints, so they are not copied onto the nodes.

`node_object` renders a complete v1 Node (status, conditions, nodeInfo, addresses):
kubernetes-asyncio's typed models reject a Node missing any required field.

Node shape and allocatable, as a cloud GPU node reports them: 24 vCPU and 256 GiB of
memory per GPU (an 8-GPU node is AWS p5.48xlarge's 192 vCPU / 2 TiB; a CPU-only node
16 / 64 GiB), 110 pods, 1 TiB of ephemeral storage. Allocatable is capacity minus what
the kubelet keeps back (`--kube-reserved`/`--system-reserved` plus the hard eviction
thresholds, kubelet `pkg/kubelet/cm/node_container_manager_linux.go`
`GetNodeAllocatableReservation`), with the reservations GKE documents for its nodes
("plan node sizes": CPU 6% of the first core, 1% of the next, 0.5% of the next 2,
0.25% above 4; memory 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8,
6% of the next 112, 2% above 128 GiB) and the kubelet's default hard eviction
thresholds (`memory.available<100Mi`, `nodefs.available<10%`). Extended resources
(`nvidia.com/gpu`) and pods are not reserved: allocatable equals capacity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fleet.models import Cluster
from fleet.quantity import canonical, parse

GPU = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"
FLAVOUR_LABEL = "aifleet.dev/flavour"
GPU_ALLOCATION_LABEL = "aifleet.dev/gpu-allocation"
"""A Cluster file label: `dra` makes `fleet sim up` simulate that cluster's GPUs as DRA
devices (ResourceSlices of the NVIDIA driver) instead of `nvidia.com/gpu` (`dra.py`)."""

# GPU memory in MiB as GFD reports it, for products whose name does not carry it.
_KNOWN_MEMORY = {"t4": 15360, "l4": 23034, "a10g": 23028, "l40s": 46068, "v100": 16384}
_GB = re.compile(r"(\d+)\s*gb", re.IGNORECASE)


@dataclass(frozen=True)
class SimNode:
    """One node: its GPUs (`product` None for a CPU-only node), labels and taints."""

    name: str
    product: str | None
    gpus: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SimClusterSpec:
    name: str
    nodes: tuple[SimNode, ...]
    dra: bool = False
    """GPUs published as DRA ResourceSlices (driver gpu.nvidia.com), not as the
    `nvidia.com/gpu` extended resource (`dra.py`)."""
    stack: frozenset[str] = frozenset()
    """In-cluster components installed with their CRDs and simulated controllers:
    `kueue`, `jobset` (`clusters/sim/stacks/`)."""


def gpu_memory_mib(product: str, flavour: str = "") -> int | None:
    """The per-GPU memory GFD would label, from `80GB` in the name or a known product."""
    for text in (product, flavour):
        m = _GB.search(text)
        if m:
            return int(m.group(1)) * 1024
    low = f"{product} {flavour}".lower()
    for key, mib in _KNOWN_MEMORY.items():
        if key in low:
            return mib
    return None


def spec_from_cluster(cluster: Cluster) -> SimClusterSpec:
    """The simulated cluster a Cluster file describes (see module docstring)."""
    nodes: list[SimNode] = []
    for offer in cluster.spec.gpus:
        labels = {
            PRODUCT_LABEL: offer.product,
            COUNT_LABEL: str(offer.per_node),
            FLAVOUR_LABEL: offer.flavour,
        }
        mem = gpu_memory_mib(offer.product, offer.flavour)
        if mem is not None:
            labels[MEMORY_LABEL] = str(mem)
        for i in range(offer.nodes):
            nodes.append(SimNode(f"{cluster.name}-{offer.flavour}-{i}", offer.product,
                                 offer.per_node, dict(labels)))
    stack = cluster.spec.stack
    dra = cluster.metadata.labels.get(GPU_ALLOCATION_LABEL) == "dra" or \
        stack.gpu_allocation == "dra"
    components = frozenset(c for c, on in (("kueue", stack.kueue), ("jobset", stack.jobset))
                           if on)
    return SimClusterSpec(cluster.name, tuple(sorted(nodes, key=lambda n: n.name)), dra=dra,
                          stack=components)


def node_object(node: SimNode, *, uid: str, created: str, index: int) -> dict[str, Any]:
    """A complete v1 Node for `node` (without resourceVersion: the store sets it)."""
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "sim",
        **node.labels,
    }
    if node.product is not None:
        labels.setdefault(PRODUCT_LABEL, node.product)
        labels.setdefault(COUNT_LABEL, str(node.gpus))
    capacity, allocatable = _shape(node.gpus)
    address = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    spec: dict[str, Any] = {"podCIDR": f"10.244.{index % 256}.0/24"}
    if node.taints:
        spec["taints"] = [dict(t) for t in node.taints]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "uid": uid, "creationTimestamp": created,
                     "labels": labels, "annotations": {}},
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", created),
                _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", created),
                _condition("PIDPressure", "False", "KubeletHasSufficientPID", created),
                _condition("Ready", "True", "KubeletReady", created,
                           "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": address},
                          {"type": "Hostname", "address": node.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": uid, "machineID": uid.replace("-", ""),
                "systemUUID": uid, "containerRuntimeVersion": "containerd://1.7.0-sim",
                "kernelVersion": "6.1.0-sim", "kubeProxyVersion": "v1.35.0-sim",
                "kubeletVersion": "v1.35.0-sim", "operatingSystem": "linux",
                "osImage": "aifleet simulated node",
            },
            "phase": "Running",
        },
    }


CPU_PER_GPU = 24
MEMORY_GIB_PER_GPU = 256
EPHEMERAL_GIB = 1024
MAX_PODS = 110
EVICTION_MEMORY_KI = 100 * 1024
"""kubelet's default hard eviction threshold `memory.available<100Mi`."""
EVICTION_NODEFS = Decimal("0.10")
"""kubelet's default hard eviction threshold `nodefs.available<10%`."""
_CPU_STEPS = ((1, Decimal("0.06")), (1, Decimal("0.01")), (2, Decimal("0.005")),
              (None, Decimal("0.0025")))
_MEMORY_STEPS = ((4, Decimal("0.25")), (4, Decimal("0.20")), (8, Decimal("0.10")),
                 (112, Decimal("0.06")), (None, Decimal("0.02")))


def node_capacity(gpus: int) -> dict[str, str]:
    """A node's `status.capacity` for its GPU count (see module docstring)."""
    cpu = CPU_PER_GPU * gpus if gpus else 16
    memory_gib = MEMORY_GIB_PER_GPU * gpus if gpus else 64
    out = {"cpu": str(cpu), "memory": f"{memory_gib}Gi", "pods": str(MAX_PODS),
           "ephemeral-storage": f"{EPHEMERAL_GIB}Gi"}
    if gpus:
        out[GPU] = str(gpus)
    return {k: canonical(v) for k, v in out.items()}


@lru_cache(maxsize=64)
def _resources(gpus: int) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    capacity = node_capacity(gpus)
    return tuple(capacity.items()), tuple(node_allocatable(capacity).items())


def _shape(gpus: int) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) for a node with `gpus`, computed once per shape (a
    thousand simulated clusters start with thousands of nodes)."""
    capacity, allocatable = _resources(gpus)
    return dict(capacity), dict(allocatable)


def _tiered(amount: Decimal, steps: tuple[tuple[int | None, Decimal], ...]) -> Decimal:
    """Reservation by tiers: each tier's share of the part of `amount` inside it."""
    reserved, left = Decimal(0), amount
    for size, share in steps:
        part = left if size is None else min(left, Decimal(size))
        reserved += part * share
        left -= part
        if left <= 0:
            break
    return reserved


def node_allocatable(capacity: dict[str, str]) -> dict[str, str]:
    """`status.allocatable`: capacity minus reserved minus eviction thresholds."""
    cores = parse(capacity["cpu"]).value
    milli = int(cores * 1000 - (_tiered(cores, _CPU_STEPS) * 1000).to_integral_value())
    mem_ki = int(parse(capacity["memory"]).value) // 1024
    gib = Decimal(mem_ki) / (1024 * 1024)
    reserved_ki = int(_tiered(gib, _MEMORY_STEPS) * 1024 * 1024) + EVICTION_MEMORY_KI
    disk = parse(capacity["ephemeral-storage"]).value
    out = dict(capacity)
    out["cpu"] = canonical(f"{milli}m")
    out["memory"] = canonical(f"{mem_ki - reserved_ki}Ki")
    out["ephemeral-storage"] = canonical(str(int(disk * (1 - EVICTION_NODEFS))))
    return out


def _condition(kind: str, status: str, reason: str, now: str,
               message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason,
            "message": message or reason, "lastHeartbeatTime": now,
            "lastTransitionTime": now}


def set_ready(node: dict[str, Any], ready: bool, now: str) -> None:
    """Flip the Ready condition and the not-ready taint, as the node lifecycle
    controller does when a kubelet stops posting status."""
    for c in node["status"]["conditions"]:
        if c["type"] == "Ready":
            c.update({"status": "True" if ready else "Unknown",
                      "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                      "message": ("kubelet is posting ready status" if ready
                                  else "Kubelet stopped posting node status."),
                      "lastTransitionTime": now, "lastHeartbeatTime": now})
    taints = [t for t in node["spec"].get("taints", [])
              if t.get("key") != "node.kubernetes.io/not-ready"]
    if not ready:
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule",
                       "timeAdded": now})
    if taints:
        node["spec"]["taints"] = taints
    else:
        node["spec"].pop("taints", None)


def is_ready(node: dict[str, Any]) -> bool:
    # A plain loop, not any() over a generator: called for every node on every lease
    # renewal and scheduling pass.
    for c in node.get("status", {}).get("conditions", []):
        if c["type"] == "Ready" and c["status"] == "True":
            return True
    return False
