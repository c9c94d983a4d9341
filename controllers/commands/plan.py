"""`fleet plan`: where every workload of one commit would run, and why.

Plans the commit with the capacity the Cluster files declare, or with a capacity
snapshot (`--capacity FILE`, the JSON a controller publishes at GET /api/v1/capacity).
Invalid documents are listed under `errors` and their workloads are `Invalid`, while
the rest is planned. With `--base/--head` (or `--verify`) it compares two commits
instead: see controllers/commands/plandiff.py.

Exit codes: 0 everything planned cleanly (Pending is not an error: it is a plan),
1 some documents are invalid (listed), 2 the repo or the capacity file cannot be read.
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

DESCRIPTION = """\
Plan one commit of a fleet repo: for every workload, the cluster(s), flavour and
replicas it gets, or why it is Pending (which rule filtered each cluster out). Uses the
GPUs the Cluster files declare, or a capacity snapshot with --capacity.

Examples:
  fleet plan                                  # the repo in the current folder, at HEAD
  fleet plan examples/fleet --format json     # plan.schema.json, byte-identical per input
  fleet plan --capacity capacity.json         # with live capacity from a controller
  fleet plan --format markdown > plan.md"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="plan a commit: where every workload runs, and why",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(p)
    p.add_argument("--capacity", metavar="FILE",
                   help="a CapacitySnapshot JSON file (default: the declared capacity)")
    add_format_argument(p, ("text", "json", "markdown"), "text",
                        help="text (a table), json (plan.schema.json) or markdown (md)")
    plandiff.add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if plandiff.wanted(args):
        return plandiff.run(args)
    if args.detailed_exitcode:
        fail("--detailed-exitcode compares two commits: use it with --base and --head")
    # imported here so that building the parser (every `fleet` command) does not pay
    from fleet.placement import place
    from fleet.plan_json import plan_to_json
    from fleet.plan_text import to_markdown, to_text

    snap, capacity, from_file = read_planning_inputs(args)
    spec = snap.spec
    plan = place(spec, capacity, commit=snap.commit)
    if args.format in ("json", "yaml"):
        doc = plan_to_json(plan, spec, capacity)
        doc["source"]["capacitySource"] = "file" if from_file else "declared"
        write_doc(doc, args.format)
    elif args.format == "markdown":
        sys.stdout.write(to_markdown(plan, spec))
    else:
        sys.stdout.write(to_text(plan, spec))
    return 1 if spec.errors else 0
