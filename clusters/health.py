"""Health of a cluster, and of a workload's objects in it.

A cluster is judged from what its own requests saw (every request reports an outcome)
plus a cheap heartbeat (`GET /version`) when nothing else is talking to it:
- Unknown: nothing heard yet;
- Unreachable: no answer at all for `unreachable_after` seconds, the failover grace
  clock starts from `unreachable_since` -- or at once when the controller cut it off
  (`cut_off`: its credentials Secret went away);
- Degraded: it answers, but with 5xx/429, or some requests got no answer, within the
  last `degraded_window` seconds;
- Healthy: otherwise.

`why()` says which of these made it so, with the last request that did (method, path,
status code or error): an SRE looking at a Degraded cluster needs the cause, not only
the word.

A busy controller is not a broken cluster (issue 22): every window above is measured
on `clock() - stalled()`, the seconds the controller's event loop could run
(`controllers.runtime.looplag`), so a loop that stalls for ten seconds does not age a
run of silence by ten seconds; and a request whose timeout fired while the loop lagged
reports `Outcome.BUSY` (the answer may have arrived and sat unread), which is no
evidence either way and is only counted (`busy`).

A workload in a cluster is Progressing / Running / Succeeded / Failed from its Job or
Deployment status, the way `kubectl rollout status` and `kubectl wait` read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from clusters.client import Outcome

ClusterHealth = Literal["Healthy", "Degraded", "Unreachable", "Unknown"]
WorkloadHealth = Literal["Progressing", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(slots=True)
class HealthTracker:
    unreachable_after: float = 15.0
    degraded_window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    stalled: Callable[[], float] = lambda: 0.0
    """Seconds the controller's loop has been late so far (`LoopLag.stalled`)."""
    busy: int = 0
    """Requests that timed out while the loop lagged: not held against the cluster."""
    last_ok: float | None = None
    last_error: float | None = None
    last_no_answer: float | None = None
    first_no_answer: float | None = None
    """Start of the current run of unanswered requests (None once something answers)."""
    error_detail: str = ""
    """The last request answered with 5xx/429: `GET /api/v1/pods: 503 ...`."""
    no_answer_detail: str = ""
    """The last request that got no answer: `GET /version: ClientConnectorError ...`."""
    cut: tuple[float, str, str] | None = None
    """(since, reason, message): the controller stopped talking to the cluster on its
    own (its credentials Secret was deleted or became unusable): Unreachable from then
    on, whatever its requests said before (`cut_off`)."""

    def cut_off(self, reason: str, message: str) -> None:
        """Unreachable from now on, with this cause: the client is closed, so nothing
        will answer again (a new connection gets a new tracker)."""
        if self.cut is None:
            self.cut = (self.now(), reason, message)

    def now(self) -> float:
        """The health clock: seconds the loop could run (the clock less its stalls)."""
        return self.clock() - self.stalled()

    def record(self, outcome: str, detail: str = "") -> None:
        if outcome == Outcome.BUSY:
            self.busy += 1
            return
        now = self.now()
        if outcome == Outcome.NO_ANSWER:
            self.last_no_answer = now
            self.no_answer_detail = detail
            if self.first_no_answer is None:
                self.first_no_answer = now
            return
        self.first_no_answer = None
        self.last_ok = now  # an error status is still an answer
        if outcome == Outcome.ERROR:
            self.last_error = now
            self.error_detail = detail

    def heard_within(self, seconds: float) -> bool:
        """Whether the cluster answered a request in the last `seconds` (health clock)
        and nothing has gone unanswered since: a heartbeat now would tell nothing new
        (the adapter skips it; at 1,000 clusters during a cold start the heartbeats
        were 8-12% of a busy replica's loop while every cluster answered applies)."""
        if self.cut is not None or self.first_no_answer is not None or self.last_ok is None:
            return False
        return self.now() - self.last_ok < seconds

    @property
    def state(self) -> ClusterHealth:
        if self.cut is not None:
            return "Unreachable"
        now = self.now()
        if self.first_no_answer is not None:
            if now - self.first_no_answer >= self.unreachable_after:
                return "Unreachable"
            return "Degraded"
        if self.last_ok is None:
            return "Unknown"
        if self.last_error is not None and now - self.last_error < self.degraded_window:
            return "Degraded"
        if self.last_no_answer is not None and now - self.last_no_answer < self.degraded_window:
            return "Degraded"
        return "Healthy"

    @property
    def unreachable_since(self) -> float | None:
        if self.cut is not None:
            return self.cut[0]
        return self.first_no_answer if self.state == "Unreachable" else None

    def unreachable_for(self) -> float | None:
        """Loop-available seconds since the first unanswered request, while Unreachable
        (what a failover grace is counted against), else None."""
        since = self.unreachable_since
        return None if since is None else self.now() - since

    def why(self) -> tuple[str, str] | None:
        """(reason, message) of a Degraded or Unreachable state, None otherwise: the
        same tests as `state`, in the same order, so the cause always matches it."""
        if self.cut is not None:
            return self.cut[1], self.cut[2]
        now = self.now()
        if self.first_no_answer is not None:
            silent = now - self.first_no_answer
            if silent >= self.unreachable_after:
                return ("NoAnswer", f"no answer for {silent:.0f}s (after "
                        f"{self.unreachable_after:.0f}s it is Unreachable); last: "
                        f"{self.no_answer_detail or 'a request'}")
            return ("NoAnswer", f"requests unanswered for {silent:.0f}s; last: "
                    f"{self.no_answer_detail or 'a request'}")
        if self.last_ok is None:
            return None
        if self.last_error is not None and now - self.last_error < self.degraded_window:
            return ("APIErrors", f"API error {now - self.last_error:.0f}s ago (Degraded "
                    f"for {self.degraded_window:.0f}s after one): "
                    f"{self.error_detail or 'a 5xx or 429 answer'}")
        if self.last_no_answer is not None and now - self.last_no_answer < self.degraded_window:
            return ("UnansweredRequests", f"a request got no answer "
                    f"{now - self.last_no_answer:.0f}s ago (Degraded for "
                    f"{self.degraded_window:.0f}s after one): "
                    f"{self.no_answer_detail or 'a request'}")
        return None


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and "type" in c:
            out[str(c["type"])] = str(c.get("status"))
    return out


