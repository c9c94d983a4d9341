"""The ledger on a real Git branch: append, segments, push, non-fast-forward retry, verify."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pygit2
import pytest

from fleet.ledger import Entry, record_hash, rows_of, seal
from tests.fleetdocs import base_fleet
from tests.gitrepo import SIGNATURE, GitRepo
from workloads.ledger_store import LedgerReader, LedgerUnreadable, LedgerWriter, read_ledger


def entries(n: int, start: int = 0, day: str = "2026-11-23") -> list[Entry]:
    return [Entry(f"{day}T10:{(start + i) // 60:02d}:{(start + i) % 60:02d}Z", "Applied",
                  f"nlp-team/w{start + i}", commit="c" * 40, cluster="eu-fra-1",
                  jurisdiction="DE", gpus=8) for i in range(n)]


@pytest.fixture
def fleet_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet.git", bare=True)
    repo.commit(base_fleet())
    return repo


def test_append_commits_segments_on_the_ledger_branch_only(fleet_repo: GitRepo) -> None:
    main_before = fleet_repo.repo.references["refs/heads/main"].target
    writer = LedgerWriter(fleet_repo.path, segment_records=3)
    first = writer.append(entries(2))
    second = writer.append(entries(5, 2, day="2026-11-24"))
    assert [r.seq for r in first + second] == [1, 2, 3, 4, 5, 6, 7]

    reader = LedgerReader(fleet_repo.path)
    # the tail segment fills up to 3 records, then new segments by the first record's day
    assert [s.path for s in reader.segments] == [
        "ledger/2026/11/23/000000000001.jsonl",
        "ledger/2026/11/24/000000000004.jsonl",
        "ledger/2026/11/24/000000000007.jsonl",
    ]
    assert [r.entry.workload for r in read_ledger(fleet_repo.path)] == [
        f"nlp-team/w{i}" for i in range(7)]
    assert reader.verify() is None
    assert reader.tip().seq == 7 and reader.tip().hash == second[-1].hash
    assert [d["seq"] for d in reader.docs()] == list(range(1, 8))
    # the intents are untouched; the ledger branch has one commit per batch
    assert fleet_repo.repo.references["refs/heads/main"].target == main_before
    tip = fleet_repo.repo.references["refs/heads/aifleet/ledger"].peel(pygit2.Commit)
    assert len(tip.parents) == 1 and not tip.parents[0].parents
    assert tip.message.startswith("ledger: records 3-7")


def test_push_to_a_bare_remote(tmp_path: Path, fleet_repo: GitRepo) -> None:
    mirror = pygit2.clone_repository(str(fleet_repo.path), str(tmp_path / "mirror.git"),
                                     bare=True)
    writer = LedgerWriter(mirror.path, remote="origin")
    written = writer.append(entries(3))
    assert writer.attempts == 1
    remote_records = list(read_ledger(fleet_repo.path))
    assert [r.hash for r in remote_records] == [r.hash for r in written]


def test_non_fast_forward_push_is_retried_on_the_new_tip(tmp_path: Path,
                                                         fleet_repo: GitRepo) -> None:
    a = LedgerWriter(pygit2.clone_repository(str(fleet_repo.path), str(tmp_path / "a.git"),
                                             bare=True).path, remote="origin")
    b = LedgerWriter(pygit2.clone_repository(str(fleet_repo.path), str(tmp_path / "b.git"),
                                             bare=True).path, remote="origin")
    a.append(entries(2))
    b.append(entries(2, 2))          # b fetches a's tip first: no race
    assert b.attempts == 1
    late = a.append(entries(1, 4))   # a still believes its own tip: rejected, re-chained
    assert a.attempts == 2
    assert late[0].seq == 5
    reader = LedgerReader(fleet_repo.path)
    assert reader.verify() is None
    assert [d["workload"] for d in reader.docs()] == [f"nlp-team/w{i}" for i in range(5)]


def test_push_to_an_unreachable_remote_is_a_transient_error(fleet_repo: GitRepo,
                                                            tmp_path: Path) -> None:
    from workloads.ledger_store import LedgerPushFailed

    writer = LedgerWriter(fleet_repo.path, remote=str(tmp_path / "nowhere.git"))
    with pytest.raises(LedgerPushFailed, match="cannot fetch the ledger"):
        writer.append(entries(1))


def _edit_line(repo: pygit2.Repository, path: str, line: int, field: str, value: str,
               rehash: bool) -> None:
    """Commit an edit of one record, as someone with push access could."""
    ref = "refs/heads/aifleet/ledger"
    tip = repo.references[ref].peel(pygit2.Commit)
    blob = repo[tip.tree[path].id]
    assert isinstance(blob, pygit2.Blob)
    lines = bytes(blob.data).decode().splitlines()
    doc = json.loads(lines[line - 1])
    doc[field] = value
    if rehash:
        doc["hash"] = record_hash(doc)
    lines[line - 1] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    index = pygit2.Index()
    index.read_tree(tip.tree)
    index.add(pygit2.IndexEntry(path, repo.create_blob("\n".join(lines) + "\n"),
                                pygit2.enums.FileMode.BLOB))
    repo.create_commit(ref, SIGNATURE, SIGNATURE, "fix a record", index.write_tree(repo),
                       [tip.id])


@pytest.mark.parametrize(("rehash", "where", "why"), [
    (False, "ledger/2026/11/23/000000000001.jsonl:2", "edited"),
    (True, "ledger/2026/11/23/000000000001.jsonl:3", "prev does not match the hash of seq 2"),
], ids=["edited", "edited-and-rehashed"])
def test_verify_finds_a_record_edited_in_a_later_commit(
        fleet_repo: GitRepo, rehash: bool, where: str, why: str) -> None:
    LedgerWriter(fleet_repo.path).append(entries(4))
    _edit_line(fleet_repo.repo, "ledger/2026/11/23/000000000001.jsonl", 2, "jurisdiction",
               "US", rehash)
    broken = LedgerReader(fleet_repo.path).verify()
    assert broken is not None
    assert broken.where == where
    assert broken.why.startswith(why)


async def test_the_controller_facade_batches_records_in_a_worker_thread(
        fleet_repo: GitRepo) -> None:
    import anyio

    from controllers.persist.ledger import Ledger

    ledger = Ledger(LedgerWriter(fleet_repo.path), interval=0.05,
                    clock=lambda: "2026-11-23T10:00:00Z")
    async with anyio.create_task_group() as tg:
        tg.start_soon(ledger.run)
        for i in range(5):
            ledger.record("Placed", f"nlp-team/w{i}", cluster="eu-fra-1", jurisdiction="DE",
                          gpus=8)
        with anyio.fail_after(10):
            while ledger.written < 5:  # noqa: ASYNC110 - polling a counter, in a test
                await anyio.sleep(0.02)
        ledger.record("Pruned", "nlp-team/w0", cluster="eu-fra-1")
        tg.cancel_scope.cancel()
    # the last record was written by the final flush on cancellation
    records = list(read_ledger(fleet_repo.path))
    assert [(r.seq, r.entry.event, r.entry.workload) for r in records][-2:] == [
        (5, "Placed", "nlp-team/w4"), (6, "Pruned", "nlp-team/w0")]
    assert ledger.pending == 0


async def test_records_survive_an_unreachable_remote_until_it_is_back(
        fleet_repo: GitRepo, tmp_path: Path) -> None:
    import anyio

    from controllers.persist.ledger import Ledger

    remote = tmp_path / "later.git"
    ledger = Ledger(LedgerWriter(fleet_repo.path, remote=str(remote)), interval=0.01,
                    max_backoff=0.05, shutdown_timeout=1)
    ledger.record("Refused", "bio/phi", reason="residency")
    ledger.record("Pending", "bio/big", reason="capacity")
    with anyio.move_on_after(0.3):
        await ledger.run()
    assert ledger.failures >= 1 and ledger.pending == 2 and ledger.written == 0
    pygit2.init_repository(str(remote), bare=True)
    assert await ledger.flush() == 2
    assert [r.entry.workload for r in read_ledger(remote)] == ["bio/phi", "bio/big"]


def test_a_reason_with_unicode_line_separators_stays_one_record(fleet_repo: GitRepo) -> None:
    LedgerWriter(fleet_repo.path).append([
        Entry("2026-11-23T10:00:00Z", "Refused", "bio/phi", reason="Daten\u2028bleiben\x85hier"),
        Entry("2026-11-23T10:00:01Z", "Pending", "bio/big", reason="ok")])
    reader = LedgerReader(fleet_repo.path)
    assert reader.verify() is None and reader.checked == 2
    assert [r.entry.reason for r in reader.records()] == ["Daten\u2028bleiben\x85hier", "ok"]


@pytest.mark.parametrize("segment_records", [1000, 3], ids=["one-segment", "read-ahead"])
def test_rows_carry_the_same_fields_as_the_parsed_records(fleet_repo: GitRepo,
                                                          segment_records: int) -> None:
    moved = Entry("2026-11-23T11:00:00Z", "Moved", "nlp-team/w1", cluster="eu-par-1",
                  from_cluster="eu-fra-1", data_class="eu-personal", flavour="h100-80gb",
                  gpus=16)
    batch = [*entries(60), moved]
    LedgerWriter(fleet_repo.path, segment_records=segment_records).append(batch)
    reader = LedgerReader(fleet_repo.path)
    assert rows_of(reader.docs()) == list(reader.rows())
    assert len(list(reader.rows())) == 61


@pytest.mark.parametrize(("line", "why"), [
    ('{"seq": 2', r":2: not a JSON record"),
    ('{"seq": 2, "event": "Applied"}', r":2: not a ledger record \(Object missing required"),
    (seal(entries(2))[1].line().replace('"gpus":8', '"gpus":"8"'),
     r":2: not a ledger record \(Expected `int`, got `str` - at `\$.gpus`\)"),
    ("", None),
], ids=["truncated", "missing-fields", "gpus-not-a-number", "blank-line-skipped"])
def test_a_line_that_is_not_a_record_is_named_by_segment_and_line(
        fleet_repo: GitRepo, line: str, why: str | None) -> None:
    path = "ledger/2026/11/23/000000000001.jsonl"
    good = seal(entries(1))[0].line()
    fleet_repo.commit({path: f"{good}\n{line}\n"}, replace=True, branch="aifleet/ledger")
    reader = LedgerReader(fleet_repo.path)
    if why is None:
        assert [r.seq for r in reader.rows()] == [1]
        return
    with pytest.raises(LedgerUnreadable, match=path + why):
        list(reader.rows())


def test_verify_over_many_segments_reads_ahead_and_names_the_break(
        fleet_repo: GitRepo) -> None:
    LedgerWriter(fleet_repo.path, segment_records=2).append(entries(60))  # 30 segments
    reader = LedgerReader(fleet_repo.path)
    assert reader.verify() is None and reader.checked == 60
    _edit_line(fleet_repo.repo, "ledger/2026/11/23/000000000021.jsonl", 2, "jurisdiction",
               "US", False)
    broken = LedgerReader(fleet_repo.path).verify()  # stops at record 22 of 60
    assert broken is not None and broken.seq == 22 and broken.why.startswith("edited")
    assert broken.where == "ledger/2026/11/23/000000000021.jsonl:2"


def test_bulk_reads_report_progress_per_segment(fleet_repo: GitRepo) -> None:
    LedgerWriter(fleet_repo.path, segment_records=7).append(entries(60))  # 9 segments
    seen: list[tuple[int, int, int]] = []
    assert LedgerReader(fleet_repo.path).verify(lambda *p: seen.append(p)) is None
    assert seen[-1] == (60, 9, 9) and len(seen) == 9
    assert [s[1] for s in seen] == list(range(1, 10))
    assert all(a[0] < b[0] for a, b in pairwise(seen))
    rows_seen: list[tuple[int, int, int]] = []
    assert len(list(LedgerReader(fleet_repo.path).rows(lambda *p: rows_seen.append(p)))) == 60
    assert rows_seen == seen


async def test_the_controllers_mirror_pushes_the_ledger_with_credentials_it_does_not_store(
        tmp_path: Path, fleet_repo: GitRepo) -> None:
    from tests.gitserver import git_http_server
    from workloads.gitsource import GitSource

    token = "ghp-ledger-token-do-not-store"
    with git_http_server(tmp_path, "bot", token) as base:
        source = GitSource(f"http://bot:{token}@{base[7:]}/fleet.git", "main",
                           tmp_path / "state")
        result = await source.poll()
        assert result.snapshot is not None  # fetched over HTTP with basic auth
        writer = LedgerWriter(source.mirror_path, remote="origin",
                              credentials=source.credentials)
        written = writer.append(entries(2))
    assert [r.hash for r in read_ledger(fleet_repo.path)] == [r.hash for r in written]
    assert token not in (source.mirror_path / "config").read_text()


def test_a_writer_refuses_a_remote_tip_that_does_not_contain_its_last_push(
        tmp_path: Path, fleet_repo: GitRepo) -> None:
    """Issue 18: a ledger rewritten (re-hashed, so `verify` passes) and force-pushed is
    refused by the writer that pushed before, never chained onto; a deleted one is
    restored from the writer's own chain, never restarted at seq 1."""
    from workloads.ledger_store import LedgerForged

    mirror = pygit2.clone_repository(str(fleet_repo.path), str(tmp_path / "mirror.git"),
                                     bare=True)
    writer = LedgerWriter(mirror.path, remote="origin")
    writer.append(entries(3))
    branch = "refs/heads/aifleet/ledger"
    fleet_repo.repo.references.delete(branch)
    LedgerWriter(fleet_repo.path).append(entries(2))  # the forger's chain, intact
    forged = fleet_repo.repo.references[branch].target
    assert LedgerReader(fleet_repo.path).verify() is None
    with pytest.raises(LedgerForged, match="does not contain"):
        writer.append(entries(1, 3))
    assert fleet_repo.repo.references[branch].target == forged
    fleet_repo.repo.references.delete(branch)  # deleted: restored from our own chain
    assert [r.seq for r in writer.append(entries(1, 3))] == [4]
    assert [r.entry.workload for r in read_ledger(fleet_repo.path)] == [
        f"nlp-team/w{i}" for i in range(4)]
    # a second writer (another replica) appending on top is no rewrite
    other = LedgerWriter(pygit2.clone_repository(
        str(fleet_repo.path), str(tmp_path / "other.git"), bare=True).path, remote="origin")
    fresh = tmp_path / "fresh.git"
    pygit2.clone_repository(str(fleet_repo.path), str(fresh), bare=True)
    assert [r.seq for r in other.append(entries(1))] == [5]
    assert [r.seq for r in LedgerWriter(fresh, remote="origin").append(entries(1, 1))] == [6]
    assert [r.seq for r in other.append(entries(1, 2))] == [7]  # rejected once, re-chained


