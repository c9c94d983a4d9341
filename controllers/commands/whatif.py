"""`fleet whatif`: which workloads move where, or go Pending and why, under a change."""

from __future__ import annotations

import argparse
import json
from typing import Any

from controllers.commands.common import (
    CommandFailed,
    add_format_argument,
    add_repo_arguments,
    controller_namespace_of,
    fail,
    read_snapshot,
    write_doc,
)
from controllers.commands.liveplan import add_server_argument, describe, exit_code, use_live
from controllers.status.statusview import table
from fleet.capacity import CapacityFormatError, CapacitySnapshot
from fleet.placement.types import Assignment
from fleet.planning import capacity_for
from fleet.whatif import Scenario, check, whatif
from workloads.errors import WorkloadsError
from workloads.loader import read_fleet

DESCRIPTION = """\
Plan the fleet as it is, then again under a change, with the same placement core the
controller runs and today's placement as what runs (so what can stay, stays). Shows
which workloads would move where and which would become Pending, with the reason.
Touches nothing.

Changes (combine freely):
  --drain CLUSTER             cordon the cluster and evict everything from it
  --down REGION               every cluster of the region unreachable (failover)
  --capacity FLAVOUR=-50%     lose that share of each cluster's nodes of the flavour
  --policy-ref BRANCH         plan with the repo at BRANCH (e.g. a policy change)

Capacity is what the Cluster files declare, or a CapacitySnapshot JSON (--capacity-file,
e.g. from a controller's /api/v1/capacity).

Examples:
  fleet whatif --down eu-central-1
  fleet whatif examples/fleet --worktree --drain eu-fra-1 --format json
  fleet whatif --capacity h100-80gb=-50% --policy-ref residency-tightening
  fleet whatif --server http://fleet:8080 --down us-east
      # from what runs now (after a failover, from where the workloads are)"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("whatif", help="what moves or goes Pending under a change",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(p)
    p.add_argument("--drain", action="append", default=[], metavar="CLUSTER")
    p.add_argument("--down", action="append", default=[], metavar="REGION")
    p.add_argument("--capacity", action="append", default=[], metavar="FLAVOUR=PCT",
                   type=_capacity_change)
    p.add_argument("--policy-ref", metavar="BRANCH",
                   help="plan the changed fleet from the repo at this branch or commit")
    p.add_argument("--capacity-file", metavar="FILE",
                   help="a CapacitySnapshot JSON instead of the declared capacity")
    add_server_argument(p)
    add_format_argument(p, ("text", "json"), "text")
    p.set_defaults(handler=run)


def _capacity_change(value: str) -> tuple[str, float]:
    flavour, sep, pct = value.partition("=")
    try:
        if not sep or not flavour or not pct.endswith("%"):
            raise ValueError
        return flavour, float(pct[:-1]) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not FLAVOUR=PERCENT%, e.g. h100-80gb=-50%") from None


def _where(assignments: tuple[Assignment, ...]) -> str:
    return ", ".join(f"{a.cluster} {a.replicas}x{a.gpus_per_replica} {a.flavour}"
                     for a in assignments) or "-"


def run(args: argparse.Namespace) -> int:
    if (args.server or args.live) and args.capacity_file:
        fail("--server/--live read the live capacity: not with --capacity-file")
    live = use_live(args)
    try:
        snap = read_snapshot(args)
        changed = read_fleet(args.repo, args.policy_ref,
                             controller_namespace=controller_namespace_of(args)
                             ).spec if args.policy_ref else None
    except (CommandFailed, WorkloadsError) as e:
        fail(str(e))
    spec = snap.spec
    from_file: CapacitySnapshot | None = None
    if args.capacity_file:
        try:
            with open(args.capacity_file, encoding="utf-8") as f:
                from_file = CapacitySnapshot.from_json(json.load(f))
        except (OSError, ValueError, CapacityFormatError) as e:
            fail(f"{args.capacity_file}: {e}")
    capacity, _source = capacity_for(spec, file=from_file,
                                      live=live.capacity if live else None)
    scenario = Scenario(tuple(args.drain), tuple(args.down), dict(args.capacity))
    problems = check(scenario, changed or spec)
    if problems:
        fail("; ".join(problems))
    result = whatif(spec, capacity, scenario, changed_spec=changed,
                    current=live.previous if live else None)
    title = scenario.describe() + (f", repo at {args.policy_ref}" if args.policy_ref else "")
    if args.format in ("json", "yaml"):
        doc: dict[str, Any] = {
            "scenario": title, "commit": snap.commit,
            **({"server": live.server} if live else {}),
            "changes": [{
                "workload": c.workload, "kind": c.kind,
                "from": [_assignment(a) for a in c.before],
                "to": [_assignment(a) for a in c.after.assignments],
                "why": c.why} for c in result.changes],
            "unchanged": len(result.after.workloads) - len(result.changes),
        }
        write_doc(doc, args.format)
        return exit_code(live, 0)
    # The summary counts a resize among the moves, as it always did (its kind says Resized).
    moved = sum(result.count(k) for k in ("Moved", "FailedOver", "Resized"))
    pending = result.count("Pending")
    placed = result.count("Placed")
    where = (snap.commit or "worktree")[:12]
    source = describe(live) if live else f"capacity from {args.capacity_file}" \
        if args.capacity_file else "declared capacity"
    print(f"what if {title} (fleet @ {where}, {source})")
    print(f"{moved} move, {pending} become Pending, {placed} newly placed; "
          f"{len(result.after.workloads) - len(result.changes)} unchanged")
    moves = [c for c in result.changes if c.kind != "Pending"]
    if moves:
        print()
        for line in table(["MOVES", "FROM", "TO", "WHY"], (
                [c.workload, _where(c.before), _where(c.after.assignments), c.why]
                for c in moves)):
            print(line)
    stuck = [c for c in result.changes if c.kind == "Pending"]
    if stuck:
        print()
        for line in table(["PENDING", "WAS ON", "WHY"],
                          ([c.workload, _where(c.before), c.why] for c in stuck)):
            print(line)
    return exit_code(live, 0)


def _assignment(a: Assignment) -> dict[str, Any]:
    return {"cluster": a.cluster, "flavour": a.flavour, "replicas": a.replicas,
            "gpusPerReplica": a.gpus_per_replica}
