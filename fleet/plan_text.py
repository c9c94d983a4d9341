"""A plan for people: a terminal table (`to_text`) and Markdown (`to_markdown`). Pure.

The text view answers, in order: how many workloads are placed, pending and invalid;
per workload where it runs (cluster, replicas x GPUs, flavour) or, when it does not,
the one-line diagnosis; per cluster its GPUs allocated against capacity per flavour;
then the repo's errors as `file:line: message`. Columns are padded to the widest cell
so `fleet plan | less -S` lines up. The Markdown has the same content as tables.
"""

from __future__ import annotations

from fleet.placement.types import Plan, WorkloadPlacement
from fleet.plan_json import counts
from fleet.spec import FleetSpec
from fleet.texttable import markdown_table, table


def _where(p: WorkloadPlacement) -> str:
    if p.assignments:
        return ", ".join(f"{a.cluster} {a.replicas}x{a.gpus_per_replica} {a.flavour}"
                         for a in sorted(p.assignments))
    head = next((r for r in p.reasons if r.cluster is None), None)
    return head.message if head is not None else ""


def _summary(plan: Plan, spec: FleetSpec) -> str:
    n = counts(plan)
    where = plan.commit[:12] if plan.commit else "worktree"
    return (f"plan @ {where}: {len(plan.workloads)} workloads, {n['Placed']} placed, "
            f"{n['Pending']} pending, {n['Invalid']} invalid; {len(spec.clusters)} clusters")


def _table(rows: list[list[str]]) -> list[str]:
    return table(rows[0], rows[1:])


def to_text(plan: Plan, spec: FleetSpec) -> str:
    lines = [_summary(plan, spec), ""]
    rows = [["WORKLOAD", "PRIORITY", "STATUS", "WHERE / WHY"]]
    for wid, p in sorted(plan.workloads.items()):
        w = spec.workloads.get(wid)
        rows.append([wid, str(w.spec.priority) if w is not None else "-", p.status,
                     _where(p)])
    lines.extend(_table(rows))
    lines.append("")
    crow = [["CLUSTER", "JURISDICTION", "FLAVOUR", "ALLOCATED/CAPACITY"]]
    for name, c in sorted(spec.clusters.items()):
        for f, u in sorted(plan.usage.get(name, {}).items()):
            crow.append([name + (" (cordoned)" if c.spec.cordoned else ""),
                         c.spec.jurisdiction, f, f"{u.allocated}/{u.capacity}"])
    if len(crow) > 1:
        lines.extend(_table(crow))
    if spec.errors:
        lines.append("")
        lines.append(f"{len(spec.errors)} error{'s' if len(spec.errors) != 1 else ''}:")
        lines.extend(f"  {d.format()}" for d in spec.errors)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|").replace("<", "&lt;")


def to_markdown(plan: Plan, spec: FleetSpec) -> str:
    out = [f"### {_summary(plan, spec)}", ""]
    out += markdown_table(["Workload", "Priority", "Status", "Where / why"], (
        [f"`{wid}`", str(w.spec.priority) if w is not None else "-", p.status,
         _cell(_where(p))]
        for wid, p in sorted(plan.workloads.items())
        for w in (spec.workloads.get(wid),)), right=[1])
    out.append("")
    out += markdown_table(["Cluster", "Jurisdiction", "Flavour", "Allocated / capacity"], (
        [name + (" (cordoned)" if c.spec.cordoned else ""), c.spec.jurisdiction, f,
         f"{u.allocated} / {u.capacity}"]
        for name, c in sorted(spec.clusters.items())
        for f, u in sorted(plan.usage.get(name, {}).items())), right=[3])
    if spec.errors:
        out += ["", f"**{len(spec.errors)} error{'s' if len(spec.errors) != 1 else ''}**",
                ""]
        out.extend(f"- `{_cell(d.format())}`" for d in spec.errors)
    return "\n".join(out) + "\n"
