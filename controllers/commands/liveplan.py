"""`--server URL` for `fleet explain`, `fleet plan` and `fleet whatif`: start from what runs.

Without it, these commands plan the repo from scratch ("as a new placement"), which is
what a freshly started controller would do, not what a controller that lived through a
failover does: it keeps workloads where they run (sticky) unless a rule moves them. So
after a failover they would answer "why would it go THERE" for a workload that runs
elsewhere. With `--server`, they read from a running controller:

- what runs: its placements (`GET /api/v1/status`), as the previous plan, exactly as the
  controller folds its own previous plan into the next one;
- its capacity (`GET /api/v1/capacity`), health and unreachable time included;
- the commit it applied, which is planned unless `--ref` names another one.

and so answer "why is it HERE", agreeing with where the workloads run.

`--live` does the same without a controller: it reads the clusters of the repo itself
(read-only, as `fleet status --live`): what runs there, and their capacity. A cluster
that cannot be read cannot say what runs on it: that is said on stderr and the command
exits 1, since its workloads are then planned as if they ran nowhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.commands.common import add_token_argument, auth_headers, fail
from fleet.capacity import CapacityFormatError, CapacitySnapshot
from fleet.ids import ClusterName, Flavour, WorkloadId
from fleet.placement.types import Assignment, PreviousPlan

HELP = ("start from what runs: plan with the placements, capacity and applied commit of "
        "the controller at URL (its /api/v1/status and /api/v1/capacity), so after a "
        "failover the answer is why a workload is where it runs now; --ref overrides the "
        "commit")


def add_server_argument(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("from what runs", "plan from the live placement instead of "
                             "from scratch")
    g.add_argument("--server", metavar="URL", help=HELP)
    add_token_argument(g)  # type: ignore[arg-type]  # a group takes add_argument too
    g.add_argument("--live", action="store_true",
                   help="no controller: read what runs and the capacity straight from the "
                        "fleet's clusters (read-only); exit 1 if one cannot be read")
    g.add_argument("--kubeconfig", default=None,
                   help="with --live: kubeconfig for clusters whose file names none")
    g.add_argument("--allow-exec-plugins", action="store_true",
                   help="with --live: allow kubeconfig exec/auth-provider plugins")
    g.add_argument("--timeout", type=float, default=15.0,
                   help="with --live: seconds to wait for the clusters to answer")


@dataclass(frozen=True, slots=True)
class LivePlacement:
    """What a running controller says runs, with the capacity it sees."""

    server: str
    """The controller's URL, or `live` when read from the clusters."""
    previous: PreviousPlan
    capacity: CapacitySnapshot
    applied_commit: str | None
    unreadable: tuple[str, ...] = ()
    """With --live: the clusters that could not be read (what runs there is unknown)."""
    recreate: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    """With --server: per workload, the clusters where the controller says a re-create
    is needed (its status rows' `recreateNeeded`), with the reason."""


