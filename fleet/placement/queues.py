"""Kueue's quota per team queue on each Kueue cluster, as the placement pass consumes it.

On a cluster that runs Kueue, a Job or JobSet waits in its LocalQueue until the
ClusterQueue behind it has quota for it, whatever the nodes offer. So a queued workload
(type training or batch: Deployments are not queued) may go to a Kueue cluster only as
far as the free quota of its team's queue there allows:

- its team's LocalQueue is the one aifleet renders and labels the Jobs with
  (`fleet.render.keys.team_queue`: namespace and name are the team's); the LocalQueue
  names the ClusterQueue (`spec.clusterQueue`), as Kueue resolves it;
- a LocalQueue that points to a ClusterQueue that does not exist gets the team nothing
  on that cluster (its Jobs would wait as `Inadmissible`);
- a team without its LocalQueue there yet (a cluster or a TeamQuota aifleet has not
  synced: the first plan of a fleet comes before the first apply) is bounded by the
  queue aifleet is about to apply (`fleet.render.kueue`): with a TeamQuota, a
  ClusterQueue named after the team, in its cohort, of its nominal quota and borrowing
  limit per flavour (`expected`), or the live ClusterQueue of that name if it is there
  already; without a TeamQuota, by the nodes only (its queue holds the cluster's GPUs);
- free quota is Kueue's `available` (kubernetes-sigs/kueue `pkg/cache/resource_node.go`,
  one cohort level, no Cohort objects): a queue's guaranteed quota `g` is `nominal -
  lendingLimit` (0 without a lending limit); the cohort holds the rest of every
  member's nominal (`sum(nominal - g)`) and the members' usage past their guaranteed
  quota (`sum(max(0, usage - g))`); a queue may take its unused guaranteed quota plus
  what the cohort has left, the latter capped by its `borrowingLimit` (`nominal - g -
  max(0, usage - g) + borrowingLimit`). Without a cohort: `nominal - usage`. Usage is
  what others reserve (`QueueQuota.used_by_others`) plus what the plan has charged so far
  (`State.queue_used`), so borrowing from a cohort is counted once whichever member
  borrows.

Lookups are by dict (cluster -> its queues; (cluster, cohort) -> members), built once
per snapshot (the stand-ins: once per Kueue cluster and TeamQuota): a decision reads its
team's queue and, when in a cohort, the cohort's usage, a sum `State` keeps per
(cluster, flavour, cohort) until one of its members is charged (reading it records
every member's key, for the incremental re-plan).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from fleet.capacity import ClusterQueueCapacity, KueueCapacity, QueueQuota
from fleet.ids import ClusterName, Flavour, Team
from fleet.render.keys import team_queue

QueueKey = tuple[ClusterName, str, Flavour]
"""(cluster, Kueue ClusterQueue, flavour): GPUs the plan has charged to that queue."""
CohortKey = tuple[ClusterName, Flavour, str]
"""(cluster, flavour, cohort)."""
Member = tuple[QueueKey, int, int]
"""A cohort member for one flavour: its queue key, guaranteed quota, others' usage."""


def recorded_queue(key: QueueKey) -> tuple[str, str, str]:
    """The key a pass records for a queue's usage (`fleet.placement.state.Key`): a
    cluster name, a DNS label, has no "/"."""
    return ("k", f"{key[0]}/{key[1]}", key[2])


def queue_key(k: tuple[str, str, str]) -> QueueKey:
    """The inverse of `recorded_queue`."""
    cluster, _, cq = k[1].partition("/")
    return (ClusterName(cluster), cq, Flavour(k[2]))


class Charges(Protocol):
    """What `Queues.available` reads of the pass's state (`fleet.placement.state.State`)."""

    def queue_used(self, key: QueueKey) -> int: ...

    def cohort_used(self, key: CohortKey, members: tuple[Member, ...],
                    recorded: tuple[tuple[str, str, str], ...]) -> int:
        """Sum over the members of their usage past their guaranteed quota."""

MISSING: Final = ""
"""`queue_of` of a team whose LocalQueue points to a ClusterQueue that is not there."""


