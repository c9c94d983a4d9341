"""The in-cluster control plane of a simulated cluster: scheduler, kubelet, Job and
Deployment controllers, garbage-free and timer-driven.

They react to the store's events, never poll: an event marks a key dirty, one
`call_soon` drains the dirty set, and each sync is idempotent (a write that changes
nothing is dropped by the store), so the loop settles. Time passes through asyncio
timers only (`pod_start_seconds` from bound to Running, `job_seconds` from Running to
Succeeded for a Job's pods), so a thousand idle clusters cost nothing.

As the real controllers do: the Job controller (`jobs.py`) creates pods up to
`parallelism` and counts them to `Complete`/`Failed`; the Deployment controller
(`deployments.py`) rolls ReplicaSets, and the ReplicaSet controller
(`replicasets.py`) keeps their pods. Each component writes under its real field
manager (`kube-controller-manager` for the controllers, `kube-scheduler` for the
PodScheduled=False condition of a pod it cannot place, `kubelet` for pod status),
status as a `status` subresource write, so managedFields blame the right one. The
binding itself (nodeName + PodScheduled=True) is recorded by no manager, as the real
`pods/binding` storage update bypasses the field manager.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
from collections import Counter, deque
from typing import Any, Protocol

from clusters.sim import objects
from clusters.sim.deployments import sync_deployment
from clusters.sim.jobs import sync_job
from clusters.sim.nodes import is_ready
from clusters.sim.replicasets import sync_replicaset
from clusters.sim.resources import BY_KIND
from clusters.sim.scheduler import (
    TERMINAL,
    add_usage,
    cached_requests,
    choose_node,
    condition,
    finished_status,
    pod_ready,
    running_status,
    used_resources,
)
from clusters.sim.store import Event, Obj, Store

PODS, JOBS, DEPLOYS, RSS, NODES, EVENTS = (
    BY_KIND[k] for k in ("Pod", "Job", "Deployment", "ReplicaSet", "Node", "Event"))
CONTROLLERS = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KUBELET = "kubelet"
_OWNER_KINDS = ("Job", "Deployment", "ReplicaSet")
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


def controlled_by(objs: list[Obj], uid: str) -> list[Obj]:
    """Those of `objs` with a controller owner reference to `uid`. Plain loops, not
    any() over a generator: every sync of every ReplicaSet and Job runs this over
    all the pods of its namespace."""
    out = []
    for o in objs:
        for r in o["metadata"].get("ownerReferences") or []:
            if r.get("uid") == uid and r.get("controller"):
                out.append(o)
                break
    return out


class ControlPlane:
    claims: ClaimScheduler | None = None

    def __init__(self, store: Store, *, job_seconds: float, pod_start_seconds: float,
                 seed: int = 0, time_scale: float = 1.0) -> None:
        self.store = store
        self.job_seconds = job_seconds
        self.pod_start_seconds = pod_start_seconds
        self.time_scale = time_scale
        """Real seconds per second an object declares (`terminationGracePeriodSeconds`,
        `minReadySeconds`, `progressDeadlineSeconds`): 1.0 is real time; tests use
        less so a 30 s grace period passes in a fraction of a second."""
        self._dirty: set[tuple[str, str, str]] = set()
        self._scheduled = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._rng = random.Random(seed)
        self._ips = 0
        self._events: deque[tuple[str, str]] = deque()
        self._ready_since: dict[str, float] = {}
        self._requests: dict[str, Counter[str]] = {}
        self._progress_at: dict[tuple[str, str], float] = {}
        store.listeners.append(self._on_event)

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    # ---------------------------------------------------------------- plumbing

    def _on_event(self, ev: Event) -> None:
        kind, meta = ev.res.kind, ev.obj["metadata"]
        ns = meta.get("namespace", "")
        if kind in _OWNER_KINDS:
            if ev.type != "DELETED":
                self._mark(kind, ns, meta["name"])
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "Deployment":
                    self._mark("Deployment", ns, ref["name"])
        elif kind == "Pod":
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") in _OWNER_KINDS:
                    self._mark(ref["kind"], ns, ref["name"])
                if ref.get("kind") == "ReplicaSet" and ev.type == "DELETED":
                    self._mark_rs_owner(ns, ref["name"])
            if ev.type == "DELETED":
                self._ready_since.pop(meta.get("uid", ""), None)
                self._requests.pop(meta.get("uid", ""), None)
            phase = ev.obj.get("status", {}).get("phase")
            if ev.type == "MODIFIED" and meta.get("deletionTimestamp"):
                self._on_pod_terminating(ev)
            unbound = ev.type == "ADDED" and not ev.obj["spec"].get("nodeName")
            if ev.type == "DELETED" or phase in TERMINAL or unbound:
                self._mark("schedule", "", "")
        elif kind == "Node":
            self._mark("schedule", "", "")

    def _mark_rs_owner(self, ns: str, rs_name: str) -> None:
        """A pod of a ReplicaSet is gone: its Deployment may be waiting for that (a
        Recreate rollout starts the new pods once every old one is gone)."""
        rs = self.store.find(RSS, ns, rs_name)
        for ref in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "Deployment":
                self._mark("Deployment", ns, ref["name"])

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
                sync_job(self, ns, name)
            elif kind == "Deployment":
                sync_deployment(self, ns, name)
            elif kind == "ReplicaSet":
                sync_replicaset(self, ns, name)
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
        }, fresh=True)

    def write_status(self, res: Any, obj: Obj, status: Obj, *, manager: str) -> Obj:
        """A `status` subresource write by `manager` (recorded in managedFields)."""
        if obj.get("status") == status:
            return obj
        return self.store.replace(res, {**obj, "status": status}, obj, manager=manager,
                                  subresource="status", check_rv=False)

    # ---------------------------------------------------------- scheduler/kubelet

    def _schedule_pending(self) -> None:
        pods = self.store.list(PODS)
        pending = [p for p in pods if not p["spec"].get("nodeName")
                   and not p["metadata"].get("deletionTimestamp")]
        if not pending:
            return
        nodes = self.store.list(NODES)
        used = used_resources(pods, self._requests)
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
                self.write_status(PODS, pod, {**pod.get("status", {}), "conditions": conds},
                                  manager=SCHEDULER)
                self.event(pod, "FailedScheduling", message, "Warning")
                continue
            add_usage(used, node, cached_requests(pod, self._requests))
            if refused or (self.claims is not None and self.claims.wants(pod)):
                assert self.claims is not None
                self.claims.allocate(pod, node)
            bound = self.store.bind(PODS, pod, node, condition("PodScheduled", "True", now))
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
        status = running_status(pod, objects.now(), ip, host, ready)
        status["startTime"] = status.get("startTime") or objects.now()
        self.write_status(PODS, pod, status, manager=KUBELET)
        if ready:
            self._ready_since[uid] = asyncio.get_running_loop().time()
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
        self.write_status(PODS, pod, finished_status(pod, objects.now(), phase),
                          manager=KUBELET)

    def _on_pod_terminating(self, ev: Event) -> None:
        """The kubelet got a graceful deletion (or a shorter one): it stops the pod's
        containers and removes the pod once the grace period ran out (the containers
        here never exit early on SIGTERM), releasing the node's resources then."""
        meta = ev.obj["metadata"]
        period = meta.get("deletionGracePeriodSeconds")
        before = (ev.old or {}).get("metadata", {})
        if not period or (before.get("deletionTimestamp") and
                          before.get("deletionGracePeriodSeconds") == period):
            return
        self._later(float(period) * self.time_scale, self._remove_terminated,
                    meta.get("namespace", ""), meta["name"], meta["uid"])

    def _remove_terminated(self, ns: str, name: str, uid: str) -> None:
        pod = self._live(ns, name, uid)
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            self.store.delete(PODS, ns, name, grace_seconds=0)

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
            self.write_status(PODS, pod, status, manager=KUBELET)
            if ready:
                self._ready_since[pod["metadata"]["uid"]] = \
                    asyncio.get_running_loop().time()
            else:
                self._ready_since.pop(pod["metadata"]["uid"], None)
        self._mark("schedule", "", "")

    # ---------------------------------------------------------------- owners

    def owned(self, owner: Obj, res: Any = PODS) -> list[Obj]:
        """The objects of `res` (pods by default) that `owner` controls, by uid."""
        return controlled_by(self.store.list(res, owner["metadata"]["namespace"]),
                             owner["metadata"]["uid"])

    @staticmethod
    def controller_ref(owner: Obj) -> Obj:
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def new_pod(self, owner: Obj, name: str, extra_labels: dict[str, str],
                annotations: dict[str, str], manager: str = CONTROLLERS,
                hostname: str | None = None) -> None:
        tmpl = copy.deepcopy(owner["spec"]["template"])
        if hostname is not None:
            tmpl.setdefault("spec", {})["hostname"] = hostname
        meta = tmpl.get("metadata") or {}
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        meta.update({"name": name, "namespace": owner["metadata"]["namespace"],
                     "ownerReferences": [self.controller_ref(owner)]})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]}
        # built from a deep copy and new dicts: the store may keep it without another copy
        self.store.create(PODS, pod, manager=manager, fresh=True)
        self.event(owner, "SuccessfulCreate", f"Created pod: {name}",
                    source=f"{owner['kind'].lower()}-controller")
        self._mark("schedule", "", "")

    def suffix(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(5))

    # ------------------------------------------------------- time-based checks

    def ready_since(self, pod: Obj) -> float:
        """When (loop time) the pod last became Ready; now if never seen so."""
        loop_now = asyncio.get_running_loop().time()
        return self._ready_since.setdefault(pod["metadata"]["uid"], loop_now)

    def available(self, pod: Obj, min_ready_seconds: float) -> bool:
        """`podutil.IsPodAvailable`: Ready for at least minReadySeconds (scaled)."""
        if not pod_ready(pod):
            return False
        if min_ready_seconds <= 0:
            return True
        waited = asyncio.get_running_loop().time() - self.ready_since(pod)
        return waited >= min_ready_seconds * self.time_scale

    def recheck_when_available(self, owner: Obj, ready: list[Obj],
                               min_ready_seconds: float) -> None:
        loop_now = asyncio.get_running_loop().time()
        due = min(self.ready_since(p) + min_ready_seconds * self.time_scale for p in ready)
        meta = owner["metadata"]
        self._later(max(0.0, due - loop_now) + 1e-3, self._mark, owner["kind"],
                    meta["namespace"], meta["name"])

    def progress_started(self, key: tuple[str, str]) -> None:
        self._progress_at[key] = asyncio.get_running_loop().time()

    def progress_elapsed(self, key: tuple[str, str]) -> float:
        loop_now = asyncio.get_running_loop().time()
        return loop_now - self._progress_at.setdefault(key, loop_now)

    def recheck_deployment_after(self, ns: str, name: str, delay: float) -> None:
        self._later(delay + 1e-3, self._mark, "Deployment", ns, name)

    def mark_deployment(self, ns: str, name: str) -> None:
        self._mark("Deployment", ns, name)


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
