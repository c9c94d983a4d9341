"""`fleet render`: print what the controller would apply, as `helm template` does.

Plans one commit (the declared capacity, or `--capacity FILE`) and renders every
cluster's objects through the render contract (`fleet.render.render_cluster`, the
controller's own path), stamped with the content hash as the applier stamps them, as
multi-document YAML: pipe it into `kubectl apply --server-side --dry-run=server -f -`.

Exit codes: 0 rendered, 1 the repo has errors (listed on stderr; the valid workloads
are still rendered, as the controller would apply them), 2 could not run.
"""

from __future__ import annotations

import argparse
import sys

from controllers.commands.common import add_repo_arguments, fail, read_planning_inputs

DESCRIPTION = """\
Print the Kubernetes objects the controller would apply for one commit of a fleet repo:
one Namespace per team with a workload in the cluster, then each workload's Job, or
Deployment and Service, with aifleet's labels and annotations, as multi-document YAML
(sorted keys). Each document starts with a `# Source: <cluster>[/<team>/<workload>]`
comment.

The placement is the one `fleet plan` gives (the GPUs the Cluster files declare, or a
capacity snapshot with --capacity). Only Placed workloads have objects; an invalid
document is listed on stderr and the command exits 1. The `aifleet.dev/source-commit`
annotation is the commit rendered: a running controller keeps, per workload, the commit
at which its intent last changed, so that annotation may name an older commit there.
`aifleet.dev/content-hash` is stamped as the applier stamps it; with --leader-elect the
applier also stamps `aifleet.dev/lease-generation`. A server-side dry run of an object
in a namespace that does not exist yet is refused: apply the Namespaces first.

Examples:
  fleet render                                   # every cluster, the repo at HEAD
  fleet render examples/fleet --cluster eu-fra-1 # one cluster
  fleet render --worktree                        # uncommitted edits on disk
  fleet render --cluster eu-fra-1 | kubectl --context eu-fra-1 \\
      apply --server-side --dry-run=server -f -  # would the API server take them?"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("render", help="print the objects the controller would apply",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_arguments(p)
    p.add_argument("--cluster", metavar="C", action="append",
                   help="only this cluster (repeatable; default: every cluster)")
    p.add_argument("--capacity", metavar="FILE",
                   help="a CapacitySnapshot JSON file (default: the declared capacity)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # imported here so that building the parser (every `fleet` command) does not pay
    from clusters.apply import stamp
    from fleet.ids import ClusterName
    from fleet.placement import place
    from fleet.render import read_back, render_cluster, to_yaml, workload_id_of_label

    snap, capacity, _from_file = read_planning_inputs(args)
    spec = snap.spec
    clusters = sorted(spec.clusters)
    if args.cluster:
        unknown = sorted(set(args.cluster) - set(clusters))
        if unknown:
            fail(f"no cluster {', '.join(unknown)} in {args.repo} (clusters: "
                 f"{', '.join(clusters) or 'none'})")
        clusters = sorted(set(args.cluster))
    for d in spec.errors:
        print(d.format(), file=sys.stderr)
    commit = snap.commit or "worktree"
    plan = place(spec, capacity, commit=commit)
    out = sys.stdout
    for name in clusters:
        for obj in render_cluster(spec, plan, ClusterName(name), commit):
            label = read_back(obj).workload
            source = f"{name}/{workload_id_of_label(label)}" if label else name
            text = to_yaml([stamp(obj)]).removeprefix("---\n")
            out.write(f"---\n# Source: {source}\n{text}")
    out.flush()
    return 1 if spec.errors else 0
