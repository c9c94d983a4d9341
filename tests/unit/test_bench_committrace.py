"""bench.committrace: a commit's stages from the replicas' logs."""

from __future__ import annotations

import json
from pathlib import Path

from bench.committrace import events, measured, trace


def line(at: float, **doc: object) -> str:
    stamp = f"2026-12-04T20:00:{at:06.3f}Z"
    return json.dumps({"timestamp": stamp, **doc})


def test_stages_of_a_commit_followed_by_another_replica(tmp_path: Path) -> None:
    leader = tmp_path / "ctl.log.replica-0"
    follower = tmp_path / "ctl.log.replica-1"
    leader.write_text("\n".join([
        "not json",
        line(0.0, event="leading"),
        line(1.0, event="commit_accepted", commit="a" * 40),
        line(2.0, event="commit_accepted", commit="b" * 40),
        line(2.5, event="placement_reconciled", commit="b" * 40),
    ]))
    follower.write_text("\n".join([
        line(1.1, event="commit_accepted", commit="a" * 40),
        line(1.9, event="commit_accepted", commit="b" * 40),
        line(2.1, event="placement_reconciled", commit="b" * 40),  # before it follows
        line(3.5, event="placement_reconciled", commit="b" * 40),  # follows the leader
        line(4.25, event="cluster_reconciled", commit="b" * 40, cluster="c01",
             applied=1, seconds=0.25),
        line(4.5, event="cluster_reconciled", commit="b" * 40, cluster="c02",
             applied=1, seconds=0.1),
    ]))
    out = tmp_path / "bench.out"
    out.write_text("  commit 1/1 (w00003 on c01): webhook answered in 0.01 s, "
                   "applied in 3.00 s\n")
    [row] = trace([events(leader), events(follower)], measured(out))
    assert row["cluster"] == "c01"
    assert abs(float(row["accept"] or 0) - 0.1) < 1e-6
    assert abs(float(row["plan"] or 0) - 0.5) < 1e-6
    assert abs(float(row["follow"] or 0) - 1.0) < 1e-6
    assert abs(float(row["queue"] or 0) - 0.5) < 1e-6
    assert abs(float(row["apply"] or 0) - 0.25) < 1e-6
    assert abs(float(row["unseen"] or 0) - (3.0 - 2.35)) < 1e-6
