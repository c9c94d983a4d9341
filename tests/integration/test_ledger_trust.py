"""What an auditor runs is not fooled by a tampered ledger.

Each tampering is done as someone with push access to the fleet repo would: rewrite
segment files on the ledger branch and commit (edited: one record changed, hash left;
deleted: records dropped; reordered: two records swapped; re-chained: one record
changed and every hash after it recomputed, history rewritten as by a force push).
The reports (`fleet audit residency`, `fleet cost`) verify the chain in their own pass
and refuse; `fleet ledger verify` names the same record. All through the real CLI.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from fleet.ledger import Entry, Record, Tip, seal
from tests.fleetdocs import base_fleet
from tests.gitrepo import SIGNATURE, GitRepo
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader, LedgerWriter

ROOT = Path(__file__).resolve().parents[2]
REF = f"refs/heads/{LEDGER_BRANCH}"
Lines = list[str]


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def entries(n: int, commit: str) -> list[Entry]:
    """n records over 50 workloads: each placed on eu-fra-1, then applied again."""
    out = []
    for i in range(n):
        w = f"nlp-team/w{i % 50:02d}"
        t = f"2026-11-23T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        if i < 50:
            out.append(Entry(t, "Placed", w, commit=commit, cluster="eu-fra-1",
                             jurisdiction="DE", data_class="eu-personal",
                             flavour="h100-80gb", gpus=8, reason="best fit"))
        else:
            out.append(Entry(t, "Applied", w, commit=commit, cluster="eu-fra-1",
                             jurisdiction="DE", flavour="h100-80gb", gpus=8))
    return out


def make_ledger(path: Path, n: int, segment_records: int) -> GitRepo:
    repo = GitRepo(path, bare=True)
    c1 = repo.commit(base_fleet())
    writer = LedgerWriter(repo.path, segment_records=segment_records)
    batch = entries(n, c1)
    for i in range(0, n, 97):  # many commits, as a controller flushing every second makes
        writer.append(batch[i:i + 97])
    return repo


def segment_lines(repo: pygit2.Repository) -> list[tuple[str, Lines]]:
    tip = repo.references[REF].peel(pygit2.Commit)
    reader = LedgerReader(repo.path, LEDGER_BRANCH)
    out = []
    for seg in reader.segments:
        blob = repo[tip.tree[seg.path].id]
        assert isinstance(blob, pygit2.Blob)
        out.append((seg.path, bytes(blob.data).decode().rstrip("\n").split("\n")))
    return out


def rewrite(repo: pygit2.Repository, change: Callable[[Lines], Lines], *,
            orphan: bool = False) -> None:
    """Apply `change` to all record lines in order, refill the same segment files, commit
    on the ledger branch (on top of its tip, or as a new history: a force push)."""
    segs = segment_lines(repo)
    lines = change([ln for _, seg in segs for ln in seg])
    tip = repo.references[REF].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(tip.tree)
    at = 0
    for k, (path, old) in enumerate(segs):
        take = lines[at:] if k == len(segs) - 1 else lines[at:at + len(old)]
        at += len(take)
        data = "".join(f"{ln}\n" for ln in take)
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    parents = [] if orphan else [tip.id]
    commit = repo.create_commit(None, SIGNATURE, SIGNATURE, "ledger: fix records",
                                index.write_tree(repo), parents)
    repo.references.create(REF, commit, force=True)


def _doc(line: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(line)
    return doc


def edited(lines: Lines) -> Lines:
    """Seq 120 said DE; now it says US (its hash left as it was)."""
    doc = _doc(lines[119])
    doc["jurisdiction"] = "US"
    return [*lines[:119], json.dumps(doc, sort_keys=True, separators=(",", ":")),
            *lines[120:]]


def deleted(lines: Lines) -> Lines:
    """Seq 120-129 dropped."""
    return [*lines[:119], *lines[129:]]


def reordered(lines: Lines) -> Lines:
    """Seq 120 and 121 swapped."""
    return [*lines[:119], lines[120], lines[119], *lines[121:]]


def rechained(lines: Lines) -> Lines:
    """Seq 120 moved to us-east-1 (US), then every record from it on sealed again: each
    hash and prev recomputed, so the chain itself holds."""
    records = [Record.from_json(_doc(ln)) for ln in lines]
    fake = replace(records[119].entry, cluster="us-east-1", jurisdiction="US")
    tail = seal([fake, *(r.entry for r in records[120:])],
                Tip(records[118].seq, records[118].hash))
    return [*lines[:119], *(r.line() for r in tail)]


TAMPERED: dict[str, tuple[Callable[[Lines], Lines], str]] = {
    "edited": (edited, "seq 120: edited: its content does not match its hash"),
    "deleted": (deleted, "seq 130: removed: seq 130 follows seq 119 (10 records missing)"),
    "reordered": (reordered, "seq 121: removed: seq 121 follows seq 119 (1 record missing)"),
}


@pytest.fixture(params=[(300, 1000), (2000, 100)], ids=["one-segment", "read-ahead"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> GitRepo:
    """300 records in one segment (read here), or 2,000 in 20 segments (read ahead by a
    forked child, which checks the hashes as it reads)."""
    n, per = request.param
    return make_ledger(tmp_path / "fleet.git", n, per)


@pytest.mark.parametrize("tamper", sorted(TAMPERED))
def test_audit_and_cost_refuse_a_tampered_ledger_naming_the_first_broken_record(
        ledger: GitRepo, tamper: str) -> None:
    change, why = TAMPERED[tamper]
    rewrite(ledger.repo, change)
    verify = fleet("ledger", "verify", str(ledger.path))
    assert verify.returncode == 1 and verify.stdout.rstrip().endswith(why), verify.stdout
    where = verify.stdout.split(": ", 1)[0]
    for args in (["audit", "residency"], ["audit", "residency", "-o", "json"],
                 ["cost", "--to", "2026-11-24"], ["cost", "-o", "csv"]):
        out = fleet(*args, str(ledger.path))
        assert out.returncode == 1, (args, out.stderr)
        assert out.stdout == "", args
        assert f"({where}: {why})" in out.stderr, (args, out.stderr)
        assert "refusing to report" in out.stderr and "Traceback" not in out.stderr


def test_an_intact_chain_is_reported_as_verified(ledger: GitRepo) -> None:
    md = fleet("audit", "residency", str(ledger.path))
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# Residency audit\n")
    assert ", hash chain verified\n" in md.stdout
    doc = json.loads(fleet("audit", "residency", str(ledger.path), "-o", "json").stdout)
    assert doc["chainBroken"] is None and doc["violations"] == 0
    cost = json.loads(fleet("cost", str(ledger.path), "-o", "json", "--to",
                            "2026-11-24").stdout)
    assert cost["chainBroken"] is None and cost["total"]["gpuHours"] > 0


def test_allow_broken_chain_reports_under_a_banner_in_every_format(ledger: GitRepo) -> None:
    rewrite(ledger.repo, edited)
    where = fleet("ledger", "verify", str(ledger.path)).stdout.split(": ", 1)[0]
    banner = (f"WARNING: the ledger's hash chain is broken at record 120 ({where}: seq 120: "
              "edited: its content does not match its hash); it and every record after it "
              "cannot be trusted; reported anyway (--allow-broken-chain)")
    allow = "--allow-broken-chain"

    md = fleet("audit", "residency", str(ledger.path), allow)
    assert md.returncode == 1, md.stderr
    assert md.stdout.startswith(f"> **{banner}**\n\n# Residency audit\n")
    assert "**hash chain broken**" in md.stdout

    doc = json.loads(fleet("audit", "residency", str(ledger.path), allow, "-o", "json").stdout)
    assert doc["chainBroken"] == {"record": 120, "seq": 120, "where": where,
                                  "why": "edited: its content does not match its hash",
                                  "message": banner}
    assert doc["ledger"]["records"] == len(segment_lines_flat(ledger))

    rows = fleet("audit", "residency", str(ledger.path), allow, "-o", "csv").stdout
    assert rows.startswith(f"# {banner}\n")
    assert next(csv.reader(io.StringIO(rows.split("\n", 1)[1])))[0] == "row"

    text = fleet("cost", str(ledger.path), allow, "--to", "2026-11-24")
    assert text.returncode == 1 and text.stdout.startswith(f"{banner}\nTEAM ")
    assert fleet("cost", str(ledger.path), allow, "-o", "csv").stdout.startswith(
        f"# {banner}\nteam,gpu_hours")
    cost = json.loads(fleet("cost", str(ledger.path), allow, "-o", "json").stdout)
    assert cost["chainBroken"]["message"] == banner


def segment_lines_flat(repo: GitRepo) -> Lines:
    return [ln for _, seg in segment_lines(repo.repo) for ln in seg]


def test_a_rechained_ledger_passes_the_chain_check_alone(ledger: GitRepo) -> None:
    """Why signatures and anchors exist: recomputing every hash leaves a chain that holds."""
    rewrite(ledger.repo, rechained, orphan=True)
    out = fleet("ledger", "verify", str(ledger.path))
    assert out.returncode == 0 and "chain intact" in out.stdout
    doc = json.loads(fleet("audit", "residency", str(ledger.path), "-o", "json").stdout)
    assert doc["chainBroken"] is None
    assert any(p["cluster"] == "us-east-1" for p in doc["periods"])  # the forged record
