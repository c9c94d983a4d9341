"""Hypothesis strategies: small random fleets, with capacity, for the placement rules.

Small on purpose (at most 5 clusters of at most 3 nodes per flavour, 8 workloads), so
500 examples per rule run in seconds, yet every rule gets exercised: several
jurisdictions and dataClasses, two flavours with 4- and 8-GPU nodes, nodes partly used
by others or unschedulable, unhealthy and cordoned clusters, taints, selectors, gangs,
spread inference, priorities and quotas with a cohort, and Kueue clusters whose team
queues (some in a cohort, some missing, two teams sharing one) bound queued workloads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from fleet.capacity import (
    CapacitySnapshot,
    ClusterCapacity,
    ClusterQueueCapacity,
    KueueCapacity,
    NodeCapacity,
    QueueQuota,
)
from fleet.diagnostics import SourceRef
from fleet.ids import ClusterName, Flavour
from fleet.models import Cluster, Document
from fleet.spec import FleetSpec, assemble
from tests.unit.fleet_placement.builders import cluster, policy, quota, workload

JURISDICTIONS = ("DE", "FR", "US", "BR", "JP")
FLAVOURS = {"h100-80gb": 8, "l40s-48gb": 4}
DATA_CLASSES = ("public", "eu-personal", "us-phi", "br-personal")
TEAMS = ("nlp-team", "vision-team", "search-team")


@dataclass(frozen=True)
class Fleet:
    docs: tuple[Document, ...]
    capacity: CapacitySnapshot

    def spec(self, order: list[int] | None = None) -> FleetSpec:
        idx = order if order is not None else list(range(len(self.docs)))
        items = [(policy(), SourceRef("policies/residency.yaml", 1, {}))]
        items += [(self.docs[i], SourceRef(f"f{i}.yaml", 1, {})) for i in idx]
        return assemble(items)


def make_cluster(rnd: random.Random, i: int) -> tuple[Document, ClusterCapacity]:
    name = f"c{i}"
    flavours = rnd.sample(sorted(FLAVOURS), rnd.randint(1, 2))
    nodes_per = {f: rnd.randint(1, 3) for f in flavours}
    offers = tuple((f, nodes_per[f] * FLAVOURS[f], FLAVOURS[f]) for f in flavours)
    taints: list[dict[str, Any]] = (
        [{"key": "maintenance", "effect": rnd.choice(("NoSchedule", "NoExecute"))}]
        if rnd.randint(0, 5) == 0 else [])
    doc = cluster(name, rnd.choice(JURISDICTIONS), offers,
                  prices={f: rnd.choice((1.0, 2.0, 3.0)) for f in flavours},
                  labels={"tier": rnd.choice(("prod", "dev"))}, taints=taints,
                  cordoned=rnd.randint(0, 6) == 0)
    nodes = []
    for f in flavours:
        per = FLAVOURS[f]
        for j in range(nodes_per[f]):
            used = rnd.choice((0, 0, 0, per // 2, per))
            nodes.append(NodeCapacity(f"{name}-{f}-{j}", Flavour(f), per, used,
                                      schedulable=rnd.randint(0, 9) > 0))
    health = rnd.choice(("Healthy",) * 6 + ("Degraded", "Unreachable", "Unknown"))
    unreachable = rnd.choice((10.0, 1000.0)) if health == "Unreachable" else None
    return doc, ClusterCapacity(ClusterName(name), health,  # type: ignore[arg-type]
                                unreachable, tuple(sorted(nodes, key=lambda n: n.name)))


def make_workload(rnd: random.Random, i: int) -> Document:
    kind = rnd.choice(("training", "training", "batch", "inference"))
    count = rnd.choice((1, 2, 4, 8))
    fl = [f for f in sorted(FLAVOURS) if FLAVOURS[f] >= count]
    rnd.shuffle(fl)
    flavours = tuple(fl[:rnd.randint(1, len(fl))])
    replicas = rnd.randint(1, 4)
    placement: dict[str, Any] = {}
    if kind == "inference":
        lo = rnd.randint(1, min(2, replicas))
        placement["spread"] = {"minClusters": lo, "maxClusters": rnd.randint(lo, 3)}
    if rnd.randint(0, 5) == 0:
        placement["clusterSelector"] = {"matchLabels": {"tier": "prod"}}
    if rnd.random() < 0.5:
        placement["tolerations"] = [{"key": "maintenance", "operator": "Exists"}]
    return workload(f"w{i}", rnd.choice(TEAMS), wtype=kind, replicas=replicas,
                    count=count, flavours=flavours, data_class=rnd.choice(DATA_CLASSES),
                    priority=rnd.choice((0, 10, 100)), placement=placement,
                    **({"inference": {"port": 8000}} if kind == "inference" else {}))


def make_fleet(seed: int, max_workloads: int = 8) -> Fleet:
    rnd = random.Random(seed)
    cs = [make_cluster(rnd, i) for i in range(rnd.randint(1, 5))]
    ws = [make_workload(rnd, i) for i in range(rnd.randint(1, max_workloads))]
    docs: list[Document] = [c for c, _ in cs] + ws
    quotas = rnd.random() < 0.5
    if quotas:
        docs.append(quota("nlp-team", ("h100-80gb", rnd.choice((0, 8, 16)),
                                       rnd.choice((None, 0, 8))),
                          ("l40s-48gb", 8, None), cohort="research"))
        docs.append(quota("vision-team", ("h100-80gb", 16, 0), ("l40s-48gb", 4, 4),
                          cohort="research"))
    # drawn last, so the fleets above are those of the seeds before Kueue was drawn
    for i, (doc, cap) in enumerate(cs):
        if rnd.random() < 0.5:
            assert isinstance(doc, Cluster)
            docs[i] = doc.model_copy(update={"spec": doc.spec.model_copy(update={
                "stack": doc.spec.stack.model_copy(update={"kueue": True})})})
            cs[i] = (docs[i], ClusterCapacity(cap.name, cap.health, cap.unreachable_seconds,
                                              cap.nodes, make_kueue(rnd)))
    return Fleet(tuple(docs), CapacitySnapshot({c.name: c for _, c in cs}))


def make_kueue(rnd: random.Random) -> KueueCapacity:
    """Team queues as aifleet renders them (one per team, its LocalQueue pointing to
    it), varied: a cohort or none, borrowing and lending limits, another tenant's queue
    in the cohort, usage by others within each queue's nominal quota (Kueue never
    admits beyond it), a team's LocalQueue missing, or pointing to another team's."""
    cohort = rnd.choice((None, "ai", "ai"))
    names = [*TEAMS, "others"]
    cqs: dict[str, ClusterQueueCapacity] = {}
    for name in names:
        mine = cohort if rnd.random() < 0.8 else None
        flavours: dict[Flavour, QueueQuota] = {}
        for f in sorted(FLAVOURS):
            if rnd.random() < 0.2:
                continue  # a flavour this queue has no quota for
            nominal = rnd.choice((0, 4, 8, 16))
            flavours[Flavour(f)] = QueueQuota(  # limits only in a cohort, as Kueue says
                nominal,
                rnd.choice((None, 0, 4, 8)) if mine else None,
                rnd.choice((None, None, 0, 4)) if mine else None,
                used_by_others=rnd.randint(0, nominal) if rnd.random() < 0.4 else 0)
        cqs[name] = ClusterQueueCapacity(name, mine, flavours)
    lqs: dict[tuple[str, str], str] = {}
    for team in TEAMS:
        roll = rnd.random()
        if roll < 0.15:
            continue  # no LocalQueue (yet)
        lqs[(team, team)] = rnd.choice(TEAMS) if roll < 0.25 else team
    return KueueCapacity(cqs, lqs)


SEEDS = st.integers(0, 2**32 - 1)


def fleets(max_workloads: int = 8) -> st.SearchStrategy[Fleet]:
    """A fleet built from one drawn seed: one draw per example keeps 500 examples per
    rule fast (drawing every field through Hypothesis costs ~10x more); a failure
    reports the seed, and `make_fleet(seed)` rebuilds the fleet."""
    return st.builds(make_fleet, SEEDS, st.just(max_workloads))


def workloads(i: int) -> st.SearchStrategy[Document]:
    return st.builds(lambda seed: make_workload(random.Random(seed), i), SEEDS)


def make_kueue_fleet(seed: int) -> Fleet:
    """Kueue clusters only, healthy, with room on their nodes, and queued workloads
    (training, batch) of every team: the team queues, not the nodes, are the bound, so
    cohort borrowing by several teams at once is common."""
    rnd = random.Random(seed)
    docs: list[Document] = []
    caps: dict[ClusterName, ClusterCapacity] = {}
    for i in range(rnd.randint(1, 3)):
        name = f"k{i}"
        offers = tuple((f, 4 * per, per) for f, per in sorted(FLAVOURS.items()))
        docs.append(cluster(name, "DE", offers, stack={"kueue": True}))
        nodes = tuple(NodeCapacity(f"{name}-{f}-{j}", Flavour(f), per)
                      for f, per in sorted(FLAVOURS.items()) for j in range(4))
        caps[ClusterName(name)] = ClusterCapacity(ClusterName(name), "Healthy", None, nodes,
                                                  make_kueue(rnd))
    for i in range(rnd.randint(2, 10)):
        count = rnd.choice((1, 2, 4, 4, 8))
        fl = [f for f in sorted(FLAVOURS) if FLAVOURS[f] >= count]
        rnd.shuffle(fl)
        docs.append(workload(f"w{i}", rnd.choice(TEAMS), wtype=rnd.choice(("training", "batch")),
                             replicas=rnd.randint(1, 3), count=count,
                             flavours=tuple(fl[:rnd.randint(1, len(fl))]),
                             priority=rnd.choice((0, 10))))
    if rnd.random() < 0.5:
        docs.append(quota("nlp-team", ("h100-80gb", 64, None), ("l40s-48gb", 64, None),
                          cohort="research"))
    return Fleet(tuple(docs), CapacitySnapshot(caps))


def kueue_fleets() -> st.SearchStrategy[Fleet]:
    return st.builds(make_kueue_fleet, SEEDS)
