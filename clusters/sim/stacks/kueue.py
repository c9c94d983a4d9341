"""A small simulated Kueue: the job webhook, the Workload per job, and admission by
ClusterQueue quota per flavour with cohort borrowing.

What it does (each as kubernetes-sigs/kueue does it, file paths there):
- webhook (`pkg/controller/jobs/job/job_webhook.go`, jobset likewise): a batch/v1 Job
  or JobSet created with the label `kueue.x-k8s.io/queue-name` is created suspended;
  a Job owned by a JobSet is left to its JobSet;
- a Workload per such job (`pkg/controller/jobframework/reconciler.go`), named
  `<kind>-<name>-<hash>` (`workload_names.go`), owned by the job, with one podSet per
  Job (`main`, count = parallelism) or per replicatedJob (count = replicas x
  parallelism) and `spec.queueName` from the label;
- admission (`pkg/scheduler/scheduler.go`, `flavorassigner/flavorassigner.go`), oldest
  Workload first (BestEffortFIFO): the LocalQueue of its namespace names the
  ClusterQueue; for each covered resource the first flavour of its resource group in
  which the request fits Kueue's `available` (`pkg/cache/resource_node.go`: unused
  guaranteed quota, `nominal - lendingLimit`, plus what the cohort has left of its
  members' lendable quota after what they use past their guarantee, capped by the
  queue's `borrowingLimit`) is taken. It then sets
  `status.admission` and the conditions `QuotaReserved` (reason QuotaReserved,
  `Quota reserved in ClusterQueue <cq>`) and `Admitted` (reason Admitted, `The
  workload is admitted`), and unsuspends the job. One that does not fit keeps
  `QuotaReserved=False` with reason `Pending` and Kueue's message
  (`couldn't assign flavors to pod set main: insufficient unused quota for
  nvidia.com/gpu in flavor h100, 8 more needed`); a missing LocalQueue or
  ClusterQueue is `Inadmissible` (`LocalQueue x doesn't exist`);
- a finished job (Complete or Failed) finishes its Workload (`Finished=True`), which
  gives its quota back; a Workload whose job is gone is deleted;
- ClusterQueue status (`flavorsReservation`, `flavorsUsage` with `total` and
  `borrowed`, pending / reserving / admitted counts, `Active`) and LocalQueue status
  (the same counts, `flavorsReservation` / `flavorsUsage` of its own Workloads with
  `total`, `Active`), in v1beta2's shape (`apis/kueue/v1beta2/clusterqueue_types.go`,
  `localqueue_types.go`).

Not reproduced (docs/simulator.md): preemption, fair sharing, StrictFIFO's blocking,
priorities, admission checks, topology-aware scheduling, partial admission, the
flavour's nodeLabels/tolerations injected into the pod template on admission (the
simulated Job template is immutable), `waitForPodsReady`, hierarchical cohorts
(the Cohort kind), namespaceSelector (every namespace may use every ClusterQueue).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clusters.sim import objects
from clusters.sim.resources import BY_KIND, Resource
from clusters.sim.scheduler import pod_requests, units
from clusters.sim.stacks.schemas import JOBSET_GROUP, KUEUE_GROUP
from clusters.sim.store import Event, Obj, Store

if TYPE_CHECKING:
    from clusters.sim.crds import CustomResources

JOBS = BY_KIND["Job"]
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
MANAGER = "kueue-admission"
"""The field manager Kueue's scheduler applies Workload status with."""
Usage = Counter[str]  # resource -> scheduler units (cpu in millicores)
FlavourUsage = dict[tuple[str, str], int]  # (flavour, resource) -> units


def custom(crds: CustomResources, group: str, kind: str) -> Resource | None:
    """The served resource of a custom kind on this cluster (None until established)."""
    for res in crds.served:
        if res.group == group and res.kind == kind:
            return res
    return None


def _finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed", "Completed") and
               c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _owned_by_jobset(obj: Obj) -> bool:
    return any(r.get("kind") == "JobSet" and str(r.get("apiVersion", "")).startswith(
        JOBSET_GROUP + "/") for r in obj["metadata"].get("ownerReferences") or [])


