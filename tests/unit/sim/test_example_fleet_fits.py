"""The example fleet fits the nodes a real cluster would offer it.

Placement counts GPUs only; each simulated node (as a real one) also allocates less
cpu and memory than its capacity. For every example workload and every node shape it
may land on, as many replicas as the node's GPUs take must also fit the node's
allocatable cpu and memory, or the demo would show pods Pending that the fleet calls
placed.
"""

from __future__ import annotations

from pathlib import Path

from clusters.sim.nodes import node_allocatable, node_capacity
from fleet.quantity import parse
from workloads.loader import read_fleet

ROOT = Path(__file__).resolve().parents[3]


def test_every_example_workload_fits_the_allocatable_of_its_nodes() -> None:
    spec = read_fleet(str(ROOT / "examples/fleet")).spec
    checked = 0
    for wid, w in sorted(spec.workloads.items()):
        res = w.spec.resources
        for cluster in spec.clusters.values():
            for offer in cluster.spec.gpus:
                if offer.flavour not in res.gpu.flavours or offer.per_node < res.gpu.count:
                    continue
                alloc = node_allocatable(node_capacity(offer.per_node))
                per_node = offer.per_node // res.gpu.count
                for name, want in (("cpu", res.cpu), ("memory", res.memory)):
                    if want is None:
                        continue
                    asked = parse(want).value * per_node
                    assert asked <= parse(alloc[name]).value, (
                        f"{wid}: {per_node} replica(s) ask {asked} {name} of a "
                        f"{cluster.name} {offer.flavour} node allocating {alloc[name]}")
                checked += 1
    assert checked > 20
