"""The last plan's placements, kept in the state directory across restarts.

After a restart the controller rebuilds the previous plan from what runs
(`fleetstate.previous_from_live`), so its first plan moves nothing. A cluster that is
down at that moment cannot say what runs on it: without more, its workloads would have
no previous placement and be placed afresh at once, turning a short controller restart
during an outage into a failover that skips the grace period (and pulls long training
jobs off a cluster that may be back in a minute).

So every plan's placements are also written to `<state dir>/last-plan.json`, and a
restart takes the placements on clusters that have not listed from it: those workloads
are then *kept* on the down cluster, like any workload of an Unreachable cluster, until
the failover grace runs out (counted from the restart: never shorter than asked).

The file is a `controllers.persist.statefile`: versioned JSON that survives an upgrade, written
atomically, owner-only; a missing, unreadable or foreign file is ignored with a warning
(the restart then behaves as if it were missing: what is down is placed afresh).

A plan that changes a few decisions (a commit of a few workloads, `LastPlan.save` told
which) is not written whole again: the placements that changed are appended to
`last-plan.changes.jsonl`, one fsynced line per plan, each naming the `generation` of
the whole file it follows (a random token written with it). Reading takes the file,
then its generation's lines in order, up to the first that does not parse (a line torn
by a crash: the plans after it are lost, as a save that never happened). After
`COMPACT_EVERY` lines per workload saved, the next save writes the file whole under a
new generation, then removes the lines file: a crash between the two leaves lines of
the old generation, which the new file does not take. Appending is O(changed); the
whole write, 50,000 workloads of JSON and an fsync, is ~0.2 s of CPU
(`python -m bench.commitpath`).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Collection, Mapping, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from controllers.persist import statefile
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, PreviousPlan
from fleet.planning import placements

if TYPE_CHECKING:
    from controllers.persist.sharedplan import SharedPlan

log = structlog.get_logger()

FILE = "last-plan.json"
VERSION = 1
CHANGES = "last-plan.changes.jsonl"
"""The placements changed since the whole file was written (`LastPlan.save`)."""
COMPACT_EVERY = 1 / 50
"""Lines appended per workload saved before the file is written whole again (50,000
workloads: every 1,000 plans); at least `COMPACT_MIN`."""
COMPACT_MIN = 64




def to_doc(placed: Mapping[WorkloadId, tuple[Assignment, ...]], commit: str | None
           ) -> dict[str, Any]:
    return {"commit": commit,
            "workloads": {wid: rows_of(assignments)
                          for wid, assignments in sorted(placed.items())}}


def rows_of(assignments: tuple[Assignment, ...]) -> list[list[Any]]:
    return [[a.cluster, a.flavour, a.replicas, a.gpus_per_replica] for a in assignments]


def from_doc(doc: Mapping[str, Any]) -> PreviousPlan:
    """The placements of `to_doc`'s document; ValueError/TypeError/KeyError when it is
    not one."""
    return {WorkloadId(str(wid)): assignments_of(rows)
            for wid, rows in doc["workloads"].items()}


def assignments_of(rows: Any) -> tuple[Assignment, ...]:
    """One workload's assignments, from its rows of `to_doc`'s document;
    ValueError/TypeError when they are not such rows."""
    return tuple(sorted(
        Assignment(ClusterName(str(c)), Flavour(str(f)), _count(r), _count(g))
        for c, f, r, g in rows))


def save(state_dir: Path, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
         commit: str | None, generation: str | None = None) -> None:
    """Write the placements (`controllers.persist.statefile`: atomic, owner-only); with
    `generation`, then remove the lines of changes that followed the file before."""
    doc = to_doc(placed, commit)
    if generation is not None:
        doc["generation"] = generation
    statefile.write(state_dir / FILE, VERSION, doc)
    (state_dir / CHANGES).unlink(missing_ok=True)


def append_changes(state_dir: Path, generation: str, commit: str | None,
                   changes: Mapping[WorkloadId, tuple[Assignment, ...] | None]) -> None:
    """One line of changed placements (None: no longer placed) after the file of
    `generation`, fsynced; the lines file is owner-only."""
    line = json.dumps({"generation": generation, "commit": commit, "workloads": {
        wid: None if a is None else rows_of(a) for wid, a in sorted(changes.items())}},
        separators=(",", ":")) + "\n"
    fd = os.open(state_dir / CHANGES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load(state_dir: Path) -> PreviousPlan:
    """The placements last saved, or {} (with a warning when a file is there but cannot
    be used): the whole file, then the lines of changes that follow it."""
    doc = statefile.read(state_dir / FILE, VERSION)
    if doc is None:
        return {}
    try:
        placed = dict(from_doc(doc))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        statefile.unusable(state_dir / FILE, e)
        return {}
    generation = doc.get("generation")
    if generation is None:
        return placed
    try:
        text = (state_dir / CHANGES).read_text(encoding="utf-8")
    except FileNotFoundError:
        return placed
    except OSError as e:
        statefile.unusable(state_dir / CHANGES, e)
        return placed
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            if entry["generation"] != generation:
                continue  # of a file written whole since (a crash before removal)
            changes = {WorkloadId(str(wid)): None if rows is None else assignments_of(rows)
                       for wid, rows in entry["workloads"].items()}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            statefile.unusable(state_dir / CHANGES, e)  # torn by a crash: what follows
            break                                      # it is lost, not misread
        for wid, assignments in changes.items():
            if assignments is None:
                placed.pop(wid, None)
            else:
                placed[wid] = assignments
    return placed


def _count(v: object) -> int:
    if type(v) is not int or v < 1:
        raise ValueError(f"expected a positive integer, got {v!r}")
    return v


def with_unlisted(live: PreviousPlan, last: PreviousPlan, listed: Set[str],
                  clusters: Set[str]) -> PreviousPlan:
    """The previous plan after a restart: what runs on the clusters that listed, plus,
    from the last plan, what ran on the repo's clusters that did not (down at startup)."""
    out = {wid: list(a) for wid, a in live.items()}
    for wid, assignments in last.items():
        for a in assignments:
            if a.cluster in listed or a.cluster not in clusters:
                continue
            have = out.setdefault(wid, [])
            if all(x.cluster != a.cluster for x in have):
                have.append(a)
    return {wid: tuple(sorted(a)) for wid, a in sorted(out.items()) if a}


