"""What an auditor runs is not fooled by a tampered ledger.

Each tampering is done as someone with push access to the fleet repo would: rewrite
segment files on the ledger branch and commit (edited: one record changed, hash left;
deleted: records dropped; reordered: two records swapped; re-chained: one record
changed and every hash after it recomputed, history rewritten as by a force push).
The reports (`fleet audit residency`, `fleet cost`) verify the chain in their own pass
and refuse; `fleet ledger verify` names the same record. All through the real CLI.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pygit2
import pytest

from fleet.ledger import Entry, Record, Tip, seal
from tests.fleetdocs import base_fleet
from tests.gitrepo import SIGNATURE, GitRepo
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader, LedgerWriter
from workloads.ledger_trust import Anchor, AnchorWriter, signed_commit, signer_key

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
        if not take:
            index.remove(path)
            continue
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


# --------------------------------------------------------------- signatures and anchors


@dataclass(frozen=True)
class Keys:
    key: Path
    """The controller's signing key (private)."""
    other: Path
    """Someone else's key: an attacker with push access, not the key holder."""
    allowed: Path
    """allowed_signers naming only the controller's key, as the auditor keeps it."""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    for name in ("controller", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(d / name)], check=True)
    allowed = d / "allowed_signers"
    pub = (d / "controller.pub").read_text().split()
    allowed.write_text(f'aifleet@localhost namespaces="git" {pub[0]} {pub[1]}\n')
    return Keys(d / "controller", d / "other", allowed)


@dataclass
class Signed:
    repo: GitRepo
    anchor: Path


@pytest.fixture
def signed(tmp_path: Path, keys: Keys) -> Signed:
    """2,000 records in 21 signed commits; the head anchored after each commit."""
    repo = GitRepo(tmp_path / "fleet.git", bare=True)
    c1 = repo.commit(base_fleet())
    anchor = tmp_path / "anchor.git"
    pygit2.init_repository(str(anchor), bare=True)
    writer = LedgerWriter(repo.path, segment_records=100, signing_key=keys.key)
    anchors = AnchorWriter(repo.path, str(anchor))
    batch = entries(2000, c1)
    for i in range(0, len(batch), 97):
        last = writer.append(batch[i:i + 97])[-1]
        head = str(repo.repo.references[REF].target)
        anchors.append(Anchor(last.seq, last.hash, head, last.entry.time))
    return Signed(repo, anchor)


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/"})


def git_verify_commit(repo: Path, allowed: Path, commit: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", commit)


def test_ledger_commits_are_signed_as_git_signs_and_verify_both_ways(
        signed: Signed, keys: Keys) -> None:
    r = signed.repo
    out = fleet("ledger", "verify", str(r.path), "--signed-by", str(keys.allowed),
                "--anchor", str(signed.anchor))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[1:] == [
        f"signatures: all 21 ledger commits signed by an allowed signer ({keys.allowed})",
        "anchor: all 21 anchored heads are in the chain (the last: seq 2000 at "
        "2026-11-23T10:33:19Z)"]
    commits = git(r.path, "rev-list", REF).stdout.split()
    assert len(commits) == 21
    signature, _ = r.repo[commits[0]].gpg_signature
    pub = (keys.key.parent / "controller.pub").read_text().split()[1]
    assert signer_key(signature.decode()) == base64.b64decode(pub)  # principals cached by it
    for c in commits:  # git itself accepts every one
        done = git_verify_commit(r.path, keys.allowed, c)
        assert done.returncode == 0, done.stderr
        assert 'Good "git" signature for aifleet@localhost with ED25519 key' in done.stderr


TAMPERINGS: dict[str, tuple[Callable[[Lines], Lines], bool, bool]] = {
    # name: (change, the chain still holds, the anchor still agrees)
    "edited": (edited, False, True),
    "deleted": (deleted, False, True),
    "reordered": (reordered, False, True),
    "rechained": (rechained, True, False),
    "truncated": (lambda lines: lines[:-100], True, False),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERINGS))
def test_every_tampering_is_detected_by_ledger_verify_signed_and_anchored(
        signed: Signed, keys: Keys, tamper: str) -> None:
    change, chain_holds, anchor_agrees = TAMPERINGS[tamper]
    r = signed.repo
    # pushed as a new history (rechained, truncated) or a commit on top (the others)
    rewrite(r.repo, change, orphan=chain_holds)
    tip = str(r.repo.references[REF].target)

    both = fleet("ledger", "verify", str(r.path), "--signed-by", str(keys.allowed),
                 "--anchor", str(signed.anchor))
    assert both.returncode == 1, both.stdout
    assert ("chain intact" in both.stdout) is chain_holds
    assert f"commit {tip}: unsigned\n" in both.stdout
    assert "not signed by an allowed signer" in both.stderr
    assert git_verify_commit(r.path, keys.allowed, tip).returncode != 0

    anchored = fleet("ledger", "verify", str(r.path), "--anchor", str(signed.anchor))
    assert anchored.returncode == 1
    if not anchor_agrees:
        assert "contradict the ledger: it was rewritten" in anchored.stderr
        first = next(ln for ln in anchored.stdout.splitlines() if ln.startswith("anchor seq"))
        assert first.endswith("rewritten") if tamper == "rechained" else \
            "but the ledger ends at seq 1900: records removed" in first
    else:
        assert "anchor: all 21 anchored heads are in the chain" in anchored.stdout


