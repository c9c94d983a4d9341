"""The safety invariants of the controller, in one pure place.

A GitOps controller's first promise is "nothing lost". Every decision that deletes,
moves or refuses something on a cluster is checked here, by plain functions over plain
data (no I/O, no clock: the caller passes what it saw and when), so a table test can
hold each invariant and `docs/safety.md` can name the function and the test.

Sections (one per kind of decision; each function says which invariant it holds):

- deletions: what a commit may delete (empty plans, retiring clusters, mass deletions,
  workloads that are Invalid, unparseable or Pending only because a cluster is away);
- returning clusters: which plan a cluster that was away may be reconciled against;
- tenancy and identity: who may write what, which Cluster files name the same cluster,
  where the fencing generation comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import DEGRADED, PreviousPlan, WorkloadPlacement

# --------------------------------------------------------------------------- deletions


# ------------------------------------------------------------------ returning clusters
#
# A cluster that was away (Unreachable, or not yet listed) kept running what it ran; the
# plan made meanwhile could not see it. Reconciling it against that plan deletes what
# the next plan keeps there (a gang killed, then re-created a second later). So: hold
# it until a plan has seen it answer; that plan takes what still runs there as its
# previous placement (stickiness), and only copies the fresh plan places on other
# reachable clusters are deleted. The same rule decides every delete of a live copy of
# a workload that is still in the repo (stale copies and prune alike).

REACHABLE: frozenset[str] = frozenset({"Healthy", "Degraded"})
"""Health states of a cluster that answers (the others: Unreachable, Unknown)."""

MAY_NOT_RUN_HERE: frozenset[str] = frozenset({"Residency", "Taint", "Selector"})
"""Rules by which a cluster refuses to keep what runs there: residency, a NoExecute
taint (the platform evicts), the workload's own clusterSelector or placement.clusters
(its team moved it). Health, capacity, quota and spread never evict what runs."""


def hold_reconcile(cluster: ClusterName, plan_saw: Mapping[ClusterName, str]) -> str | None:
    """Invariant: a cluster is reconciled only against a plan made while it answered.

    `plan_saw` is each cluster's health in the capacity snapshot the current plan was
    made from. None: reconcile; else why to wait (the caller re-plans on the health
    change and retries shortly)."""
    seen = plan_saw.get(cluster)
    if seen in REACHABLE:
        return None
    return (f"the current plan was made while {cluster} was {seen or 'not yet seen'}; "
            "waiting for a plan made after it answered")


def returned_clusters(plan_saw: Mapping[ClusterName, str],
                      now: Mapping[ClusterName, str]) -> set[ClusterName]:
    """Clusters that answer now but did not when the current plan was made."""
    return {c for c, health in now.items()
            if health in REACHABLE and plan_saw.get(c) not in REACHABLE}


def is_degraded(p: WorkloadPlacement) -> bool:
    """Placed on fewer clusters or replicas than asked: what was left of it was kept."""
    return p.status == "Placed" and any(r.rule == DEGRADED for r in p.reasons)


def previous_with_returned(placed: PreviousPlan, last: Mapping[WorkloadId, WorkloadPlacement],
                           returned_live: PreviousPlan) -> PreviousPlan:
    """The previous plan for the first plan after clusters came back.

    `placed`: the last plan's placements (what the controller passes when nothing came
    back); `last`: that plan; `returned_live`: what runs on the returned clusters
    (`previous_from_live`). A workload the last plan placed completely on other
    clusters failed over: its copy on the returned cluster is stale and goes. Every
    other workload with a copy there -- Pending (it fitted nowhere else), degraded, or
    not in the last plan -- is taken as running there too, so the new plan keeps it
    where it runs when every rule allows it."""
    out = dict(placed)
    back = {a.cluster for assignments in returned_live.values() for a in assignments}
    for wid, live in returned_live.items():
        p = last.get(wid)
        if p is not None and p.status == "Placed" and not is_degraded(p):
            continue
        kept = tuple(a for a in out.get(wid, ()) if a.cluster not in back)
        out[wid] = tuple(sorted((*kept, *live)))
    return out


def keep_live_copy(cluster: ClusterName, placement: WorkloadPlacement | None,
                   reachable: Set[ClusterName]) -> str | None:
    """Invariant: a live copy of a workload still in the repo is deleted only when the
    plan places that workload on other clusters that answer (a completed failover or
    move), or when it may not run where it runs any more (`MAY_NOT_RUN_HERE`). None: the
    copy may be deleted; else why it stays.

    `placement` is the workload's in the current plan, None when the workload is not in
    the repo any more (that deletion is the deletions guards' to judge). A workload
    Pending because a cluster is away or its spread cannot be met is placed nowhere
    new: its live copies are all it has, so they stay -- as when it is Pending for
    capacity or quota after a change: the old copy runs on, the status says Pending.
    """
    if placement is None:
        return None
    if placement.status == "Invalid":
        return "invalid in this commit: keeps its last good state"
    if placement.status == "Pending":
        # Residency is judged for every cluster of a diagnosis; taints and selectors
        # are judged as for keeping only in the first reason, why it could not stay.
        first = placement.reasons[0] if placement.reasons else None
        if any(r.cluster == cluster and r.rule == "Residency" for r in placement.reasons) \
                or (first is not None and first.cluster == cluster
                    and first.rule in MAY_NOT_RUN_HERE):
            return None  # it may not run here at all: fails closed, even its only copy
        return "Pending: placed nowhere else, this copy is all it has"
    if cluster in placement.clusters:
        return "the plan keeps it here"
    if not any(c in reachable for c in placement.clusters):
        return ("placed only on clusters that do not answer "
                f"({', '.join(placement.clusters)}): this copy may be its only one")
    return None


# ---------------------------------------------------------------- tenancy and identity
