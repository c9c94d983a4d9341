"""Where a measured commit's time went, from the controllers' own logs (issue 22).

`bench.scale` measures commit -> applied from the outside: one number per commit. With
`--log-level info --keep-log FILE` it also keeps each controller's JSON log, and this
splits each commit after the cold start into the stages the logs can tell apart:

1. accept: from the first replica's `commit_accepted` of the commit to the leader's
   (the webhook goes to every replica; each fetches the repo itself);
2. plan: the leader's `commit_accepted` -> its `placement_reconciled` of the commit
   (the plan made, not yet saved or published);
3. follow: the leader's plan -> the last `placement_reconciled` of the commit in the
   replica that owns the workload's cluster, before it reconciled that cluster: the
   leader's save and publication, the follower's poll of it (every second), its
   fetch and decoding, and its plan that follows it (0 when the leader owns it);
4. queue: that plan -> the start of the cluster's reconcile (`cluster_reconciled`'s
   time less its `seconds`);
5. apply: the reconcile itself (`seconds`).

What the logs cannot see (the bench's commit, the webhook, the fetch; the bench's own
poll of the cluster, 50 ms) is the rest of the total `bench.scale` printed, when its
output is given with `--bench-out`.

    python -m bench.scale ... --log-level info --keep-log /tmp/ctl.log > /tmp/bench.out
    python -m bench.committrace /tmp/ctl.log* --bench-out /tmp/bench.out
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

STAGES = ("accept", "plan", "follow", "queue", "apply")
MEASURED = re.compile(r"commit (\d+)/\d+ \((\S+) on (\S+)\):.* applied in ([0-9.]+) s")


@dataclass(frozen=True)
class Event:
    at: float
    replica: str
    doc: dict[str, Any]


def events(path: Path) -> list[Event]:
    """The JSON lines of one controller's log (others skipped), with their times."""
    out: list[Event] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
            at = datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        out.append(Event(at.timestamp(), path.name, doc))
    return out


def measured(bench_out: Path | None) -> list[tuple[str, float]]:
    """(cluster, seconds) of each commit `bench.scale` measured, in order."""
    if bench_out is None:
        return []
    return [(m.group(3), float(m.group(4)))
            for m in MEASURED.finditer(bench_out.read_text(errors="replace"))]


def trace(logs: list[list[Event]], bench: list[tuple[str, float]]
          ) -> list[dict[str, float | str | None]]:
    """One row per commit accepted after the first: each stage's seconds (None where
    the logs do not show it)."""
    everything = sorted((e for log in logs for e in log), key=lambda e: e.at)
    leaders = {e.replica for e in everything if e.doc.get("event") == "leading"}
    accepted: dict[str, list[Event]] = {}
    planned: dict[str, list[Event]] = {}
    reconciled: dict[str, list[Event]] = {}
    for e in everything:
        kind, commit = e.doc.get("event"), e.doc.get("commit")
        if not isinstance(commit, str):
            continue
        if kind == "commit_accepted":
            accepted.setdefault(commit, []).append(e)
        elif kind == "placement_reconciled":
            planned.setdefault(commit, []).append(e)
        elif kind == "cluster_reconciled" and e.doc.get("applied"):
            reconciled.setdefault(commit, []).append(e)
    commits = list(accepted)[1:]  # the first is the cold start's
    rows: list[dict[str, float | str | None]] = []
    for i, commit in enumerate(commits):
        target, total = bench[i] if i < len(bench) else (None, None)
        acc = accepted[commit]
        lead_acc = next((e for e in acc if e.replica in leaders), acc[0])
        lead_plan = next((e for e in planned.get(commit, ())
                          if e.replica == lead_acc.replica and e.at >= lead_acc.at), None)
        done = next((e for e in reconciled.get(commit, ())
                     if target is None or e.doc.get("cluster") == target), None)
        start = None if done is None else done.at - float(done.doc.get("seconds") or 0)
        follow = None
        if done is not None and start is not None:
            follow = max((e for e in planned.get(commit, ())
                          if e.replica == done.replica and e.at <= start),
                         key=lambda e: e.at, default=None)
        row: dict[str, float | str | None] = {
            "commit": commit[:8], "cluster": target,
            "accept": lead_acc.at - acc[0].at,
            "plan": None if lead_plan is None else lead_plan.at - lead_acc.at,
            "follow": None if follow is None or lead_plan is None
            else max(0.0, follow.at - lead_plan.at),
            "queue": None if start is None or follow is None
            else max(0.0, start - (follow.at if follow else 0)),
            "apply": None if done is None else float(done.doc.get("seconds") or 0),
            "total": total,
        }
        seen = sum(v for k in STAGES if isinstance(v := row[k], float))
        row["unseen"] = None if total is None else max(0.0, total - seen)
        rows.append(row)
    return rows


def fmt(v: float | str | None) -> str:
    return "-" if v is None else v if isinstance(v, str) else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path, help="the kept controller logs")
    ap.add_argument("--bench-out", type=Path, default=None,
                    help="bench.scale's output: each commit's cluster and total")
    args = ap.parse_args()
    rows = trace([events(p) for p in args.logs], measured(args.bench_out))
    if not rows:
        print("no commit after the first in these logs (was --log-level info given?)",
              file=sys.stderr)
        return 1
    cols = ("commit", "cluster", *STAGES, "unseen", "total")
    print("  ".join(f"{c:>8}" for c in cols))
    for r in rows:
        print("  ".join(f"{fmt(r[c]):>8}" for c in cols))
    medians = []
    for c in (*STAGES, "unseen", "total"):
        vals = [v for r in rows if isinstance(v := r[c], float)]
        medians.append(f"{c} {statistics.median(vals):.2f} s" if vals else f"{c} -")
    print("median: " + ", ".join(medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