class Queues:
    """The Kueue clusters of one snapshot, indexed for `queue_of` and `available`.

    `expected`: per team with a TeamQuota, the ClusterQueue aifleet renders for it
    (named after the team); it stands in on a Kueue cluster where neither the team's
    LocalQueue nor that ClusterQueue is there yet."""

    __slots__ = ("_cohorts", "_kueue", "_members", "_of")

    def __init__(self, kueue: Mapping[ClusterName, KueueCapacity],
                 expected: Mapping[Team, ClusterQueueCapacity]) -> None:
        self._kueue: dict[ClusterName, KueueCapacity] = {}
        for cluster, k in sorted(kueue.items()):
            missing = [t for t in expected if team_queue(t) not in k.local_queues]
            if missing:  # the LocalQueue aifleet applies points to the team's queue
                cqs = dict(k.cluster_queues)
                for t in missing:
                    cqs.setdefault(t, expected[t])
                k = KueueCapacity(cqs, {**k.local_queues,
                                        **{team_queue(t): str(t) for t in missing}})
            self._kueue[cluster] = k
        self._of: dict[tuple[ClusterName, Team], str | None] = {}
        self._members: dict[CohortKey, tuple[tuple[Member, ...], int,
                                             tuple[tuple[str, str, str], ...]]] = {}
        """Per cohort and flavour: its members, its subtree quota (what they lend) and
        their recorded keys; made on first use."""
        self._cohorts: dict[tuple[ClusterName, str], tuple[ClusterQueueCapacity, ...]] = {}
        for cluster, k in self._kueue.items():
            for _, cq in sorted(k.cluster_queues.items()):
                if cq.cohort is not None:
                    key = (cluster, cq.cohort)
                    self._cohorts[key] = (*self._cohorts.get(key, ()), cq)

    def __bool__(self) -> bool:
        return bool(self._kueue)

    def runs_kueue(self, cluster: ClusterName) -> bool:
        return cluster in self._kueue

    def queue_of(self, cluster: ClusterName, team: Team) -> str | None:
        """The ClusterQueue the team's LocalQueue points to on this cluster (or the one
        aifleet is about to apply for it); None where nothing bounds it (no Kueue, or a
        team without TeamQuota and no queue yet); `MISSING` where the LocalQueue points
        to a ClusterQueue that is not there."""
        k = (cluster, team)
        if k in self._of:
            return self._of[k]
        found: str | None = None
        kueue = self._kueue.get(cluster)
        if kueue is not None:
            cq = kueue.local_queues.get(team_queue(team))
            if cq is not None:
                found = cq if cq in kueue.cluster_queues else MISSING
        self._of[k] = found
        return found

    def pointed_to(self, cluster: ClusterName, team: Team) -> str | None:
        """The ClusterQueue the team's LocalQueue names there, there or not."""
        kueue = self._kueue.get(cluster)
        return kueue.local_queues.get(team_queue(team)) if kueue is not None else None

    def quota(self, cluster: ClusterName, cq: str, flavour: Flavour) -> QueueQuota | None:
        return self._kueue[cluster].cluster_queues[cq].flavours.get(flavour)

    def cohort(self, cluster: ClusterName, cq: str) -> str | None:
        return self._kueue[cluster].cluster_queues[cq].cohort

    def available(self, cluster: ClusterName, cq: str, flavour: Flavour,
                  state: Charges) -> int:
        """GPUs of `flavour` the ClusterQueue may still admit (Kueue's `available`, see
        the module docstring), given what the plan has charged so far (`state`);
        negative when it is over-admitted. In a cohort, the members' usage past their
        guarantee is one cached sum per (cluster, flavour, cohort) in `state`, made
        again only after one of them is charged."""
        me = self._kueue[cluster].cluster_queues[cq]
        q = me.flavours.get(flavour)
        if q is None:
            return 0
        usage = q.used_by_others + state.queue_used((cluster, cq, flavour))
        if me.cohort is None:
            return q.nominal - usage
        g = _guaranteed(q)
        key = (cluster, flavour, me.cohort)
        members, subtree, recorded = self._cohort(key)
        parent = subtree - state.cohort_used(key, members, recorded)
        if q.borrowing_limit is not None:
            parent = min(q.nominal - g - max(0, usage - g) + q.borrowing_limit, parent)
        return max(0, g - usage) + parent

    def _cohort(self, key: CohortKey) -> tuple[tuple[Member, ...], int,
                                               tuple[tuple[str, str, str], ...]]:
        found = self._members.get(key)
        if found is None:
            cluster, flavour, cohort = key
            members: list[Member] = []
            subtree = 0
            for m in self._cohorts[(cluster, cohort)]:
                mq = m.flavours.get(flavour)
                if mq is None:
                    continue
                g = _guaranteed(mq)
                members.append(((cluster, m.name, flavour), g, mq.used_by_others))
                subtree += mq.nominal - g
            found = self._members[key] = (
                tuple(members), subtree, tuple(recorded_queue(k) for k, _, _ in members))
        return found

    def charge(self, cluster: ClusterName, team: Team, flavour: Flavour
               ) -> QueueKey | None:
        """The queue key a queued workload's GPUs on this cluster count against."""
        cq = self.queue_of(cluster, team)
        if not cq:
            return None
        return (cluster, cq, flavour)


def _guaranteed(q: QueueQuota) -> int:
    """`guaranteedQuota`: what the queue does not lend its cohort."""
    return max(0, q.nominal - q.lending_limit) if q.lending_limit is not None else 0
