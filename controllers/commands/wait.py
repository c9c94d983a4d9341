"""`fleet wait WORKLOAD --for=STATE`: poll the controller's status until it holds."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from controllers.commands.common import auth_headers, fail
from controllers.commands.statusread import add_server_argument, fetch

DESCRIPTION = """\
Wait until a workload reaches a state on the running controller (as `kubectl wait`),
polling GET /api/v1/status:
  placed   the plan places it (status Placed)
  synced   placed, and what runs is its desired state on every cluster (sync Synced)
  running  synced, and its pods run (health Running, or Succeeded: a Job that finished)

With --commit SHA, also until the controller's applied commit is that one (a later push
landing first makes it time out): without it, the state is that of whatever commit the
controller serves now, which right after a push is still the previous one.

Exit codes: 0 the state was reached, 1 timed out (the last state is said), 2 the
controller could not be reached.

Examples:
  fleet wait nlp-team/llama-finetune --for=synced --timeout 5m
  fleet sync && fleet wait nlp-team/llama-finetune --for=running --commit $(git rev-parse HEAD)"""

CONDITIONS = ("placed", "synced", "running")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `1m30s`: seconds, > 0."""
    text = value.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh]?)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration (e.g. 90s, 5m, 1h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the timeout must be > 0")
    return seconds


def _condition(value: str) -> str:
    v = value.lower()
    if v not in CONDITIONS:
        raise argparse.ArgumentTypeError(f"unknown condition {value!r}: one of "
                                         + ", ".join(CONDITIONS))
    return v


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("wait", help="wait until a workload is placed, synced or running",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", metavar="WORKLOAD", help="the workload id (team/name)")
    p.add_argument("--for", dest="condition", type=_condition, required=True,
                   metavar="STATE", help="placed, synced or running")
    p.add_argument("--timeout", type=duration, default=300.0, metavar="DURATION",
                   help="give up after this long, e.g. 90s, 5m, 1h (default: 5m)")
    p.add_argument("--commit", metavar="SHA",
                   help="also until this commit (full or abbreviated, at least 7 hex "
                        "digits) is the controller's applied commit")
    p.add_argument("--interval", type=duration, default=1.0, metavar="DURATION",
                   help="how often to ask the controller (default: 1s)")
    add_server_argument(p)
    p.set_defaults(handler=run)


def met(w: dict[str, Any] | None, condition: str) -> bool:
    if w is None or w.get("status") != "Placed":
        return False
    if condition == "placed":
        return True
    if w.get("sync") != "Synced":
        return False
    return condition == "synced" or w.get("health") in ("Running", "Succeeded")


def state_of(w: dict[str, Any] | None) -> str:
    if w is None:
        return "not in the fleet"
    where = ",".join(p["cluster"] for p in w.get("placements") or []) or "nowhere"
    line = (f"status {w.get('status')}, sync {w.get('sync')}, "
            f"health {w.get('health') or 'Unknown'}, on {where}")
    reasons = [r.get("message", "") for r in w.get("reasons") or []]
    if w.get("suspended"):
        line += ", suspended"
    return line + (f" ({reasons[0]})" if reasons else "")


def applied(doc: dict[str, Any], commit: str | None) -> bool:
    if commit is None:
        return True
    have = str((doc.get("source") or {}).get("appliedCommit") or "")
    return bool(have) and have.startswith(commit.lower())


def run(args: argparse.Namespace) -> int:
    if args.commit is not None and not re.fullmatch(r"[0-9a-fA-F]{7,40}", args.commit):
        fail(f"--commit {args.commit!r}: a commit sha (7 to 40 hex digits)")
    deadline = time.monotonic() + args.timeout
    while True:
        doc = fetch(args.server, auth_headers(args))  # unreachable: exit 2 in one line
        w = next((x for x in doc.get("workloads", []) if x.get("id") == args.workload), None)
        on_commit = applied(doc, args.commit)
        if met(w, args.condition) and on_commit:
            print(f"{args.workload}: {args.condition} ({state_of(w)})")
            return 0
        left = deadline - time.monotonic()
        if left <= 0:
            state = state_of(w)
            if not on_commit:
                have = (doc.get("source") or {}).get("appliedCommit") or "none"
                state += f"; applied commit {str(have)[:12]}, not {args.commit}"
            print(f"{args.workload}: not {args.condition} after {args.timeout:g}s: "
                  f"{state}", file=sys.stderr)
            return 1
        time.sleep(min(args.interval, left))

