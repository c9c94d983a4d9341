"""The in-cluster control plane of a simulated cluster: scheduler, kubelet, Job and
Deployment controllers, garbage-free and timer-driven.

They react to the store's events, never poll: an event marks a key dirty, one
`call_soon` drains the dirty set, and each sync is idempotent (a write that changes
nothing is dropped by the store), so the loop settles. Time passes through asyncio
timers only (`pod_start_seconds` from bound to Running, `job_seconds` from Running to
Succeeded for a Job's pods), so a thousand idle clusters cost nothing.

As the real controllers do: the Job controller creates pods up to `parallelism`
(Indexed jobs label each with `batch.kubernetes.io/job-completion-index`), counts
successes, and sets `SuccessCriteriaMet` then `Complete` with `completionTime`; the
Deployment controller keeps `replicas` pods of the current template (named
`<deploy>-<hash>-<rand>`, labelled `pod-template-hash`; there is no ReplicaSet object),
replaces old-template pods once the new ones are ready, and reports replicas, ready,
available and updated counts with `observedGeneration` and the Available/Progressing
conditions.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import random
import re
from collections import deque
from typing import Any, Protocol

from clusters.sim import objects
from clusters.sim.jobs import sync_job
from clusters.sim.nodes import is_ready
from clusters.sim.resources import BY_KIND
from clusters.sim.scheduler import (
    TERMINAL,
    choose_node,
    condition,
    finished_status,
    gpu_request,
    pod_ready,
    running_status,
    used_gpus,
)
from clusters.sim.store import Event, Obj, Store

PODS, JOBS, DEPLOYS, NODES, EVENTS = (BY_KIND[k] for k in
                                      ("Pod", "Job", "Deployment", "Node", "Event"))
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
EXIT_CODE = "sim.aifleet.dev/exit-code"
"""Pod annotation: the exit code the simulated process ends with (non-zero: Failed)."""
MAX_EVENTS = 500
"""Events kept per cluster, oldest deleted first (a real cluster expires them after 1h)."""


class ClaimScheduler(Protocol):
    """The scheduler's DynamicResources plugin (`dra.py`): which nodes can allocate a
    pod's ResourceClaims (None while they do not exist yet), and the allocation."""

    def wants(self, pod: Obj) -> bool: ...
    def filter(self, pod: Obj, nodes: list[Obj]) -> tuple[list[Obj], int] | None: ...
    def allocate(self, pod: Obj, node: str) -> None: ...