def managed(obj: Obj) -> bool:
    """A job Kueue manages: it names a queue and no JobSet owns it."""
    return bool((obj["metadata"].get("labels") or {}).get(QUEUE_LABEL)) and \
        not _owned_by_jobset(obj)


def workload_name(kind: str, name: str, uid: str) -> str:
    """`jobframework.GetWorkloadNameForOwnerWithGVK`: a prefix of the owner's kind and
    name, then a short hash of its name, uid and kind (ours: sha1, 5 hex digits)."""
    digest = hashlib.sha1(f"{name}/{uid}/{kind}".encode()).hexdigest()[:5]
    return f"{kind.lower()}-{name}"[:247].rstrip("-.") + f"-{digest}"


def pod_sets(job: Obj) -> list[Obj]:
    """The Workload's podSets for a Job (`main`) or a JobSet (one per replicatedJob)."""
    spec = job.get("spec") or {}
    if job["kind"] == "Job":
        count = int(spec.get("parallelism", 1))
        return [{"name": "main", "count": count, "template": copy.deepcopy(spec["template"])}]
    out = []
    for rj in spec.get("replicatedJobs") or []:
        jspec = (rj.get("template") or {}).get("spec") or {}
        count = int(rj.get("replicas", 1)) * int(jspec.get("parallelism", 1))
        out.append({"name": rj["name"], "count": count,
                    "template": copy.deepcopy(jspec.get("template") or {})})
    return out


def podset_request(ps: Obj) -> Usage:
    one = pod_requests({"spec": (ps.get("template") or {}).get("spec") or {}})
    return Counter({k: v * int(ps.get("count", 1)) for k, v in one.items()})


def _quantity(name: str, units_value: int) -> str:
    """Scheduler units back to a quantity string (cpu in millicores)."""
    if name == "cpu":
        return f"{units_value // 1000}" if units_value % 1000 == 0 else f"{units_value}m"
    return str(units_value)


@dataclass
class Quota:
    nominal: int
    borrowing: int | None
    lending: int | None


def quotas(cq: Obj) -> dict[tuple[str, str], Quota]:
    """(flavour, resource) -> its quota, in the order the queue lists them."""
    out: dict[tuple[str, str], Quota] = {}
    for group in (cq.get("spec") or {}).get("resourceGroups") or []:
        for fl in group.get("flavors") or []:
            for r in fl.get("resources") or []:
                name = r["name"]

                def opt(key: str, name: str = name, r: Obj = r) -> int | None:
                    return units(name, r[key]) if r.get(key) is not None else None
                out[(fl["name"], name)] = Quota(units(name, r["nominalQuota"]),
                                                opt("borrowingLimit"), opt("lendingLimit"))
    return out


def _guaranteed(q: Quota) -> int:
    """`guaranteedQuota` (kubernetes-sigs/kueue `pkg/cache/resource_node.go`): what a
    queue does not lend its cohort, `nominal - lendingLimit` (0 without a limit)."""
    return max(0, q.nominal - q.lending) if q.lending is not None else 0


def available(cq_name: str, queues: dict[str, Obj], used: dict[str, FlavourUsage],
              key: tuple[str, str]) -> int:
    """What `cq_name` may still take of (flavour, resource), as Kueue's `available`
    computes it (`pkg/cache/resource_node.go`, one cohort level): a queue without a
    cohort has `nominal - usage`; in a cohort, the cohort's subtree quota is every
    member's `nominal - guaranteed` and its usage every member's usage past its
    guaranteed quota, so what one member borrows is gone for all; a queue gets its
    unused guaranteed quota plus what the cohort has left, the latter capped by its
    `borrowingLimit` (`nominal - guaranteed - usedInCohort + borrowingLimit`)."""
    q = quotas(queues[cq_name]).get(key)
    if q is None:
        return 0
    mine = used.get(cq_name, {}).get(key, 0)
    cohort = (queues[cq_name].get("spec") or {}).get("cohortName")
    if not cohort:
        return max(0, q.nominal - mine)
    subtree = usage = 0
    for other, obj in queues.items():
        if (obj.get("spec") or {}).get("cohortName") != cohort:
            continue
        oq = quotas(obj).get(key)
        if oq is None:
            continue
        g = _guaranteed(oq)
        subtree += oq.nominal - g
        usage += max(0, used.get(other, {}).get(key, 0) - g)
    parent = subtree - usage
    g = _guaranteed(q)
    if q.borrowing is not None:
        parent = min(q.nominal - g - max(0, mine - g) + q.borrowing, parent)
    return max(0, max(0, g - mine) + parent)


