"""`clusters.inventory.Inventory`: what runs here, kept as the objects change, is what a
pass over every object would say, after any sequence of writes (property-style)."""

from __future__ import annotations

import random
from typing import Any

from clusters.inventory import Inventory, LivePlacement, placement_of
from fleet.sync import ObjKey
from tests.support.adapter import deployment, job, service


def rebuilt(live: dict[ObjKey, Any]) -> dict[str, LivePlacement]:
    """The pass over every live object, sorted, that `live_workloads()` used to make."""
    out: dict[str, LivePlacement] = {}
    for _key, obj in sorted(live.items()):
        lp = placement_of(obj)
        if lp is not None:
            out[lp.workload] = lp
    return out


def some_object(rng: random.Random) -> tuple[ObjKey, dict[str, Any]]:
    """One of a few objects (two workloads may share a name across kinds), in one of a
    few versions; now and then not ours to read (no workload label)."""
    name = rng.choice(["a", "b", "c"])
    kind = rng.choice(["Job", "Deployment", "Service"])
    if kind == "Job":
        obj = job(name, parallelism=rng.randint(1, 4), gpus=rng.choice([1, 8]))
    elif kind == "Deployment":
        obj = deployment(f"{name}-serve" if rng.random() < 0.5 else name,
                         replicas=rng.randint(0, 3), commit=rng.choice(["c1", "c2"]))
    else:
        obj = service(name)
    if rng.random() < 0.1:
        del obj["metadata"]["labels"]
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]), obj


def test_what_runs_is_the_pass_over_every_object_after_any_writes() -> None:
    rng = random.Random(7)
    for _ in range(50):
        live = Inventory()
        for _ in range(60):
            key, obj = some_object(rng)
            op = rng.random()
            if op < 0.55:
                live[key] = obj
            elif op < 0.7:
                live.pop(key, None)
            elif op < 0.8 and key in live:
                del live[key]
            elif op < 0.9:
                live.update({key: obj})
            elif op < 0.95 and live:
                live.popitem()
            else:
                live.setdefault(key, obj)
            assert live.workloads() == rebuilt(live)
        live.clear()
        assert live.workloads() == {}


def test_reads_read_nothing_back_and_a_write_reads_back_its_object() -> None:
    live = Inventory()
    for i in range(200):
        key, obj = some_object(random.Random(i))
        live[key] = obj
    what, reads = live.workloads(), live.read_backs
    for _ in range(100):
        assert live.workloads() == what
    assert live.read_backs == reads  # 100 reads: no object read back
    got = live.workloads()
    got.clear()  # a copy: the caller's to change
    assert live.workloads() == what
    new = job("z", parallelism=3)
    live[("batch/v1", "Job", "nlp-team", "z")] = new
    assert live.read_backs == reads + 1
    assert live.workloads()["nlp-team.z"].replicas == 3


def test_a_label_that_starts_or_stops_running_is_told_once() -> None:
    told: list[str] = []
    live = Inventory()
    live.on_runs = told.append
    key = ("batch/v1", "Job", "nlp-team", "a")
    live[key] = job("a")
    live[key] = job("a", parallelism=2)  # still runs: not told again
    live[("apps/v1", "Deployment", "nlp-team", "a")] = deployment("a")  # same label
    live.pop(key)
    assert told == ["nlp-team.a"] and live.runs("nlp-team.a")
    live.clear()
    assert told == ["nlp-team.a", "nlp-team.a"] and not live.runs("nlp-team.a")


def test_a_copy_keeps_what_runs() -> None:
    import copy
    import pickle

    live = Inventory([(("batch/v1", "Job", "nlp-team", "a"), job("a", parallelism=2))])
    for other in (copy.copy(live), copy.deepcopy(live), pickle.loads(pickle.dumps(live))):
        assert isinstance(other, Inventory) and other == live
        assert other.workloads() == live.workloads() == rebuilt(live)
