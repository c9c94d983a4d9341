"""`fleet explain WORKLOAD`: every cluster's verdict per filter and score per scorer.

The table behind one placement decision (placement rule 7: for every workload and every
cluster, the plan can say why it was chosen or which rule filtered it out), judged at
the moment the workload is decided in the fleet-wide pass, so after everything of
higher priority took its capacity. With `--server URL` or `--live` it starts from what
runs (controllers/commands/liveplan.py), so it says why a workload is where it runs.
Exit codes: 0 shown, 1 with `--live` when a cluster could not be read, 2 unknown
workload or the repo (or the capacity file, or the controller) cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from controllers.commands.common import (
    add_format_argument,
    add_repo_arguments,
    fail,
    read_planning_inputs,
    write_doc,
)
from controllers.commands.liveplan import add_server_argument, describe, exit_code, use_live
from controllers.status.statusview import table

if TYPE_CHECKING:
    from fleet.placement.explain import Explanation

DESCRIPTION = """\
Explain one workload's placement: for every cluster and flavour, the result of each
filter (Residency, Flavour, Selector, Taint, Health, Cordon, Capacity, Quota) and, where
all pass, the score of each scorer (Sticky, FlavourPreference, Packing, Price) with
their weights.

Examples:
  fleet explain nlp-team/llama-finetune examples/fleet
  fleet explain nlp-team/llama-finetune --format json
  fleet explain search-team/ranker-train --capacity capacity.json
  fleet explain nlp-team/llama-finetune --server http://fleet:8080
      # why it is where it runs now (after a failover: kept there, or why it moved)"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="why one workload is placed where it is",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", metavar="WORKLOAD", help="the workload id, <team>/<name>")
    add_repo_arguments(p)
    p.add_argument("--capacity", metavar="FILE",
                   help="a CapacitySnapshot JSON file (default: the declared capacity)")
    add_server_argument(p)
    add_format_argument(p, ("text", "json"), "text")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fleet.placement.explain import UnknownWorkload, explain
    from fleet.planning import capacity_for

    live = use_live(args)
    snap, read, from_file = read_planning_inputs(args)
    spec = snap.spec
    capacity, _source = capacity_for(spec, file=read if from_file else None,
                                     live=live.capacity if live else None)
    try:
        ex = explain(spec, capacity, args.workload, live.previous if live else None)
    except UnknownWorkload:
        fail(f"no workload {args.workload} in {args.repo} (ids are <team>/<name>)")
    if args.format in ("json", "yaml"):
        doc = to_json(ex)
        if live is not None:
            doc["source"] = {"server": live.server, "commit": snap.commit,
                             "running": [{"cluster": a.cluster, "flavour": a.flavour,
                                          "replicas": a.replicas, "gpus": a.gpus}
                                         for a in live.previous.get(ex.workload, ())]}
        write_doc(doc, args.format)
    else:
        if live is not None:
            sys.stdout.write(describe(live) + "\n")
        sys.stdout.write(to_text(ex))
    return exit_code(live, 0)


def to_json(ex: Explanation) -> dict[str, Any]:
    return {
        "workload": ex.workload,
        "status": ex.placement.status,
        "judgedFor": "keep" if ex.keep else "new",
        "placements": [{"cluster": a.cluster, "flavour": a.flavour, "replicas": a.replicas,
                        "gpus": a.gpus} for a in ex.placement.assignments],
        "reasons": [{"cluster": r.cluster, "rule": r.rule, "message": r.message}
                    for r in ex.placement.reasons],
        "weights": dict(ex.weights),
        "clusters": [
            {"cluster": c.cluster, "chosen": c.chosen, "flavours": [
                {"flavour": v.flavour, "feasible": v.feasible,
                 "filters": [{"rule": r.rule, "code": r.code, "message": r.message}
                             for r in v.filters],
                 "scores": dict(v.scores), "total": v.total}
                for v in c.flavours]}
            for c in ex.clusters],
    }


def to_text(ex: Explanation) -> str:
    p = ex.placement
    lines = [f"{ex.workload}: {p.status}"
             + (" (" + ", ".join(f"{a.cluster} {a.replicas}x{a.gpus_per_replica} {a.flavour}"
                                 for a in p.assignments) + ")" if p.assignments else "")]
    lines.extend(f"  {r.rule or ''}: {r.message}" for r in p.reasons if r.cluster is None)
    if not ex.clusters:
        return "\n".join(lines) + "\n"
    lines.append(f"judged as {'running (keep)' if ex.keep else 'a new placement'}; weights "
                 + ", ".join(f"{n} x{w}" for n, w in ex.weights))
    rows = []
    for c in ex.clusters:
        for v in c.flavours:
            bad = next((r for r in v.filters if not r.ok), None)
            verdict = "fits" if bad is None else f"{bad.rule}: {bad.message}"
            scores = " ".join(f"{n}={s}" for n, s in v.scores)
            chosen = "*" if c.chosen and any(
                a.cluster == c.cluster and a.flavour == v.flavour for a in p.assignments) else ""
            rows.append([chosen, c.cluster, v.flavour, verdict, scores,
                         "" if v.total is None else str(v.total)])
    lines.extend(table(["", "CLUSTER", "FLAVOUR", "VERDICT", "SCORES", "TOTAL"], rows))
    return "\n".join(lines) + "\n"
