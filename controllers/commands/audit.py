"""`fleet audit residency`: where every workload ran, and whether it was allowed to.

Built from the decision ledger (branch aifleet/ledger) and the fleet repo's policy and
cluster jurisdictions at each record's commit (read once per distinct content), and
optionally cross-checked against what runs in the clusters now (`--live`, or a JSON
file of observed objects with `--observed`). Exit 1 when there is any violation.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from controllers.commands.common import (
    add_controller_namespace_argument,
    add_format_argument,
    controller_namespace_of,
    fail,
    write_doc,
)
from controllers.commands.ledgerread import (
    add_window_arguments,
    bulk_mode,
    chain_banner,
    chain_json,
    open_ledger,
    refuse_broken_chain,
)
from controllers.status.progress import Progress
from fleet.audit import FleetAt, LiveObject, Report, residency_audit
from fleet.ledger import Break, Chain
from fleet.spec import FleetSpec
from fleet.texttable import markdown_cell, markdown_table
from workloads.errors import WorkloadsError
from workloads.ledger_store import FleetHistory
from workloads.loader import Snapshot, read_fleet

if TYPE_CHECKING:
    from clusters.kubeconfig import ConnectionSpec

DESCRIPTION = """\
For every workload and every period: where it ran (cluster, jurisdiction), from when to
when, and whether that jurisdiction was allowed for its dataClass by the residency
policy in force at that commit; violations first. Findings: clusters whose jurisdiction
changed in the repo while workloads ran on them, and with --live / --observed, GPU
workloads running that no placement put there and objects of ours the ledger does not
know. The report names the ledger head it was built from. Exit 1 on any violation.

The ledger's hash chain is verified in the same pass: a broken chain (a record edited,
removed or reordered) is refused with exit 1 and the first broken record, unless
--allow-broken-chain, which reports under a banner at the top of every format.

DATE is YYYY-MM-DD (a --to day is included whole) or an RFC 3339 time.

Examples:
  fleet audit residency /srv/fleet.git --from 2026-07-01 --to 2026-09-30
  fleet audit residency --format csv > q3.csv
  fleet audit residency --live ~/.kube/fleet.yaml     # also cross-check the clusters"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="residency audit from the decision ledger",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="audit_command", metavar="AUDIT", required=True)
    r = inner.add_parser("residency", help="where workloads ran and whether it was allowed",
                         description=DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_window_arguments(r)
    add_format_argument(r, ("markdown", "json", "csv"), "markdown")
    r.add_argument("--live", metavar="KUBECONFIG", nargs="?", const="",
                   help="cross-check against the clusters of the fleet repo at --ref, "
                        "reached with this kubeconfig (default: each Cluster's connection)")
    r.add_argument("--observed", metavar="FILE",
                   help="cross-check against observed objects in a JSON file: a list of "
                        "{cluster, kind, namespace, name, workload, managed, gpus}")
    add_controller_namespace_argument(r)
    r.set_defaults(handler=run)


class HeadFleet(Mapping[str, "str | None"]):
    """The effective dataClass of each workload at --ref, read only if a record lacks one.

    Reading a 5,000-workload fleet costs a second; a ledger whose records carry their
    dataClass never needs it.
    """

    def __init__(self, repo: str, ref: str, controller_namespace: str) -> None:
        self.repo, self.ref = repo, ref
        self.controller_namespace = controller_namespace
        """Read as the controller reads it: a team folder named like it is refused."""

    @cached_property
    def snapshot(self) -> Snapshot:
        try:
            return read_fleet(self.repo, self.ref,
                              controller_namespace=self.controller_namespace)
        except WorkloadsError as e:
            fail(str(e))

    @cached_property
    def classes(self) -> dict[str, str | None]:
        res = self.snapshot.spec.residency
        return {str(wid): res.data_class_of(w.spec.placement.data_class)
                for wid, w in self.snapshot.spec.workloads.items()}

    def __getitem__(self, wid: str) -> str | None:
        return self.classes[wid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)


def load_observed(path: str) -> list[LiveObject]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        return [LiveObject(str(o["cluster"]), str(o["kind"]), str(o["namespace"]),
                           str(o["name"]), o.get("workload"), bool(o.get("managed")),
                           int(o.get("gpus", 0))) for o in raw]
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"{path}: cannot read observed objects: {e}")


def run(args: argparse.Namespace) -> int:
    bulk_mode()
    reader = open_ledger(args.repo, args.ledger_ref)
    history = FleetHistory(args.repo)
    notes: list[str] = []
    head_fleet = HeadFleet(args.repo, args.ref, controller_namespace_of(args))
    live: list[LiveObject] | None = None
    checked: list[str] | None = None
    latest: FleetAt | None = None
    if args.live is not None or args.observed:
        spec = head_fleet.snapshot.spec
        latest = FleetAt.of(spec)
        live = load_observed(args.observed) if args.observed else []
        if args.live is not None:
            found, unreachable = observe_clusters(spec, args.live or None)
            live.extend(found)
            down = {c for c, _ in unreachable}
            checked = sorted(c for c in spec.clusters if c not in down)
            notes.extend(f"cluster {c} not cross-checked: {why}" for c, why in unreachable)
    progress = Progress("reading the ledger", unit="records")
    check = Chain()
    rows = reader.rows(progress.update, check=check, stop_at_break=not args.allow_broken_chain)
    try:
        report = residency_audit(rows, history.at, start=args.start,
                                 end=args.end, live=live, latest=latest,
                                 data_classes=head_fleet, checked=checked)
    except WorkloadsError as e:
        progress.clear()
        fail(str(e))
    progress.clear()
    broken = check.broken
    if broken is not None and not args.allow_broken_chain:
        return refuse_broken_chain(broken, args.ledger_ref)
    head = str(reader.commit.id) if reader.commit is not None else ""
    for note in notes:
        print(f"fleet: {note}", file=sys.stderr)
    if args.format in ("json", "yaml"):
        doc = report.to_json()
        doc["ledger"]["commit"] = head
        doc["chainBroken"] = chain_json(broken)
        doc["notCrossChecked"] = notes
        write_doc(doc, args.format)
    elif args.format == "csv":
        if broken is not None:
            sys.stdout.write(f"# {chain_banner(broken)}\n")
        write_csv(report)
    else:
        sys.stdout.write(markdown(report, args.ledger_ref, head, notes, broken))
    return 1 if report.violations or broken is not None else 0


