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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fleet.models import Cluster

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
    dra = cluster.metadata.labels.get(GPU_ALLOCATION_LABEL) == "dra"
    return SimClusterSpec(cluster.name, tuple(sorted(nodes, key=lambda n: n.name)), dra=dra)


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
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110",
                 "ephemeral-storage": "1Ti"}
    if node.gpus:
        resources[GPU] = str(node.gpus)
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
            "capacity": dict(resources),
            "allocatable": dict(resources),
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
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))
