"""`fleet sync [WORKLOAD]`: fetch the repo and reconcile now, not at the next poll."""

from __future__ import annotations

import argparse

from controllers.commands.common import auth_headers
from controllers.commands.remote import post_action, say
from controllers.commands.statusread import add_server_argument

DESCRIPTION = """\
Ask the running controller to fetch the fleet repo and reconcile now (as `flux
reconcile` / `argocd app sync`): the clusters of WORKLOAD (where it runs and where it is
planned), or every cluster. Suspended workloads and clusters stay as they are.

Examples:
  fleet sync                             # fetch, reconcile every cluster
  fleet sync nlp-team/llama-finetune     # fetch, reconcile its clusters
  fleet sync && fleet wait nlp-team/llama-finetune --for=synced"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sync", help="fetch and reconcile now", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", nargs="?", metavar="WORKLOAD",
                   help="only the clusters of this workload (team/name); default: all")
    add_server_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return say(post_action(args.server, "sync",
                           {"workload": args.workload} if args.workload else {},
                           auth_headers(args)))
