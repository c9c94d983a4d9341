"""The Job controller's sync, as batch/v1 behaves for the cases a GPU fleet uses.

One sync reads the Job and its pods (owned by uid), then:
- suspended: deletes active pods and sets `Suspended=True`;
- otherwise creates pods up to `parallelism`, never beyond the completions still
  missing (Indexed: one pod per missing index, lowest first, named
  `<job>-<index>-<rand>`, hostname `<job>-<index>`, and labelled
  `batch.kubernetes.io/job-completion-index`);
- counts succeeded pods (never decreasing, as the real controller's tracking does even
  after pods are deleted), and when they reach `completions` sets
  `SuccessCriteriaMet=True` then `Complete=True` with `completionTime`;
- counts failed pods (a pod annotated `sim.aifleet.dev/exit-code: "<non-zero>"` fails
  when it would have succeeded), replaces them, and once failures exceed
  `backoffLimit` deletes the active pods and sets `FailureTarget` then `Failed`
  (reason BackoffLimitExceeded).
Status carries `startTime`, `active`, `ready`, `succeeded`, `terminating` and
`uncountedTerminatedPods` like a 1.35 Job; zero counts are omitted as the API omits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clusters.sim import objects
from clusters.sim.resources import BY_KIND
from clusters.sim.scheduler import TERMINAL, pod_ready
from clusters.sim.store import Obj

if TYPE_CHECKING:
    from clusters.sim.controllers import ControlPlane

JOBS, PODS = BY_KIND["Job"], BY_KIND["Pod"]
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _ranges(indexes: set[int]) -> str:
    """`0-2,5` as `status.completedIndexes` spells a set of indexes."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(i)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _index(pod: Obj) -> int | None:
    value = (pod["metadata"].get("labels") or {}).get(INDEX_LABEL)
    return int(value) if value is not None and value.isdigit() else None


def sync_job(cp: ControlPlane, ns: str, name: str) -> None:
    store = cp.store
    job = store.find(JOBS, ns, name)
    if job is None or job["metadata"].get("deletionTimestamp"):
        return
    spec, status = job["spec"], dict(job.get("status") or {})
    conds = list(status.get("conditions") or [])
    finished = any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                   for c in conds)
    pods = cp.owned(job)
    indexed = spec.get("completionMode") == "Indexed"
    succeeded_pods = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
    failed = max(int(status.get("failed", 0)),
                 sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed"))
    active = [p for p in pods if p.get("status", {}).get("phase") not in TERMINAL
              and not p["metadata"].get("deletionTimestamp")]
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    now = objects.now()
    if indexed:
        done_idx = {i for p in succeeded_pods if (i := _index(p)) is not None}
        done_idx |= _parse_ranges(status.get("completedIndexes", ""))
        succeeded = len(done_idx)
    else:
        succeeded = max(int(status.get("succeeded", 0)), len(succeeded_pods))
    target = int(completions) if completions is not None else parallelism
    if not finished and failed > int(spec.get("backoffLimit", 6)):
        for p in active:
            store.delete(PODS, ns, p["metadata"]["name"])
        active = []
        for kind in ("FailureTarget", "Failed"):
            conds.append({"type": kind, "status": "True", "reason": "BackoffLimitExceeded",
                          "message": "Job has reached the specified backoff limit",
                          "lastProbeTime": now, "lastTransitionTime": now})
        finished = True
        cp.event(job, "BackoffLimitExceeded", "Job has reached the specified backoff limit",
                 "Warning", source="job-controller")
    if not finished and spec.get("suspend"):
        for p in active:
            store.delete(PODS, ns, p["metadata"]["name"])
        active = []
        if not any(c["type"] == "Suspended" and c["status"] == "True" for c in conds):
            conds = [c for c in conds if c["type"] != "Suspended"] + [{
                "type": "Suspended", "status": "True", "reason": "JobSuspended",
                "message": "Job suspended", "lastProbeTime": now,
                "lastTransitionTime": now}]
    elif not finished and succeeded < target:
        conds = [c for c in conds if c["type"] != "Suspended"]
        status.setdefault("startTime", now)
        missing = min(parallelism, target - succeeded) - len(active)
        if indexed:
            busy = {i for p in active if (i := _index(p)) is not None}
            free = [i for i in range(target) if i not in done_idx and i not in busy]
            for i in free[:max(0, missing)]:
                # pkg/controller/job/job_controller.go, manageJob: an Indexed Job's
                # pod gets the hostname `<job>-<index>` (its DNS name in a subdomain)
                cp.new_pod(job, f"{name}-{i}-{cp.suffix()}", {INDEX_LABEL: str(i)},
                            {INDEX_ANNOTATION: str(i)}, hostname=f"{name}-{i}")
        else:
            for _ in range(max(0, missing)):
                cp.new_pod(job, f"{name}-{cp.suffix()}", {}, {})
        active = [p for p in cp.owned(job) if p.get("status", {}).get("phase")
                  not in TERMINAL]
    if not finished and succeeded >= target and not spec.get("suspend"):
        status.setdefault("startTime", now)
        for kind, reason, message in (
                ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of "
                 "succeeded pods"),
                ("Complete", "CompletionsReached", "Reached expected number of succeeded "
                 "pods")):
            conds.append({"type": kind, "status": "True", "reason": reason,
                          "message": message, "lastProbeTime": now,
                          "lastTransitionTime": now})
        status["completionTime"] = now
        active = []
        cp.event(job, "Completed", "Job completed", source="job-controller")
    new: Obj = {k: v for k, v in status.items()
                if k in ("startTime", "completionTime", "completedIndexes")}
    if conds:
        new["conditions"] = conds
    if active:
        new["active"] = len(active)
    if succeeded:
        new["succeeded"] = succeeded
    if failed:
        new["failed"] = failed
    if indexed and succeeded:
        new["completedIndexes"] = _ranges(done_idx)
    new["ready"] = sum(1 for p in active if pod_ready(p))
    new["terminating"] = sum(
        1 for p in cp.owned(job) if p["metadata"].get("deletionTimestamp")
        and p.get("status", {}).get("phase") not in TERMINAL)
    new["uncountedTerminatedPods"] = {}
    job = store.get(JOBS, ns, name)
    cp.write_status(JOBS, job, new, manager="kube-controller-manager")


def _parse_ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
