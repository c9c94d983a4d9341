"""The safety invariants of the controller, in one pure place.

A GitOps controller's first promise is "nothing lost". Every decision that deletes,
moves or refuses something on a cluster is checked here, by plain functions over plain
data (no I/O, no clock: the caller passes what it saw and when), so a table test can
hold each invariant and `docs/safety.md` can name the function and the test.

Sections (one per kind of decision; each function says which invariant it holds):

- deletions: what a commit may delete (empty plans, retiring clusters, mass deletions,
  workloads that are Invalid, unparseable or Pending only because a cluster is away);
- returning clusters: which plan a cluster that was away may be reconciled against,
  and when a moved gang may start on its new cluster;
- tenancy and identity: who may write what, which Cluster files name the same cluster,
  where the fencing generation comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fleet.ids import ClusterName, WorkloadId, workload_id

if TYPE_CHECKING:  # the models import these rules, and placement imports the models
    from fleet.placement.types import PreviousPlan, WorkloadPlacement

# --------------------------------------------------------------------------- deletions
#
# A commit may delete what runs only within limits it cannot cross by accident: a
# folder move, a deleted `clusters/` or a bad script looks like "remove everything".
# `held_deletions` is the one decision; the controller holds the whole commit when it
# says so (the last applied commit keeps being served) until a later commit carries
# the allowance in its head commit message, or the change is reverted.

ALLOW_RETIRE = "retire"
"""`Fleet-Allow: retire`: retire more clusters in one commit than the limit."""
ALLOW_MASS_DELETION = "mass-deletion"
"""`Fleet-Allow: mass-deletion`: delete above the fraction, or leave an empty fleet."""
TRAILER = "fleet-allow"

HoldReason = Literal["EmptyFleet", "RetireLimit", "MassDeletion"]


@dataclass(frozen=True, slots=True)
class DeletionLimits:
    max_retire_per_commit: int = 1
    """Clusters one commit may retire (remove the Cluster file of) without an allowance."""
    max_deletion_fraction: float = 0.3
    """Above this share of a cluster's or the fleet's live workloads a deletion waits..."""
    min_deletions: int = 3
    """...and only when it deletes more than this many workloads too: deleting 1 of 2
    is an ordinary change on a small fleet, not a mass deletion."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a commit's deletions wait, and what allows them."""

    reason: HoldReason
    message: str
    clusters: tuple[str, ...]
    workloads: int
    """How many live workloads the commit would delete (or drain)."""
    allow: str
    """The allowance (`Fleet-Allow: <allow>`) that lets it through."""


