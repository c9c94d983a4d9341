"""Benchmark: `fleet plan --base --head` on a large fleet (issue 7: under 3 s for 10,000
workloads with 50 changed files).

Builds a real Git repo with pygit2 in a temp dir: 40 clusters, quotas, guardrails,
owners and N workload files over 25 teams on `main`; then a `feature` branch changing
50 files (30 workloads edited, 15 added, 5 removed); and clones it with git, as a CI
runner's checkout does (objects in a pack). Times the whole command in a fresh
process, as a PR check runs it (Markdown output): the first run cold, then warm runs
(the parse cache and base plan kept in the Git directory, as on a PR's next push), then
the PR check of examples/ci from nothing: `fleet validate` of head, then the plan (which
finds head's files parsed); wall and CPU time (user+sys of the command and the children
it forks). On a 2-core machine wall time is the figure a user waits for; CPU time above
wall time is the second core at work.

    python -m bench.plandiff                 # 10,000 workloads, 50 changed files, 3 runs
    python -m bench.plandiff --smoke         # 300 workloads, 1 run (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.fleetcmd import CALIBRATION, Timed, calibrate, clone, run_fleet
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo

TEAMS = 25
GUARDRAILS = """\
apiVersion: aifleet.dev/v1alpha1
kind: Guardrails
metadata: {name: default}
spec:
  defaults:
    maxGpusPerWorkload: 64
    requiredLabels: []
    allowedRegistries: [registry.internal]
"""
OWNERS = """\
apiVersion: aifleet.dev/v1alpha1
kind: Owners
metadata: {name: default}
spec:
  rules:
    - {path: "clusters/**", owners: ["@platform"]}
    - {path: "policies/**", owners: ["@platform"]}
"""


def _workload(i: int, replicas: int = 1, image: str = "v1") -> str:
    team = f"team-{i % TEAMS:02d}"
    dc = ("eu-personal", "public", "br-personal")[i % 3]
    return (workload(f"w{i:05d}", team, data_class=dc, flavours="[h100-80gb, a100-80gb]")
            .replace("replicas: 2", f"replicas: {replicas}")
            .replace("count: 8", "count: 1")
            .replace("trainer:v1", f"trainer:{image}"))


def _path(i: int) -> str:
    return f"workloads/team-{i % TEAMS:02d}/w{i:05d}.yaml"


def build(path: Path, workloads: int) -> GitRepo:
    repo = GitRepo(path, bare=True)
    files: dict[str, str | bytes | None] = {
        "policies/residency.yaml": POLICY, "policies/guardrails.yaml": GUARDRAILS,
        "policies/owners.yaml": OWNERS}
    juris = ["DE", "FR", "NL", "US", "BR", "JP", "CA", "SE"]
    for i in range(40):
        files[f"clusters/c{i:03d}.yaml"] = cluster(
            f"c{i:03d}", juris[i % len(juris)], (("h100-80gb", 512, 8), ("a100-80gb", 256, 8)))
    for i in range(workloads):
        files[_path(i)] = _workload(i)
    base = repo.commit(files, "seed")
    repo.repo.references.create("refs/heads/feature", base)
    change: dict[str, str | bytes | None] = {}
    step = max(1, workloads // 30)
    for k in range(30):  # edited: more replicas or a new image
        i = (k * step) % workloads
        change[_path(i)] = _workload(i, replicas=2) if k % 2 else _workload(i, image="v2")
    for k in range(15):  # added
        change[_path(workloads + k)] = _workload(workloads + k)
    for k in range(5):  # removed
        change[_path(workloads - 1 - k * 7)] = None
    assert len(change) == 50
    repo.commit(change, "the change", branch="feature")
    return repo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each kind: cold, warm, PR check (default 3)")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.workloads, args.runs = 300, 1

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        built = build(Path(tmp) / "built.git", args.workloads)
        path = clone(built.path, Path(tmp) / "fleet.git")
        print(f"built repo: {args.workloads} workloads, 50 changed files on `feature`, "
              f"cloned (packed) in {time.perf_counter() - t0:.1f}s")
        cache = path / "aifleet-cache"
        calib = [calibrate()]

        plan = ("plan", str(path), "--base", "main", "--head", "feature", "--format",
                "markdown")
        cold: list[Timed] = []
        warm: list[Timed] = []
        check: list[tuple[Timed, Timed]] = []
        for _ in range(args.runs):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(run_fleet(*plan))  # nothing cached
            warm.append(run_fleet(*plan))  # what the cold run left
            # The PR check as examples/ci runs it: validate head first (cold), then plan.
            shutil.rmtree(cache, ignore_errors=True)
            check.append((run_fleet("validate", str(path), "--ref", "feature"),
                          run_fleet(*plan)))
        for r in [*cold, *warm, *(x for pair in check for x in pair)]:
            if r.returncode != 0:
                print(r.stdout[-3000:], r.stderr[-3000:])
                return 1
        summary = next((line for line in cold[0].stdout.splitlines() if " → " in line), "")
        calib.append(calibrate())
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"plan: {summary}")
    print(f"fleet plan --base --head, {args.workloads} workloads, 50 changed files (whole "
          f"command, fresh process; best / worst of {args.runs}):")
    print(f"  cold (nothing cached):                 {_span(cold)}")
    print(f"  warm (parse cache and base plan in the Git dir, e.g. the PR's next push): "
          f"{_span(warm)}")
    print(f"  PR check (examples/ci): `fleet validate --ref feature` cold: "
          f"{_span([v for v, _ in check])}; then the plan: {_span([p for _, p in check])}")
    print(f"calibration ({CALIBRATION!r}) before and after: "
          f"{', '.join(f'{c:.2f}s' for c in calib)}")
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} (on a shared machine, "
          "wall time above CPU time is waiting for a core)")
    return 0


def _span(runs: list[Timed]) -> str:
    walls = sorted(r.wall for r in runs)
    cpus = sorted(r.cpu for r in runs)
    if len(runs) == 1:
        return f"wall {walls[0]:.2f}s, CPU {cpus[0]:.2f}s"
    return (f"wall {walls[0]:.2f}s / {walls[-1]:.2f}s, CPU {cpus[0]:.2f}s / "
            f"{cpus[-1]:.2f}s")


if __name__ == "__main__":
    sys.exit(main())