def test_a_rechain_signed_with_another_key_is_refused(signed: Signed, keys: Keys) -> None:
    """The attacker signs too, with a key of their own: not an allowed signer."""
    r = signed.repo
    rewrite(r.repo, rechained, orphan=True)
    tip = r.repo.references[REF].peel(pygit2.Commit)
    forged = signed_commit(r.repo, keys.other, tip.author, tip.message, tip.tree_id, [])
    r.repo.references.create(REF, forged, force=True)
    out = fleet("ledger", "verify", str(r.path), "--signed-by", str(keys.allowed))
    assert out.returncode == 1
    assert out.stdout.splitlines()[1] == (f"commit {forged}: signed by a key that is not in "
                                          "the allowed signers")
    assert git_verify_commit(r.path, keys.allowed, str(forged)).returncode != 0


def test_verify_without_ssh_keygen_or_anchor_cannot_run(signed: Signed, keys: Keys,
                                                        tmp_path: Path) -> None:
    out = fleet("ledger", "verify", str(signed.repo.path), "--anchor",
                str(tmp_path / "nowhere.git"))
    assert out.returncode == 2 and out.stderr.startswith("fleet: cannot fetch the anchor")
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
    out = fleet("ledger", "verify", str(signed.repo.path), "--signed-by",
                str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such allowed signers file" in out.stderr


# --------------------------------------------------------------- the real controller


async def test_the_controller_signs_its_ledger_and_anchors_its_head(
        tmp_path: Path, keys: Keys) -> None:
    """The real controller on simulated clusters, over real HTTP: it signs every ledger
    commit with --ledger-signing-key, exports the head in /api/v1/status and /metrics,
    and pushes it to --ledger-anchor; afterwards the auditor's commands accept the
    ledger, and detect it once re-chained and force-pushed."""
    import anyio
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from controllers.demo.sandbox import until
    from tests.support.controller import FAST, fast_settings, rolled_out, sandbox

    anchor = tmp_path / "anchor.git"
    pygit2.init_repository(str(anchor), bare=True)
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True, ledger_signing_key=str(keys.key),
                          ledger_anchor=str(anchor), ledger_anchor_interval=0.2),
            adapter_options=FAST) as m:
        await rolled_out(m, box)
        base = f"http://127.0.0.1:{m.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            async def anchored() -> dict[str, object]:
                doc = (await http.get("/api/v1/status")).json()
                led: dict[str, object] = doc.get("ledger") or {}
                return led

            deadline = anyio.current_time() + 30
            led = await anchored()
            while not (led.get("headSeq") and isinstance(led.get("anchor"), dict)
                       and led["anchor"]["seq"] == led["headSeq"]):  # type: ignore[index]
                assert anyio.current_time() < deadline, led
                await anyio.sleep(0.1)
                led = await anchored()
            assert led["signed"] is True and led["pending"] == 0
            metrics = {s.name: s.value for f in text_string_to_metric_families(
                (await http.get("/metrics")).text) for s in f.samples}
            assert metrics["aifleet_ledger_head_seq"] == led["headSeq"]
            assert metrics["aifleet_ledger_anchored_seq"] == led["anchor"]["seq"]
        await until(lambda: m.events is not None and m.events.pending == 0, 10,
                    what="ledger flushed")

    path = str(box.repo.path)
    out = await anyio.to_thread.run_sync(lambda: fleet(
        "ledger", "verify", path, "--signed-by", str(keys.allowed), "--anchor", str(anchor)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "signatures: all" in out.stdout and "anchor: all" in out.stdout
    tip = str(box.repo.repo.references[REF].target)
    assert git_verify_commit(box.repo.path, keys.allowed, tip).returncode == 0

    def rechain_first(lines: Lines) -> Lines:  # the first record now says US
        records = [Record.from_json(_doc(ln)) for ln in lines]
        fake = replace(records[0].entry, jurisdiction="US")
        return [r.line() for r in seal([fake, *(r.entry for r in records[1:])])]

    rewrite(box.repo.repo, rechain_first, orphan=True)
    out = await anyio.to_thread.run_sync(lambda: fleet(
        "ledger", "verify", path, "--signed-by", str(keys.allowed), "--anchor", str(anchor)))
    assert out.returncode == 1
    assert "chain intact" in out.stdout  # the chain alone is fooled ...
    assert ": unsigned" in out.stdout and "rewritten" in out.stdout  # ... these are not


def test_fleet_run_says_at_once_when_the_signing_key_cannot_be_used(
        signed: Signed, tmp_path: Path) -> None:
    repo = str(signed.repo.path)
    out = fleet("run", "--repo", repo, "--ledger-signing-key", str(tmp_path / "nokey"))
    assert out.returncode == 2
    assert out.stderr == "fleet: --ledger-signing-key and --ledger-anchor need --ledger\n"
    out = fleet("run", "--repo", repo, "--ledger", "--ledger-signing-key",
                str(tmp_path / "nokey"))
    assert out.returncode == 2
    assert out.stderr == (f"fleet: --ledger-signing-key {tmp_path / 'nokey'}: no such file, "
                          "or not readable\n")
    helptext = fleet("run", "--help").stdout
    assert "--ledger-signing-key" in helptext and "--ledger-anchor-interval" in helptext