def allowances(message: str) -> frozenset[str]:
    """The `Fleet-Allow:` values in a commit message's trailers (its last paragraph):
    `Fleet-Allow: retire, mass-deletion` or one per line; case-insensitive."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return frozenset()
    out: set[str] = set()
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == TRAILER:
            out |= {v.strip().lower() for v in value.split(",") if v.strip()}
    return frozenset(out)


def held_deletions(live: Mapping[str, Set[str]], *, clusters_after: Set[str],
                   workloads_after: Set[str], protected: Set[str] = frozenset(),
                   allow: Set[str] = frozenset(),
                   limits: DeletionLimits = DeletionLimits(),
                   kept: Mapping[str, Set[str]] | None = None) -> tuple[Hold, ...]:
    """What of a new commit's deletions must wait; () when it may be applied.

    `live`: every cluster of the applied commit -> the workload ids running there now;
    `clusters_after`, `workloads_after`: the new commit's clusters and valid workloads;
    `protected`: workloads still in the repo but Invalid (never deleted, never counted);
    `allow`: the head commit's allowances; `kept`, when the new commit's plan is known:
    per cluster, what that plan keeps there (anything else running there is deleted or
    moved away by the commit; without it, only workloads gone from the repo are).
    Invariants held:

    - a commit that leaves no cluster or no valid workload while workloads run
      (`EmptyFleet`) needs `mass-deletion`;
    - retiring more than `max_retire_per_commit` clusters at once (`RetireLimit`) needs
      `retire`;
    - pruning more than `min_deletions` workloads AND more than
      `max_deletion_fraction` of a cluster's live workloads, or (prunes and drains of
      retired clusters together) of the fleet's (`MassDeletion`), needs
      `mass-deletion`; moving a workload away from a cluster counts as deleting it
      there. A retired cluster's workloads are re-placed, not lost: they count towards
      the fleet's share only, the retire limit governs the cluster.
    """
    holds: list[Hold] = []
    # Sets made once, not once per cluster: `set(workloads_after)` per cluster was
    # O(clusters x workloads), 50 million steps a commit at 1,000 x 50,000 (issue 22).
    protected = frozenset(protected)
    after = frozenset(workloads_after)
    running = {c: set(ws) - protected for c, ws in sorted(live.items())}
    total = len(set().union(*live.values())) if live else 0
    retired = sorted(c for c in live if c not in clusters_after)
    if total and (not clusters_after or not workloads_after) \
            and ALLOW_MASS_DELETION not in allow:
        what = "no cluster" if not clusters_after else "no valid workload"
        holds.append(Hold("EmptyFleet", (
            f"the commit leaves {what} while {total} workload{_s(total)} run: held, "
            f"nothing deleted; to apply it, add the trailer "
            f"'Fleet-Allow: {ALLOW_MASS_DELETION}' to a later commit's message, or "
            "revert it"), tuple(sorted(live)), total, ALLOW_MASS_DELETION))
    if len(retired) > limits.max_retire_per_commit and ALLOW_RETIRE not in allow:
        drained = len(set().union(*(running[c] for c in retired)))
        holds.append(Hold("RetireLimit", (
            f"the commit retires {len(retired)} clusters ({', '.join(retired)}; at most "
            f"{limits.max_retire_per_commit} per commit), draining {drained} "
            f"workload{_s(drained)}: held; to apply it, add the trailer "
            f"'Fleet-Allow: {ALLOW_RETIRE}' to a later commit's message, or revert it"),
            tuple(retired), drained, ALLOW_RETIRE))
    gone_from = set(retired)
    pruned = {c: ws - (after if kept is None else set(kept.get(c, ())))
              for c, ws in running.items() if c not in gone_from}
    over = [c for c, ws in pruned.items()
            if _too_many(len(ws), len(live[c]), limits)]
    gone = set().union(*pruned.values(), *(running[c] for c in retired)) if live else set()
    fleet_over = _too_many(len(gone), total, limits)
    if (over or fleet_over) and ALLOW_MASS_DELETION not in allow:
        where = ", ".join(f"{c} {len(pruned[c])}/{len(live[c])}" for c in over)
        holds.append(Hold("MassDeletion", (
            f"the commit would delete or move away {len(gone)} of {total} live workloads"
            + (f" ({where})" if where else "")
            + f"; above {limits.max_deletion_fraction:.0%} (and more than "
            f"{limits.min_deletions}): held, nothing deleted; to apply it, add the "
            f"trailer 'Fleet-Allow: {ALLOW_MASS_DELETION}' to a later commit's message, "
            "or revert it"), tuple(over or sorted(live)), len(gone), ALLOW_MASS_DELETION))
    return tuple(holds)


def _too_many(deleted: int, live: int, limits: DeletionLimits) -> bool:
    return deleted > limits.min_deletions and deleted > limits.max_deletion_fraction * live


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def drainable(live: Set[str], protected: Set[str]) -> set[str]:
    """What a drain (a retiring cluster) may delete of what runs there: never the copy
    of a workload that is Invalid in the applied commit (its last good state); that
    cluster then stays retiring, and says so, until the workload is valid or gone."""
    return set(live) - set(protected)


def invalid_copy_kept(last_allowed_here: bool | None) -> bool:
    """Whether prune leaves an Invalid workload's live copy alone on a cluster.

    Invariant: an Invalid workload keeps its last good state (its file broke, or a
    guardrail refused its change) -- except where residency now forbids it: residency
    is never violated, whatever else happens. `last_allowed_here`: whether the policy in
    force allows the data class of its last valid version in this cluster's
    jurisdiction (None when that version is not known: kept)."""
    return last_allowed_here is not False


def residency_forbids(allowed: bool | None) -> bool:
    """Whether a live copy goes first, before anything else is applied on its cluster.

    Invariant: residency is never violated, whatever else happens. A copy whose
    dataClass (as its workload last read valid: in the repo, Invalid now, or removed
    from it) the policy in force does not allow in its cluster's jurisdiction is
    deleted on its own, ahead of the apply -- so neither a failed apply holding the
    prune back, nor the apply layer's refusal to prune a cluster empty, nor an Invalid
    workload's last good state, nor a suspension keeps it there. `allowed`: the policy's
    answer (None: the dataClass is not known, so it is not judged)."""
    return allowed is False


def invalid_copy_stale(cluster: str, last_placed: Iterable[str] | None,
                       running_on: Set[str]) -> bool:
    """Whether an Invalid workload's live copy on `cluster` is a stale one.

    Invariant: an Invalid workload keeps its last good state, which is where its last
    valid placement put it (`last_placed`). A copy elsewhere -- left on a cluster that
    was away while the workload failed over, found when it returns -- is not that
    state: it goes once a cluster of the last placement answers, so a gang never runs
    twice because its file broke meanwhile. `running_on`: the clusters that answer and
    run a copy now; the copy here goes only while one of the last placement's clusters
    is among them (never the only copy). Unknown last placement: never stale."""
    placed = set(last_placed or ())
    return bool(placed) and cluster not in placed and bool(placed & set(running_on))


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


def hold_for_head(plan_commit: str | None, head: str | None) -> str | None:
    """Invariant: a cluster is reconciled only against the plan of the adopted commit.

    The objects are rendered from the adopted commit's workloads at the current plan's
    assignments: a plan made for an earlier commit (made while the next one was
    adopted, or not made yet) would put the new intent on the old sizes and stamp it
    with the new commit, which the status then calls synced. None: reconcile; else why
    to wait (the placement loop plans each adopted commit)."""
    if plan_commit == head:
        return None
    return (f"the current plan is of commit {(plan_commit or '-')[:12]}, not of the "
            f"adopted {(head or '-')[:12]}: waiting for its plan")


def returned_clusters(plan_saw: Mapping[ClusterName, str],
                      now: Mapping[ClusterName, str]) -> set[ClusterName]:
    """Clusters that answer now but did not when the current plan was made."""
    return {c for c, health in now.items()
            if health in REACHABLE and plan_saw.get(c) not in REACHABLE}


def is_degraded(p: WorkloadPlacement) -> bool:
    """Placed on fewer clusters or replicas than asked: what was left of it was kept."""
    from fleet.placement.types import DEGRADED  # see the TYPE_CHECKING import

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


STALE_RETRY_FIRST = 0.25
STALE_RETRY_CAP = 1.0
"""Seconds before a stale copy whose deletion failed is tried again (doubling from
the first, up to the cap)."""


def stale_retry_after(failures: int, retry_after: float | None = None) -> float:
    """When to try again to delete a failed-over workload's stale copy on a cluster
    that answers but refused the delete (`failures` in a row, >= 1; `retry_after`: what
    the API server asked for, if anything).

    Invariant: a gang whose failover completed runs twice no longer than the returned
    cluster refuses the delete -- so the delete is retried within a second, never backed
    off to a minute as a failed apply is (the work queue's per-key backoff): one DELETE
    a second is cheap next to a second copy of a training gang (two writers to its
    checkpoints, twice its GPUs)."""
    delay: float = min(STALE_RETRY_CAP, STALE_RETRY_FIRST * 2.0 ** max(0, failures - 1))
    return max(delay, retry_after or 0.0)


# Gangs never run twice. A gang (a training Job or a JobSet: its pods must all run
# together) on two clusters at once is two writers to one checkpoint and twice its GPUs.
# When the plan moves one between two clusters that both answer (a team's
# `placement.clusters`, a relabel that residency refuses, a retired cluster), the two
# reconciles run in parallel; nothing but this rule orders them. So the new copy is
# created only once the old one is gone: break before make. Kubernetes orders a
# StatefulSet's pods the same way and for the same reason -- at most one pod per
# identity, a replacement only once the old pod is confirmed gone, never merely because
# its node stopped answering (kubernetes/website
# content/en/docs/tasks/run-application/force-delete-stateful-set-pod.md). A copy on a
# cluster that does not answer cannot be deleted: there the failover grace decides
# (`keep_live_copy`), as before, and the stale copy goes first when it returns.

TERMINAL_POD_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})
"""Pod phases whose containers have all stopped: such a pod runs nothing any more."""


def copy_still_running(objects_listed: bool, pod_phases: Iterable[str]) -> bool:
    """Whether a cluster that answers still holds a copy of a workload: its objects
    (the Job, the JobSet) are still listed there, or some of its pods have not
    terminated (being deleted is not terminated: a pod runs through its grace period).
    The delete of a Job returns at once while its pods terminate after it."""
    return objects_listed or any(p not in TERMINAL_POD_PHASES for p in pod_phases)


def gang_start_waits(*, gang: bool, runs_here: bool, held_elsewhere: Set[str]) -> str | None:
    """Invariant: a gang never starts on a cluster while another cluster that answers
    still holds a copy of it (`copy_still_running`); None: it may start here, else why
    it waits.

    `held_elsewhere`: those other clusters (the caller leaves out the clusters that do
    not answer: a failover does not wait for them). A copy already running here is not
    held back (it is not started here); the one elsewhere goes as a stale copy, first
    thing on its own cluster. Workloads that are not gangs (inference) may overlap
    while they move: two serving copies for a moment is what a rollout does anyway."""
    if not gang or runs_here or not held_elsewhere:
        return None
    return (f"waits for its copy on {', '.join(sorted(held_elsewhere))} to be deleted "
            "first: a gang never runs on two clusters")


def suspension_shields(residency_allows: bool | None) -> bool:
    """Invariant: an operator's suspension (`fleet suspend`) shields a suspended
    workload's live copy on a cluster from the controller -- no apply, prune, stale-copy
    delete, drain or drift correction -- except where the residency policy in force no
    longer allows its data in that cluster's jurisdiction (`residency_allows` False):
    residency fails closed, and a suspension never keeps data where policy forbids it.
    None: the workload is no longer in the repo (its removal waits for the resume)."""
    return residency_allows is not False


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
        # (here, not at the top: the models import these rules, placement the models)
        from fleet.placement.types import reasons_about

        first = placement.reasons[0] if placement.reasons else None
        here = reasons_about(placement.reasons, cluster)  # not every cluster's reason
        if any(r.rule == "Residency" for r in here) \
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
#
# A cluster is its API server: two Cluster files whose contexts reach the same server
# are one cluster under two names (one labelled DE, really the US cluster, say). Each
# would prune the other's workloads, and residency could be "satisfied" by the twin.
# Both are refused: not connected, nothing written there, nothing new placed there.


def server_identity(server: str) -> str:
    """The identity of a kubeconfig `server` URL: scheme and host lowercased, the
    scheme's default port and a trailing slash dropped, so spellings of one server
    compare equal."""
    scheme, sep, rest = server.strip().partition("://")
    if not sep:
        scheme, rest = "https", server.strip()
    scheme = scheme.lower()
    host, slash, path = rest.partition("/")
    host = host.lower().rpartition("@")[2]
    default = {"https": ":443", "http": ":80"}.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    path = (slash + path).rstrip("/")
    return f"{scheme}://{host}{path}"


def shared_servers(servers: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Cluster name -> every cluster on the same API server (itself included, sorted),
    for the clusters that share their server with another; `servers` maps each Cluster
    file's name to its context's server URL. These clusters must all be refused."""
    by_server: dict[str, list[str]] = {}
    for name in sorted(servers):
        by_server.setdefault(server_identity(servers[name]), []).append(name)
    return {name: tuple(names) for names in by_server.values() if len(names) > 1
            for name in names}


# Tolerations. Kubernetes lets `{operator: Exists}` without a key tolerate every taint;
# a workload author (any team) would then pass the taints the platform sets on a whole
# cluster to keep workloads off it. Keys in the aifleet.dev domain (`aifleet.dev/...`,
# `<anything>.aifleet.dev/...`) are the fleet's own taints, for safety and residency
# (a quarantined cluster, a residency hold): only a toleration naming the key passes.

RESERVED_DOMAIN = "aifleet.dev"
"""Label, annotation and taint keys under this prefix (or a subdomain of it) are the
controller's: its inventory (`aifleet.dev/managed-by`, `aifleet.dev/workload`), the
fencing generation, the source commit, the fleet's own taints. A tenant who could set
them could adopt, orphan or fence objects it does not own, or pass a taint meant to
keep it out."""


def in_reserved_domain(key: str) -> bool:
    """Whether a label/annotation/taint key has the controller's prefix
    (`aifleet.dev/...` or `<sub>.aifleet.dev/...`, any case)."""
    prefix, sep, _name = key.rpartition("/")
    prefix = prefix.lower()
    return bool(sep) and (prefix == RESERVED_DOMAIN or prefix.endswith(f".{RESERVED_DOMAIN}"))


def reserved_taint(key: str) -> bool:
    """Whether a taint key is one of the fleet's own (the aifleet.dev domain)."""
    return in_reserved_domain(key)


def wildcard_tolerates(taint_key: str) -> bool:
    """Whether a toleration without a key (`operator: Exists`) tolerates this taint:
    every taint but the fleet's own."""
    return not reserved_taint(taint_key)


# Fencing. Only the holder of the Lease may write, and a deposed leader (paused, then
# resumed still believing it leads) must not undo its successor's writes. The
# generation that decides it comes from the Lease, which lives in the controller's own
# namespace, never from an annotation on objects tenants can edit: an annotation
# `aifleet.dev/lease-generation: "999"` on a tenant's Deployment decides nothing.


def fence_refusal(ours: int, lease_holder: str | None, lease_generation: int | None,
                  identity: str) -> str | None:
    """None when a writer of generation `ours` (identity `identity`) may write, given
    the Lease as last read; else why not."""
    if lease_generation is None:
        return "the Lease cannot be read: not writing"
    if lease_holder != identity:
        return f"the Lease is held by {lease_holder!r}, not by us ({identity!r})"
    if lease_generation != ours:
        return f"the Lease is at generation {lease_generation}; we are {ours}"
    return None


def prune_held_back(failed: Iterable[str | None]) -> frozenset[str] | None:
    """The workloads whose objects a cluster's prune must leave alone because an apply
    of theirs failed in the same pass (`failed`: the workload label of each failed
    object, None for a Namespace or an unlabelled object); None: prune nothing, since
    it is not known whose objects are safe. One failed object -- which a tenant can
    cause -- must not stop the prune of every other workload on the cluster."""
    labels = list(failed)
    if any(label is None for label in labels):
        return None
    return frozenset(label for label in labels if label)


# Tenants.
#
# A tenant is a team folder, `workloads/<team>/`: what it writes lands in namespace
# <team> of every cluster the plan picks, so the folder decides the namespace and the
# id, never a field of the file (a file cannot speak for another team's workload), and
# the names the controller itself lives by (system namespaces, the `aifleet.dev` label
# and annotation prefix) are out of every tenant's reach.

SYSTEM_NAMESPACES = frozenset({"default", "aifleet-system"})
"""Namespaces no tenant may use, besides those starting with `SYSTEM_PREFIXES`."""
SYSTEM_PREFIXES = ("kube-", "aifleet-", "openshift-")
"""Kubernetes' own (`kube-system`, `kube-public`, `kube-node-lease`), the controller's
(`aifleet-system` holds the Lease and the shared plan) and a distribution's."""
WORKLOAD_SUFFIXES = (".yaml", ".yml")


def tenant_namespace_problem(team: str, controller_namespace: str | None = None
                             ) -> str | None:
    """Why `workloads/<team>/` may not hold workloads, or None when it may.

    Invariant: the controller never writes into (or labels as managed) a namespace it
    does not own: kube-*, default, aifleet-*, openshift-*, and its own namespace
    (`controller_namespace`, `--namespace`: its Lease, its state and the members'
    credentials Secrets live there, so a tenant's pods there could read them)."""
    if team in SYSTEM_NAMESPACES or team.startswith(SYSTEM_PREFIXES):
        return (f"namespace {team} is reserved to the cluster or the controller "
                f"(kube-*, default, aifleet-*, openshift-*): a team folder may not use it")
    if controller_namespace is not None and team == controller_namespace:
        return (f"namespace {team} is the controller's own (--namespace: its Lease, state "
                "and the members' credentials Secrets live there): a team folder may not "
                "use it")
    return None


def reserved_key_problem(key: str) -> str | None:
    """Why a tenant may not set the label or annotation `key`, or None when it may.

    Invariant: no Workload file sets a key with the controller's prefix (`aifleet.dev/`
    or `<sub>.aifleet.dev/`), so every such key on a cluster was written by the
    controller."""
    if in_reserved_domain(key):
        return (f"{key}: the {RESERVED_DOMAIN}/ prefix is reserved to the controller; "
                "a workload may not set it")
    return None


MAX_LABEL_VALUE = 63


def workload_label_problem(team: str, name: str) -> str | None:
    """Why `<team>/<name>` cannot be a workload on a cluster, or None when it can.

    Invariant: every workload the controller plans can carry its inventory label
    (`aifleet.dev/workload: <team>.<name>`, a label value of at most 63 characters),
    so no object of it is refused by the API server for its label."""
    # imported here: the render contract imports the models, which import this module
    from fleet.render.keys import workload_label

    label = workload_label(f"{team}/{name}")
    if len(label) > MAX_LABEL_VALUE:
        return (f"team and name together are too long: the label {label} that marks "
                f"the workload's objects is {len(label)} characters, over "
                f"Kubernetes' {MAX_LABEL_VALUE}; shorten metadata.name")
    return None


def path_workload_id(path: str, name: str | None) -> WorkloadId | None:
    """The id a Workload file speaks for: its team folder, and `name` (the document's
    `metadata.name` when it can be read) or else the file's name without `.yaml`.
    None when the path is not `workloads/<team>/...`.

    Invariant: a file's errors make Invalid (protected from prune) only an id in its
    own team folder, never another team's workload, whatever namespace it declares."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "workloads" or not parts[1]:
        return None
    if name is None:
        stem = parts[-1]
        for suffix in WORKLOAD_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        name = stem
    return workload_id(parts[1], name) if name else None


def kept_from_previous(previous: Mapping[str, Iterable[WorkloadId]],
                       unreadable: Iterable[str],
                       declared: Iterable[WorkloadId]) -> dict[WorkloadId, str]:
    """Workloads a file this commit cannot read held before: id -> file.

    `previous`: file -> the workload ids its last readable version declared (the Git
    history, `workloads.history`);
    `unreadable`: files of this commit that hold no valid Workload and have errors;
    `declared`: every id this commit names (valid or invalid) anywhere.

    Invariant: a Workload file that stops parsing (or is refused) keeps the workload it
    held Invalid, so its running objects are not pruned, even when its name cannot be
    read any more; a workload that moved to a file that reads is not held back."""
    named = set(declared)
    out: dict[WorkloadId, str] = {}
    for file in sorted(set(unreadable)):
        for wid in sorted(previous.get(file, ())):
            if wid not in named:
                out.setdefault(wid, file)
    return out


# ------------------------------------------------------------------------- the source
# Invariant: a head that is not a descendant of the last applied commit (a force-push
# rollback) is never planned without `--allow-non-fast-forward`, across restarts and
# replicas: the base is persisted (state dir and home cluster) and shared.


def fast_forward_base(local: str | None, shared: str | None, *,
                      shared_descends_local: bool) -> str | None:
    """The commit a new head must descend from: this replica's last applied commit
    (`local`, kept in its state dir) or the one the leader keeps in the home cluster
    (`shared`), whichever is newer. When they diverge the local one stays: a replica
    never loosens its own guard on another's word."""
    if shared is None:
        return local
    if local is None or shared_descends_local:
        return shared
    return local


def refuse_head(head: str, base: str | None, *, descends: bool,
                allow_non_fast_forward: bool) -> str:
    """Why `head` may not be planned, or "". `descends`: `head` is a descendant of
    `base` (False when `base` is unknown to the mirror: a commit force-pushed away
    before this mirror was made cannot be an ancestor of anything it fetched)."""
    if base is None or head == base or descends or allow_non_fast_forward:
        return ""
    return (f"new head {head[:12]} is not a descendant of the applied commit "
            f"{base[:12]} (force-push?); refused. Start the controller with "
            "--allow-non-fast-forward to accept it")
