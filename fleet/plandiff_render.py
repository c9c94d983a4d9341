"""A plan diff as a PR comment (Markdown), a terminal report (text) and JSON. Pure.

The Markdown is read by people deciding whether to approve: the verdict and a summary
table of what changes come first; what the change does to *other* teams is a loud
callout right after; then errors, approvals needed, GPUs per team against quota, GPUs
per flavour, cost; the per-cluster manifest diffs last, collapsed (`<details>`), since
they are long and only needed to check the details. It starts with the hidden marker
the forge adapter uses to keep one sticky comment per PR, and fits a comment: past a
budget, cluster diffs are left out with a pointer to the command.

The JSON is `fleet plan`'s (`fleet.plan_json`, plan.schema.json) for the head, with
`source.base` and `change` per workload, and a `diff` object with the rest.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fleet.capacity import CapacitySnapshot
from fleet.plan_json import plan_to_json
from fleet.plandiff import PlanDiff, WorkloadChange, moves

MARKER = "<!-- aifleet-plan -->"
MAX_ROWS = 200
DIFF_BUDGET = 50_000


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}/h"


def _delta(before: int, after: int, money: bool = False) -> str:
    d = after - before
    if d == 0:
        return "±0"
    text = _money(abs(d)) if money else str(abs(d))
    return f"+{text}" if d > 0 else f"-{text}"


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|").replace("<", "&lt;")


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "worktree"


def verdict(d: PlanDiff) -> str:
    parts = []
    if d.errors:
        n = len(d.errors) - len(d.violations)
        if n:
            parts.append(f"{n} error{'s' if n != 1 else ''}")
    if d.violations:
        n = len(d.violations)
        parts.append(f"{n} guardrail violation{'s' if n != 1 else ''}")
    head = ("❌ " + ", ".join(parts)) if parts else "✅ clean"
    if d.displaced:
        n = len(d.displaced)
        head += f" · ⚠️ displaces {n} workload{'s' if n != 1 else ''} of other teams"
    approvals = sorted({o for f in d.flags if f.kind != "owned" for o in f.owners})
    if any(f.kind != "owned" for f in d.flags):
        head += " · 🔒 needs approval " + (f"from {', '.join(approvals)}" if approvals
                                          else "(see Approvals)")
    return head


def summary_line(d: PlanDiff) -> str:
    c = d.counts()
    changed = ", ".join(f"{n} {k.lower()}" for k, n in c.items() if n and k != "Unchanged")
    labels = Counter(w.label for w in d.workloads if w.change == "Unchanged")
    others = "".join(f"; {n} {k.lower()}" for k, n in sorted(labels.items())
                     if k != "Unchanged")
    return (f"{changed or 'no placement changes'}{others}; {labels['Unchanged']} unchanged; "
            f"cost {_money(d.cost.before)} → {_money(d.cost.after)} "
            f"({_delta(d.cost.before, d.cost.after, money=True)})")


def to_markdown(d: PlanDiff, budget: int = DIFF_BUDGET) -> str:
    out = [MARKER, f"## aifleet plan: {verdict(d)}", "",
           f"`{_short(d.base_commit)}` → `{_short(d.head_commit)}` · {summary_line(d)}", ""]
    out += [f"> {_cell(n)}" for n in d.notes] + ([""] if d.notes else [])
    rows = d.changed
    if rows:
        out += ["| workload | change | from | to | why |", "|---|---|---|---|---|"]
        for w in rows[:MAX_ROWS]:
            frm, to = moves(w)
            change = w.label + (" (spec changed)" if w.spec_changed and
                                w.change in ("Moved", "Resized") else "")
            why = "; ".join(w.why[:2])
            out.append(f"| `{w.id}` | {change} | {_cell(frm)} | {_cell(to)} | {_cell(why)} |")
        if len(rows) > MAX_ROWS:
            out.append(f"| … {len(rows) - MAX_ROWS} more | | | | |")
        out.append("")
    if d.displaced:
        out += ["> [!CAUTION]",
                "> **This change displaces workloads of other teams**: their files did not "
                "change, but they lose GPUs or have to move:"]
        for w in d.displaced:
            frm, to = moves(w)
            why = f" — {'; '.join(w.why[:2])}" if w.why else ""
            out.append(f"> - **`{w.id}`** ({w.team}): {_cell(frm)} → {_cell(to)}{_cell(why)}")
        out.append("")
    if d.errors:
        out += ["### Errors and guardrail violations", ""]
        out += [f"- `{_cell(e.format().split(': ', 1)[0])}`: {_cell(e.message)}"
                for e in d.errors]
        out.append("")
    if d.flags:
        team = f" (change by {d.author_team})" if d.author_team else ""
        out += [f"### Approvals{team}", "", "| file | flag | owners | why |", "|---|---|---|---|"]
        out += [f"| `{_cell(f.file)}` | {f.kind} | {_cell(', '.join(f.owners) or '?')} | "
                f"{_cell(f.message)} |" for f in d.flags]
        out.append("")
    teams = [t for t in d.teams if t.gpus.before != t.gpus.after]
    if teams:
        out += ["### GPUs per team", "", "| team | flavour | before | after | quota |",
                "|---|---|---:|---:|---|"]
        for t in teams:
            quota = _quota(t.nominal, t.borrowing)
            out.append(f"| {t.team} | {t.flavour} | {t.gpus.before} | {t.gpus.after} "
                       f"({_delta(t.gpus.before, t.gpus.after)}) | {quota} |")
        out.append("")
    flav = {f: v for f, v in d.flavours.items() if v[1].before != v[1].after}
    if flav:
        out += ["### GPUs per flavour (fleet)", "", "| flavour | capacity | allocated before "
                "| after |", "|---|---:|---:|---:|"]
        out += [f"| {f} | {cap} | {u.before} | {u.after} ({_delta(u.before, u.after)}) |"
                for f, (cap, u) in flav.items()]
        out.append("")
    if d.team_cost:
        out += ["### Cost per hour (by flavour price)", "", "| team | before | after |",
                "|---|---:|---:|"]
        out += [f"| {t} | {_money(u.before)} | {_money(u.after)} "
                f"({_delta(u.before, u.after, money=True)}) |" for t, u in d.team_cost.items()]
        out += [f"| **fleet** | {_money(d.cost.before)} | {_money(d.cost.after)} "
                f"({_delta(d.cost.before, d.cost.after, money=True)}) |", ""]
    if d.unpriced.before or d.unpriced.after:
        out += [f"Not priced (no `pricePerHour`): {d.unpriced.before} -> {d.unpriced.after} "
                "GPUs; their cost is unknown, not zero.", ""]
    if d.manifests:
        out += ["### Manifests per cluster", ""]
        used = 0
        for cluster, text in d.manifests.items():
            plus = sum(1 for x in text.splitlines() if x.startswith("+") and
                       not x.startswith("+++"))
            minus = sum(1 for x in text.splitlines() if x.startswith("-") and
                        not x.startswith("---"))
            if used + len(text) > budget:
                out += [f"- **{cluster}** (+{plus} -{minus}): too long for a comment; run "
                        "`fleet plan --base … --head …` to see it", ""]
                continue
            used += len(text)
            fence = "`" * max(3, _longest_backticks(text) + 1)
            out += [f"<details><summary><b>{cluster}</b> (+{plus} -{minus})</summary>", "",
                    f"{fence}diff", text.rstrip("\n"), fence, "", "</details>", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _quota(nominal: int | None, borrowing: int | None) -> str:
    if nominal is None:
        return "no quota"
    if borrowing is None:
        return str(nominal)
    return f"{nominal} + {'any' if borrowing < 0 else borrowing} borrowed"


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def to_text(d: PlanDiff) -> str:
    out = [f"plan {_short(d.base_commit)} -> {_short(d.head_commit)}: "
           f"{verdict(d).replace('❌ ', '').replace('✅ ', '').replace('⚠️ ', '!! ')}"
           .replace("🔒 ", ""), summary_line(d), ""]
    out += [f"note: {n}" for n in d.notes]
    for w in d.changed:
        frm, to = moves(w)
        mark = "!! DISPLACED " if w.displaced else ""
        out.append(f"{mark}{w.label:<9} {w.id}: {frm} -> {to}")
        out += [f"            {r}" for r in w.why[:3]]
    out += [e.format() for e in d.errors]
    out += [f"approval: {f.file}: {f.message}" for f in d.flags]
    for t in d.teams:
        if t.gpus.before != t.gpus.after:
            out.append(f"gpus {t.team} {t.flavour}: {t.gpus.before} -> {t.gpus.after} "
                       f"(quota {_quota(t.nominal, t.borrowing)})")
    for cluster, text in d.manifests.items():
        out += ["", f"=== {cluster}", text.rstrip("\n")]
    return "\n".join(out).rstrip("\n") + "\n"


def _placements(w: WorkloadChange, after: bool = True) -> list[dict[str, Any]]:
    p = w.after if after else w.before
    if p is None:
        return []
    return [{"cluster": a.cluster, "replicas": a.replicas, "flavour": a.flavour,
             "gpus": a.gpus} for a in sorted(p.assignments)]


def to_json(d: PlanDiff, source: Mapping[str, Any] | None = None,
            capacity: CapacitySnapshot | None = None) -> dict[str, Any]:
    """The head plan as `fleet plan` gives it (plan.schema.json), with per workload its
    `change` (and `before`, `specChanged`, `displaced`), Removed workloads listed with
    the status they had and no placements, and `diff`: the comparison with base."""
    doc = plan_to_json(d.head_plan, d.head_spec, capacity, base=d.base_commit)
    doc["source"].update(source or {})
    rows = {w["id"]: w for w in doc["workloads"]}
    for w in d.workloads:
        row = rows.get(w.id)
        if row is None:  # Removed: not in head
            assert w.before is not None
            row = rows[w.id] = {"id": w.id, "status": w.before.status, "placements": [],
                                "reasons": [], "team": w.team}
        row.update({"change": w.change, "label": w.label, "specChanged": w.spec_changed,
                    "displaced": w.displaced, "before": _placements(w, after=False)})
        if w.recreate:
            row["recreateNeeded"] = [{"cluster": c, "reason": r} for c, r in w.recreate]
    doc["workloads"] = [rows[k] for k in sorted(rows)]
    violations = set(d.violations)
    doc["errors"] = [{**e.to_json(), "guardrail": e in violations} for e in d.errors]
    doc["diff"] = {
        "verdict": "failed" if d.failed else "clean",
        "counts": d.counts(),
        "displaced": [w.id for w in d.displaced],
        "approvals": [f.to_json() for f in d.flags],
        "authorTeam": d.author_team,
        "teams": [{"team": t.team, "flavour": t.flavour, "before": t.gpus.before,
                   "after": t.gpus.after, "nominal": t.nominal, "borrowing": t.borrowing}
                  for t in d.teams],
        "flavours": {f: {"capacity": cap, "before": u.before, "after": u.after}
                     for f, (cap, u) in d.flavours.items()},
        "costPerHour": {"before": d.cost.before / 100, "after": d.cost.after / 100,
                        "unpricedGpus": {"before": d.unpriced.before,
                                         "after": d.unpriced.after},
                        "teams": {t: {"before": u.before / 100, "after": u.after / 100}
                                  for t, u in d.team_cost.items()}},
        "manifests": dict(d.manifests),
        "notes": list(d.notes),
    }
    return doc
