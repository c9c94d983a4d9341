"""Sync decisions, pure: what a pass does with each object of one cluster.

gitops-engine's shape (`pkg/sync/reconcile.go` pairs desired with live objects,
`pkg/sync/sync_context.go` builds its task list before running any of it): from the
desired objects and the live inventory, `plan_sync` returns a `SyncPlan` saying which
objects are unchanged (zero API calls), which are applied and in what order, which Jobs
may be re-created when the server refuses a change as immutable, which owned objects are
pruned, what is refused and which workloads are held (their live objects left alone).
`clusters.apply.Applier` only executes it.

One decision depends on the execution: an object that fails to apply holds back the
prune of its workload's objects (`SyncPlan.prune_after`, by `fleet.safety.prune_held_back`),
so that one tenant's failure never stops the prune of anyone else's objects, and no
workload loses its running objects while its new ones did not land.

The safety rules themselves live in `fleet.safety`; this module calls them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from fleet.drift import diff
from fleet.render import (
    CONTENT_HASH,
    KIND_ORDER,
    LEASE_GENERATION,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    RECREATE,
    for_existing,
    workload_of,
)
from fleet.safety import gang_start_waits, prune_held_back

Manifest = dict[str, Any]
ObjKey = tuple[str, str, str, str]
"""apiVersion, kind, namespace, name."""

HASH_ANNOTATION = CONTENT_HASH
GENERATION_ANNOTATION = LEASE_GENERATION
_NOT_HASHED = (HASH_ANNOTATION, GENERATION_ANNOTATION)


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")),
            str(meta.get("namespace") or ""), str(meta.get("name")))


def is_owned(obj: Mapping[str, Any]) -> bool:
    """Whether an object is in our inventory (the contract's managed-by label)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) == MANAGED_BY_VALUE


def content_hash(obj: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, the hash annotation itself left out."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k not in _NOT_HASHED}
    meta["annotations"] = annotations
    canonical = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def stamp(obj: Mapping[str, Any]) -> Manifest:
    """A copy of the manifest with its content hash annotation set."""
    meta = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations[HASH_ANNOTATION] = content_hash(obj)
    meta["annotations"] = annotations
    return {**obj, "metadata": meta}


def recreate_allowed(obj: Mapping[str, Any]) -> bool:
    """Whether a Job whose change the server refuses as immutable may be deleted and
    applied again: its `aifleet.dev/recreate` annotation is `onChange`. A Job without
    it (applied by something that predates the policy) keeps the old behaviour,
    `onChange`; `never` keeps the running Job and reports the refusal."""
    if obj.get("kind") != "Job":
        return False
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RECREATE, "onChange")) == "onChange"


