"""`fleet demo`: the whole product on one machine, narrated, in well under a minute."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Run aifleet end to end on this machine, nothing to install: simulated Kubernetes clusters
for the Cluster files of examples/fleet, a local Git repo seeded from it, and the real
controller. The demo narrates each step with tables:

  1. initial rollout of every workload, within its residency rules;
  2. on a Kueue cluster, a multi-pod training job created suspended in its team's
     queue, admitted by Kueue's quota, its pods each with their rank and rank 0's
     address;
  3. a new workload committed (webhook) and placed;
  4. drift injected by another field manager, detected and corrected;
  5. a cluster taken down: its workloads fail over inside their jurisdiction; it comes
     back and the stale copies there are deleted first;
  6. the final fleet status.

Exits 0 when every step checked out. With --keep-running it stays up: try
`fleet status`, `curl 127.0.0.1:8080/metrics` and `kubectl --kubeconfig <printed path>`."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the fleet end to end on simulated clusters",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleet", type=Path, default=None, metavar="FOLDER",
                   help="the fleet to seed the repo from (default: examples/fleet)")
    p.add_argument("--keep-running", action="store_true",
                   help="stay up after the demo for `fleet status` and kubectl, until "
                        "Ctrl-C")
    p.add_argument("--listen", default="127.0.0.1:8080",
                   help="the controller's HTTP address (default 127.0.0.1:8080; a busy "
                        "port falls back to a free one)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the repo, kubeconfig and state here (default: a temp dir, "
                        "removed at the end)")
    p.add_argument("--log-file", type=Path, default=None,
                   help="write the controller's JSON logs here (default: "
                        "<workdir>/controller.log)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from controllers.demo.steps import run_demo

    fleet = args.fleet or _default_fleet()
    if fleet is None or not (fleet / "clusters").is_dir():
        from controllers.commands.common import fail

        fail("cannot find the example fleet (examples/fleet); pass --fleet FOLDER")
    try:
        return anyio.run(run_demo, fleet, args.keep_running, args.listen, args.workdir,
                         args.log_file)
    except KeyboardInterrupt:
        return 0


def _default_fleet() -> Path | None:
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        candidate = base / "examples" / "fleet"
        if (candidate / "clusters").is_dir():
            return candidate
    return None