async def test_entries_journaled_before_a_kill_are_written_once(fleet_repo: GitRepo,
                                                                tmp_path: Path) -> None:
    """A process killed after its push but before it cleared its journal: the next one
    writes only what the ledger does not have yet; a line cut by the kill is skipped."""
    import dataclasses

    from controllers.persist.ledger import Journal, Ledger

    writer = LedgerWriter(fleet_repo.path)
    batch = entries(3)
    writer.append(batch[:2])  # pushed, then killed before the journal was rewritten
    path = tmp_path / "state" / "ledger-journal.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"entry": dataclasses.asdict(e)}) + "\n"
                            for e in batch) + '{"entry": {"time": "2026-')
    journal = Journal(path)
    assert journal.entries == batch
    ledger = Ledger(writer, journal=journal, clock=lambda: "2026-11-23T11:00:00Z")
    ledger.record("Pruned", "nlp-team/w0", cluster="eu-fra-1")  # after the cut line
    assert await ledger.flush() == 2
    assert [r.entry for r in read_ledger(fleet_repo.path)] == [
        *batch, Entry("2026-11-23T11:00:00Z", "Pruned", "nlp-team/w0", cluster="eu-fra-1")]
    assert Journal(path).entries == []  # cleared once written


async def test_a_rewritten_branch_is_said_with_nothing_to_write_and_stale_locks_go(
        tmp_path: Path, fleet_repo: GitRepo) -> None:
    """The controller looks at the remote's tip while idle too (`check_every`), so a
    forgery is said before the next record needs it; and a lock file a killed process
    left on the mirror's own ledger refs does not block every later write."""
    import anyio

    from controllers.persist.ledger import Ledger
    from workloads.ledger_store import LedgerForged

    mirror = pygit2.clone_repository(str(fleet_repo.path), str(tmp_path / "mirror.git"),
                                     bare=True)
    LedgerWriter(mirror.path, remote="origin").append(entries(2))
    (Path(mirror.path) / "refs" / "aifleet" / "ledger-pending.lock").write_text("")
    writer = LedgerWriter(mirror.path, remote="origin")  # a restarted process
    assert [r.seq for r in writer.append(entries(1, 2))] == [3]
    ledger = Ledger(writer, interval=0.02, check_every=0.0)
    fleet_repo.repo.references.delete("refs/heads/aifleet/ledger")
    LedgerWriter(fleet_repo.path).append(entries(1, 9))  # rewritten, nothing to write
    with anyio.move_on_after(0.5):
        await ledger.run()
    problem = ledger.problem()
    assert problem is not None and problem[0] == "LedgerForged" and ledger.pending == 0
    with pytest.raises(LedgerForged):
        await ledger.flush()


async def test_apply_intents_of_an_idle_controller_do_not_grow_the_journal(
        fleet_repo: GitRepo, tmp_path: Path) -> None:
    """Every reconcile journals an intent and its end, records or not: an idle flush
    compacts the journal, keeping only what is still open."""
    from controllers.persist.ledger import COMPACT_AFTER, Journal, Ledger

    path = tmp_path / "ledger-journal.jsonl"
    ledger = Ledger(LedgerWriter(fleet_repo.path), journal=Journal(path))
    for _ in range(COMPACT_AFTER):
        ledger.done(ledger.begin("eu-fra-1", "c" * 40, ("nlp-team.train",)))
    still = ledger.begin("eu-par-1", "c" * 40, ("nlp-team.serve",))
    assert len(path.read_text().splitlines()) == 2 * COMPACT_AFTER + 1
    assert await ledger.flush() == 0
    assert [i.cluster for i in Journal(path).intents.values()] == ["eu-par-1"]
    ledger.done(still)
    assert Journal(path).intents == {}