def job_health(job: dict[str, Any]) -> WorkloadHealth:
    conds = _conditions(job)
    if conds.get("Failed") == "True":
        return "Failed"
    if conds.get("Complete") == "True":
        return "Succeeded"
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    parallelism = spec.get("parallelism")
    want = int(parallelism) if parallelism is not None else 1
    completions = spec.get("completions")
    if completions is not None:
        # Pods that already succeeded are not replaced: once fewer completions remain
        # than `parallelism`, fewer pods run, and that is still Running.
        want = min(want, int(completions) - int(status.get("succeeded") or 0))
    ready = int(status.get("ready") or 0)
    active = int(status.get("active") or 0)
    if want > 0 and active >= want and ready >= want:
        return "Running"
    return "Progressing"


def deployment_health(dep: dict[str, Any]) -> WorkloadHealth:
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    replicas = spec.get("replicas")
    want = int(replicas) if replicas is not None else 1
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return "Progressing"
    conds = (status.get("conditions") or [])
    for c in conds:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return "Failed"
    if int(status.get("updatedReplicas") or 0) >= want \
            and int(status.get("availableReplicas") or 0) >= want:
        return "Running"
    return "Progressing"


def unschedulable_pods(pods: Iterable[dict[str, Any]]) -> str | None:
    """Why a workload's pods wait for a node, or None: the count of its non-terminal,
    unbound pods the scheduler marked `PodScheduled=False, reason=Unschedulable`, and
    the scheduler's message for the first (`0/8 nodes are available: 8 Insufficient
    cpu. ...`). A placement that counted GPUs only can still ask a node for more cpu or
    memory than it allocates; this is how that shows instead of a silent "Placed"."""
    waiting: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed") or \
                (pod.get("spec") or {}).get("nodeName"):
            continue
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" \
                    and c.get("reason") == "Unschedulable":
                waiting.append(str(c.get("message") or ""))
                break
    if not waiting:
        return None
    return (f"{len(waiting)} pod(s) Pending, unschedulable: {sorted(waiting)[0]}").strip()


def kueue_queued(workloads: Iterable[dict[str, Any]]) -> str | None:
    """Why Kueue holds a workload's Job or JobSet suspended, or None: for the first of
    its Kueue Workloads not admitted and not finished, `queued by Kueue in LocalQueue
    <q>: <message>` with the message of its `QuotaReserved=False` condition, as Kueue
    writes it (`couldn't assign flavors to pod set main: insufficient unused quota for
    nvidia.com/gpu in flavor h100, 8 more needed`). Placed by us, waiting in Kueue's
    queue on that cluster: how MultiKueue workers show it."""
    waiting: list[str] = []
    for wl in workloads:
        conds = {c.get("type"): c for c in (wl.get("status") or {}).get("conditions") or []}
        if (conds.get("Finished") or {}).get("status") == "True" or \
                (conds.get("Admitted") or {}).get("status") == "True":
            continue
        queue = (wl.get("spec") or {}).get("queueName") or "?"
        reserved = conds.get("QuotaReserved") or {}
        why = str(reserved.get("message") or "waiting for Kueue to evaluate it")
        waiting.append(f"queued by Kueue in LocalQueue {queue}: {why}")
    return sorted(waiting)[0] if waiting else None


def workload_health(objects: Iterable[dict[str, Any]]) -> WorkloadHealth:
    """The health of one workload's objects in one cluster (its Job or Deployment)."""
    states: list[WorkloadHealth] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Job":
            states.append(job_health(obj))
        elif kind == "Deployment":
            states.append(deployment_health(obj))
    if not states:
        return "Unknown"
    order: tuple[WorkloadHealth, ...] = ("Failed", "Progressing", "Running")
    for state in order:
        if state in states:
            return state
    return "Succeeded"