class Kueue:
    """One cluster's simulated Kueue (see module docstring)."""

    def __init__(self, store: Store, crds: CustomResources) -> None:
        self.store = store
        self.crds = crds
        self._scheduled = False
        store.admitters.append(self.admit)
        store.listeners.append(self._on_event)

    def res(self, kind: str) -> Resource | None:
        if kind == "JobSet":
            return custom(self.crds, JOBSET_GROUP, kind)
        return custom(self.crds, KUEUE_GROUP, kind)

    # ------------------------------------------------------------- webhook

    def admit(self, res: Resource, obj: Obj, old: Obj | None) -> None:
        """The job webhook's Default: a new queued job starts suspended."""
        if old is not None or res.kind not in ("Job", "JobSet") or not managed(obj):
            return
        if res.kind == "JobSet" and res.group != JOBSET_GROUP:
            return
        obj.setdefault("spec", {})["suspend"] = True

    # ------------------------------------------------------------ plumbing

    def _on_event(self, ev: Event) -> None:
        if ev.res.group != KUEUE_GROUP and ev.res.kind not in ("Job", "JobSet"):
            return
        if self._scheduled:
            return
        self._scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.sync)
        except RuntimeError:  # a bare Store in a unit test: now
            self.sync()

    def _jobs(self) -> list[tuple[Resource, Obj]]:
        out = [(JOBS, j) for j in self.store.list(JOBS)]
        js = self.res("JobSet")
        if js is not None:
            out += [(js, j) for j in self.store.list(js)]
        return [(r, j) for r, j in out if managed(j)]

    def sync(self) -> None:
        """One pass over every queued job and Workload (idempotent)."""
        self._scheduled = False
        wl_res = self.res("Workload")
        if wl_res is None:
            return
        jobs = self._jobs()
        by_uid = {j["metadata"]["uid"]: (r, j) for r, j in jobs}
        for _, job in jobs:
            self._ensure_workload(wl_res, job)
        for wl in self.store.list(wl_res):
            uid = (wl["metadata"].get("labels") or {}).get(JOB_UID_LABEL)
            if uid and uid not in by_uid:
                meta = wl["metadata"]
                self.store.delete(wl_res, meta["namespace"], meta["name"])
        self._admit_all(wl_res, by_uid)

    def _ensure_workload(self, wl_res: Resource, job: Obj) -> None:
        meta = job["metadata"]
        name = workload_name(job["kind"], meta["name"], meta["uid"])
        if self.store.find(wl_res, meta["namespace"], name) is not None:
            return
        self.store.create(wl_res, {
            "apiVersion": wl_res.api_version, "kind": "Workload",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "labels": {JOB_UID_LABEL: meta["uid"]},
                         "ownerReferences": [{
                             "apiVersion": job["apiVersion"], "kind": job["kind"],
                             "name": meta["name"], "uid": meta["uid"],
                             "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"queueName": meta["labels"][QUEUE_LABEL], "podSets": pod_sets(job),
                     "active": True},
        }, manager="kueue")

    # ------------------------------------------------------------ admission

    def _admit_all(self, wl_res: Resource, by_uid: dict[str, tuple[Resource, Obj]]) -> None:
        cq_res, lq_res = self.res("ClusterQueue"), self.res("LocalQueue")
        queues = {q["metadata"]["name"]: q for q in self.store.list(cq_res)} if cq_res else {}
        local = {(q["metadata"]["namespace"], q["metadata"]["name"]): q
                 for q in self.store.list(lq_res)} if lq_res else {}
        used: dict[str, FlavourUsage] = {}
        workloads = sorted(self.store.list(wl_res), key=lambda w: (
            w["metadata"]["creationTimestamp"], w["metadata"]["name"]))
        pending: list[Obj] = []
        for wl in workloads:
            job = by_uid.get((wl["metadata"].get("labels") or {}).get(JOB_UID_LABEL, ""))
            admission = (wl.get("status") or {}).get("admission")
            if job is not None and _finished(job[1]):
                self._finish(wl_res, wl, job[1])
                continue
            if _is_finished(wl):
                continue
            if admission:
                _charge(used, admission, wl)
                continue
            pending.append(wl)
        for wl in pending:
            lq = local.get((wl["metadata"]["namespace"], wl["spec"].get("queueName", "")))
            if lq is None:
                self._pending(wl_res, wl, "Inadmissible",
                              f"LocalQueue {wl['spec'].get('queueName', '')} doesn't exist")
                continue
            cq_name = (lq.get("spec") or {}).get("clusterQueue", "")
            if cq_name not in queues:
                self._pending(wl_res, wl, "Inadmissible",
                              f"ClusterQueue {cq_name} doesn't exist")
                continue
            assignment, message = assign(wl, cq_name, queues, used)
            if assignment is None:
                self._pending(wl_res, wl, "Pending", message)
                continue
            admission = {"clusterQueue": cq_name, "podSetAssignments": assignment}
            _charge(used, admission, wl)
            self._admitted(wl_res, wl, admission)
            job = by_uid.get((wl["metadata"].get("labels") or {}).get(JOB_UID_LABEL, ""))
            if job is not None:
                self._unsuspend(*job)
        if cq_res is not None:
            self._queue_status(cq_res, lq_res, queues, local, wl_res)

    def _write(self, wl_res: Resource, wl: Obj, status: Obj) -> None:
        if wl.get("status") != status:
            self.store.replace(wl_res, {**wl, "status": status}, wl, manager=MANAGER,
                               subresource="status", check_rv=False)

    def _pending(self, wl_res: Resource, wl: Obj, reason: str, message: str) -> None:
        status = copy.deepcopy(wl.get("status") or {})
        _set_condition(status, "QuotaReserved", "False", reason, message)
        self._write(wl_res, wl, status)

    def _admitted(self, wl_res: Resource, wl: Obj, admission: Obj) -> None:
        status = copy.deepcopy(wl.get("status") or {})
        status["admission"] = admission
        _set_condition(status, "QuotaReserved", "True", "QuotaReserved",
                       f"Quota reserved in ClusterQueue {admission['clusterQueue']}")
        _set_condition(status, "Admitted", "True", "Admitted", "The workload is admitted")
        self._write(wl_res, wl, status)

    def _finish(self, wl_res: Resource, wl: Obj, job: Obj) -> None:
        if _is_finished(wl):
            return
        failed = any(c.get("type") == "Failed" and c.get("status") == "True"
                     for c in (job.get("status") or {}).get("conditions") or [])
        status = copy.deepcopy(wl.get("status") or {})
        if failed:
            _set_condition(status, "Finished", "True", "Failed", "Job failed")
        else:
            _set_condition(status, "Finished", "True", "Succeeded",
                           "Job finished successfully")
        self._write(wl_res, wl, status)

    def _unsuspend(self, res: Resource, job: Obj) -> None:
        if not (job.get("spec") or {}).get("suspend"):
            return
        new = copy.deepcopy(job)
        new["spec"]["suspend"] = False
        self.store.replace(res, new, job, manager="kueue", check_rv=False)

    def _queue_status(self, cq_res: Resource, lq_res: Resource | None,
                      queues: dict[str, Obj], local: dict[tuple[str, str], Obj],
                      wl_res: Resource) -> None:
        counts: dict[str, Counter[str]] = {n: Counter() for n in queues}
        lq_counts: dict[tuple[str, str], Counter[str]] = {k: Counter() for k in local}
        used: dict[str, FlavourUsage] = {}
        lq_used: dict[tuple[str, str], FlavourUsage] = {}
        for wl in self.store.list(wl_res):
            if _is_finished(wl):
                continue
            admission = (wl.get("status") or {}).get("admission")
            lq_key = (wl["metadata"]["namespace"], wl["spec"].get("queueName", ""))
            lq = local.get(lq_key)
            cq = admission["clusterQueue"] if admission else \
                ((lq or {}).get("spec") or {}).get("clusterQueue")
            state = "admittedWorkloads" if admission else "pendingWorkloads"
            if cq in counts:
                counts[cq][state] += 1
            if lq is not None:
                lq_counts[lq_key][state] += 1
            if admission:
                _charge(used, admission, wl)
                if lq is not None:
                    mine: dict[str, FlavourUsage] = {}
                    _charge(mine, admission, wl)
                    for k, v in mine.get(admission["clusterQueue"], {}).items():
                        per = lq_used.setdefault(lq_key, {})
                        per[k] = per.get(k, 0) + v
        for name, cq in queues.items():
            self._cq_status(cq_res, cq, counts[name], used.get(name, {}))
        if lq_res is not None:
            for key, lq in local.items():
                c = lq_counts[key]
                cq = queues.get((lq.get("spec") or {}).get("clusterQueue", ""))
                usage = _lq_usage(cq, lq_used.get(key, {})) if cq is not None else []
                status = copy.deepcopy(lq.get("status") or {})
                status.update({"pendingWorkloads": c["pendingWorkloads"],
                               "reservingWorkloads": c["admittedWorkloads"],
                               "admittedWorkloads": c["admittedWorkloads"],
                               "flavorsReservation": usage,
                               "flavorsUsage": copy.deepcopy(usage)})
                if cq is not None:
                    _set_condition(status, "Active", "True", "Ready",
                                   "Can submit new workloads to localQueue")
                else:
                    _set_condition(status, "Active", "False", "ClusterQueueDoesNotExist",
                                   "Can't submit new workloads to clusterQueue")
                if lq.get("status") != status:
                    self.store.replace(lq_res, {**lq, "status": status}, lq,
                                       manager="kueue", subresource="status",
                                       check_rv=False)

    def _cq_status(self, cq_res: Resource, cq: Obj, counts: Counter[str],
                   used: FlavourUsage) -> None:
        by_flavour: dict[str, list[Obj]] = {}
        for (flavour, resource), q in quotas(cq).items():
            total = used.get((flavour, resource), 0)
            by_flavour.setdefault(flavour, []).append({
                "name": resource, "total": _quantity(resource, total),
                "borrowed": _quantity(resource, max(0, total - q.nominal))})
        usage = [{"name": f, "resources": r} for f, r in by_flavour.items()]
        status = copy.deepcopy(cq.get("status") or {})
        status.update({"flavorsReservation": usage, "flavorsUsage": copy.deepcopy(usage),
                       "pendingWorkloads": counts["pendingWorkloads"],
                       "reservingWorkloads": counts["admittedWorkloads"],
                       "admittedWorkloads": counts["admittedWorkloads"]})
        _set_condition(status, "Active", "True", "Ready", "Can admit new workloads")
        if cq.get("status") != status:
            self.store.replace(cq_res, {**cq, "status": status}, cq, manager="kueue",
                               subresource="status", check_rv=False)


def _lq_usage(cq: Obj, used: FlavourUsage) -> list[Obj]:
    """A LocalQueue's `flavorsReservation`/`flavorsUsage` (v1beta2
    `LocalQueueFlavorUsage`: name, resources[].name/total; no `borrowed`), one entry
    per flavour and resource of its ClusterQueue, as Kueue's LocalQueue controller
    lists them (`pkg/controller/core/localqueue_controller.go`)."""
    by_flavour: dict[str, list[Obj]] = {}
    for (flavour, resource) in quotas(cq):
        by_flavour.setdefault(flavour, []).append({
            "name": resource, "total": _quantity(resource, used.get((flavour, resource), 0))})
    return [{"name": f, "resources": r} for f, r in by_flavour.items()]


def assign(wl: Obj, cq_name: str, queues: dict[str, Obj],
           used: dict[str, FlavourUsage]) -> tuple[list[Obj] | None, str]:
    """Flavours for every podSet, or None and Kueue's message why not
    (`flavorassigner.go`): a requested resource no resource group covers is
    `resource <r> unavailable in ClusterQueue`; per resource group, the first flavour in
    which every requested resource of the group fits is taken."""
    groups = (queues[cq_name].get("spec") or {}).get("resourceGroups") or []
    taken: FlavourUsage = {}
    out: list[Obj] = []
    for ps in wl["spec"].get("podSets") or []:
        request = podset_request(ps)
        flavors: dict[str, str] = {}
        reasons = [f"resource {r} unavailable in ClusterQueue" for r in sorted(request)
                   if request[r] and not any(r in g.get("coveredResources", [])
                                             for g in groups)]
        for group in groups if not reasons else []:
            wanted = [r for r in group.get("coveredResources", []) if request.get(r)]
            if not wanted:
                continue
            chosen, why = _first_fit(group, wanted, request, cq_name, queues,
                                     _plus(used, cq_name, taken))
            if chosen is None:
                reasons = why
                break
            for r in wanted:
                flavors[r] = chosen
                taken[(chosen, r)] = taken.get((chosen, r), 0) + request[r]
        if reasons:
            return None, (f"couldn't assign flavors to pod set {ps.get('name', 'main')}: "
                          + ", ".join(reasons))
        out.append({"name": ps.get("name", "main"), "flavors": flavors,
                    "count": int(ps.get("count", 1)),
                    "resourceUsage": {k: _quantity(k, v) for k, v in sorted(request.items())
                                      if k in flavors}})
    return out, ""


def _first_fit(group: Obj, wanted: list[str], request: Usage, cq_name: str,
               queues: dict[str, Obj], used: dict[str, FlavourUsage]
               ) -> tuple[str | None, list[str]]:
    why: list[str] = []
    for fl in group.get("flavors") or []:
        short = []
        for r in wanted:
            free = available(cq_name, queues, used, (fl["name"], r))
            if request[r] > free:
                short.append(f"insufficient unused quota for {r} in flavor {fl['name']}, "
                             f"{_quantity(r, request[r] - free)} more needed")
        if not short:
            return fl["name"], []
        why += short
    return None, why


def _plus(used: dict[str, FlavourUsage], cq: str, extra: FlavourUsage
          ) -> dict[str, FlavourUsage]:
    if not extra:
        return used
    mine = dict(used.get(cq, {}))
    for k, v in extra.items():
        mine[k] = mine.get(k, 0) + v
    return {**used, cq: mine}


def _charge(used: dict[str, FlavourUsage], admission: Obj, wl: Obj) -> None:
    mine = used.setdefault(admission["clusterQueue"], {})
    sets = {ps.get("name", "main"): ps for ps in wl["spec"].get("podSets") or []}
    for a in admission.get("podSetAssignments") or []:
        request = podset_request(sets.get(a["name"], {}))
        for resource, flavour in (a.get("flavors") or {}).items():
            key = (flavour, resource)
            mine[key] = mine.get(key, 0) + request.get(resource, 0)


def _is_finished(wl: Obj) -> bool:
    return any(c.get("type") == "Finished" and c.get("status") == "True"
               for c in (wl.get("status") or {}).get("conditions") or [])


def _set_condition(status: Obj, kind: str, value: str, reason: str, message: str) -> None:
    """metav1.Condition semantics: lastTransitionTime moves only when status does."""
    conds: list[Any] = status.setdefault("conditions", [])
    for c in conds:
        if c["type"] == kind:
            if c["status"] != value:
                c["lastTransitionTime"] = objects.now()
            c.update(status=value, reason=reason, message=message)
            return
    conds.append({"type": kind, "status": value, "reason": reason, "message": message,
                  "lastTransitionTime": objects.now()})
