"""A commit's rollout: when the head counts as applied, and its commit statuses.

A Manager-owned part, told by the cluster reconciler when a cluster's pass is done
(`cluster_done`) or left objects unapplied (`cluster_failed`). Once every reachable,
unsuspended cluster runs the head's desired set, the head is the applied commit
(`applied_commit`, and `on_applied` keeps it in the source guard). With `--forge`,
each cluster's rollout of a commit is posted as a commit status, by the leader only.

"Every cluster" is every Cluster file of the spec this replica applies, connected or
not: one not connected yet (still connecting at start, or of a shard just taken) has
applied nothing, so the head waits for it -- else status, readiness, the metric, the
forge and the source guard's base said "applied" before anything ran there. Only a
cluster known not to be reachable is not waited for: Unreachable, or whose connection
failed (`ClusterSet.connect_errors`: a bad kubeconfig entry, a refused twin; status
says it `ConnectFailed`). With --shards, a replica that holds no shard applies nothing
and so applies no commit: its `applied_commit` stays what it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio.abc
import structlog

from clusters.adapter import ClusterAdapter
from controllers.forge import CommitStatusPoster, StatusState
from controllers.runtime.desired import DesiredState
from controllers.runtime.suspension import Suspensions
from controllers.settings import Settings
from controllers.status.metrics import ControllerMetrics
from fleet.ids import ClusterName

log = structlog.get_logger()


class Rollout:
    def __init__(self, settings: Settings, *, desired: DesiredState,
                 adapters: Mapping[str, ClusterAdapter], suspensions: Suspensions,
                 applied_signature: Mapping[str, object], metrics: ControllerMetrics,
                 may_act: Callable[[], bool],
                 task_group: Callable[[], anyio.abc.TaskGroup | None],
                 on_applied: Callable[[str | None], None]) -> None:
        self.settings = settings
        self.desired = desired
        self.adapters = adapters
        self.suspensions = suspensions
        self.applied_signature = applied_signature
        """Per cluster, the desired set its last pass applied (the reconciler's)."""
        self.metrics = metrics
        self.may_act = may_act
        self.task_group = task_group
        self.on_applied = on_applied
        """Told each commit that becomes the applied one (the source guard keeps it)."""
        self.applied_commit: str | None = None
        self.forge_status = forge_status(settings)
        """Commit statuses per cluster on the forge (`--forge`), or None."""
        self._failures: dict[tuple[str, str], int] = {}
        """(head, cluster) -> failed applies in a row, for the commit status."""
        self._pending: set[str] = set()
        """`_not_done`'s clusters, for the spec, plan, `DesiredState.version` and
        cluster set in `_of`."""
        self._of: tuple[object, object, int, object] | None = None
        self.owns: Callable[[str], bool] = lambda _name: True
        """With --shards: the clusters this replica applies (another's are not waited
        for: `controllers.runtime.shards`)."""
        self.applies: Callable[[], bool] = lambda: True
        """With --shards: this replica holds a shard. One that holds none (before its
        first Lease round, or a spare) has applied nothing: it says no commit applied."""
        self.unconnectable: Callable[[str], bool] = lambda _name: False
        """A cluster whose connection failed (`ClusterSet.connect_errors`): not waited
        for while it is not connected, as an Unreachable one is not."""
        self._absent: tuple[str, ...] = ()
        """The spec's clusters not connected, made with `_pending`."""

    def cluster_done(self, name: str) -> None:
        not_done = self._not_done(name)
        plan, head = self.desired.plan, self.desired.head
        if plan is None or plan.commit != head:
            return  # a new commit is adopted but not planned yet
        if name and head:
            self._failures.pop((head, name), None)
            # from the plan's index by cluster: O(workloads here), not O(the fleet's)
            # per finished pass (only a Placed workload has assignments)
            placed = len(self.desired.placed_on(ClusterName(name)))
            self.post_status(head, name, "success",
                             f"applied: {placed} workload{'' if placed == 1 else 's'}")
        for cname in not_done:
            adapter = self.adapters.get(cname)
            if adapter is None or adapter.health_state == "Unreachable" or \
                    cname in self.suspensions.clusters:
                continue  # a suspended cluster is left as it is on purpose
            if not self.owns(cname):
                continue  # --shards: another replica applies it
            return
        if self.applied_commit != head and self._waits_unconnected():
            return
        if self.applied_commit != head:
            log.info("commit_applied", commit=head)
            if head:
                self.metrics.commit_done(head)
        self.applied_commit = head
        self.on_applied(head)

    def _waits_unconnected(self) -> bool:
        """The head is not applied yet for want of a connection: this replica holds no
        shard, or a cluster of its own in the spec is not connected and not known to be
        unconnectable (nor suspended). Asked only until the head is applied, over the
        spec's unconnected clusters (none once all are connected): not O(clusters) per
        pass."""
        if not self.applies():
            return True
        return any(self.owns(c) and not self.unconnectable(c)
                   and c not in self.suspensions.clusters for c in self._absent)

    def _not_done(self, name: str) -> set[str]:
        """The connected clusters whose last applied desired set is not the one they
        should run now (`DesiredState.signature`), kept between passes: rebuilt when
        what signatures are made of or the set of clusters changes (once per plan or
        commit), else only `name`'s entry is looked at again (its pass just ended, the
        only write to its applied signature). Asking every cluster's signature after
        each pass was O(placements of the fleet) per pass once every cluster was done,
        O(clusters x placements) per round (issue 22, item 2)."""
        d = self.desired
        names = getattr(self.adapters, "version", None)
        if names is None:  # a plain mapping (tests): compare the names themselves
            names = frozenset(self.adapters)
        of = self._of
        if of is None or of[0] is not d.spec or of[1] is not d.plan or \
                of[2] != d.version or of[3] != names:
            self._of = (d.spec, d.plan, d.version, names)
            self._pending = {c for c in self.adapters
                             if self.applied_signature.get(c) != d.signature(ClusterName(c))}
            self._absent = () if d.spec is None else \
                tuple(sorted(c for c in d.spec.clusters if c not in self.adapters))
        elif name in self.adapters:
            if self.applied_signature.get(name) == d.signature(ClusterName(name)):
                self._pending.discard(name)
            else:
                self._pending.add(name)
        return self._pending

    def cluster_failed(self, name: str, why: str) -> None:
        """A pass left objects of the head commit unapplied on `name`: after
        `status_failure_after` such passes in a row (a transient error is not a failed
        rollout), the cluster's commit status turns from pending to failure with the
        error (and to success when a retry gets them in)."""
        plan, head = self.desired.plan, self.desired.head
        if plan is None or plan.commit != head or not head:
            return
        key = (head, name)
        self._failures = {k: n for k, n in self._failures.items()
                          if k[0] == key[0]}  # an older head's count is moot
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if failures >= self.settings.status_failure_after:
            self.post_status(head, name, "failure", f"apply failed: {why}")

    def timed(self, name: str, what: str, seconds: float) -> None:
        if what == "apply":
            self.metrics.apply.labels(name).observe(seconds)
            return
        self.metrics.reconcile.labels(name).observe(seconds)
        self.metrics.reconciles.labels(name, "failed" if what == "failed" else "ok").inc()

    def post_status(self, sha: str, cluster: str, state: StatusState,
                    description: str) -> None:
        """Report a cluster's rollout of `sha` on the forge, without blocking the loop.

        Only the leader reports; the poster posts a status only when it changes and
        logs (never raises) a failed post, so the forge can never stop a rollout."""
        tg = self.task_group()
        if self.forge_status is None or tg is None or not self.may_act():
            return
        tg.start_soon(self.forge_status.post_async, sha, cluster, state, description)


def forge_status(settings: Settings) -> CommitStatusPoster | None:
    """The `--forge` poster; a misconfiguration is said at start, and posting is off."""
    if settings.forge is None:
        return None
    from controllers.forge import ForgeError, client_from_env

    if not settings.forge_repo:
        log.error("forge_status_disabled", forge=settings.forge,
                  error="--forge needs --forge-repo")
        return None
    try:
        client = client_from_env(settings.forge, settings.forge_repo, settings.forge_url)
    except ForgeError as e:
        log.error("forge_status_disabled", forge=settings.forge, error=str(e))
        return None
    log.info("forge_status_enabled", forge=settings.forge, repo=settings.forge_repo)
    return CommitStatusPoster(client)
