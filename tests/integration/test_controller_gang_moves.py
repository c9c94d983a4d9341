"""A gang moved between two clusters that both answer never runs on both: its new copy
starts only once the old one is deleted and its pods have terminated, however long the
old cluster refuses the delete (`fleet.safety.gang_start_waits`). The real controller on
simulated clusters; the clusters' own stores are read after every write to them and
after every reconcile pass, so an overlap of any length is counted, not timed.

The chaos test's seed 4 (steps 55-62 of its third long run) was this: a commit restored
a Cluster file that put the gang's cluster back in a jurisdiction its data may not be
in, the plan moved the gang to the other cluster, which started it at once, while the
old cluster refused the delete (503, eleven writes queued to fail) for eleven seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from clusters.sim import SimFleet
from clusters.sim.store import Event
from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from fleet.render import WORKLOAD_LABEL, workload_label
from fleet.safety import TERMINAL_POD_PHASES
from tests.fleetdocs import cluster, workload
from tests.support.controller import CLUSTERS, TRAIN, running, where

EU = ("eu-fra-1", "eu-par-1")
LABEL = workload_label(TRAIN)
JOB_WRITES = "/apis/batch/v1/namespaces/"


def holds(sim: SimFleet, name: str) -> bool:
    """Whether `name` runs the gang: its Job (not being deleted), or a pod of it that
    has not terminated, straight from the cluster's store."""
    store = sim.clusters[name].store
    for kind in ("Job", "Pod"):
        for o in store.list(store.resources.lookup(kind)):
            meta = o.get("metadata") or {}
            if (meta.get("labels") or {}).get(WORKLOAD_LABEL) != LABEL:
                continue
            if kind == "Job" and not meta.get("deletionTimestamp"):
                return True
            if kind == "Pod" and (o.get("status") or {}).get("phase") not in \
                    TERMINAL_POD_PHASES:
                return True
    return False


@dataclass
class Watch:
    """Counts the moments the gang ran on both clusters: after every write to either
    cluster's store, and after every reconcile pass."""

    sim: SimFleet
    old: str
    new: str
    writes: int = 0
    both_after_write: int = 0
    passes: list[tuple[str, bool, bool]] = field(default_factory=list)
    """(cluster, old holds it, new holds it) after each pass."""
    again: list[tuple[str, float | str | None]] = field(default_factory=list)
    """(cluster, when the pass asked to run again, or the error it raised)."""
    waiting_seen: list[str] = field(default_factory=list)
    """`Waiting` reasons the status showed for the gang after a pass on the new cluster."""

    def on_event(self, ev: Event) -> None:
        if ev.res.kind not in ("Job", "Pod"):
            return
        self.writes += 1
        if holds(self.sim, self.old) and holds(self.sim, self.new):
            self.both_after_write += 1

    @property
    def both_after_pass(self) -> list[tuple[str, bool, bool]]:
        return [p for p in self.passes if p[1] and p[2]]


@asynccontextmanager
async def watching(m: Manager, sim: SimFleet, old: str, new: str) -> AsyncIterator[Watch]:
    w = Watch(sim, old, new)
    reconcile = m.queue.handler

    async def recorded(name: str) -> float | None:
        try:
            result = await reconcile(name)
        except BaseException as e:  # a pass cancelled as the controller stops, too
            w.again.append((name, type(e).__name__))
            raise
        else:
            w.again.append((name, result))
            return result
        finally:
            w.passes.append((name, holds(sim, old), holds(sim, new)))
            if name == new:
                row = next(r for r in m.status()["workloads"] if r["id"] == TRAIN)
                w.waiting_seen += [r["message"] for r in row.get("reasons", [])
                                   if r.get("rule") == "Waiting"]

    for name in (old, new):
        sim.clusters[name].store.listeners.append(w.on_event)
    m.queue.handler = recorded
    try:
        yield w
    finally:
        m.queue.handler = reconcile
        for name in (old, new):
            sim.clusters[name].store.listeners.remove(w.on_event)


async def rolled_out(m: Manager, box: Sandbox) -> tuple[str, str]:
    """Until the test fleet runs; (the EU cluster running the gang, the other one)."""
    await until(lambda: synced(m.status(), box.first_commit) == (3, 3), 30,
                what="first rollout")
    old = where(m.status())[TRAIN][0]
    return old, next(c for c in EU if c != old)


