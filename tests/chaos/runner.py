"""One seeded chaos run: the steps, the wait for the controller to settle, the checks.

After every step the run waits (bounded) until the controller has settled on the head
commit: it observed the head; it applied it or says why not (a condition); every
placed workload away from down clusters is Synced; after a cluster went down, its
workloads failed over (or the bound ran out: a workload may legitimately wait); and two
readings of the clusters agree. A run that does not settle is noted in the step list,
not failed: the invariants are checked either way.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from clusters.sim import SimFleet
from controllers.settings import Settings
from tests.chaos.fleet import initial_files
from tests.chaos.invariants import Judge
from tests.chaos.steps import Generator, Step
from tests.chaos.world import (
    Clusters,
    Controller,
    InProcess,
    Live,
    Remote,
    Subprocess,
    settings_values,
    start_clusters,
    start_home,
)

SETTLE_WITHIN = 15.0
STUCK_WITHIN = 3.0
MAX_REPAIRS = 5
FAILOVER_WITHIN = 5.0
WRITE_PREFIXES = ("/apis/batch/v1/namespaces/", "/apis/apps/v1/namespaces/")


@dataclass
class Report:
    seed: int
    leader_elect: bool
    steps: list[str] = field(default_factory=list)
    violations: list[tuple[int, str]] = field(default_factory=list)
    unsettled: int = 0

    def text(self, steps_total: int) -> str:
        lines = [f"chaos seed {self.seed} (leader election "
                 f"{'on' if self.leader_elect else 'off'}): "
                 f"{len(self.violations)} violation(s); {self.unsettled} step(s) did not "
                 "settle in time (marked [...] below)"]
        lines += [f"  step {i}: {v}" for i, v in self.violations]
        lines.append("steps:")
        lines += [f"  {s}" for s in self.steps]
        lines.append(f"reproduce: AIFLEET_CHAOS_SEED={self.seed} "
                     f"AIFLEET_CHAOS_STEPS={steps_total} pytest tests/chaos -x -q")
        return "\n".join(lines)


def _trace(index: int, step: Step) -> None:
    """With `AIFLEET_CHAOS_TRACE=1`, each step on stderr with the time, between the
    in-process controller's log lines (run with `-s` to diagnose a finding)."""
    if os.environ.get("AIFLEET_CHAOS_TRACE") == "1":
        print(f"{datetime.now(UTC).isoformat()} chaos_step {index}: {step.text}",
              file=sys.stderr, flush=True)


def _settled(doc: dict[str, Any] | None, head: str, down: set[str]) -> str | None:
    """Why the status document is not settled on `head` yet (None: settled)."""
    if doc is None:
        return "no status"
    src = doc["source"]
    if src["observedCommit"] != head:
        return f"observed {str(src['observedCommit'])[:8]}"
    # A cluster being drained (`ClusterRetiring`) does not say why the head is not the
    # applied commit: the controller already acts on the head there and elsewhere, and
    # the head becomes the applied one when the drain is done -- a transition to wait
    # out (bounded), like a sync, not a hold. Judged before, the oracle took the older
    # applied commit's workloads as still in force while the head had deleted one.
    said = [c for c in src["conditions"]
            if c["type"] not in ("Ready", "ClusterRetiring") and c["status"] == "True"]
    if src["appliedCommit"] != head and not said:
        return f"applied {str(src['appliedCommit'])[:8]} and no condition says why"
    for w in doc["workloads"]:
        on = {p["cluster"] for p in w.get("placements", [])}
        if w["status"] == "Placed" and not on & down and w["sync"] != "Synced":
            return f"{w['id']} {w['sync']}"
    return None


def _health(doc: dict[str, Any] | None, cluster: str) -> str | None:
    for row in (doc or {}).get("clusters", []):
        if row["name"] == cluster:
            return str(row["health"])
    return None


def _placed_on(doc: dict[str, Any] | None, cluster: str) -> list[str]:
    return [w["id"] for w in (doc or {}).get("workloads", []) if w["status"] == "Placed"
            and cluster in {p["cluster"] for p in w.get("placements", [])}]


