"""A small simulated JobSet controller (jobset.x-k8s.io/v1alpha2).

What it does, as kubernetes-sigs/jobset's `pkg/controllers/jobset_controller.go`:
- one batch/v1 Job per replica of each replicatedJob, named `<jobset>-<rjob>-<i>`
  (`GenJobName`), owned by the JobSet, labelled and annotated with
  `jobset.sigs.k8s.io/jobset-name`, `replicatedjob-name`, `replicatedjob-replicas`,
  `job-index` and `job-key` (also on the pod template, so pods carry them);
- with DNS hostnames on (the default, `network.enableDNSHostnames`), a headless
  Service named `network.subdomain` or the JobSet's name, selecting the JobSet's pods
  (`clusterIP: None`, `publishNotReadyAddresses: true` by default), and the pod
  template's `subdomain` set to it, so an Indexed Job's pod `<job>-<index>` resolves as
  `<job>-<index>.<subdomain>`;
- `spec.suspend` is copied to every Job (so Kueue's unsuspend of the JobSet starts the
  Jobs);
- status: `replicatedJobsStatus` (active / succeeded / failed / suspended / ready Jobs
  per replicatedJob), and the `Completed` condition with `terminalState: Completed`
  once every Job of the targeted replicatedJobs completed (`successPolicy.operator`
  All) or one did (Any), or `Failed` / `terminalState: Failed` once any Job failed
  (the default failurePolicy: no restarts).

Not reproduced (docs/simulator.md): failurePolicy restarts and rules, startupPolicy
(InOrder), dependsOn, coordinator, exclusive placement, TTL after finished, the
webhook's validation beyond the CRD schema, managedBy.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

from clusters.sim import objects
from clusters.sim.resources import BY_KIND, Resource
from clusters.sim.stacks.kueue import custom
from clusters.sim.stacks.schemas import JOBSET_GROUP
from clusters.sim.store import Event, Obj, Store

if TYPE_CHECKING:
    from clusters.sim.crds import CustomResources

JOBS, SERVICES = BY_KIND["Job"], BY_KIND["Service"]
PREFIX = "jobset.sigs.k8s.io/"
JOBSET_NAME = PREFIX + "jobset-name"
MANAGER = "jobset"


def _job_state(job: Obj) -> str:
    conds = {c["type"]: c["status"] for c in (job.get("status") or {}).get("conditions")
             or []}
    if conds.get("Complete") == "True":
        return "succeeded"
    if conds.get("Failed") == "True":
        return "failed"
    if (job.get("spec") or {}).get("suspend"):
        return "suspended"
    return "active"


def subdomain(js: Obj) -> str | None:
    net = (js.get("spec") or {}).get("network") or {}
    if net.get("enableDNSHostnames") is False:
        return None
    return str(net.get("subdomain") or js["metadata"]["name"])


def child_job(js: Obj, rj: Obj, index: int) -> Obj:
    """The Job a JobSet creates for replica `index` of replicatedJob `rj`."""
    name = js["metadata"]["name"]
    job_name = f"{name}-{rj['name']}-{index}"
    tags = {JOBSET_NAME: name, PREFIX + "replicatedjob-name": rj["name"],
            PREFIX + "replicatedjob-replicas": str(rj.get("replicas", 1)),
            PREFIX + "job-index": str(index), PREFIX + "job-key": job_name}
    tmpl = copy.deepcopy(rj.get("template") or {})
    meta = tmpl.get("metadata") or {}
    spec = tmpl.get("spec") or {}
    pod = spec.setdefault("template", {})
    pod_meta = pod.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **tags}
    pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), **tags}
    sub = subdomain(js)
    if sub is not None:
        pod.setdefault("spec", {})["subdomain"] = sub
    spec["suspend"] = bool((js.get("spec") or {}).get("suspend"))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name, "namespace": js["metadata"]["namespace"],
                         "labels": {**(meta.get("labels") or {}), **tags},
                         "annotations": {**(meta.get("annotations") or {}), **tags},
                         "ownerReferences": [_owner(js)]},
            "spec": spec}


def _owner(js: Obj) -> Obj:
    return {"apiVersion": js["apiVersion"], "kind": "JobSet",
            "name": js["metadata"]["name"], "uid": js["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


class JobSets:
    """One cluster's simulated JobSet controller (see module docstring)."""

    def __init__(self, store: Store, crds: CustomResources) -> None:
        self.store = store
        self.crds = crds
        self._dirty: set[tuple[str, str]] = set()
        self._scheduled = False
        store.listeners.append(self._on_event)

    def _res(self) -> Resource | None:
        return custom(self.crds, JOBSET_GROUP, "JobSet")

    def _on_event(self, ev: Event) -> None:
        meta = ev.obj["metadata"]
        if ev.res.kind == "JobSet" and ev.res.group == JOBSET_GROUP:
            if ev.type != "DELETED":
                self._mark(meta["namespace"], meta["name"])
        elif ev.res.kind == "Job":
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "JobSet":
                    self._mark(meta["namespace"], ref["name"])

    def _mark(self, ns: str, name: str) -> None:
        self._dirty.add((ns, name))
        if self._scheduled:
            return
        self._scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self._drain)
        except RuntimeError:
            self._drain()

    def _drain(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        res = self._res()
        if res is None:
            return
        for ns, name in sorted(dirty):
            js = self.store.find(res, ns, name)
            if js is not None and not js["metadata"].get("deletionTimestamp"):
                self.sync(res, js)

    def sync(self, res: Resource, js: Obj) -> None:
        ns = js["metadata"]["namespace"]
        sub = subdomain(js)
        if sub is not None and self.store.find(SERVICES, ns, sub) is None:
            net = (js.get("spec") or {}).get("network") or {}
            self.store.create(SERVICES, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": sub, "namespace": ns, "ownerReferences": [_owner(js)]},
                "spec": {"clusterIP": "None",
                         "selector": {JOBSET_NAME: js["metadata"]["name"]},
                         "publishNotReadyAddresses": net.get("publishNotReadyAddresses",
                                                             True)},
            }, manager=MANAGER)
        suspend = bool((js.get("spec") or {}).get("suspend"))
        jobs: dict[str, list[Obj]] = {}
        for rj in (js.get("spec") or {}).get("replicatedJobs") or []:
            for i in range(int(rj.get("replicas", 1))):
                want = child_job(js, rj, i)
                job = self.store.find(JOBS, ns, want["metadata"]["name"])
                if job is None:
                    job = self.store.create(JOBS, want, manager=MANAGER)
                elif bool(job["spec"].get("suspend")) != suspend and _job_state(job) in (
                        "active", "suspended"):
                    new = copy.deepcopy(job)
                    new["spec"]["suspend"] = suspend
                    job = self.store.replace(JOBS, new, job, manager=MANAGER,
                                             check_rv=False)
                jobs.setdefault(rj["name"], []).append(job)
        self._status(res, js, jobs)

    def _status(self, res: Resource, js: Obj, jobs: dict[str, list[Obj]]) -> None:
        rows = []
        states: dict[str, list[str]] = {}
        for name, js_jobs in jobs.items():
            st = [_job_state(j) for j in js_jobs]
            states[name] = st
            rows.append({"name": name, "ready": sum(
                1 for j in js_jobs if (j.get("status") or {}).get("ready", 0) and
                _job_state(j) == "active"),
                "succeeded": st.count("succeeded"), "failed": st.count("failed"),
                "active": st.count("active"), "suspended": st.count("suspended")})
        status = copy.deepcopy(js.get("status") or {})
        status["replicatedJobsStatus"] = rows
        status.setdefault("restarts", 0)
        policy = (js.get("spec") or {}).get("successPolicy") or {}
        targets = policy.get("targetReplicatedJobs") or list(states)
        done = [s for n in targets for s in states.get(n, [])]
        conds = list(status.get("conditions") or [])
        if not status.get("terminalState"):
            now = objects.now()
            if any("failed" in s for s in states.values()):
                status["terminalState"] = "Failed"
                conds.append({"type": "Failed", "status": "True", "reason": "FailedJobs",
                              "message": "jobset failed due to reaching max number of "
                              "restarts", "lastTransitionTime": now})
            elif done and (all(s == "succeeded" for s in done)
                           if policy.get("operator", "All") == "All"
                           else any(s == "succeeded" for s in done)):
                status["terminalState"] = "Completed"
                conds.append({"type": "Completed", "status": "True",
                              "reason": "AllJobsCompleted", "message": "jobset completed "
                              "successfully", "lastTransitionTime": now})
        if conds:
            status["conditions"] = conds
        if js.get("status") != status:
            self.store.replace(res, {**js, "status": status}, js, manager=MANAGER,
                               subresource="status", check_rv=False)
