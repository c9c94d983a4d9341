"""The placement rules of shared/spec/fleet-repo.md, as properties over random fleets.

Each rule is checked on 500 generated fleets (`strategies.fleets`), against the plan,
independently of how the planner computes it: capacity by an exact search for a packing
of the placed replicas onto the nodes, the choice of flavour and cluster by `explain`'s
full table (every filter and scorer on every cluster) rather than the planner's pruned
walk.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.capacity import CapacitySnapshot, ClusterQueueCapacity, KueueCapacity, QueueQuota
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement import Planner, explain, place
from fleet.placement.incremental import IncrementalPlanner
from fleet.placement.types import Plan, PreviousPlan
from fleet.plan_json import plan_to_json
from fleet.spec import FleetSpec
from tests.unit.fleet_placement.strategies import Fleet, fleets, kueue_fleets, workloads

RULE = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def previous_of(plan: Plan) -> PreviousPlan:
    return {w: p.assignments for w, p in plan.workloads.items() if p.assignments}


def workloads_edited(f: Fleet, data: st.DataObject) -> Fleet:
    """The fleet after one to three workload changes: edited, added or removed."""
    docs = list(f.docs)
    ws = [i for i, d in enumerate(docs) if d.kind == "Workload"]
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from(("edit", "add", "remove")))
        if what == "add" or not ws:
            docs.append(data.draw(workloads(100 + len(docs))))
        elif what == "remove":
            docs.pop(data.draw(st.sampled_from(ws)))
            ws = [i for i, d in enumerate(docs) if d.kind == "Workload"]
        else:
            i = data.draw(st.sampled_from(ws))
            w = docs[i]
            assert w.kind == "Workload"
            new = data.draw(workloads(0))
            assert new.kind == "Workload"
            docs[i] = new.model_copy(update={"metadata": w.metadata})
    return Fleet(tuple(docs), f.capacity)


def packs(frees: list[int], items: list[int]) -> bool:
    """Whether the items (GPUs per replica) can all be put on nodes with these frees."""
    items = sorted(items, reverse=True)
    left = list(frees)

    def go(i: int) -> bool:
        if i == len(items):
            return True
        seen: set[int] = set()
        for j, f in enumerate(left):
            if f >= items[i] and f not in seen:
                seen.add(f)
                left[j] -= items[i]
                if go(i + 1):
                    return True
                left[j] += items[i]
        return False

    return go(0)


@RULE
@given(fleets())
def test_residency_is_never_violated(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    for wid, p in plan.workloads.items():
        for a in p.assignments:
            w = spec.workloads[wid]
            jurisdiction = spec.clusters[a.cluster].spec.jurisdiction
            assert spec.residency.allows(w.spec.placement.data_class, jurisdiction), (wid, a)


@RULE
@given(fleets())
def test_capacity_is_never_exceeded_per_node_and_per_flavour(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    items: dict[tuple[ClusterName, Flavour], list[int]] = defaultdict(list)
    for p in plan.workloads.values():
        for a in p.assignments:
            items[(a.cluster, a.flavour)] += [a.gpus_per_replica] * a.replicas
    for (c, fl), its in items.items():
        nodes = [n for n in f.capacity.get(c).nodes if n.flavour == fl]
        assert sum(its) <= sum(n.free for n in nodes), (c, fl)
        assert packs([n.free for n in nodes], its), (c, fl, its, [n.free for n in nodes])
        usage = plan.usage[c][fl]
        assert usage.allocated == sum(its) <= usage.capacity


@RULE
@given(fleets())
def test_gangs_are_whole_and_spread_stays_within_its_clusters(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    for wid, p in plan.workloads.items():
        if p.status != "Placed":
            assert not p.assignments
            continue
        s = spec.workloads[wid].spec
        assert sum(a.replicas for a in p.assignments) == s.replicas
        assert len({a.cluster for a in p.assignments}) == len(p.assignments)
        spread = s.effective_spread
        assert spread.min_clusters <= len(p.assignments) <= spread.max_clusters
        if s.gang:
            assert len(p.assignments) == 1


@RULE
@given(fleets())
def test_new_placements_respect_health_cordon_taints_and_flavours(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    for wid, p in plan.workloads.items():
        w = spec.workloads.get(wid)
        for a in p.assignments:
            assert w is not None
            c = spec.clusters[a.cluster]
            assert f.capacity.get(a.cluster).health in ("Healthy", "Degraded")
            assert not c.spec.cordoned
            assert a.flavour in w.flavours and c.offer(a.flavour) is not None
            assert a.gpus_per_replica == w.spec.resources.gpu.count
            for t in c.spec.taints:
                assert t.effect == "PreferNoSchedule" or any(
                    tol.tolerates(t) for tol in w.spec.placement.tolerations)
    for wid in spec.invalid:
        assert plan.workloads[wid].status == "Invalid"


@RULE
@given(fleets(), st.data())
def test_the_choice_is_the_best_option_of_the_full_table(f: Fleet, data: st.DataObject
                                                         ) -> None:
    """Earlier flavours first, then the highest total score, ties by cluster name."""
    spec = f.spec()
    if not spec.workloads:
        return
    assert_best_of_full_table(spec, f.capacity, data.draw(st.sampled_from(
        sorted(spec.workloads))))


def assert_best_of_full_table(spec: FleetSpec, capacity: CapacitySnapshot, wid: WorkloadId
                              ) -> None:
    """The planner's pruned walk chose what scoring every option would choose."""
    ex = explain(spec, capacity, wid)
    options = [(v.total, c.cluster, v.flavour, i)
               for c in ex.clusters for i, v in enumerate(c.flavours) if v.feasible]
    w = spec.workloads[wid]
    if w.spec.effective_spread.max_clusters > 1:
        assert (ex.placement.status == "Placed") <= bool(options)
        return
    if not options:
        assert ex.placement.status == "Pending"
        assert ex.placement.reasons[0].message.startswith(f"0/{len(spec.clusters)} clusters")
        return
    assert ex.placement.status == "Placed"
    (a,) = ex.placement.assignments
    best = min(options, key=lambda o: (-(o[0] or 0), o[1], o[3]))
    assert (a.cluster, a.flavour) == (best[1], best[2])
    assert w.flavours.index(a.flavour) == min(o[3] for o in options)