def unchanged(want: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether a stamped desired object needs no write: live, not being deleted, with the
    same content hash and no drift of a field we set."""
    if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
        return False
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(HASH_ANNOTATION)
                == want["metadata"]["annotations"][HASH_ANNOTATION]
                and not diff(want, live))


def apply_order(obj: Mapping[str, Any]) -> tuple[int, str, ObjKey]:
    """Namespaces first, then Services, Deployments, Jobs; by workload, then by key."""
    return (KIND_ORDER.get(str(obj.get("kind")), 9), workload_of(obj) or "", obj_key(obj))


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What one pass does on one cluster. Every field is in a deterministic order."""

    unchanged: tuple[ObjKey, ...]
    """Desired objects whose live copy already matches: no API call."""
    apply: tuple[Manifest, ...]
    """Stamped desired objects to apply, in order (`apply_order`)."""
    recreate: frozenset[ObjKey]
    """Of `apply`, the live Jobs the executor may delete and apply again when the server
    refuses their change as immutable (`recreate_allowed`); any other such refusal is a
    failure of that object only."""
    prune: tuple[tuple[ObjKey, str | None], ...]
    """Owned objects not desired (with their workload label), to delete after the applies
    (`prune_after` leaves out those of workloads whose apply failed)."""
    refused: str | None
    """Why the prune is refused as a whole (it would delete all of the cluster's owned
    objects at once), else None. Nothing in `prune` is deleted then."""
    hold: frozenset[str]
    """Workload labels whose live objects are left alone (never pruned) though not
    desired: Invalid in this commit, suspended, kept by `fleet.safety.keep_live_copy`."""
    desired: tuple[ObjKey, ...]
    """Every desired object's key (unchanged and applied)."""

    @property
    def namespaces(self) -> tuple[Manifest, ...]:
        return tuple(o for o in self.apply if o.get("kind") == "Namespace")

    def by_workload(self) -> dict[str, list[Manifest]]:
        """The non-Namespace objects to apply, by workload label ("" for none), each
        workload's in order: workloads are applied in parallel, their objects in turn."""
        out: dict[str, list[Manifest]] = {}
        for o in self.apply:
            if o.get("kind") != "Namespace":
                out.setdefault(workload_of(o) or "", []).append(o)
        return out

    def prune_after(self, failed: Iterable[str | None]) -> tuple[ObjKey, ...] | None:
        """What to prune once the applies ran, given the workload label of each object
        that failed (None: a Namespace or unlabelled object). None: prune nothing at all
        (a failure whose owner is not known; `fleet.safety.prune_held_back`)."""
        held = prune_held_back(failed)
        if held is None:
            return None
        return tuple(k for k, wl in self.prune if wl not in held)


def plan_sync(desired: Iterable[Mapping[str, Any]], live: Mapping[ObjKey, Mapping[str, Any]],
              *, prune: bool = True, allow_empty: bool = False,
              scope: Set[str] | None = None, hold: Set[str] = frozenset()) -> SyncPlan:
    """Decide one pass: `desired` (every owned object this cluster should have, or those
    of the `scope` workloads), against `live` (the owned inventory by key).

    Invariants (each held by a table or property test in tests/unit/test_sync.py):
    - an object is applied unless its live copy matches it (`unchanged`), and every
      desired object is one or the other;
    - only owned objects (`aifleet.dev/managed-by: aifleet`) are pruned, never a
      Namespace (deleting one deletes objects we do not own), never a desired object,
      never an object of a `hold` workload, nor outside `scope`;
    - a prune that would leave the cluster without any owned workload object is refused
      unless `allow_empty` (an empty render is far more often a bug than an intent; a
      Kueue cluster's team queues do not make it non-empty).
    """
    stamped = sorted((stamp(o) for o in desired), key=apply_order)
    keys = tuple(obj_key(o) for o in stamped)
    same: list[ObjKey] = []
    todo: list[Manifest] = []
    for key, obj in zip(keys, stamped, strict=True):
        # an existing object is compared without its create-only fields (Kueue's
        # `suspend`, `fleet.render.keys.CREATE_ONLY`): the applier never re-sends them
        if unchanged(for_existing(obj) if key in live else obj, live.get(key)):
            same.append(key)
        else:
            todo.append(obj)
    recreate = frozenset(obj_key(o) for o in todo
                         if recreate_allowed(o) and obj_key(o) in live)
    doomed = _doomed(set(keys), live, scope, hold) if prune else ()
    refused = None
    # Only a workload's objects count: a Kueue cluster always wants its team queues
    # (fleet.render.kueue), and an empty render must still look empty there.
    if doomed and scope is None and not allow_empty \
            and not any(k[1] != "Namespace" and workload_of(o)
                        for k, o in zip(keys, stamped, strict=True)):
        refused = (f"refusing to delete all {len(doomed)} owned objects of the cluster at "
                   "once (the desired set is empty); pass allow_empty to do it")
    return SyncPlan(tuple(same), tuple(todo), recreate, doomed, refused, frozenset(hold),
                    keys)


def _doomed(desired: Set[ObjKey], live: Mapping[ObjKey, Mapping[str, Any]],
            scope: Set[str] | None, hold: Set[str]) -> tuple[tuple[ObjKey, str | None], ...]:
    out: list[tuple[ObjKey, str | None]] = []
    for key in sorted(live):
        obj = live[key]
        wl = workload_of(obj)
        if key[1] == "Namespace" or not is_owned(obj) or key in desired or wl in hold:
            continue
        if scope is not None and wl not in scope:
            continue
        out.append((key, wl))
    return tuple(out)


# ------------------------------------------------------------- one cluster, by workload
#
# Above the objects, a reconcile pass decides per workload: which live copies are stale
# (deleted first, so a failed-over gang never runs twice), which are held (left as they
# are: suspended, Invalid, kept by `fleet.safety.keep_live_copy`), which wait for their
# copy elsewhere to go (a drain; a gang's old copy), and which are applied. The caller
# gathers the facts (each decided by `fleet.safety`); `plan_cluster` combines them, in
# one place, into one `ClusterSync`.

SUSPENDED = "suspended: left as it is until resumed"
INVALID = "invalid in this commit: keeps its last good state"
DRAINING = "waits for its copy on a retiring cluster to be deleted first"


@dataclass(frozen=True, slots=True)
class ClusterSync:
    """What one reconcile pass does on one cluster, workload by workload."""

    stale: frozenset[str]
    """Labels of live copies to delete before anything is applied here."""
    forbidden: frozenset[str]
    """Labels of live copies residency forbids here: deleted first of all, whatever
    else holds them (`fleet.safety.residency_forbids`)."""
    objects: tuple[Manifest, ...]
    """The objects to apply (Namespaces included): those of `apply` only."""
    apply: Mapping[str, str]
    """Label -> workload id of the workloads applied here."""
    hold: Mapping[str, str]
    """Label -> why its live objects are left alone (never pruned, never applied when
    suspended): the applier's `hold`."""
    suspended: Mapping[str, str]
    """Of the desired workloads, those suspended here (label -> id): what runs of them
    stays as it is, and their status is kept."""
    kept: frozenset[str]
    """Live copies the plan does not place here that stay anyway (`kept`)."""
    waiting: Mapping[str, str]
    """Label -> why it does not start here yet: its copy on a retiring cluster, or (a
    gang) on any other cluster that answers, is not deleted yet. Neither applied nor
    pruned here; the pass runs again shortly."""
    allow_empty: bool
    """Whether a pass that leaves the cluster without owned objects may prune them all:
    only while the plan places something somewhere (an empty plan is a bug's shape) or
    the adopted commit says `Fleet-Allow: mass-deletion`."""


def plan_cluster(objects: Iterable[Manifest], apply: Mapping[str, str], *,
                 stale: Set[str], suspended: Set[str], protected: Set[str],
                 kept: Mapping[str, str], live_here: Set[str], draining: Set[str],
                 anything_placed: bool, forbidden: Set[str] = frozenset(),
                 mass_deletion_allowed: bool = False, gangs: Set[str] = frozenset(),
                 held_elsewhere: Mapping[str, Set[str]] | None = None) -> ClusterSync:
    """Combine one cluster's facts into its pass.

    `objects`, `apply`: the cluster's desired objects and label -> id of its workloads;
    `stale`: live copies `fleet.safety.keep_live_copy`/`invalid_copy_stale` let go;
    `suspended`: labels (live or desired) a suspension shields here
    (`fleet.safety.suspension_shields`); `protected`: Invalid workloads whose copies
    stay here (`fleet.safety.invalid_copy_kept`); `kept`: live copies the plan does not
    place here that stay, with why; `live_here`: labels running here; `draining`: labels
    still running on a retiring cluster that answers; `forbidden`: live copies
    residency forbids here (`fleet.safety.residency_forbids`); `gangs`: the labels of
    gang workloads; `held_elsewhere`: label -> the other clusters that answer and still
    hold a copy of it (`fleet.safety.copy_still_running`).

    Invariants: residency first: a forbidden copy is deleted whatever else holds it
    (suspension, last good state, a failed apply), except that a pass never empties the
    cluster of our objects unless that is allowed (`allow_empty`);
    a suspended workload is neither deleted as stale, applied nor pruned;
    a workload still running on a retiring cluster does not start here before it is
    deleted there, nor does a gang still held by any other cluster that answers
    (`fleet.safety.gang_start_waits`: a moved gang never runs twice)."""
    waiting = _waiting(set(apply) - set(suspended), live_here, draining, gangs,
                       held_elsewhere or {})
    skip = set(suspended) | set(waiting)
    hold = {**{lb: INVALID for lb in protected}, **kept,
            **{lb: SUSPENDED for lb in suspended}}
    allow_empty = anything_placed or mass_deletion_allowed
    doomed = set(forbidden) - set(stale) - set(suspended)
    if doomed and not allow_empty and not set(live_here) - doomed - set(stale):
        doomed = set()  # it would leave nothing of ours here: an empty plan's shape
    return ClusterSync(
        stale=frozenset(set(stale) - set(suspended)), forbidden=frozenset(doomed),
        objects=tuple(o for o in objects if workload_of(o) not in skip),
        apply={lb: wid for lb, wid in apply.items() if lb not in skip},
        hold=dict(sorted(hold.items())),
        suspended={lb: wid for lb, wid in apply.items() if lb in suspended},
        kept=frozenset(kept), waiting=waiting, allow_empty=allow_empty)


def _waiting(starting: Set[str], live_here: Set[str], draining: Set[str], gangs: Set[str],
             held_elsewhere: Mapping[str, Set[str]]) -> dict[str, str]:
    """Of the workloads to apply here, those that may not start yet, with why."""
    out: dict[str, str] = {}
    for label in sorted(starting):
        why = gang_start_waits(gang=label in gangs, runs_here=label in live_here,
                               held_elsewhere=set(held_elsewhere.get(label, ())))
        if why is None and label in draining and label not in live_here:
            why = DRAINING
        if why is not None:
            out[label] = why
    return out
