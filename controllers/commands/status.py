"""`fleet status`: what runs where, healthy or not, stuck and why."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from controllers.commands.common import (
    add_format_argument,
    fail,
    write_doc,
)
from controllers.commands.statusread import (
    add_live_arguments,
    add_server_argument,
    get_doc_and_age,
)
from controllers.status.statusview import STATES, filter_workloads, render_fleet, render_workload
from fleet.ids import team_of


def _state(value: str) -> str:
    """A workload state, any case (`pending`); an unknown one is refused, never matched
    against nothing (which printed "Nothing needs attention" while work was Pending)."""
    for s in STATES:
        if s.lower() == value.lower():
            return s
    raise argparse.ArgumentTypeError(f"unknown state {value!r}: one of {', '.join(STATES)}")


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not n > 0 or n == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: the refresh interval must be > 0")
    return n

DESCRIPTION = """\
Show the fleet as a running controller sees it (GET /api/v1/status): a summary, one row
per cluster (region, jurisdiction, health, GPUs allocated per flavour, workloads synced,
drifted, failed), then the workloads that need attention with the reason.

Examples:
  fleet status                          # from the controller at $FLEET_SERVER or :8080
  fleet status --team nlp-team --state Pending
  fleet status nlp-team/llama-finetune  # where it runs, since when, which commit, pods
  fleet status --watch 2                # refresh every 2 seconds
  fleet status --format json            # the FleetStatus document
  fleet status --live --repo fleet/ --kubeconfig kc.yaml
                                        # no controller: read what runs from the clusters

A document 5 s or more old (the controller could not build a newer one in time and
answered with its last) shows its Age on top (on stderr with --format json/yaml).

Exit codes: 0 shown; 1 with --live when a cluster could not be read (its workloads are
shown Unknown with the last known state from the ledger, never Pending); 2 could not
run (no controller answers, bad arguments)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="fleet status from a running controller",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", nargs="?", metavar="WORKLOAD",
                   help="one workload id (team/name) for its details")
    add_server_argument(p)
    p.add_argument("--team", help="only this team's workloads")
    p.add_argument("--cluster", help="only this cluster and what runs on it")
    p.add_argument("--state", type=_state, metavar="STATE",
                   help="only workloads in this state, any case: " + ", ".join(STATES))
    p.add_argument("--watch", type=_seconds, metavar="SECONDS", nargs="?", const=2.0,
                   help="refresh every SECONDS (default 2) until interrupted; on a "
                        "terminal the screen is redrawn, elsewhere each refresh is appended")
    add_format_argument(p, ("text", "json"), "text")
    add_live_arguments(p)
    p.set_defaults(handler=run)


SHOW_AGE = 5.0
"""Seconds from which the document's age is shown: the controller could not build a
newer one in time (`controllers.status.cache`) and answered with its last one; an SRE
must not take a stale answer for the state of now."""


def age_line(age: float | None) -> str:
    """The document's age when it is at least `SHOW_AGE` seconds, else nothing."""
    if age is None or age < SHOW_AGE:
        return ""
    return (f"Age: {int(age)} s (the controller's last status document: it could not "
            "build a newer one in time)\n")


def show(args: argparse.Namespace, doc: dict[str, Any], age: float | None = None) -> int:
    """Print `doc`; 1 when part of it is unknown (a cluster could not be read), else 0.
    Its `age` (seconds since the controller built it), when old enough to matter, is
    on top of the text, or on stderr beside a JSON or YAML document."""
    _known(args, doc)
    stale = age_line(age)
    if stale and args.format in ("json", "yaml"):
        sys.stderr.write(stale)
    elif stale:
        sys.stdout.write(stale)
    unreadable = (doc.get("source") or {}).get("unreadableClusters") or []
    code = 1 if unreadable else 0
    if unreadable:
        print(f"fleet: could not read {', '.join(unreadable)}: what runs there is unknown "
              "(exit 1)", file=sys.stderr)
    if args.format in ("json", "yaml"):
        if args.workload:
            match = [w for w in doc.get("workloads", []) if w["id"] == args.workload]
            if not match:
                fail(f"no workload {args.workload}")
            write_doc(match[0], args.format)
        else:
            filtered = {**doc, "workloads": filter_workloads(
                doc, team=args.team, cluster=args.cluster, state=args.state)}
            write_doc(filtered, args.format)
        return code
    if args.workload:
        text = render_workload(doc, args.workload)
        if text is None:
            fail(f"no workload {args.workload} in the fleet")
        sys.stdout.write(text)
        return code
    sys.stdout.write(render_fleet(doc, team=args.team, cluster=args.cluster, state=args.state))
    return code


def _known(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """A --team or --cluster the fleet does not have is a mistake to say, not an empty
    (and so all-clear) answer."""
    if args.cluster and args.cluster not in {c.get("name") for c in doc.get("clusters", [])}:
        fail(f"no cluster {args.cluster} in the fleet")
    if args.team:
        teams = {team_of(str(w["id"])) for w in doc.get("workloads", [])}
        if args.team not in teams:
            fail(f"no workloads of team {args.team} in the fleet"
                 + (f" (teams: {', '.join(sorted(teams))})" if teams else ""))


def run(args: argparse.Namespace) -> int:
    if not args.watch:
        return show(args, *get_doc_and_age(args))
    # Clear-screen escapes only for a person at a terminal: piped, or as JSON, each
    # refresh is appended as it is (a JSON document per refresh).
    redraw = args.format == "text" and sys.stdout.isatty()
    try:
        while True:
            doc, age = get_doc_and_age(args)
            if redraw:
                sys.stdout.write("\x1b[H\x1b[2J")
            if args.format == "text":
                where = f"live from {args.repo}" if args.live else args.server
                sys.stdout.write(time.strftime("%H:%M:%S") + f"  {where}\n\n")
            show(args, doc, age)
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
