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

The file is plain, versioned JSON (not a pickle stamped with the code version): an
upgrade is a restart, and the placements must survive it. It is written atomically,
owner-only; a missing, unreadable or foreign file is ignored with a warning (the
restart then behaves as if it were missing: what is down is placed afresh).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

import structlog

from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, Plan, PreviousPlan

log = structlog.get_logger()

FILE = "last-plan.json"
VERSION = 1


def placements(plan: Plan) -> dict[WorkloadId, tuple[Assignment, ...]]:
    """What a plan places, as a previous plan: Placed workloads' assignments."""
    return {wid: wp.assignments for wid, wp in plan.workloads.items()
            if wp.status == "Placed" and wp.assignments}


def save(state_dir: Path, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
         commit: str | None) -> None:
    """Write the placements atomically (a crash leaves the old file or the new one)."""
    doc: dict[str, Any] = {
        "version": VERSION, "commit": commit,
        "workloads": {wid: [[a.cluster, a.flavour, a.replicas, a.gpus_per_replica]
                            for a in assignments]
                      for wid, assignments in sorted(placed.items())},
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".last-plan.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state_dir / FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(state_dir: Path) -> PreviousPlan:
    """The placements last saved, or {} (with a warning when a file is there but cannot
    be used)."""
    path = state_dir / FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("last_plan_unreadable", path=str(path), error=f"{type(e).__name__}: {e}")
        return {}
    try:
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, this controller reads {VERSION}")
        out: dict[WorkloadId, tuple[Assignment, ...]] = {}
        for wid, rows in doc["workloads"].items():
            out[WorkloadId(str(wid))] = tuple(sorted(
                Assignment(ClusterName(str(c)), Flavour(str(f)), _count(r), _count(g))
                for c, f, r, g in rows))
        return out
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        log.warning("last_plan_unreadable", path=str(path), error=f"{type(e).__name__}: {e}")
        return {}


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


def restore(state_dir: Path, from_live: PreviousPlan, *, listed: Set[str],
            clusters: Set[str]) -> PreviousPlan:
    """`with_unlisted` with the saved last plan; says which clusters it filled in."""
    previous = with_unlisted(from_live, load(state_dir), listed, clusters)
    unlisted = {a.cluster for assignments in previous.values() for a in assignments
                if a.cluster not in listed}
    if unlisted:
        log.info("previous_from_last_plan", clusters=sorted(unlisted), workloads=sum(
            1 for assignments in previous.values()
            if any(a.cluster in unlisted for a in assignments)))
    return previous
