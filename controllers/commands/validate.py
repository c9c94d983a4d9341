"""`fleet validate`: check every document of a fleet repo; what a PR check runs."""

from __future__ import annotations

import argparse
import sys

from controllers.commands.common import (
    add_format_argument,
    add_repo_arguments,
    read_snapshot,
    write_doc,
)
from workloads.forkmap import Background

DESCRIPTION = """\
Check every document of a fleet repo: YAML syntax, the aifleet.dev/v1alpha1 schema of
each kind, the layout (clusters/, workloads/<team>/, policies/), and references between
documents (dataClasses, flavours, clusters). Prints each error as `file:line: message`
and exits 1 if there is any, 0 otherwise; 2 if the repo cannot be read at all.

Examples:
  fleet validate                       # the repo in the current folder, at HEAD
  fleet validate examples/fleet        # a fleet kept in a folder of a larger repo
  fleet validate --ref origin/main     # another branch or commit
  fleet validate --worktree            # uncommitted edits on disk
  fleet validate --format json         # {"errors": [{file, line, message}, ...]}"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check a fleet repo and print every error",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(p)
    add_format_argument(p, ("text", "json"), "text",
                        help="text (file:line: message) or json (default: text)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The parse cache it leaves (written by a child while this prints) makes the
    # `fleet plan --base --head` that follows in a PR check parse only what changed.
    with Background() as background:
        return _run(args, background)


def _run(args: argparse.Namespace, background: Background) -> int:
    snap = read_snapshot(args, background)
    spec = snap.spec
    errors = spec.errors
    if args.format in ("json", "yaml"):
        doc = {
            "errors": [d.to_json() for d in errors],
            "source": {"commit": snap.commit, "files": snap.files},
        }
        write_doc(doc, args.format)
    else:
        for d in errors:
            print(d.format())
        where = snap.commit[:12] if snap.commit else "worktree"
        print(
            f"{args.repo} @ {where}: {snap.files} files, {len(spec.clusters)} clusters, "
            f"{len(spec.workloads) + len(spec.invalid)} workloads "
            f"({len(spec.invalid)} invalid), {len(errors)} error"
            f"{'' if len(errors) == 1 else 's'}",
            file=sys.stderr,
        )
    return 1 if errors else 0
