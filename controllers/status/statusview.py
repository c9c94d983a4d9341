"""Terminal views of a FleetStatus document (shared/spec/status.schema.json).

Pure formatting: a document in, text out, so `fleet status` looks the same whether the
document came from a running controller or was built straight from the clusters.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from fleet import texttable

ATTENTION_STATUS = {"Pending", "Invalid"}
ATTENTION_SYNC = {"OutOfSync", "Failed"}


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          colour: bool | None = None) -> list[str]:
    """The CLI's text table (`fleet.texttable.table`), its header line bold when
    `colour` (default: `colour_on()`: stdout is a terminal and NO_COLOR is not set)."""
    return texttable.table(headers, rows,
                           bold_header=colour_on() if colour is None else colour)


def colour_on(stream: TextIO | None = None) -> bool:
    """Colours only for a person at a terminal, and never with NO_COLOR set
    (https://no-color.org: any value, even empty, turns them off)."""
    s = sys.stdout if stream is None else stream
    return "NO_COLOR" not in os.environ and bool(getattr(s, "isatty", lambda: False)())


STATES = ("Placed", "Pending", "Invalid", "Synced", "Applying", "OutOfSync", "Drifted",
          "Progressing", "Running", "Succeeded", "Failed", "Unknown")
"""What `--state` matches: a workload's status, sync or health, or open drift."""


def filter_workloads(doc: dict[str, Any], *, team: str | None = None,
                     cluster: str | None = None, state: str | None = None
                     ) -> list[dict[str, Any]]:
    out = []
    for w in doc.get("workloads", []):
        if team and not str(w["id"]).startswith(f"{team}/"):
            continue
        if cluster and cluster not in {p["cluster"] for p in w.get("placements", [])}:
            continue
        if state and state not in {w.get("status"), w.get("sync"), w.get("health"),
                                   w.get("liveState")} \
                and not (state == "Drifted" and w.get("drift")):
            continue
        out.append(w)
    return out


def needs_attention(w: dict[str, Any]) -> bool:
    return (w.get("status") in ATTENTION_STATUS or w.get("sync") in ATTENTION_SYNC
            or w.get("health") == "Failed" or w.get("liveState") == "Unknown"
            or any(not d.get("corrected") for d in w.get("drift", []))
            # Placed on what was left of it (a spread that lost a cluster): running, short
            or any(r.get("rule") == "Degraded" for r in w.get("reasons", [])))


def _gpus(c: dict[str, Any]) -> str:
    parts = []
    for flavour, g in sorted((c.get("gpus") or {}).items()):
        parts.append(f"{flavour} {g.get('allocated', 0)}/{g.get('capacity', 0)}")
    return ", ".join(parts) or "-"


def _status(w: dict[str, Any]) -> str:
    """A workload whose cluster could not be read is Unknown, whatever was last known."""
    return "Unknown" if w.get("liveState") == "Unknown" else str(w.get("status", ""))


def _reason(w: dict[str, Any]) -> str:
    reasons = [r.get("message", "") for r in w.get("reasons", [])
               if r.get("rule") in ("Degraded", "Unreadable")]
    reasons += [r.get("message", "") for r in w.get("reasons", []) if not r.get("cluster")]
    if not reasons:
        reasons = [r.get("message", "") for r in w.get("reasons", [])]
    drift = [d for d in w.get("drift", []) if not d.get("corrected")]
    for r in reversed(w.get("recreateNeeded", [])):
        reasons.insert(0, f"re-create needed on {r['cluster']}: {r['reason']}")
    if drift:
        d = drift[0]
        reasons.insert(0, f"drift on {d['cluster']}: {', '.join(d['paths'][:3])}"
                          f" (by {d.get('manager') or 'unknown'})")
    return reasons[0] if reasons else str(w.get("sync", ""))


def health_line(c: dict[str, Any]) -> str:
    """Why a cluster is not Healthy, from the document's `reason`/`message` extras, and
    for an Unreachable one the seconds left before its workloads fail over."""
    why = c.get("message") or "no reason given by the controller"
    line = f"  ! {c['name']} {c.get('health', 'Unknown')}"
    line += f" ({c['reason']}): {why}" if c.get("reason") else f": {why}"
    if c.get("health") == "Unreachable" and c.get("failoverInSeconds") is not None:
        left = int(c["failoverInSeconds"])
        line += (f"; workloads fail over in {left}s" if left > 0
                 else "; failover grace over: workloads fail over")
    return line


def render_fleet(doc: dict[str, Any], *, team: str | None = None,
                 cluster: str | None = None, state: str | None = None) -> str:
    clusters = [c for c in doc.get("clusters", []) if not cluster or c["name"] == cluster]
    workloads = filter_workloads(doc, team=team, cluster=cluster, state=state)
    health = Counter(c.get("health", "Unknown") for c in clusters)
    status = Counter(_status(w) for w in workloads)
    alloc = sum(g.get("allocated", 0) for c in clusters for g in (c.get("gpus") or {}).values())
    cap = sum(g.get("capacity", 0) for c in clusters for g in (c.get("gpus") or {}).values())
    src = doc.get("source", {})
    lines = [
        f"Fleet: {len(clusters)} clusters ("
        + ", ".join(f"{n} {h.lower()}" for h, n in sorted(health.items())) + ") · "
        f"{len(workloads)} workloads ("
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(status.items()) if s) + ") · "
        f"{alloc}/{cap} GPUs allocated",
        f"Source: applied {(src.get('appliedCommit') or '-')[:12]}, "
        f"observed {(src.get('observedCommit') or '-')[:12]}",
    ]
    for cond in src.get("conditions", []):
        if cond.get("status") == "True" and cond.get("type") != "Ready":
            lines.append(f"  ! {cond['type']}: {cond.get('message', '')}")
    lines.append("")
    per_cluster: dict[str, Counter[str]] = {c["name"]: Counter() for c in clusters}
    for w in doc.get("workloads", []):
        for p in w.get("placements", []):
            if p["cluster"] in per_cluster:
                cnt = per_cluster[p["cluster"]]
                cnt["synced" if w.get("sync") == "Synced" else "other"] += 1
                cnt["drifted"] += 1 if any(d["cluster"] == p["cluster"]
                                           and not d.get("corrected")
                                           for d in w.get("drift", [])) else 0
                cnt["failed"] += 1 if w.get("health") == "Failed" else 0
    rows = []
    for c in clusters:
        cnt = per_cluster[c["name"]]
        h = c.get("health", "Unknown") + (" (cordoned)" if c.get("cordoned") else "") \
            + (" (suspended)" if c.get("suspended") else "")
        rows.append([c["name"], c.get("region", ""), c.get("jurisdiction", ""), h, _gpus(c),
                     str(cnt["synced"]), str(cnt["drifted"]), str(cnt["failed"])])
    lines += table(["CLUSTER", "REGION", "JUR", "HEALTH", "GPUS ALLOCATED/CAPACITY",
                    "SYNCED", "DRIFTED", "FAILED"], rows)
    lines += [health_line(c) for c in clusters if c.get("health", "Unknown") != "Healthy"]
    attention = [w for w in workloads if needs_attention(w)]
    lines.append("")
    if attention:
        lines.append(f"Needs attention ({len(attention)}):")
        lines += table(["WORKLOAD", "STATUS", "SYNC", "HEALTH", "WHY"],
                       [[w["id"], _status(w), w.get("sync", ""),
                         w.get("health", "") or "", _reason(w)] for w in attention])
    else:
        lines.append("Nothing needs attention.")
    return "\n".join(lines) + "\n"