class LastPlan:
    """The last plan's placements in a state directory, and (with `shared`) in the home
    cluster for every replica: saved after every plan that changes them, restored after
    a restart for the clusters that did not list (the home cluster's copy first)."""

    def __init__(self, state_dir: Path, shared: SharedPlan | None = None) -> None:
        self.state_dir = state_dir
        self.shared = shared
        self._saved: dict[WorkloadId, tuple[Assignment, ...]] | None = None
        """The placements the state dir holds (the file and its lines), ours alone."""
        self._saved_of: Plan | None = None
        """The plan they are of."""
        self._generation: str | None = None
        """The whole file's generation this process wrote (None: not written yet)."""
        self._lines = 0
        """Lines of changes appended since."""

    async def restore(self, from_live: PreviousPlan, *, listed: Set[str],
                      clusters: Set[str]) -> PreviousPlan:
        """`with_unlisted` with the saved placements; says which clusters it filled in."""
        last = await self.shared.read() if self.shared is not None else None
        source = "cluster"
        if last is None:
            last, source = load(self.state_dir), "file"
        previous = with_unlisted(from_live, last, listed, clusters)
        unlisted = {a.cluster for assignments in previous.values() for a in assignments
                    if a.cluster not in listed}
        if unlisted:
            log.info("previous_from_last_plan", clusters=sorted(unlisted), source=source,
                     workloads=sum(1 for assignments in previous.values()
                                   if any(a.cluster in unlisted for a in assignments)))
        return previous

    async def save(self, plan: Plan, commit: str | None, *,
                   changed: Collection[WorkloadId] | None = None,
                   base: Plan | None = None) -> None:
        """Write the plan's placements (the file in a worker thread) when they changed.

        `changed`: `plan` is `base` with only these decisions changed (`ProcessPlacer.
        changes`); when `base` is the plan saved last, only the changed placements are
        appended (`append_changes`): O(changed).

        The copy in the home cluster (only the parts `changed` touched: `SharedPlan`)
        is written while the file is: neither reads the other, and the followers,
        which wait for the home's copy, no longer wait for this replica's disk too.
        It is begun first, so its encoding runs before the file's."""
        async with anyio.create_task_group() as tg:
            if self.shared is not None:
                tg.start_soon(functools.partial(
                    self.shared.write_plan, plan, commit, changed=changed, base=base))
            tg.start_soon(self._save_file, plan, commit, changed, base)

    async def _save_file(self, plan: Plan, commit: str | None,
                         changed: Collection[WorkloadId] | None, base: Plan | None) -> None:
        if changed is not None and base is not None and base is self._saved_of and \
                self._saved is not None and self._generation is not None and \
                self._lines < max(COMPACT_MIN, int(len(self._saved) * COMPACT_EVERY)):
            await self._append(plan, commit, changed)
        else:
            await self._write(plan, commit)

    async def _write(self, plan: Plan, commit: str | None) -> None:
        placed = placements(plan)
        if placed == self._saved:
            self._saved_of = plan
            return
        generation = secrets.token_hex(8)
        try:
            await anyio.to_thread.run_sync(
                lambda: save(self.state_dir, placed, commit, generation))
        except OSError as e:  # a full disk must not stop placement: say it, go on
            log.warning("last_plan_not_saved", error=f"{type(e).__name__}: {e}")
            return
        self._saved, self._saved_of, self._generation = dict(placed), plan, generation
        self._lines = 0

    async def _append(self, plan: Plan, commit: str | None,
                      changed: Collection[WorkloadId]) -> None:
        saved, generation = self._saved, self._generation
        assert saved is not None and generation is not None
        changes: dict[WorkloadId, tuple[Assignment, ...] | None] = {}
        for wid in changed:
            wp = plan.workloads.get(wid)
            now = wp.assignments if wp is not None and wp.status == "Placed" and \
                wp.assignments else None
            if saved.get(wid) != now:
                changes[wid] = now
        if changes:
            try:
                await anyio.to_thread.run_sync(
                    lambda: append_changes(self.state_dir, generation, commit, changes))
            except OSError as e:
                log.warning("last_plan_not_saved", error=f"{type(e).__name__}: {e}")
                self._saved = self._saved_of = None  # the next save writes it whole
                return
            self._lines += 1
            for wid, now in changes.items():
                if now is None:
                    saved.pop(wid, None)
                else:
                    saved[wid] = now
        self._saved_of = plan