@asynccontextmanager
async def refused_moving(tmp_path: Path, refusals: int
                         ) -> AsyncIterator[tuple[Sandbox, Manager, Watch]]:
    """The test fleet runs, the gang's cluster refuses its next `refusals` Job writes
    (each delete is tried twice), and both EU clusters are watched."""
    async with running(tmp_path) as (box, m, sim):
        old, new = await rolled_out(m, box)
        sim.clusters[old].faults.fail_next(refusals, 503, prefix=JOB_WRITES)
        async with watching(m, sim, old, new) as w:
            yield box, m, w


def never_on_both(w: Watch) -> None:
    """The gang never ran on both clusters: after no write, after no pass."""
    assert w.both_after_write == 0, w.passes
    assert not w.both_after_pass, w.passes


async def moved(box: Sandbox, w: Watch) -> None:
    """Until the gang runs on the new cluster only, having been refused on the old one
    first: some pass there ended with the old copy still running."""
    sim = box.sim
    assert sim is not None
    await until(lambda: TRAIN in workloads_on(sim, w.new)
                and TRAIN not in workloads_on(sim, w.old) and not holds(sim, w.old),
                60, what="the gang moved")
    assert any(name == w.old and old for name, old, _new in w.passes), w.passes
    assert w.writes > 0


async def test_a_gang_moved_between_two_answering_clusters_never_runs_on_both(
        tmp_path: Path) -> None:
    # The old cluster answers, but refuses its next six Job writes: three passes that
    # cannot delete the old copy.
    async with refused_moving(tmp_path, 6) as (box, m, w):
        box.repo.commit({"workloads/nlp-team/train.yaml": workload(
            "train", extra_spec=f"    clusters: [{w.new}]\n")},
            f"nlp-team: train moves to {w.new}")
        m.trigger_fetch()
        await moved(box, w)
    never_on_both(w)
    # it waited, visibly, naming the cluster that still ran it
    assert w.waiting_seen and all(w.old in msg for msg in w.waiting_seen)
    assert any(name == w.new and o and not n for name, o, n in w.passes)


async def test_a_relabel_that_moves_a_gang_while_its_cluster_refuses_the_delete(
        tmp_path: Path) -> None:
    # The shape of chaos seed 4: the gang's cluster is relabelled into a jurisdiction
    # its data may not be in, the plan moves it to the other EU cluster, and the old
    # cluster refuses the delete for a while (writes queued to fail).
    async with refused_moving(tmp_path, 8) as (box, m, w):
        box.repo.commit({f"clusters/{w.old}.yaml": cluster(w.old, "US", (
            ("h100-80gb", 32, 8),))}, f"{w.old} is in the US now")
        m.trigger_fetch()
        await moved(box, w)
    never_on_both(w)
    assert w.waiting_seen


async def test_a_retiring_cluster_that_answers_with_errors_is_drained_before_the_gang_starts(
        tmp_path: Path) -> None:
    # The gang's cluster is removed from the repo while its Job writes fail: the drain
    # cannot delete the old copy for a while; the new copy waits, the old one runs on,
    # nothing runs twice, and the drain is retried within a second (not backed off).
    async with refused_moving(tmp_path, 8) as (box, m, w):
        old = w.old
        box.repo.commit({f"clusters/{old}.yaml": None}, f"retire {old}")
        m.trigger_fetch()
        await moved(box, w)
        await until(lambda: old not in m.adapters, 30, what="retired")
        assert sorted(m.adapters) == sorted(set(CLUSTERS) - {old})
    never_on_both(w)
    # every drain pass that could not delete asked to run again within a second,
    # rather than failing into the work queue's backoff (towards a minute)
    refused = [a for (name, a), (_n, held, _new) in zip(w.again, w.passes, strict=True)
               if name == old and held and a != "CancelledError"]  # (ended by the exit)
    assert refused and all(isinstance(a, float) and a <= 1.0 for a in refused), w.again


async def test_failover_from_a_cluster_that_does_not_answer_does_not_wait(
        tmp_path: Path) -> None:
    # The rule orders moves between clusters that answer; a copy on one that does not
    # cannot be deleted, and the failover grace decides, as before.
    async with running(tmp_path, failover_grace=1.0) as (box, m, sim):
        old, new = await rolled_out(m, box)
        await sim.clusters[old].down()
        await until(lambda: TRAIN in workloads_on(sim, new), 30, what="failed over")
        assert TRAIN in workloads_on(sim, old)  # still there: it did not answer
        await sim.clusters[old].up()
        await until(lambda: TRAIN not in workloads_on(sim, old), 30,
                    what="stale copy deleted on return")
