"""`fleet cost`: GPU-hours from the decision ledger times flavour prices, per group."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime

from controllers.commands.common import add_format_argument, fail, write_doc
from controllers.commands.ledgerread import (
    add_window_arguments,
    bulk_mode,
    chain_banner,
    chain_json,
    open_ledger,
    refuse_broken_chain,
)
from controllers.status.progress import Progress
from controllers.status.statusview import table
from fleet.audit import build_periods
from fleet.cost import GROUP_BY, gpu_cost
from fleet.ledger import Chain
from workloads.errors import WorkloadsError
from workloads.ledger_store import FleetHistory

DESCRIPTION = """\
GPU-hours per team, region, flavour, cluster or workload, from the placement periods in
the decision ledger, priced with the cluster's pricePerHour for the flavour at the
commit that placed it; for chargeback and showback. Periods are clipped to the window;
one still running counts until --to, or until now. GPUs on a flavour with no price are
counted in GPU-hours and shown as unpriced, never as free.

The ledger's hash chain is verified in the same pass: a broken chain is refused with
exit 1 and the first broken record, unless --allow-broken-chain (a banner at the top of
every format, and exit 1).

Examples:
  fleet cost --by team --from 2026-11-01 --to 2026-11-30
  fleet cost /srv/fleet.git --by region --format csv"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cost", help="GPU-hours and cost from the decision ledger",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_window_arguments(p)
    p.add_argument("--by", choices=GROUP_BY, default="team", help="group by (default team)")
    add_format_argument(p, ("text", "json", "csv"), "text")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    bulk_mode()
    reader = open_ledger(args.repo, args.ledger_ref)
    history = FleetHistory(args.repo)
    end = args.end or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    progress = Progress("reading the ledger", unit="records")
    check = Chain()
    records = reader.rows(progress.update, check=check,
                          stop_at_break=not args.allow_broken_chain)
    try:
        ledger = build_periods(records, history.at)
    except WorkloadsError as e:
        progress.clear()
        fail(str(e))
    progress.clear()
    broken = check.broken
    if broken is not None and not args.allow_broken_chain:
        return refuse_broken_chain(broken, args.ledger_ref)
    lines, total = gpu_cost(ledger.periods, by=args.by, start=args.start, end=end)
    if args.format in ("json", "yaml"):
        doc = {
            "by": args.by, "from": args.start, "to": end,
            "ledger": {"records": ledger.records, "headSeq": ledger.head_seq,
                       "headHash": ledger.head_hash},
            "groups": [{"key": c.key, "gpuHours": round(c.gpu_hours, 4),
                        "cost": round(c.cost, 2),
                        "unpricedGpuHours": round(c.unpriced_gpu_hours, 4)} for c in lines],
            "total": {"gpuHours": round(total.gpu_hours, 4), "cost": round(total.cost, 2),
                      "unpricedGpuHours": round(total.unpriced_gpu_hours, 4)},
            "chainBroken": chain_json(broken),
        }
        write_doc(doc, args.format)
        return 0 if broken is None else 1
    if broken is not None:  # the banner, first line of text and csv alike
        print(f"# {chain_banner(broken)}" if args.format == "csv" else chain_banner(broken))
    if args.format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([args.by, "gpu_hours", "cost", "unpriced_gpu_hours"])
        for c in [*lines, total]:
            w.writerow([c.key, f"{c.gpu_hours:.4f}", f"{c.cost:.2f}",
                        f"{c.unpriced_gpu_hours:.4f}"])
        return 0 if broken is None else 1
    rows = [[c.key, f"{c.gpu_hours:,.2f}", f"{c.cost:,.2f}",
             f"{c.unpriced_gpu_hours:,.2f}" if c.unpriced_gpu_hours else "-"]
            for c in [*lines, total]]
    for line in table([args.by.upper(), "GPU-HOURS", "COST", "UNPRICED GPU-HOURS"], rows):
        print(line)
    print(f"window {args.start or 'beginning'} to {end}; ledger head seq {ledger.head_seq} "
          f"{ledger.head_hash[:16]}", file=sys.stderr)
    return 0 if broken is None else 1