def write_csv(report: Report) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["row", "workload", "dataClass", "cluster", "jurisdiction", "from", "to",
                "commit", "allowed", "why"])
    for f in report.findings:
        w.writerow([f.kind, f.workload or "", "", f.cluster, "", f.time or "", "",
                    f.commit or "", "no" if f.violation else "yes", f.message])
    for p in report.periods:
        w.writerow(["period", p.workload, p.data_class or "", p.cluster, p.jurisdiction,
                    p.start, p.end or "", p.commit or "", "yes" if p.allowed else "no", p.why])


_PIPE = "\\|"
"""A `|` inside a cell, escaped."""


def markdown(report: Report, ledger_ref: str, head_commit: str, notes: list[str],
             broken: Break | None = None) -> str:
    n = report.violations
    banner = [] if broken is None else [f"> **{chain_banner(broken)}**", ""]
    chain = "hash chain verified" if broken is None else "**hash chain broken**"
    lines = [
        *banner, "# Residency audit", "",
        f"- Ledger: `{ledger_ref}` at commit `{head_commit[:12]}`, {report.records} records, "
        f"head seq {report.head_seq} `{report.head_hash}`, {chain}",
        f"- Window: {report.start or 'beginning'} to {report.end or 'end of ledger'}",
        f"- Result: **{n} violation{'' if n == 1 else 's'}**, {len(report.periods)} periods, "
        f"{len(report.findings)} findings",
    ]
    lines.extend(f"- Not cross-checked: {note}" for note in notes)
    if report.findings:
        lines += ["", "## Findings", ""]
        lines += markdown_table(["", "kind", "cluster", "workload", "time", "message"], (
            ["VIOLATION" if f.violation else "note", f.kind, f.cluster, f.workload or "-",
             f.time or "-", markdown_cell(f.message)] for f in report.findings))
    lines += ["", "## Periods", ""]
    lines += markdown_table(
        ["", "workload", "dataClass", "cluster", "jurisdiction", "from", "to", "commit", "why"],
        ())
    # One f-string a row, as markdown_table would make it: a million-record ledger has
    # ~150,000 periods, and building a list of cells for each costs twice as much.
    lines.extend(
        f"| {'ok' if p.allowed else 'VIOLATION'} | {p.workload} | {p.data_class or '-'} | "
        f"{p.cluster} | {p.jurisdiction} | {p.start} | {p.end or 'running'} | "
        f"{(p.commit or '-')[:12]} | "
        f"{(p.why or ('' if p.placed else 'observed, not placed')).replace('|', _PIPE)} |"
        for p in report.periods)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- --live


def observe_clusters(spec: FleetSpec, kubeconfig: str | None
                     ) -> tuple[list[LiveObject], list[tuple[str, str]]]:
    """What runs in every cluster of `spec` now; and the clusters that could not be read.

    Imports the Kubernetes side here, not at the top: every `fleet` command would pay.
    """
    import anyio

    return anyio.run(_observe_all, spec, kubeconfig)


async def _observe_all(spec: FleetSpec, kubeconfig: str | None
                       ) -> tuple[list[LiveObject], list[tuple[str, str]]]:
    from clusters.errors import ClusterError
    from clusters.kubeconfig import ConnectionSpec

    found: list[LiveObject] = []
    unreachable: list[tuple[str, str]] = []
    for name, c in spec.clusters.items():
        conn = ConnectionSpec(name, kubeconfig or c.spec.connection.kubeconfig,
                              c.spec.connection.context or name)
        try:
            found.extend(await _observe(conn))
        except ClusterError as e:
            unreachable.append((name, str(e)))
    return found, unreachable


async def _observe(conn: ConnectionSpec) -> list[LiveObject]:
    from clusters.client import DEPLOYMENT, JOB, POD, SERVICE, KubeClient, RetryPolicy
    from clusters.kubeconfig import api_client
    from fleet.render import OWNED_SELECTOR, pod_gpus

    client = KubeClient(conn.cluster, await api_client(conn), retry=RetryPolicy(attempts=2),
                        timeout=10)
    out: list[LiveObject] = []
    try:
        pods = await client.request("GET", POD.collection(), verb="list")
        for pod in pods.get("items") or []:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            gpus = pod_gpus(pod)
            if gpus:
                out.append(_live(conn.cluster, "Pod", pod, gpus))
        for t in (JOB, DEPLOYMENT, SERVICE):
            listed = await client.request("GET", t.collection(), verb="list",
                                          query={"labelSelector": OWNED_SELECTOR})
            out.extend(_live(conn.cluster, t.kind, o, 0) for o in listed.get("items") or [])
    finally:
        await client.close()
    return out


def _live(cluster: str, kind: str, obj: dict[str, Any], gpus: int) -> LiveObject:
    from fleet.render import read_back

    meta = obj.get("metadata") or {}
    back = read_back(obj)
    return LiveObject(cluster, kind, str(meta.get("namespace") or ""), str(meta.get("name")),
                      back.workload, back.managed, gpus)
