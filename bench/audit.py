"""Benchmark: `fleet audit residency` over a ledger of 1,000,000 records (target: < 10 s).

Builds a real fleet repo with pygit2 in a temp dir (40 clusters in 8 jurisdictions, a
residency policy, 20 commits of which two relabel or reprice clusters), then writes a
ledger of N records onto its `aifleet/ledger` branch with the real `LedgerWriter`: a
deterministic mix of placements, applies, drift corrections, moves, prunes, pendings and
refusals over 5,000 workloads and a quarter of time, with a few EU workloads placed
outside the EU so the report has violations to put first. Then it times the whole
`fleet audit residency` command in a fresh process (output to a file), best of `--runs`,
and `fleet ledger verify` and `fleet cost` once each for reference.

    python -m bench.audit                 # 1,000,000 records, 3 runs
    python -m bench.audit --smoke         # 10,000 records, 1 run (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.fleetcmd import CALIBRATION, calibrate, run_fleet
from fleet.ledger import Entry
from tests.fleetdocs import POLICY, cluster
from tests.gitrepo import GitRepo
from workloads.ledger_store import LedgerWriter

JURISDICTIONS = ["DE", "FR", "NL", "SE", "US", "BR", "JP", "CA"]
EU = {"DE", "FR", "NL", "SE"}
START = 1_782_864_000  # 2026-07-01T00:00:00Z


def build_fleet(path: Path) -> tuple[GitRepo, list[str], dict[str, str]]:
    repo = GitRepo(path, bare=True)
    files: dict[str, str | bytes | None] = {"policies/residency.yaml": POLICY}
    where: dict[str, str] = {}
    for i in range(40):
        name = f"c{i:03d}"
        where[name] = JURISDICTIONS[i % len(JURISDICTIONS)]
        files[f"clusters/{name}.yaml"] = cluster(name, where[name], (("h100-80gb", 64, 8),))
    commits = [repo.commit(files, "seed")]
    for k in range(1, 20):
        change: dict[str, str | bytes | None] = {f"workloads/t/w{k}.yaml": f"# {k}\n"}
        if k == 10:  # a cluster relabelled while workloads run on it
            change["clusters/c000.yaml"] = cluster("c000", "US", (("h100-80gb", 64, 8),))
        commits.append(repo.commit(change, f"change {k}"))
    return repo, commits, where


def entries(n: int, commits: list[str], where: dict[str, str]) -> list[Entry]:
    rnd = random.Random(42)
    clusters = sorted(where)
    eu = [c for c in clusters if where[c] in EU]
    running: dict[str, str] = {}
    out: list[Entry] = []
    for i in range(n):
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + i * 7))
        commit = commits[min(len(commits) - 1, i * len(commits) // n)]
        k = rnd.randrange(5000)
        w = f"team-{k % 25:02d}/w{k:04d}"
        dc = "eu-personal" if k % 3 == 0 else "public"
        c = running.get(w)
        roll = rnd.random()
        if c is None:
            if roll < 0.1:
                out.append(Entry(t, "Pending", w, commit=commit, data_class=dc,
                                 result="pending", reason="0/40 clusters: 40 capacity"))
                continue
            pool = eu if dc == "eu-personal" and rnd.random() > 0.0005 else clusters
            c = running[w] = rnd.choice(pool)
            out.append(Entry(t, "Placed", w, commit=commit, cluster=c, jurisdiction=where[c],
                             data_class=dc, policy_version="p1", flavour="h100-80gb",
                             gpus=8 * rnd.randint(1, 4), reason="best fit"))
        elif roll < 0.75:
            out.append(Entry(t, "Applied", w, commit=commit, cluster=c, jurisdiction=where[c],
                             manifest_digest=f"{i:032x}"))
        elif roll < 0.80:
            out.append(Entry(t, "DriftCorrected", w, commit=commit, cluster=c,
                             jurisdiction=where[c], reason="spec.parallelism changed"))
        elif roll < 0.85:
            to = rnd.choice([x for x in (eu if dc == "eu-personal" else clusters) if x != c])
            out.append(Entry(t, "Moved", w, commit=commit, cluster=to, from_cluster=c,
                             jurisdiction=where[to], data_class=dc, flavour="h100-80gb",
                             gpus=8))
            running[w] = to
        elif roll < 0.97:
            out.append(Entry(t, "Pruned", w, commit=commit, cluster=c, jurisdiction=where[c]))
            del running[w]
        else:
            out.append(Entry(t, "Refused", w, commit=commit, data_class=dc, result="refused",
                             reason="quota"))
    return out


def timed(args: list[str], out: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds and exit code of `fleet ARGS`, its output into `out`; a
    command that could not run (exit 2) stops the benchmark."""
    with out.open("w") as f:
        r = run_fleet(*args, stdout=f)
    if r.returncode not in (0, 1):
        print(r.stderr[-2000:])
        raise SystemExit(1)
    return r.wall, r.cpu, r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", choices=("md", "json", "csv"), default="md")
    ap.add_argument("--smoke", action="store_true", help="tiny and quick, for CI")
    ap.add_argument("--keep", metavar="PATH",
                    help="build the repo at PATH and keep it; reuse it if it exists")
    ap.add_argument("--no-extras", action="store_true",
                    help="time only the audit, not ledger verify and cost")
    args = ap.parse_args()
    if args.smoke:
        args.records, args.runs = 10_000, 1

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "fleet.git"
        if not (path / "HEAD").exists():
            t0 = time.perf_counter()
            repo, commits, where = build_fleet(path)
            batch = entries(args.records, commits, where)
            writer = LedgerWriter(repo.path)
            for i in range(0, len(batch), 100_000):
                writer.append(batch[i:i + 100_000])
            print(f"built fleet repo and a ledger of {len(batch):,} records in "
                  f"{time.perf_counter() - t0:.1f}s")
        repo_path = str(path)

        out = Path(tmp) / f"report.{args.format}"
        times, cpus, calib = [], [], [calibrate()]
        for _ in range(args.runs):
            elapsed, cpu, code = timed(["audit", "residency", repo_path, "--format",
                                        args.format], out)
            times.append(elapsed)
            cpus.append(cpu)
            calib.append(calibrate())
        report_size = out.stat().st_size
        head = out.read_text()[:600] if args.format == "md" else ""
        verify_s = cost_s = 0.0
        if not args.no_extras:
            verify_s, _, vcode = timed(["ledger", "verify", repo_path], Path(tmp) / "v.txt")
            cost_s, _, _ = timed(["cost", repo_path, "--by", "region", "--to", "2026-10-01"],
                                 Path(tmp) / "c.txt")
            if vcode != 0:
                print("ledger verify failed:", (Path(tmp) / "v.txt").read_text())
                return 1

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(head)
    print(f"fleet audit residency, {args.records:,} records (whole command, fresh process, "
          f"--format {args.format}, report {report_size / 1e6:.1f} MB, exit {code}): "
          f"best {min(times):.2f}s, worst {max(times):.2f}s over {args.runs} runs; CPU "
          f"(user+sys) best {min(cpus):.2f}s; load average {os.getloadavg()[0]:.1f}")
    print(f"calibration ({CALIBRATION!r}) before and after each run: "
          f"{', '.join(f'{c:.2f}s' for c in calib)}; best run / mean calibration = "
          f"{min(times) / (sum(calib) / len(calib)):.1f}")
    print(f"fleet ledger verify: {verify_s:.2f}s; fleet cost --by region: {cost_s:.2f}s")
    return 0 if min(times) < 10 or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
