"""The Deployment controller's sync, as `pkg/controller/deployment` runs it.

A Deployment owns ReplicaSets, one per pod template, named `<deploy>-<hash>` where the
hash is `controller.ComputeHash` in form (FNV-32a of the template and
`collisionCount`, spelled with `rand.SafeEncodeString`; the bytes hashed are our JSON
of the template, not Go's struct dump, so the value differs from a real cluster's)
and labelled, selected and templated with `pod-template-hash`. Each sync
(`syncDeployment`):
- paused (`spec.paused`): Progressing becomes Unknown/DeploymentPaused, no new
  ReplicaSet is made, only scaling happens (`sync`); resuming says DeploymentResumed;
- a change of `replicas` alone is a scaling event: the one active ReplicaSet takes
  the new count, or several share it in proportion (`scale`, simplified: leftovers
  go to the newest);
- RollingUpdate (`rolloutRolling`): the new ReplicaSet grows while all pods stay
  within `replicas + maxSurge` (`NewRSNewReplicas`), old ones shrink while at least
  `replicas - maxUnavailable` stay available, unhealthy old pods first
  (`reconcileOldReplicaSets`, `cleanupUnhealthyReplicas`,
  `scaleDownOldReplicaSetsForRollingUpdate`); percentages round surge up and
  unavailability down, both 0 means 1 unavailable (`ResolveFenceposts`);
- Recreate: old ReplicaSets go to 0, and once their pods are gone the new one is
  created at full size;
- status (`calculateStatus`, `syncRolloutStatus`): replicas, updated, ready,
  available and unavailable counts, observedGeneration, Available
  (MinimumReplicasAvailable when available >= replicas - maxUnavailable) and
  Progressing: NewReplicaSetCreated / FoundNewReplicaSet / ReplicaSetUpdated while
  it moves, NewReplicaSetAvailable when complete, and False/ProgressDeadlineExceeded
  once `progressDeadlineSeconds` (scaled by the control plane's time scale) pass
  without progress; the controller looks again when the deadline would pass;
- the ReplicaSets carry `deployment.kubernetes.io/revision`, `desired-replicas` and
  `max-replicas` annotations, the Deployment its revision; a template coming back
  (`kubectl rollout undo`) reuses its ReplicaSet with the next revision; old ReplicaSets at 0
  beyond `revisionHistoryLimit` are deleted once the rollout is complete.
Writes go under the field manager `kube-controller-manager`, status as a `status`
subresource write, so `kubectl rollout status` and `helm --wait` read what they read
on a real cluster.
"""

from __future__ import annotations

import copy
import json
import math
from typing import TYPE_CHECKING, Any

from clusters.sim import objects
from clusters.sim.replicasets import MANAGER
from clusters.sim.resources import BY_KIND
from clusters.sim.scheduler import TERMINAL
from clusters.sim.store import Obj

if TYPE_CHECKING:
    from clusters.sim.controllers import ControlPlane

DEPLOYS, RSS, PODS = BY_KIND["Deployment"], BY_KIND["ReplicaSet"], BY_KIND["Pod"]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
NO_DEADLINE = 2**31 - 1
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collisions: int = 0) -> str:
    """`controller.ComputeHash`: FNV-32a, then `rand.SafeEncodeString` of its decimal."""
    h = 0x811C9DC5
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collisions:
        data += str(collisions).encode()
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[b % len(_SAFE)] for b in str(h).encode())


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        share = int(value[:-1]) * total / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value or 0)