class Run:
    def __init__(self, seed: int, steps: int, root: Path) -> None:
        self.seed, self.total, self.root = seed, steps, root
        self.gen = Generator(seed, leader_elect=seed % 2 == 1)
        self.report = Report(seed, self.gen.leader_elect)
        self.remote = Remote(root / "remote.git")
        self.kubeconfig = root / "kubeconfig"
        self.values = settings_values(root, self.remote, self.kubeconfig,
                                      leader_elect=self.gen.leader_elect)
        self.judge = Judge(self.gen.model, self.remote.descends)
        self.clusters: Clusters | None = None
        self.home: SimFleet | None = None
        """With leader election: the management cluster that holds the Lease."""
        self.ctl: Controller | None = None
        self.subprocess = False
        self.tg: anyio.abc.TaskGroup | None = None
        self.before: Live = {}
        """The clusters' workloads after the previous step."""
        self.stuck = False
        """The previous step did not settle."""

    # ------------------------------------------------------------------ controller

    async def _start(self) -> None:
        assert self.tg is not None
        ctl: InProcess | Subprocess
        if self.subprocess:
            ctl = Subprocess(self.values, self.root / "fleet-run.log")
        else:
            ctl = InProcess(self.tg, Settings(**self.values))
        await ctl.start()
        self.ctl = ctl

    async def _status(self) -> dict[str, Any] | None:
        assert self.ctl is not None
        return await self.ctl.status()

    async def _wait(self, why_not: Any, within: float) -> str | None:
        """Poll `why_not()` (async, None when done) until done or `within` s: the last
        reason, or None."""
        started = time.monotonic()
        while True:
            reason: str | None = await why_not()
            if reason is None or time.monotonic() - started > within:
                return reason
            if self.ctl is not None and self.ctl.died():
                return "controller died"
            await anyio.sleep(0.1)

    async def settle(self, step: Step | None) -> str:
        assert self.clusters is not None
        m = self.gen.model
        down = set(m.down)
        notes: list[str] = []
        if step is not None and step.kind in ("down", "up"):
            want_down = step.kind == "down"

            async def seen() -> str | None:
                h = _health(await self._status(), step.target)
                return None if (h == "Unreachable") == want_down else f"health {h}"

            why = await self._wait(seen, 10.0)
            if why:
                notes.append(f"{step.target} {why}")
        if step is not None and step.kind == "down":
            async def failed_over() -> str | None:
                left = _placed_on(await self._status(), step.target)
                return f"still placed on {step.target}: {left}" if left else None

            why = await self._wait(failed_over, FAILOVER_WITHIN)
            if why:
                notes.append(why)

        if step is not None and step.kind == "home-up":
            async def leading() -> str | None:
                doc = await self._status()
                return None if doc and (doc.get("leader") or {}).get("leading") \
                    else "no leader"

            why = await self._wait(leading, 10.0)
            if why:
                notes.append(why)
        if step is not None and step.kind in ("up", "home-up") and not m.home_down:
            # A returning cluster's stale gang copies go before anything else (and, once
            # the Lease's home is back, as soon as a leader may write): give the
            # controller the bound to delete them, then invariant 5 judges.
            async def no_stale_gang() -> str | None:
                assert self.clusters is not None
                twice = self.judge.gangs(await self.clusters.live(), down)
                return twice[0] if twice else None

            why = await self._wait(no_stale_gang, FAILOVER_WITHIN)
            if why:
                notes.append(why)

        async def settled() -> str | None:
            return _settled(await self._status(), m.head, down)

        # A controller that did not settle last time (stuck: say, no leader) gets a
        # shorter wait, so a stuck run stays bounded; the step list says so either way.
        why = await self._wait(settled, STUCK_WITHIN if self.stuck else SETTLE_WITHIN)
        self.stuck = why is not None
        if why:
            notes.append(f"not settled: {why}")
        last: list[Live] = []

        async def stable() -> str | None:
            assert self.clusters is not None
            last.append(await self.clusters.live())
            return None if len(last) > 1 and last[-1] == last[-2] else "clusters changing"

        why = await self._wait(stable, 5.0)
        if why:
            notes.append(why)
        if notes:
            self.report.unsettled += 1
        return f"  [{'; '.join(notes)}]" if notes else ""

    # ------------------------------------------------------------------ steps

    async def execute(self, step: Step) -> None:
        assert self.clusters is not None and self.ctl is not None
        sim = self.clusters.sim
        if step.files is not None:
            sha = self.remote.commit(step.files, step.message)
            self.gen.committed(step, sha)
            self.ctl.trigger()
        elif step.kind in ("force-push", "forward"):
            self.remote.force_to(step.target)
            self.gen.moved(step)
            self.ctl.trigger()
        elif step.kind == "down":
            await sim.clusters[step.target].down()
        elif step.kind == "up":
            await sim.clusters[step.target].up()
        elif step.kind in ("home-down", "home-up"):
            assert self.home is not None
            home = self.home.clusters["home"]
            await (home.down() if step.kind == "home-down" else home.up())
        elif step.kind == "apply-errors":
            for prefix in WRITE_PREFIXES:
                sim.clusters[step.target].faults.fail_next(step.count, 503, prefix=prefix)
        elif step.kind in ("restart", "sigkill"):
            if step.kind == "sigkill" and self.subprocess:
                await self.ctl.kill()
            else:
                await self.ctl.stop()
            self.subprocess = step.kind == "sigkill"
            await self._start()
        self.gen.fault(step)

    async def _repair(self, index: int) -> None:
        forwarded = self.gen.model.tip is not None
        if self.gen.model.tip is not None:
            forward = Step("forward", "force-push main forward", target=self.gen.model.tip)
            self.remote.force_to(forward.target)
            self.gen.moved(forward)
        fix = self.gen.repair()
        assert fix.files is not None
        self.gen.committed(fix, self.remote.commit(fix.files, fix.message))
        self.report.steps.append(f"{index}. (crash loop: operator commits {fix.text}"
                                 f"{', after forwarding main' if forwarded else ''})")

    async def check(self, index: int, base: str | None) -> list[str]:
        assert self.clusters is not None and self.ctl is not None
        out: list[str] = []
        died = self.ctl.died()
        health = await self.ctl.healthz()
        if died or health != 200:
            out.append(f"1 not alive: /healthz {health}; {died or ''}".rstrip("; "))
        doc = await self._status()
        applied = doc["source"]["appliedCommit"] if doc else None
        out += self.judge.observe_applied(applied)
        after = await self.clusters.live()
        down = self.gen.model.down
        out += self.judge.residency(after, down)
        out += self.judge.nothing_lost(self.before, after, base, applied)
        if not self.gen.model.home_down:
            # While the Lease's home is down nobody may write (the fence): a copy left
            # on a cluster that returns meanwhile goes once a leader is back.
            out += self.judge.gangs(after, down)
        self.before = after
        return out

    async def run(self, *, keep_going: bool) -> Report:
        m = self.gen.model
        first = Step("init", "initial fleet", files=initial_files(), message="Initial fleet")
        self.gen.committed(first, self.remote.commit(initial_files(), "Initial fleet"))
        self.clusters = await start_clusters(self.remote, m.head, self.kubeconfig)
        self.home = await start_home(self.root) if self.gen.leader_elect else None
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                await self._start()
                note = await self.settle(None)
                self.report.steps.append(f"0. initial rollout{note}")
                self.before = await self.clusters.live()
                base: str | None = m.head
                deaths = repairs = 0
                for i in range(1, self.total + 1):
                    step = self.gen.next()
                    doc = await self._status()
                    if doc and doc["source"]["appliedCommit"]:
                        base = doc["source"]["appliedCommit"]
                    _trace(i, step)
                    await self.execute(step)
                    note = await self.settle(step)
                    self.report.steps.append(f"{i}. {step.text}{note}")
                    problems = await self.check(i, base)
                    self.report.violations += [(i, p) for p in problems]
                    if problems and not keep_going:
                        break
                    died = self.ctl.died() if self.ctl is not None else None
                    if died and not any(p.startswith("1 ") for p in problems):
                        self.report.violations.append((i, f"1 not alive: {died}"))
                    deaths = deaths + 1 if died else 0
                    if died and self.ctl is not None:  # as its Deployment would: restart
                        if deaths > 1 and repairs >= MAX_REPAIRS:
                            break  # crash-loops whatever is repaired: nothing more to learn
                        await self.ctl.stop()
                        if deaths > 1:  # a crash loop: an operator repairs the repo
                            await self._repair(i)
                            repairs += 1
                        self.report.steps.append(f"{i}. (controller died; started again)")
                        await self._start()
                assert self.ctl is not None
                await self.ctl.stop()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if self.ctl is not None:  # a failed run leaves no `fleet run` behind
                    await self.ctl.kill()
                await self.clusters.sim.close()
                if self.home is not None:
                    await self.home.close()
            await self.clusters.aclose()
        return self.report
