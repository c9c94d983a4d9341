"""Benchmark: `fleet validate` on a large fleet repo (issue: under 2 s for 5,000 workloads).

Builds a real Git repo with pygit2 in a temp dir (clusters, a policy, N workload files
spread over teams), then times the whole `fleet validate` command in a fresh process,
as a user or a PR check runs it, best of `--runs`. Also times the in-process read with
a warm parse cache after one file changes (what the controller does per commit).

    python -m bench.validate                 # 5,000 workloads, 5 runs
    python -m bench.validate --smoke         # 200 workloads, 1 run (CI keeps it from rotting)
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

from bench.fleetcmd import CALIBRATION, calibrate, clone, run_fleet
from tests.fleetdocs import POLICY, cluster, workload
from tests.gitrepo import GitRepo
from workloads.loader import ParseCache, read_fleet


def build(path: Path, workloads: int) -> GitRepo:
    repo = GitRepo(path, bare=True)
    files: dict[str, str | bytes | None] = {"policies/residency.yaml": POLICY}
    juris = ["DE", "FR", "NL", "US", "BR", "JP", "CA", "SE"]
    for i in range(40):
        files[f"clusters/c{i:03d}.yaml"] = cluster(
            f"c{i:03d}", juris[i % len(juris)], (("h100-80gb", 64, 8), ("a100-80gb", 32, 8)))
    for i in range(workloads):
        team = f"team-{i % 25:02d}"
        dc = ("eu-personal", "public", "br-personal")[i % 3]
        files[f"workloads/{team}/w{i:05d}.yaml"] = workload(
            f"w{i:05d}", team, data_class=dc, flavours="[h100-80gb, a100-80gb]")
    repo.commit(files, "seed")
    return repo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.workloads, args.runs = 200, 1

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo = build(Path(tmp) / "built.git", args.workloads)
        path = clone(repo.path, Path(tmp) / "fleet.git")  # packed, as on a CI runner
        print(f"built repo: {args.workloads} workloads, cloned, in "
              f"{time.perf_counter() - t0:.1f}s")
        calib = [calibrate()]

        times = []
        for i in range(args.runs + 1):
            # Cold every time but the last: validate leaves a parse cache in the Git dir.
            if i < args.runs:
                shutil.rmtree(path / "aifleet-cache", ignore_errors=True)
            r = run_fleet("validate", str(path), "--ref", "main")
            times.append(r.wall)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-2000:])
                return 1
        cached = times.pop()
        best, worst = min(times), max(times)

        cache = ParseCache()
        read_fleet(repo.path, "main", cache=cache)
        repo.commit({"workloads/team-00/w00000.yaml": workload(
            "w00000", "team-00", data_class="public")}, "one change")
        t = time.perf_counter()
        snap = read_fleet(repo.path, "main", cache=cache)
        warm = time.perf_counter() - t
        assert len(snap.spec.workloads) == args.workloads, "all workloads load"
        calib.append(calibrate())

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"fleet validate, {args.workloads} workloads (whole command, fresh process): "
          f"best {best:.2f}s, worst {worst:.2f}s over {args.runs} cold runs; "
          f"{cached:.2f}s with the parse cache it leaves in the Git dir")
    print(f"re-read after one changed file, warm parse cache: {warm * 1000:.0f} ms "
          f"({cache.misses - args.workloads - 41} files parsed)")
    print(f"calibration ({CALIBRATION!r}) before and after: "
          f"{', '.join(f'{c:.2f}s' for c in calib)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