def fenceposts(dep: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against `replicas` (`ResolveFenceposts`)."""
    spec = dep["spec"]
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0, 0
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    want = int(spec.get("replicas", 1))
    surge = _int_or_percent(rolling.get("maxSurge", "25%"), want, True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), want, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def _st(rs: Obj | None, key: str) -> int:
    return int((rs or {}).get("status", {}).get(key) or 0)


def _strip_hash(template: Obj) -> Obj:
    """`template` without the pod-template-hash label, for comparing and hashing only:
    new dicts along the path to the labels, the rest shared (every sync compares the
    Deployment's template with each ReplicaSet's, so a deep copy each cost much)."""
    meta = template.get("metadata") or {}
    labels = meta.get("labels") or {}
    if HASH_LABEL not in labels:
        return template
    return {**template, "metadata": {**meta, "labels": {
        k: v for k, v in labels.items() if k != HASH_LABEL}}}


def _revision(rs: Obj) -> int:
    value = (rs["metadata"].get("annotations") or {}).get(REVISION, "0")
    return int(value) if str(value).isdigit() else 0


class DeploymentSync:
    """One sync of one Deployment (see module docstring)."""

    def __init__(self, cp: ControlPlane, dep: Obj) -> None:
        self.cp, self.dep = cp, dep
        self.ns, self.name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        self.spec = dep["spec"]
        self.want = int(self.spec.get("replicas", 1))
        self.surge, self.unavailable = fenceposts(dep)
        rss = sorted(cp.owned(dep, RSS), key=lambda r: (
            r["metadata"].get("creationTimestamp", ""), _revision(r), r["metadata"]["name"]))
        template = _strip_hash(self.spec["template"])
        self.new: Obj | None = next(
            (r for r in rss if _strip_hash(r["spec"]["template"]) == template), None)
        self.old = [r for r in rss if r is not self.new]
        self.progress_reason: tuple[str, str] | None = None

    # -------------------------------------------------------------- writes

    def scale(self, rs: Obj, replicas: int) -> Obj:
        if _replicas(rs) == replicas and _annotations_ok(rs, self.want, self.surge):
            return rs
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = replicas
        ann = new["metadata"].setdefault("annotations", {})
        ann[DESIRED], ann[MAX_REPLICAS] = str(self.want), str(self.want + self.surge)
        out = self.cp.store.replace(RSS, new, rs, manager=MANAGER, check_rv=False)
        if _replicas(rs) != replicas:
            verb = "up" if replicas > _replicas(rs) else "down"
            self.cp.event(self.dep, "ScalingReplicaSet",
                          f"Scaled {verb} replica set {rs['metadata']['name']} from "
                          f"{_replicas(rs)} to {replicas}", source="deployment-controller")
        self._replace_rs(rs, out)
        return out

    def _replace_rs(self, before: Obj, after: Obj) -> None:
        if self.new is before:
            self.new = after
        self.old = [after if r is before else r for r in self.old]

    def create_new(self, replicas: int) -> Obj:
        collisions = int(self.dep.get("status", {}).get("collisionCount") or 0)
        hash_ = template_hash(_strip_hash(self.spec["template"]), collisions)
        template = copy.deepcopy(self.spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = copy.deepcopy(self.spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        revision = max((_revision(r) for r in self.old), default=0) + 1
        rs_name = f"{self.name}-{hash_}"
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": rs_name, "namespace": self.ns,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {REVISION: str(revision), DESIRED: str(self.want),
                            MAX_REPLICAS: str(self.want + self.surge)},
            "ownerReferences": [self.cp.controller_ref(self.dep)]},
            "spec": {"replicas": replicas, "selector": selector, "template": template,
                     "minReadySeconds": int(self.spec.get("minReadySeconds") or 0)}}
        if self.cp.store.find(RSS, self.ns, rs_name) is not None:
            # a name taken by another template: the real controller bumps collisionCount
            self.bump_collisions(collisions + 1)
            raise _Retry
        self.new = self.cp.store.create(RSS, rs, manager=MANAGER)
        self.cp.event(self.dep, "ScalingReplicaSet",
                      f"Scaled up replica set {rs_name} from 0 to {replicas}",
                      source="deployment-controller")
        self.progress_reason = ("NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        return self.new

    def sync_new_rs(self) -> None:
        """`getNewReplicaSet` for an existing new ReplicaSet: its minReadySeconds
        follows the Deployment's, and when it is an older template coming back (a
        rollback) it takes the next revision, the old one going to
        `revision-history` (`SetNewReplicaSetAnnotations`)."""
        if self.new is None:
            return
        want = int(self.spec.get("minReadySeconds") or 0)
        top = max((_revision(r) for r in self.old), default=0)
        current = _revision(self.new)
        if int(self.new["spec"].get("minReadySeconds") or 0) == want and current > top:
            return
        new = copy.deepcopy(self.new)
        new["spec"]["minReadySeconds"] = want
        if current <= top:
            ann = new["metadata"].setdefault("annotations", {})
            ann[REVISION] = str(top + 1)
            history = [h for h in ann.get(HISTORY, "").split(",") if h]
            ann[HISTORY] = ",".join([*history, str(current)])
        out = self.cp.store.replace(RSS, new, self.new, manager=MANAGER, check_rv=False)
        self._replace_rs(self.new, out)

    def bump_collisions(self, count: int) -> None:
        dep = self.cp.store.get(DEPLOYS, self.ns, self.name)
        self.cp.write_status(DEPLOYS, dep, {**dep.get("status", {}), "collisionCount": count},
                             manager=MANAGER)

    # -------------------------------------------------------------- strategies

    def scaling_event(self) -> bool:
        """`isScalingEvent`: an active ReplicaSet's desired-replicas annotation differs."""
        for rs in self.active():
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED)
            if desired is not None and desired != str(self.want):
                return True
        return False

    def active(self) -> list[Obj]:
        return [r for r in [*self.old, *([self.new] if self.new else [])] if _replicas(r) > 0]

    def sync_scale(self) -> None:
        """`scale`: the one active (or latest) ReplicaSet takes `replicas`; several
        share `replicas + maxSurge` in proportion to their sizes."""
        active = self.active()
        if len(active) <= 1:
            target = active[0] if active else (self.new or (self.old[-1] if self.old else None))
            if target is not None:
                self.scale(target, self.want)
            return
        if self.new is not None and _replicas(self.new) == self.want and \
                _st(self.new, "availableReplicas") == self.want:
            for rs in [r for r in self.old if _replicas(r) > 0]:
                self.scale(rs, 0)
            return
        total = sum(_replicas(r) for r in active)
        allowed = self.want + self.surge
        to_add = allowed - total
        if to_add == 0:
            return
        newest_first = sorted(active, key=lambda r: (-_replicas(r), -_revision(r)))
        shares = [math.floor(_replicas(r) * to_add / total) if to_add > 0 else
                  -math.floor(_replicas(r) * -to_add / total) for r in newest_first]
        shares[0] += to_add - sum(shares)
        for rs, share in zip(newest_first, shares, strict=True):
            self.scale(rs, max(0, _replicas(rs) + share))

    def rolling(self) -> None:
        if self.new is None:
            current = sum(_replicas(r) for r in self.old)
            self.create_new(max(0, min(self.want + self.surge - current, self.want)))
            return
        if self.reconcile_new():
            return
        self.reconcile_old()

    def reconcile_new(self) -> bool:
        """`reconcileNewReplicaSet` / `NewRSNewReplicas`: True when it scaled."""
        assert self.new is not None
        have = _replicas(self.new)
        if have == self.want:
            return False
        if have > self.want:
            self.scale(self.new, self.want)
            return True
        current = sum(_replicas(r) for r in self.active())
        room = self.want + self.surge - current
        if room <= 0:
            return False
        self.scale(self.new, have + min(room, self.want - have))
        return True

    def reconcile_old(self) -> bool:
        """`reconcileOldReplicaSets`: shrink old ReplicaSets within maxUnavailable."""
        assert self.new is not None
        old = [r for r in self.old if _replicas(r) > 0]
        if not old:
            return False
        total = sum(_replicas(r) for r in self.active())
        min_available = self.want - self.unavailable
        new_unavailable = _replicas(self.new) - _st(self.new, "availableReplicas")
        max_down = total - min_available - new_unavailable
        if max_down <= 0:
            return False
        cleaned = 0
        for rs in list(old):  # cleanupUnhealthyReplicas: unavailable old pods first
            if cleaned >= max_down:
                break
            unhealthy = _replicas(rs) - _st(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            n = min(max_down - cleaned, unhealthy)
            self.scale(rs, _replicas(rs) - n)
            cleaned += n
        old = [r for r in self.old if _replicas(r) > 0]
        available = sum(_st(r, "availableReplicas") for r in self.active())
        budget = available - min_available
        done = 0
        for rs in old:  # scaleDownOldReplicaSetsForRollingUpdate, oldest first
            if done >= budget:
                break
            n = min(_replicas(rs), budget - done)
            self.scale(rs, _replicas(rs) - n)
            done += n
        return cleaned + done > 0

    def recreate(self) -> None:
        scaled = False
        for rs in [r for r in self.old if _replicas(r) > 0]:
            self.scale(rs, 0)
            scaled = True
        # `oldPodsRunning`: any old pod not Succeeded/Failed, terminating ones included
        if scaled or any(p.get("status", {}).get("phase") not in TERMINAL
                         for r in self.old for p in self.cp.owned(r)):
            return
        if self.new is None:
            self.create_new(self.want)
        elif _replicas(self.new) != self.want:
            self.scale(self.new, self.want)

    def cleanup(self) -> None:
        """`cleanupDeployment`: old ReplicaSets at 0 beyond revisionHistoryLimit go."""
        limit = int(self.spec.get("revisionHistoryLimit", 10))
        idle = [r for r in self.old if _replicas(r) == 0 and _st(r, "replicas") == 0]
        for rs in idle[:max(0, len(idle) - limit)]:
            self.cp.store.delete(RSS, self.ns, rs["metadata"]["name"])

    # -------------------------------------------------------------- annotations, status

    def sync_revision(self) -> None:
        if self.new is None:
            return
        revision = str(_revision(self.new))
        ann = self.dep["metadata"].get("annotations") or {}
        if ann.get(REVISION) == revision:
            return
        new = copy.deepcopy(self.dep)
        new["metadata"].setdefault("annotations", {})[REVISION] = revision
        # through /status, as the deployment controller's `UpdateStatus`: the
        # generation stays (a main-resource annotation change would raise it)
        self.dep = self.cp.store.replace(DEPLOYS, new, self.dep, manager=MANAGER,
                                         subresource="status", check_rv=False)

    def write_status(self) -> None:
        dep = self.cp.store.get(DEPLOYS, self.ns, self.name)
        status = deployment_status(self, dep)
        self.cp.write_status(DEPLOYS, dep, status, manager=MANAGER)


class _Retry(Exception):
    """The new ReplicaSet's name was taken: sync again with the bumped collisionCount."""


def _annotations_ok(rs: Obj, want: int, surge: int) -> bool:
    ann = rs["metadata"].get("annotations") or {}
    return ann.get(DESIRED) == str(want) and ann.get(MAX_REPLICAS) == str(want + surge)


def sync_deployment(cp: ControlPlane, ns: str, name: str) -> None:
    dep = cp.store.find(DEPLOYS, ns, name)
    if dep is None or dep["metadata"].get("deletionTimestamp"):
        return
    d = DeploymentSync(cp, dep)
    d.sync_new_rs()
    try:
        if dep["spec"].get("paused") or d.scaling_event():
            d.sync_scale()
        elif (dep["spec"].get("strategy") or {}).get("type") == "Recreate":
            d.recreate()
        else:
            d.rolling()
    except _Retry:
        cp.mark_deployment(ns, name)
        return
    d.sync_revision()
    if not dep["spec"].get("paused") and d.new is not None and \
            _replicas(d.new) == d.want and not any(_replicas(r) for r in d.old):
        d.cleanup()
    d.write_status()


# ------------------------------------------------------------------ status


def _condition(prev: Obj | None, kind: str, status: str, reason: str, message: str,
               now: str, *, touch: bool) -> Obj:
    """A Deployment condition; lastUpdateTime moves when `touch` (progress) or the
    reason changes, lastTransitionTime only when the status does."""
    if prev and prev["status"] == status and prev.get("reason") == reason and not touch:
        return {**prev, "message": message}
    return {"type": kind, "status": status, "lastUpdateTime": now,
            "lastTransitionTime": prev["lastTransitionTime"]
            if prev and prev["status"] == status else now,
            "reason": reason, "message": message}


def deployment_status(d: DeploymentSync, dep: Obj) -> Obj:
    """`calculateStatus` plus `syncRolloutStatus` / `checkPausedConditions`."""
    cp, now = d.cp, objects.now()
    old_status = dep.get("status") or {}
    rss = [*d.old, *([d.new] if d.new else [])]
    counts = {
        "replicas": sum(_st(r, "replicas") for r in rss),
        "updatedReplicas": _st(d.new, "replicas"),
        "readyReplicas": sum(_st(r, "readyReplicas") for r in rss),
        "availableReplicas": sum(_st(r, "availableReplicas") for r in rss),
    }
    counts["unavailableReplicas"] = max(0, sum(_replicas(r) for r in rss)
                                        - counts["availableReplicas"])
    prev = {c["type"]: c for c in old_status.get("conditions") or []}
    conds: dict[str, Obj] = dict(prev)
    available = counts["availableReplicas"] >= d.want - d.unavailable
    conds["Available"] = _condition(
        prev.get("Available"), "Available", "True" if available else "False",
        "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        "Deployment has minimum availability." if available
        else "Deployment does not have minimum availability.", now, touch=False)
    progressing = _progressing(d, dep, counts, prev.get("Progressing"), now)
    if progressing is not None:
        conds["Progressing"] = progressing
    status: Obj = {"observedGeneration": dep["metadata"].get("generation", 1)}
    status.update({k: v for k, v in counts.items() if v})
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    status["conditions"] = [conds[k] for k in ("Available", "Progressing", "ReplicaFailure")
                            if k in conds]
    _requeue_for_deadline(cp, d, dep, counts, status["conditions"])
    return status


def _complete(d: DeploymentSync, dep: Obj, counts: dict[str, int]) -> bool:
    """`DeploymentComplete`."""
    return (counts["updatedReplicas"] == d.want and counts["replicas"] == d.want
            and counts["availableReplicas"] == d.want)


def _progressing(d: DeploymentSync, dep: Obj, counts: dict[str, int], prev: Obj | None,
                 now: str) -> Obj | None:
    key = (d.ns, d.name)
    rs_name = d.new["metadata"]["name"] if d.new else None
    if dep["spec"].get("paused"):
        if prev and prev.get("reason") == "DeploymentPaused":
            return prev
        return _condition(prev, "Progressing", "Unknown", "DeploymentPaused",
                          "Deployment is paused", now, touch=True)
    if prev and prev.get("reason") == "DeploymentPaused":
        d.cp.progress_started(key)
        prev = _condition(prev, "Progressing", "Unknown", "DeploymentResumed",
                          "Deployment is resumed", now, touch=True)
    if d.progress_reason is not None:
        d.cp.progress_started(key)
        reason, message = d.progress_reason
        return _condition(prev, "Progressing", "True", reason, message, now, touch=True)
    deadline = int(dep["spec"].get("progressDeadlineSeconds", 600))
    if deadline == NO_DEADLINE:
        return prev
    if prev and prev["status"] == "True" and prev.get("reason") == "NewReplicaSetAvailable" \
            and counts["replicas"] == counts["updatedReplicas"]:
        return prev
    if _complete(d, dep, counts):
        return _condition(prev, "Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.', now,
                          touch=True)
    old = dep.get("status") or {}
    moved = (counts["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
             or counts["replicas"] - counts["updatedReplicas"]
             < int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
             or counts["readyReplicas"] > int(old.get("readyReplicas") or 0)
             or counts["availableReplicas"] > int(old.get("availableReplicas") or 0))
    if prev is None and rs_name is not None:
        d.cp.progress_started(key)
        return _condition(prev, "Progressing", "True", "FoundNewReplicaSet",
                          f'Found new replica set "{rs_name}"', now, touch=True)
    if moved:
        d.cp.progress_started(key)
        return _condition(prev, "Progressing", "True", "ReplicaSetUpdated",
                          f'ReplicaSet "{rs_name}" is progressing.' if rs_name
                          else "Deployment is progressing.", now, touch=True)
    if prev is not None and prev.get("reason") == "ProgressDeadlineExceeded":
        return prev
    if d.cp.progress_elapsed(key) >= deadline * d.cp.time_scale:
        return _condition(prev, "Progressing", "False", "ProgressDeadlineExceeded",
                          f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name
                          else "Progress deadline exceeded.", now, touch=True)
    return prev


def _requeue_for_deadline(cp: ControlPlane, d: DeploymentSync, dep: Obj,
                          counts: dict[str, int], conds: list[Obj]) -> None:
    """`requeueStuckDeployment`: look again when the progress deadline would pass."""
    deadline = int(dep["spec"].get("progressDeadlineSeconds", 600))
    if deadline == NO_DEADLINE or dep["spec"].get("paused") or _complete(d, dep, counts):
        return
    progressing = next((c for c in conds if c["type"] == "Progressing"), None)
    if progressing is None or progressing["status"] != "True":
        return
    left = deadline * cp.time_scale - cp.progress_elapsed((d.ns, d.name))
    cp.recheck_deployment_after(d.ns, d.name, max(0.0, left))
