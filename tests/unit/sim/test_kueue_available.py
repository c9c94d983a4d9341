"""The simulated Kueue's `available` (clusters/sim/stacks/kueue.py) and placement's
(fleet/placement/queues.py) are written apart from Kueue's `pkg/cache/resource_node.go`:
on random cohorts they must agree (placement never expects room Kueue would refuse,
nor refuses room it would give)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.stacks.kueue import available
from fleet.capacity import ClusterQueueCapacity, KueueCapacity, QueueQuota
from fleet.ids import ClusterName, Flavour
from fleet.placement.queues import Queues
from fleet.placement.state import State

C = ClusterName("c")
F = Flavour("h100")
GPU = "nvidia.com/gpu"


def sim_queue(name: str, cohort: str | None, nominal: int, borrowing: int | None,
              lending: int | None) -> dict[str, Any]:
    res: dict[str, Any] = {"name": GPU, "nominalQuota": nominal}
    if borrowing is not None:
        res["borrowingLimit"] = borrowing
    if lending is not None:
        res["lendingLimit"] = lending
    spec: dict[str, Any] = {"resourceGroups": [{"coveredResources": [GPU], "flavors": [
        {"name": "h100", "resources": [res]}]}]}
    if cohort:
        spec["cohortName"] = cohort
    return {"metadata": {"name": name}, "spec": spec}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_the_simulator_and_placement_compute_kueues_available_alike(seed: int) -> None:
    rnd = random.Random(seed)
    sim: dict[str, dict[str, Any]] = {}
    ours: dict[str, ClusterQueueCapacity] = {}
    used: dict[str, dict[tuple[str, str], int]] = {}
    for i in range(rnd.randint(1, 4)):
        name = f"q{i}"
        cohort = rnd.choice((None, "ai", "ai", "ml"))
        nominal = rnd.choice((0, 4, 8, 16))
        borrowing = rnd.choice((None, 0, 4)) if cohort else None
        lending = rnd.choice((None, 0, 4, 8)) if cohort else None
        lending = None if lending is not None and lending > nominal else lending
        u = rnd.randint(0, nominal + 4)
        sim[name] = sim_queue(name, cohort, nominal, borrowing, lending)
        ours[name] = ClusterQueueCapacity(name, cohort, {F: QueueQuota(
            nominal, borrowing, lending, used_by_others=u)})
        used[name] = {("h100", GPU): u}
    queues = Queues({C: KueueCapacity(ours, {})}, {})
    for name in sim:
        want = available(name, sim, used, ("h100", GPU))
        got = queues.available(C, name, F, State({}))
        assert max(0, got) == want, (seed, name)
