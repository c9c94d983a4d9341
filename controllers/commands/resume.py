"""`fleet resume WORKLOAD | --cluster C`: reconcile it again, at once."""

from __future__ import annotations

import argparse

from controllers.commands.common import auth_headers
from controllers.commands.remote import add_target_arguments, post_action, say, target

DESCRIPTION = """\
Resume a workload, or a cluster, `fleet suspend` suspended: the controller reconciles
it again at once (what changed meanwhile is applied, drift corrected). Recorded in the
ledger (Resumed).

Examples:
  fleet resume nlp-team/llama-finetune
  fleet resume --cluster eu-fra-1"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("resume", help="reconcile a suspended workload or cluster again",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(p, "resume")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return say(post_action(args.server, "resume", target(args), auth_headers(args)))
