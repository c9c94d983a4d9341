"""`fleet plan`: where every workload of one commit would run, and why.

Plans the commit with the capacity the Cluster files declare, or with a capacity
snapshot (`--capacity FILE`, the JSON a controller publishes at GET /api/v1/capacity).
Invalid documents are listed under `errors` and their workloads are `Invalid`, while
the rest is planned. With `--base/--head` (or `--verify`) it compares two commits
instead: see controllers/commands/plandiff.py.

With `--server URL` or `--live` it plans from what runs (controllers/commands/liveplan.py).

Exit codes: 0 everything planned cleanly (Pending is not an error: it is a plan),
1 some documents are invalid (listed), or with `--live` a cluster could not be read,
2 the repo, the capacity file or the controller cannot be read.
"""

from __future__ import annotations

import argparse
import sys

from controllers.commands import plandiff
from controllers.commands.common import (
    add_format_argument,
    add_repo_arguments,
    fail,
    read_planning_inputs,
    write_doc,
)
from controllers.commands.liveplan import add_server_argument, describe, exit_code, use_live

DESCRIPTION = """\
Plan one commit of a fleet repo: for every workload, the cluster(s), flavour and
replicas it gets, or why it is Pending (which rule filtered each cluster out). Uses the
GPUs the Cluster files declare, or a capacity snapshot with --capacity.

Examples:
  fleet plan                                  # the repo in the current folder, at HEAD
  fleet plan examples/fleet --format json     # plan.schema.json, byte-identical per input
  fleet plan --capacity capacity.json         # with live capacity from a controller
  fleet plan --format markdown > plan.md
  fleet plan --server http://fleet:8080       # from what runs: the controller's
                                              # placements, capacity and applied commit
  fleet plan --live --kubeconfig kc.yaml      # from what runs, read from the clusters"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="plan a commit: where every workload runs, and why",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(p)
    p.add_argument("--capacity", metavar="FILE",
                   help="a CapacitySnapshot JSON file (default: the declared capacity)")
    add_server_argument(p)
    add_format_argument(p, ("text", "json", "markdown"), "text",
                        help="text (a table), json (plan.schema.json) or markdown (md)")
    plandiff.add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if plandiff.wanted(args):
        if args.server or args.live:
            fail("--server/--live plan what runs now: not with --base/--head/--verify")
        return plandiff.run(args)
    if args.detailed_exitcode:
        fail("--detailed-exitcode compares two commits: use it with --base and --head")
    # imported here so that building the parser (every `fleet` command) does not pay
    from fleet.plan_json import plan_to_json
    from fleet.plan_text import to_markdown, to_text
    from fleet.planning import capacity_for, plan_from

    live = use_live(args)
    snap, read, from_file = read_planning_inputs(args)
    spec = snap.spec
    capacity, source = capacity_for(
        spec, file=read if from_file else None, live=live.capacity if live else None,
        live_source="live" if live is not None and live.server == "live" else "server")
    plan = plan_from(spec, capacity, live.previous if live else None, commit=snap.commit)
    if args.format in ("json", "yaml"):
        doc = plan_to_json(plan, spec, capacity)
        doc["source"]["capacitySource"] = source
        if live is not None and live.server != "live":
            doc["source"]["server"] = live.server
        for row in doc["workloads"]:
            need = live.recreate.get(row["id"]) if live is not None else None
            if need:
                row["recreateNeeded"] = [{"cluster": c, "reason": r} for c, r in need]
        write_doc(doc, args.format)
    elif args.format == "markdown":
        sys.stdout.write(to_markdown(plan, spec))
    else:
        if live is not None:
            sys.stdout.write(describe(live) + "\n")
        sys.stdout.write(to_text(plan, spec))
        for wid, need in sorted((live.recreate if live is not None else {}).items()):
            for cluster, reason in need:
                sys.stdout.write(f"re-create needed: {wid} on {cluster}: {reason}\n")
    return exit_code(live, 1 if spec.errors else 0)