def _get(server: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    import httpx  # here: building the parser must stay light

    url = f"{server.rstrip('/')}{path}"
    try:
        r = httpx.get(url, timeout=10,  # no-cache: the state of now (status cache)
                      headers={**(headers or {}), "Cache-Control": "no-cache"})
        r.raise_for_status()
        doc = r.json()
    except httpx.HTTPError as e:
        fail(f"cannot read {url}: {e} (is `fleet run` up at {server}?)")
    except ValueError:
        fail(f"{url} did not answer JSON: is {server} an aifleet controller?")
    if not isinstance(doc, dict):
        fail(f"{url} did not answer a JSON object")
    return doc


def previous_of(status: dict[str, Any]) -> PreviousPlan:
    """The placements of a FleetStatus document as a previous plan."""
    out: dict[WorkloadId, tuple[Assignment, ...]] = {}
    for w in status.get("workloads", []):
        rows = tuple(
            Assignment(ClusterName(p["cluster"]), Flavour(p["flavour"]), int(p["replicas"]),
                       int(p["gpus"]) // max(1, int(p["replicas"])))
            for p in w.get("placements", []))
        if rows:
            out[WorkloadId(w["id"])] = rows
    return out


def read_live(server: str, headers: dict[str, str] | None = None) -> LivePlacement:
    """Placements, capacity and applied commit of the controller at `server`; exit 2
    when it cannot be read."""
    status = _get(server, "/api/v1/status", headers)
    try:
        capacity = CapacitySnapshot.from_json(_get(server, "/api/v1/capacity", headers))
        previous = previous_of(status)
    except (CapacityFormatError, KeyError, TypeError, ValueError) as e:
        fail(f"{server}: not a FleetStatus/CapacitySnapshot an aifleet controller "
             f"serves: {e}")
    applied = (status.get("source") or {}).get("appliedCommit")
    return LivePlacement(server, previous, capacity, applied if isinstance(applied, str)
                         else None, recreate=recreate_of(status))


def recreate_of(status: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Per workload of a FleetStatus document, its `recreateNeeded` (cluster, reason)."""
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for w in status.get("workloads", []):
        rows = tuple((str(r.get("cluster", "")), str(r.get("reason", "")))
                     for r in w.get("recreateNeeded") or () if isinstance(r, dict))
        if rows:
            out[str(w["id"])] = rows
    return out


def use_live(args: argparse.Namespace) -> LivePlacement | None:
    """With `--server`: read the controller, and plan its applied commit unless `--ref`
    names one (and the commit is read from the local repo, which must have it)."""
    if getattr(args, "live", False):
        if args.server:
            fail("--server or --live: one source of what runs")
        if getattr(args, "capacity", None) and isinstance(args.capacity, str):
            fail("--live reads the clusters' capacity: not with --capacity FILE")
        return read_clusters(args)
    if not getattr(args, "server", None):
        return None
    if getattr(args, "worktree", False):
        fail("--server plans what the controller applied: not with --worktree")
    if getattr(args, "capacity", None) and isinstance(args.capacity, str):
        fail("--server reads the controller's capacity: not with --capacity FILE")
    live = read_live(args.server, auth_headers(args))
    if args.ref == "HEAD" and live.applied_commit:
        from workloads.errors import WorkloadsError
        from workloads.source import open_repository

        try:
            repo, _ = open_repository(args.repo)
            repo.revparse_single(live.applied_commit)
        except (WorkloadsError, KeyError, ValueError):
            fail(f"the controller at {args.server} applied {live.applied_commit[:12]}, "
                 f"which {args.repo} does not have: fetch it, or pass --ref")
        args.ref = live.applied_commit
    return live


def read_clusters(args: argparse.Namespace) -> LivePlacement:
    """What runs and the capacity, read from the clusters of the repo at `--ref`."""
    import anyio

    from controllers.commands.common import read_snapshot
    from controllers.logs import configure
    from controllers.status.livestatus import live_placement

    configure("warning")  # logs to stderr: stdout carries the answer
    snap = read_snapshot(args)
    previous, capacity, unreadable = anyio.run(lambda: live_placement(
        snap, kubeconfig=args.kubeconfig, allow_exec=args.allow_exec_plugins,
        answer_within=args.timeout))
    if unreadable:
        print(f"fleet: could not read {', '.join(unreadable)}: what runs there is unknown, "
              "so its workloads are planned as if they ran nowhere (exit 1)",
              file=sys.stderr)
    return LivePlacement("live", previous, capacity, snap.commit, tuple(unreadable))


def describe(live: LivePlacement) -> str:
    """One line saying where the answer starts from."""
    source = ("the clusters, read live" if live.server == "live"
              else f"controller {live.server}, applied {(live.applied_commit or '-')[:12]}")
    return f"from what runs ({source}, {len(live.previous)} workloads running)"


def exit_code(live: LivePlacement | None, code: int) -> int:
    """`code`, or 1 when part of what runs could not be read."""
    return 1 if live is not None and live.unreadable else code
