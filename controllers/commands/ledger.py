"""`fleet ledger verify` and `fleet ledger show`: the decision ledger of a fleet repo."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from typing import Any

from controllers.commands.common import add_format_argument, fail, write_doc
from controllers.progress import Progress
from controllers.statusview import table
from workloads.errors import WorkloadsError
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader

DESCRIPTION = """\
The decision ledger: every placement, move, failover, apply, prune, drift correction and
refusal the controller made, as hash-chained JSONL records on the branch aifleet/ledger
of the fleet repo.

  fleet ledger verify [REPO]     check the chain; print the first broken record (file:line,
                                 seq, why) and exit 1, or the head it verified and exit 0
  fleet ledger show [REPO]       the last records, with filters

Examples:
  fleet ledger verify /srv/fleet.git
  fleet ledger show --workload nlp-team/llama-finetune --last 50
  fleet ledger show --event Moved --event FailedOver --format json"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ledger", help="verify or show the decision ledger",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    v = inner.add_parser("verify", help="check the hash chain, report the first break")
    _common(v)
    v.set_defaults(handler=run_verify)
    s = inner.add_parser("show", help="the last records, filtered")
    _common(s)
    s.add_argument("--workload", help="only this workload id (team/name)")
    s.add_argument("--team", help="only this team's workloads")
    s.add_argument("--cluster", help="only records about this cluster (where or from)")
    s.add_argument("--event", action="append",
                   help="only this event (repeatable): Placed, Moved, FailedOver, Applied, "
                        "Pruned, DriftCorrected, Refused, Pending, Observed, Suspended, "
                        "Resumed")
    s.add_argument("--last", type=int, default=20, metavar="N",
                   help="how many of the matching records, newest last (default 20; 0: all)")
    add_format_argument(s, ("text", "wide", "json"), "text",
                        help="text (a table), wide (also dataClass, policy version, "
                             "manifest digest and record hash), json (the records)")
    s.set_defaults(handler=run_show)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", nargs="?", default=".", metavar="REPO",
                   help="the fleet repo (default: the current folder)")
    p.add_argument("--ref", default=LEDGER_BRANCH,
                   help=f"the ledger branch or commit (default: {LEDGER_BRANCH})")


def open_ledger(repo: str, ref: str) -> LedgerReader:
    try:
        reader = LedgerReader(repo, ref)
    except WorkloadsError as e:
        fail(str(e))
    if reader.commit is None:
        fail(f"no ledger at {ref} in {repo} (the controller writes it on its first decision)")
    return reader


def run_verify(args: argparse.Namespace) -> int:
    reader = open_ledger(args.repo, args.ref)
    progress = Progress("verifying the ledger", unit="records")
    broken = reader.verify(progress.update)
    progress.clear()
    commit = str(reader.commit.id)[:12] if reader.commit is not None else "-"
    if broken is not None:
        seq = f"seq {broken.seq}" if broken.seq is not None else "seq ?"
        print(f"{broken.where}: {seq}: {broken.why}")
        print(f"ledger {args.ref} @ {commit}: chain broken at record {broken.index + 1}; "
              f"the {broken.index} before it verify, it and everything after it cannot be "
              "trusted", file=sys.stderr)
        return 1
    tip = reader.tip()
    segments = len(reader.segments)
    print(f"ledger {args.ref} @ {commit}: {reader.checked:,} records in {segments:,} "
          f"segment{'' if segments == 1 else 's'}, chain intact; head seq {tip.seq} {tip.hash}")
    return 0


def _matches(doc: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.workload and doc.get("workload") != args.workload:
        return False
    if args.team and not str(doc.get("workload", "")).startswith(f"{args.team}/"):
        return False
    if args.cluster and args.cluster not in (doc.get("cluster"), doc.get("fromCluster")):
        return False
    return not (args.event and doc.get("event") not in args.event)


def run_show(args: argparse.Namespace) -> int:
    reader = open_ledger(args.repo, args.ref)
    keep: deque[dict[str, Any]] | list[dict[str, Any]] = (
        deque(maxlen=args.last) if args.last > 0 else [])
    try:
        for doc in reader.docs():
            if _matches(doc, args):
                keep.append(doc)
    except WorkloadsError as e:
        fail(str(e))
    if args.format in ("json", "yaml"):
        write_doc(list(keep), args.format, sort_keys=True)
        return 0
    rows = []
    for d in keep:
        where = d.get("cluster") or "-"
        if d.get("fromCluster"):
            where = f"{d['fromCluster']} -> {where}"
        if d.get("jurisdiction"):
            where += f" ({d['jurisdiction']})"
        gpus = f"{d.get('gpus')} {d.get('flavour')}" if d.get("gpus") else "-"
        row = [str(d.get("seq")), str(d.get("time")), str(d.get("event")),
               str(d.get("workload")), where, gpus, (d.get("commit") or "-")[:12],
               str(d.get("result"))]
        if args.format == "wide":
            row += [str(d.get("dataClass") or "-"), (d.get("policyVersion") or "-")[:12],
                    (d.get("manifestDigest") or "-")[:12], str(d.get("hash") or "")[:16]]
        rows.append([*row, str(d.get("reason") or "")])
    headers = ["SEQ", "TIME", "EVENT", "WORKLOAD", "CLUSTER", "GPUS", "COMMIT", "RESULT"]
    if args.format == "wide":
        headers += ["DATACLASS", "POLICY", "MANIFESTS", "HASH"]
    for line in table([*headers, "REASON"], rows):
        print(line)
    return 0
