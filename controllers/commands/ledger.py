"""`fleet ledger verify` and `fleet ledger show`: the decision ledger of a fleet repo."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from typing import Any

from controllers.commands.common import add_format_argument, fail, write_doc
from controllers.commands.ledgerread import open_ledger
from controllers.status.progress import Progress
from controllers.status.statusview import table
from workloads.errors import WorkloadsError
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader
from workloads.ledger_trust import Anchor, compare_anchor, read_anchor, verify_commits

DESCRIPTION = """\
The decision ledger: every placement, move, failover, apply, prune, drift correction and
refusal the controller made, as hash-chained JSONL records on the branch aifleet/ledger
of the fleet repo.

  fleet ledger verify [REPO]     check the chain; print the first broken record (file:line,
                                 seq, why) and exit 1, or the head it verified and exit 0
        --signed-by FILE         also: every ledger commit is signed by a key in this
                                 allowed-signers file (SSH, as git's
                                 gpg.ssh.allowedSignersFile); exit 1 naming the first
                                 commit that is not
        --anchor URL             also: every head the controller anchored there
                                 (--ledger-anchor) is in this chain at its seq; exit 1
                                 naming the first that is not (a rewritten ledger)
  fleet ledger show [REPO]       the last records, with filters

The chain alone proves no record was edited, removed or reordered after the head;
someone who can push the branch can re-chain it (recompute every hash). Signatures and
the anchor pin the head: see docs/audit.md for what each proves.

Examples:
  fleet ledger verify /srv/fleet.git
  fleet ledger verify /srv/fleet.git --signed-by allowed_signers \
      --anchor https://git.example.com/audit/fleet-anchor.git
  fleet ledger show --workload nlp-team/llama-finetune --last 50
  fleet ledger show --event Moved --event FailedOver --format json"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ledger", help="verify or show the decision ledger",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    v = inner.add_parser("verify", help="check the hash chain, report the first break")
    _common(v)
    v.add_argument("--signed-by", metavar="ALLOWED_SIGNERS",
                   help="check that every commit of the ledger branch is signed by a key "
                        "in this allowed-signers file (the format of ssh-keygen's "
                        "ALLOWED SIGNERS, as git's gpg.ssh.allowedSignersFile); needs "
                        "ssh-keygen")
    v.add_argument("--anchor", metavar="URL",
                   help="compare with the anchor the controller writes (--ledger-anchor): "
                        "a Git remote (URL or path) whose branch aifleet/anchor records "
                        "(seq, hash) of past heads; any that this chain contradicts is a "
                        "rewrite")
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


def run_verify(args: argparse.Namespace) -> int:
    reader = open_ledger(args.repo, args.ref)
    anchors: list[Anchor] | None = None
    if args.anchor:  # first: an unreachable anchor is exit 2 before any long read
        try:
            anchors = read_anchor(args.anchor)
        except WorkloadsError as e:
            fail(str(e))
    progress = Progress("verifying the ledger", unit="records")
    broken = reader.verify(progress.update)
    progress.clear()
    commit = str(reader.commit.id)[:12] if reader.commit is not None else "-"
    code = 0
    if broken is not None:
        seq = f"seq {broken.seq}" if broken.seq is not None else "seq ?"
        print(f"{broken.where}: {seq}: {broken.why}")
        print(f"ledger {args.ref} @ {commit}: chain broken at record {broken.index + 1}; "
              f"the {broken.index} before it verify, it and everything after it cannot be "
              "trusted", file=sys.stderr)
        code = 1
    else:
        tip = reader.tip()
        segments = len(reader.segments)
        print(f"ledger {args.ref} @ {commit}: {reader.checked:,} records in {segments:,} "
              f"segment{'' if segments == 1 else 's'}, chain intact; head seq {tip.seq} "
              f"{tip.hash}")
    if args.signed_by:
        code = max(code, _verify_signatures(reader, args.signed_by))
    if anchors is not None:
        code = max(code, _verify_anchor(reader, anchors, args.anchor))
    return code


def _verify_signatures(reader: LedgerReader, allowed_signers: str) -> int:
    assert reader.commit is not None
    try:
        n, bad = verify_commits(reader.repo, reader.commit.id, allowed_signers)
    except WorkloadsError as e:
        fail(str(e))
    if not bad:
        print(f"signatures: all {n:,} ledger commit{'' if n == 1 else 's'} signed by an "
              f"allowed signer ({allowed_signers})")
        return 0
    first = bad[0]
    print(f"commit {first.commit}: {first.why}")
    print(f"signatures: {len(bad):,} of {n:,} ledger commits not signed by an allowed signer "
          f"({allowed_signers}); the first is {first.commit[:12]}: records it added or "
          "changed were not written by the key holder", file=sys.stderr)
    return 1


def _verify_anchor(reader: LedgerReader, anchors: list[Anchor], url: str) -> int:
    if not anchors:
        print(f"anchor: {url} holds no entry yet")
        return 0
    head = reader.tip().seq
    hashes = reader.hashes_at(a.seq for a in anchors if a.seq <= head)
    bad = compare_anchor(anchors, hashes, head)
    last = anchors[-1]
    if not bad:
        print(f"anchor: all {len(anchors):,} anchored heads are in the chain (the last: seq "
              f"{last.seq} at {last.time})")
        return 0
    first = bad[0]
    print(f"anchor seq {first.anchor.seq}: {first.why}")
    print(f"anchor: {len(bad):,} of {len(anchors):,} anchored heads contradict the ledger: "
          "it was rewritten after they were recorded", file=sys.stderr)
    return 1


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
        write_doc(list(keep), args.format)
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