@RULE
@given(fleets(), st.randoms(use_true_random=False))
def test_reordering_the_input_files_changes_nothing(f: Fleet, rnd: object) -> None:
    order = list(range(len(f.docs)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    a, b = f.spec(), f.spec(order)
    pa, pb = place(a, f.capacity, commit="c"), place(b, f.capacity, commit="c")
    assert pa == pb
    assert plan_to_json(pa, a) == plan_to_json(pb, b)


@RULE
@given(fleets(max_workloads=6), st.data())
def test_adding_a_workload_never_moves_another(f: Fleet, data: st.DataObject) -> None:
    spec = f.spec()
    first = place(spec, f.capacity)
    new = data.draw(workloads(99))
    more = Fleet((*f.docs, new), f.capacity).spec()
    second = place(more, f.capacity, previous_of(first))
    for wid, p in first.workloads.items():
        if p.status == "Placed":
            assert second.workloads[wid].assignments == p.assignments, wid
    again = place(spec, f.capacity, previous_of(first))
    assert {w: p.assignments for w, p in again.workloads.items()} == {
        w: p.assignments for w, p in first.workloads.items()}


@RULE
@given(fleets(max_workloads=8), st.data())
def test_a_rebound_planner_plans_the_head_of_a_change_as_a_new_one(
        f: Fleet, data: st.DataObject) -> None:
    """`fleet plan --base --head`: base's planner, rebound to head (workloads edited,
    added or removed), gives exactly a new planner's plan, caches and all."""
    spec = f.spec()
    planner = Planner(spec, f.capacity)
    base = planner.plan({}, commit="b")
    head = workloads_edited(f, data).spec()
    assert planner.same_fleet(head)
    prev = previous_of(base)
    assert planner.rebind(head).plan(prev, commit="h") == place(head, f.capacity, prev,
                                                                 commit="h")


@RULE
@given(st.one_of(fleets(max_workloads=8), kueue_fleets()), st.data())
def test_incremental_replan_equals_a_full_plan(f: Fleet, data: st.DataObject) -> None:
    """Edit, add or remove workloads, or change what runs: replan == full plan."""
    spec = f.spec()
    steady = data.draw(st.booleans())
    base_prev = previous_of(place(spec, f.capacity)) if steady else {}
    inc = IncrementalPlanner(spec, f.capacity, base_prev, commit="c")
    head = workloads_edited(f, data).spec()
    prev = base_prev
    if data.draw(st.booleans()):
        prev = previous_of(place(head, f.capacity, base_prev))
    assert inc.replan(head, prev) == place(head, f.capacity, prev, commit="c")


@RULE
@given(fleets())
def test_quota_is_never_exceeded(f: Fleet) -> None:
    spec = f.spec()
    plan = place(spec, f.capacity)
    used: dict[tuple[str, str], int] = defaultdict(int)
    for wid, p in plan.workloads.items():
        for a in p.assignments:
            used[(wid.split("/")[0], a.flavour)] += a.gpus
    for (team, flavour), gpus in used.items():
        q = spec.quotas.get(team)  # type: ignore[call-overload]
        if q is None:
            continue
        limit = next((g for g in q.spec.gpus if g.flavour == flavour), None)
        assert limit is not None, (team, flavour)
        if q.spec.cohort is None:
            assert gpus <= limit.nominal
        elif limit.borrowing_limit is not None:
            assert gpus <= limit.nominal + limit.borrowing_limit


@RULE
@given(fleets())
def test_every_workload_says_why(f: Fleet) -> None:
    """Rule 7: chosen clusters have a reason; a Pending one has the summary line and a
    reason for every cluster that filtered it out."""
    spec = f.spec()
    plan = place(spec, f.capacity)
    for p in plan.workloads.values():
        assert p.reasons
        if p.status == "Placed":
            explained = {r.cluster for r in p.reasons if r.rule in ("Score", "Spread", "Sticky")}
            assert {a.cluster for a in p.assignments} <= explained
        elif p.status == "Pending":
            head = next(r for r in p.reasons if r.cluster is None and r.message.startswith(
                f"0/{len(spec.clusters)} clusters"))
            assert head.rule
            per_cluster = [r for r in p.reasons if r.cluster is not None]
            assert all(r.rule and r.message for r in per_cluster)


def effective_queues(spec: FleetSpec, k: KueueCapacity
                     ) -> tuple[dict[str, ClusterQueueCapacity], dict[tuple[str, str], str]]:
    """A Kueue cluster's queues as they are once aifleet's apply is done: a TeamQuota
    team without its LocalQueue gets one pointing to the ClusterQueue named after it,
    which, if not there, is the one aifleet renders from the TeamQuota."""
    cqs, lqs = dict(k.cluster_queues), dict(k.local_queues)
    for team, q in spec.quotas.items():
        if (team, team) in lqs:
            continue
        lqs[(team, team)] = team
        if team not in cqs:
            cqs[team] = ClusterQueueCapacity(team, q.spec.cohort, {
                Flavour(g.flavour): QueueQuota(
                    g.nominal, g.borrowing_limit if q.spec.cohort else None)
                for g in q.spec.gpus})
    return cqs, lqs


def kueue_usage(spec: FleetSpec, capacity: CapacitySnapshot, plan: Plan
                ) -> dict[tuple[str, str, str], int]:
    """Per (cluster, ClusterQueue, flavour), what Kueue would hold once every queued
    workload of the plan is admitted: others' reservations plus ours, found from the
    team's LocalQueue independently of the planner. Asserts no queued workload went to
    a Kueue cluster where its LocalQueue names a ClusterQueue that is not there."""
    used: dict[tuple[str, str, str], int] = defaultdict(int)
    queues = {}
    for name, c in capacity.clusters.items():
        if c.kueue is None or not spec.clusters[name].spec.stack.kueue:
            continue
        queues[name] = effective_queues(spec, c.kueue)
        for cq in queues[name][0].values():
            for f, q in cq.flavours.items():
                used[(name, cq.name, f)] += q.used_by_others
    for wid, p in plan.workloads.items():
        w = spec.workloads.get(wid)
        if w is None or w.spec.type == "inference":
            continue
        for a in p.assignments:
            if a.cluster not in queues:
                continue
            cqs, lqs = queues[a.cluster]
            target = lqs.get((w.team, w.team))
            if target is None:
                continue  # no TeamQuota, no queue yet: bounded by the nodes
            assert target in cqs, (wid, a.cluster)
            assert a.flavour in cqs[target].flavours, (wid, a)
            used[(a.cluster, target, a.flavour)] += a.gpus
    return used


@RULE
@given(st.one_of(fleets(), kueue_fleets()))
def test_kueue_team_queues_are_never_exceeded_and_cohort_borrowing_counts_once(
        f: Fleet) -> None:
    """On a Kueue cluster, what the plan sends to a team's queue is what Kueue would
    admit at once: each queue within nominal + borrowingLimit (nominal without a
    cohort), and per cohort what its members use past their guaranteed quota within
    what the members lend -- counted once over the cohort, not once per borrower."""
    spec = f.spec()
    plan = place(spec, f.capacity)
    used = kueue_usage(spec, f.capacity, plan)
    for name, c in f.capacity.clusters.items():
        if c.kueue is None or not spec.clusters[name].spec.stack.kueue:
            continue
        lent: dict[tuple[str, str], int] = defaultdict(int)
        borrowed: dict[tuple[str, str], int] = defaultdict(int)
        for cq in effective_queues(spec, c.kueue)[0].values():
            for fl, q in cq.flavours.items():
                u = used[(name, cq.name, fl)]
                if cq.cohort is None:
                    assert u <= q.nominal, (name, cq.name, fl)
                    continue
                if q.borrowing_limit is not None:
                    assert u <= q.nominal + q.borrowing_limit, (name, cq.name, fl)
                g = q.nominal - q.lending_limit if q.lending_limit is not None else 0
                g = max(0, g)
                lent[(cq.cohort, fl)] += q.nominal - g
                borrowed[(cq.cohort, fl)] += max(0, u - g)
        for k, b in borrowed.items():
            assert b <= lent[k], (name, k)


@RULE
@given(fleets())
def test_inference_is_never_bounded_by_kueue(f: Fleet) -> None:
    """A Deployment is not queued by Kueue: the same fleet without any Kueue data
    places every inference workload alike when no queued workload shares its nodes."""
    spec = f.spec()
    if any(w.spec.type != "inference" for w in spec.workloads.values()):
        return
    plain = CapacitySnapshot({n: type(c)(c.name, c.health, c.unreachable_seconds, c.nodes)
                              for n, c in f.capacity.clusters.items()})
    assert place(spec, f.capacity).workloads == place(spec, plain).workloads