def render_workload(doc: dict[str, Any], wid: str) -> str | None:
    w = next((x for x in doc.get("workloads", []) if x["id"] == wid), None)
    if w is None:
        return None
    lines = [f"{w['id']}: {_status(w)} · sync {w.get('sync')} · "
             f"health {w.get('health') or 'Unknown'}",
             f"commit: {(w.get('commit') or '-')[:12]}"
             + (f" · since {w['since']}" if w.get("since") else "")]
    if w.get("dataClass"):
        lines.append(f"dataClass: {w['dataClass']}")
    lines += [f"re-create needed on {r['cluster']}: {r['reason']}"
              for r in w.get("recreateNeeded", [])]
    if w.get("suspended"):
        lines.append(f"suspended since {w['suspended'].get('since', '?')}: not reconciled "
                     "(no apply, prune or drift correction) until `fleet resume`")
    lines.append("")
    if w.get("placements"):
        lines += table(["CLUSTER", "REPLICAS", "FLAVOUR", "GPUS"],
                       [[p["cluster"], str(p["replicas"]), p["flavour"], str(p["gpus"])]
                        for p in w["placements"]])
    elif w.get("liveState") == "Unknown":
        lines.append(f"Not seen running; {', '.join(w.get('unreadable') or [])} could not "
                     "be read.")
    else:
        lines.append("Not placed.")
    if w.get("lastKnown"):
        lines.append("")
        lines.append("Last known (decision ledger):")
        lines += table(["CLUSTER", "FLAVOUR", "GPUS", "SINCE"],
                       [[k["cluster"], k.get("flavour") or "-", str(k.get("gpus", 0)),
                         k.get("since") or "-"] for k in w["lastKnown"]])
    pods = w.get("pods") or []
    if pods:
        lines.append("")
        lines += table(["POD", "CLUSTER", "NODE", "PHASE"],
                       [[p.get("name", ""), p.get("cluster", ""), p.get("node") or "-",
                         p.get("phase", "")] for p in pods])
    if w.get("drift"):
        lines.append("")
        lines.append("Drift:")
        for d in w["drift"]:
            lines.append(f"  {d['cluster']}: {', '.join(d['paths'])} by "
                         f"{d.get('manager') or 'unknown'}"
                         f" ({'corrected' if d.get('corrected') else 'open'})")
    if w.get("reasons"):
        lines.append("")
        lines.append("Reasons:")
        for r in w["reasons"]:
            where = f"{r['cluster']}: " if r.get("cluster") else ""
            lines.append(f"  {where}{r.get('message', '')}")
    return "\n".join(lines) + "\n"