class ControlPlane:
    claims: ClaimScheduler | None = None

    def __init__(self, store: Store, *, job_seconds: float, pod_start_seconds: float,
                 seed: int = 0) -> None:
        self.store = store
        self.job_seconds = job_seconds
        self.pod_start_seconds = pod_start_seconds
        self._dirty: set[tuple[str, str, str]] = set()
        self._scheduled = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._rng = random.Random(seed)
        self._ips = 0
        self._events: deque[tuple[str, str]] = deque()
        store.listeners.append(self._on_event)

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    # ---------------------------------------------------------------- plumbing

    def _on_event(self, ev: Event) -> None:
        kind, meta = ev.res.kind, ev.obj["metadata"]
        ns = meta.get("namespace", "")
        if kind in ("Job", "Deployment") and ev.type != "DELETED":
            self._mark(kind, ns, meta["name"])
        elif kind == "Pod":
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") in ("Job", "Deployment"):
                    self._mark(ref["kind"], ns, ref["name"])
            phase = ev.obj.get("status", {}).get("phase")
            unbound = ev.type == "ADDED" and not ev.obj["spec"].get("nodeName")
            if ev.type == "DELETED" or phase in TERMINAL or unbound:
                self._mark("schedule", "", "")
        elif kind == "Node":
            self._mark("schedule", "", "")

    def _mark(self, kind: str, ns: str, name: str) -> None:
        self._dirty.add((kind, ns, name))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def reschedule(self) -> None:
        """Look at the pending pods again (something they wait for changed)."""
        self._mark("schedule", "", "")

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._timers.discard(handle)
            fn(*args)
        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    def _drain(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        for kind, ns, name in sorted(dirty):
            if kind == "Job":
                self._sync_job(ns, name)
            elif kind == "Deployment":
                self._sync_deployment(ns, name)
        if ("schedule", "", "") in dirty:
            self._schedule_pending()

    def event(self, obj: Obj, reason: str, message: str, etype: str = "Normal",
               source: str = "default-scheduler") -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        if self.store.find(BY_KIND["Namespace"], "", ns) is None:
            return
        now = objects.now()
        name = f"{meta['name']}.{self._rng.getrandbits(64):016x}"
        self._events.append((ns, name))
        while len(self._events) > MAX_EVENTS:
            old_ns, old_name = self._events.popleft()
            if self.store.find(EVENTS, old_ns, old_name) is not None:
                self.store.delete(EVENTS, old_ns, old_name)
        self.store.create(EVENTS, {
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": obj["kind"], "namespace": ns, "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": obj["apiVersion"]},
            "reason": reason, "message": message, "type": etype, "count": 1,
            "source": {"component": source}, "firstTimestamp": now, "lastTimestamp": now,
            "reportingComponent": source, "reportingInstance": "",
        })

    def write_status(self, res: Any, obj: Obj, status: Obj) -> Obj:
        if obj.get("status") == status:
            return obj
        return self.store.replace(res, {**obj, "status": status}, obj,
                                  subresource="status", check_rv=False)

    # ---------------------------------------------------------- scheduler/kubelet

    def _schedule_pending(self) -> None:
        pods = self.store.list(PODS)
        pending = [p for p in pods if not p["spec"].get("nodeName")
                   and not p["metadata"].get("deletionTimestamp")]
        if not pending:
            return
        nodes = self.store.list(NODES)
        used = used_gpus(pods)
        for pod in pending:
            candidates, refused = nodes, 0
            if self.claims is not None and self.claims.wants(pod):
                fit = self.claims.filter(pod, nodes)
                if fit is None:
                    continue  # its ResourceClaims are not created yet
                candidates, refused = fit
            node, message = choose_node(pod, candidates, used)
            if node is None and refused:
                message = _with_claims(message, len(nodes), refused)
            now = objects.now()
            if node is None:
                conds = [condition("PodScheduled", "False", now, "Unschedulable", message)]
                old = [c for c in pod.get("status", {}).get("conditions", [])
                       if c["type"] == "PodScheduled"]
                if old and old[0].get("message") == message:
                    continue
                self.write_status(PODS, pod, {**pod.get("status", {}), "conditions": conds})
                self.event(pod, "FailedScheduling", message, "Warning")
                continue
            used[node] += gpu_request(pod)
            if refused or (self.claims is not None and self.claims.wants(pod)):
                assert self.claims is not None
                self.claims.allocate(pod, node)
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = node
            bound = self.store.replace(PODS, bound, pod, check_rv=False)
            status = {**bound.get("status", {}), "conditions": [
                condition("PodScheduled", "True", now)], "startTime": now}
            bound = self.write_status(PODS, bound, status)
            ns = pod["metadata"]["namespace"]
            self.event(bound, "Scheduled",
                        f"Successfully assigned {ns}/{pod['metadata']['name']} to {node}")
            self._later(self.pod_start_seconds, self._start_pod, ns, pod["metadata"]["name"],
                        pod["metadata"]["uid"])

    def _live(self, ns: str, name: str, uid: str) -> Obj | None:
        pod = self.store.find(PODS, ns, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            return None
        return pod

    def _start_pod(self, ns: str, name: str, uid: str) -> None:
        pod = self._live(ns, name, uid)
        if pod is None or pod.get("status", {}).get("phase") != "Pending":
            return
        node = self.store.find(NODES, "", pod["spec"]["nodeName"])
        host = node["status"]["addresses"][0]["address"] if node else "10.0.0.1"
        self._ips += 1
        ip = f"10.244.{(self._ips >> 8) & 255}.{self._ips & 255}"
        ready = node is not None and is_ready(node)
        self.write_status(PODS, pod, running_status(pod, objects.now(), ip, host, ready))
        owners = {r.get("kind") for r in pod["metadata"].get("ownerReferences") or []}
        seconds = pod["metadata"].get("annotations", {}).get("sim.aifleet.dev/run-seconds")
        if seconds is not None or "Job" in owners:
            run = float(seconds) if seconds is not None else self.job_seconds
            self._later(run, self._finish_pod, ns, name, uid)

    def _finish_pod(self, ns: str, name: str, uid: str) -> None:
        pod = self._live(ns, name, uid)
        if pod is None or pod.get("status", {}).get("phase") != "Running":
            return
        code = pod["metadata"].get("annotations", {}).get(EXIT_CODE, "0")
        phase = "Succeeded" if code == "0" else "Failed"
        self.write_status(PODS, pod, finished_status(pod, objects.now(), phase))

    def node_ready_changed(self, node: str, ready: bool) -> None:
        """The node lifecycle controller: pods on a NotReady node stop being Ready."""
        now = objects.now()
        for pod in self.store.list(PODS):
            if pod["spec"].get("nodeName") != node or \
                    pod.get("status", {}).get("phase") != "Running":
                continue
            status = copy.deepcopy(pod["status"])
            flag = "True" if ready else "False"
            for c in status.get("conditions", []):
                if c["type"] in ("Ready", "ContainersReady") and c["status"] != flag:
                    c["status"], c["lastTransitionTime"] = flag, now
            for cs in status.get("containerStatuses", []):
                cs["ready"] = ready
            self.write_status(PODS, pod, status)
        self._mark("schedule", "", "")

    # ---------------------------------------------------------------- owners

    def owned(self, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        return [p for p in self.store.list(PODS, owner["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def new_pod(self, owner: Obj, name: str, extra_labels: dict[str, str],
                 annotations: dict[str, str]) -> None:
        tmpl = copy.deepcopy(owner["spec"]["template"])
        meta = tmpl.get("metadata") or {}
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        meta.update({"name": name, "namespace": owner["metadata"]["namespace"],
                     "ownerReferences": [{
                         "apiVersion": owner["apiVersion"], "kind": owner["kind"],
                         "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                         "controller": True, "blockOwnerDeletion": True}]})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]}
        self.store.create(PODS, pod)
        self.event(owner, "SuccessfulCreate", f"Created pod: {name}",
                    source=f"{owner['kind'].lower()}-controller")
        self._mark("schedule", "", "")

    def suffix(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(5))

    def _sync_job(self, ns: str, name: str) -> None:
        sync_job(self, ns, name)

    def _sync_deployment(self, ns: str, name: str) -> None:
        dep = self.store.find(DEPLOYS, ns, name)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return
        spec = dep["spec"]
        tmpl = json.dumps(spec["template"], sort_keys=True).encode()
        hash_ = hashlib.sha256(tmpl).hexdigest()[:10]
        pods = [p for p in self.owned(dep) if p.get("status", {}).get("phase") not in TERMINAL
                and not p["metadata"].get("deletionTimestamp")]
        current = [p for p in pods
                   if p["metadata"].get("labels", {}).get("pod-template-hash") == hash_]
        old = [p for p in pods if p not in current]
        want = int(spec.get("replicas", 1)) if not spec.get("paused") else len(current)
        for _ in range(want - len(current)):
            self.new_pod(dep, f"{name}-{hash_}-{self.suffix()}",
                          {"pod-template-hash": hash_}, {})
        for p in sorted(current, key=lambda p: p["metadata"]["name"])[want:]:
            self.store.delete(PODS, ns, p["metadata"]["name"])
        ready = [p for p in current if pod_ready(p)]
        if len(ready) >= want:
            for p in old:
                self.store.delete(PODS, ns, p["metadata"]["name"])
            old = []
        dep = self.store.get(DEPLOYS, ns, name)
        self.write_status(DEPLOYS, dep, _deploy_status(dep, current, old, ready, want))


def _with_claims(message: str, total: int, refused: int) -> str:
    """The Unschedulable message with the DRA filter's refusals counted in, in
    kube-scheduler's words (dynamicresources.go: `cannot allocate all claims`)."""
    m = re.match(r"^0/\d+ nodes are available(?:: (.*?))?\.(?: preemption:|$)", message)
    reasons = [f"{refused} cannot allocate all claims"]
    if m and m.group(1):
        reasons += m.group(1).split(", ")
    return (f"0/{total} nodes are available: {', '.join(sorted(reasons))}. preemption: "
            f"0/{total} nodes are available: {total} No preemption victims found for "
            "incoming pod.")


def _deploy_status(dep: Obj, current: list[Obj], old: list[Obj], ready: list[Obj],
                   want: int) -> Obj:
    now = objects.now()
    prev = {c["type"]: c for c in dep.get("status", {}).get("conditions", [])}

    def cond(kind: str, status: str, reason: str, message: str) -> Obj:
        p = prev.get(kind)
        if p and p["status"] == status and p.get("reason") == reason:
            return dict(p)
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastUpdateTime": now, "lastTransitionTime":
                    p["lastTransitionTime"] if p and p["status"] == status else now}
    name = dep["metadata"]["name"]
    available = len(ready)
    total = len(current) + len(old)
    done = available >= want and not old
    status: Obj = {
        "observedGeneration": dep["metadata"].get("generation", 1),
        "conditions": [
            cond("Available", "True" if available >= want else "False",
                 "MinimumReplicasAvailable" if available >= want
                 else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available >= want
                 else "Deployment does not have minimum availability."),
            cond("Progressing", "True",
                 "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                 f'ReplicaSet "{name}" has successfully progressed.' if done
                 else f'ReplicaSet "{name}" is progressing.'),
        ],
    }
    for key, value in (("replicas", total), ("updatedReplicas", len(current)),
                       ("readyReplicas", available), ("availableReplicas", available),
                       ("unavailableReplicas", max(0, want - available))):
        if value:
            status[key] = value
    return status

