"""`fleet get workloads|clusters`: list them as `kubectl get` does, from the status
document (`GET /api/v1/status`, or `--live` from the clusters)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from controllers.commands.common import add_format_argument, fail, write_doc
from controllers.commands.statusread import add_live_arguments, add_server_argument, get_doc
from controllers.status.statusview import table
from fleet.ids import team_of

DESCRIPTION = """\
List the fleet's workloads or clusters, one row each, as `kubectl get` does: from the
running controller (GET /api/v1/status at --server), or with --live straight from the
clusters. -l filters on the labels of the Workload or Cluster files (kubectl's selector
syntax: a=b, a!=b, a, !a, a in (x,y), a notin (x,y), comma-joined).

Workloads are listed for --team, else $FLEET_TEAM, else every team; -A lists every team
whatever $FLEET_TEAM says.

Examples:
  fleet get workloads                        # every team (or $FLEET_TEAM's)
  fleet get workloads --team nlp-team -o wide
  fleet get workloads -A -l tier=prod,owner!=alice
  fleet get clusters -l gpu-generation=hopper -o yaml
  fleet get clusters --live --repo examples/fleet --kubeconfig kc.yaml"""

KINDS = ("workloads", "clusters")


def _kind(value: str) -> str:
    """`workloads`, `workload`, `wl`; `clusters`, `cluster`, `cl` (kubectl's habit)."""
    v = value.lower()
    for kind, short in (("workloads", "wl"), ("clusters", "cl")):
        if v in (kind, kind[:-1], short):
            return kind
    raise argparse.ArgumentTypeError(f"unknown kind {value!r}: workloads or clusters")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("get", help="list workloads or clusters (as kubectl get)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", type=_kind, choices=KINDS, metavar="KIND",
                   help="workloads (wl) or clusters (cl)")
    p.add_argument("-A", "--all-teams", action="store_true",
                   help="workloads of every team, whatever --team or $FLEET_TEAM say")
    p.add_argument("-l", "--selector", metavar="SELECTOR",
                   help="only those whose labels match, e.g. 'tier=prod,gpu in (h100,a100)'")
    p.add_argument("--team", default=os.environ.get("FLEET_TEAM") or None,
                   help="only this team's workloads (default: $FLEET_TEAM, else all)")
    add_format_argument(p, ("text", "wide", "json"), "text",
                        help="text (a table), wide (more columns), json or yaml "
                             "(a WorkloadList / ClusterList of the status rows)")
    add_server_argument(p)
    add_live_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from controllers.selector import SelectorError, parse_selector

    try:
        match = parse_selector(args.selector) if args.selector else None
    except SelectorError as e:
        fail(f"-l {args.selector!r}: {e}")
    doc = get_doc(args)
    if args.kind == "workloads":
        rows = doc.get("workloads", [])
        team = None if args.all_teams else args.team
        if team:
            teams = {team_of(str(w["id"])) for w in rows}
            if team not in teams:
                fail(f"no workloads of team {team} in the fleet"
                     + (f" (teams: {', '.join(sorted(teams))})" if teams else ""))
            rows = [w for w in rows if str(w["id"]).startswith(f"{team}/")]
    else:
        rows = doc.get("clusters", [])
    if match is not None:
        rows = [r for r in rows if match(r.get("labels") or {})]
    if args.format in ("json", "yaml"):
        kind = "WorkloadList" if args.kind == "workloads" else "ClusterList"
        write_doc({"apiVersion": doc.get("apiVersion"), "kind": kind, "items": rows},
                  args.format)
        return 0
    if not rows:
        print(f"No {args.kind} found.", file=sys.stderr)
        return 0
    wide = args.format == "wide"
    lines = _workloads(rows, wide) if args.kind == "workloads" else _clusters(rows, wide)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _labels(row: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((row.get("labels") or {}).items())) or "-"


def _workloads(rows: list[dict[str, Any]], wide: bool) -> list[str]:
    headers = ["WORKLOAD", "STATUS", "SYNC", "HEALTH", "CLUSTERS", "GPUS"]
    if wide:
        headers += ["FLAVOURS", "DATACLASS", "COMMIT", "SUSPENDED", "LABELS"]
    out = []
    for w in rows:
        places = w.get("placements") or []
        cells = [str(w["id"]), str(w.get("status", "")), str(w.get("sync", "")),
                 str(w.get("health") or "Unknown"),
                 ",".join(p["cluster"] for p in places) or "-",
                 str(sum(int(p.get("gpus", 0)) for p in places))]
        if wide:
            cells += [",".join(sorted({p["flavour"] for p in places})) or "-",
                      str(w.get("dataClass") or "-"), (w.get("commit") or "-")[:12],
                      (w.get("suspended") or {}).get("since", "-"), _labels(w)]
        out.append(cells)
    return table(headers, out)


def _clusters(rows: list[dict[str, Any]], wide: bool) -> list[str]:
    headers = ["CLUSTER", "REGION", "JURISDICTION", "HEALTH", "GPUS ALLOCATED/CAPACITY"]
    if wide:
        headers += ["CORDONED", "SUSPENDED", "UNREACHABLE FOR", "LABELS"]
    out = []
    for c in rows:
        gpus = c.get("gpus") or {}
        alloc = sum(int(g.get("allocated", 0)) for g in gpus.values())
        cap = sum(int(g.get("capacity", 0)) for g in gpus.values())
        cells = [str(c["name"]), str(c.get("region", "")), str(c.get("jurisdiction", "")),
                 str(c.get("health", "Unknown")), f"{alloc}/{cap}"]
        if wide:
            secs = c.get("unreachableSeconds")
            cells += ["yes" if c.get("cordoned") else "no",
                      (c.get("suspended") or {}).get("since", "-"),
                      f"{secs:.0f}s" if isinstance(secs, int | float) else "-", _labels(c)]
        out.append(cells)
    return table(headers, out)
