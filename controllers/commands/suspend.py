"""`fleet suspend WORKLOAD | --cluster C`: stop reconciling it (`runtime.suspension`)."""

from __future__ import annotations

import argparse

from controllers.commands.common import auth_headers
from controllers.commands.remote import add_target_arguments, post_action, say, target

DESCRIPTION = """\
Suspend one workload, or every workload on one cluster, on the running controller (as
`flux suspend`): it stops reconciling it -- no apply (new commits of it wait), no prune
or stale-copy delete, no drift correction (drift is still shown). Placement still plans
it. Recorded in the ledger (Suspended), shown in `fleet status`, kept across restarts;
`fleet resume` undoes it.

Examples:
  fleet suspend nlp-team/llama-finetune
  fleet suspend --cluster eu-fra-1 --server http://controller:8080"""



def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("suspend", help="stop reconciling a workload or a cluster",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(p, "suspend")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return say(post_action(args.server, "suspend", target(args), auth_headers(args)))
