"""The decision ledger in Git: JSONL segments on the branch `aifleet/ledger` of the fleet repo.

The history of placements lives next to the intents, replicated wherever the repo is.
Records are stored as segment files `ledger/YYYY/MM/DD/<first seq, 12 digits>.jsonl`
(the date of the segment's first record), at most `segment_records` lines each: a
batch fills the last segment up, then starts new ones, so a commit rewrites at most one
small file and never a big one. Readers order segments by the seq in their name, not
by path, so a clock that went back a day cannot reorder the chain.

Writing needs no worktree (the controller's mirror is bare): blobs and trees are built
with pygit2 and committed onto the branch tip. With a remote, the tip that counts is
the remote's: a batch is sealed onto the last fetched tip, committed, pushed; when
another writer pushed first (non-fast-forward), fetch, seal the same entries again onto
the new tip, commit and push again, up to `max_attempts`. The local branch moves only
once the remote has accepted. Plain sync code, for worker threads
(`anyio.to_thread.run_sync`).

Reading: `records()` (full `Record`s), `docs()` (dicts, for `ledger show`), `rows()`
(only the fields the audit and cost fold, decoded with msgspec: the fast path over
millions of records), `verify()`. `rows()` and `verify()` read segments ahead in a
forked child (`workloads.readahead`) when the ledger is big enough.

A writer never adopts a remote tip that does not contain its own last pushed commit
(kept under `refs/aifleet/ledger-pushed/` in its repository, so it survives a restart):
a branch rewritten and force-pushed under it, even with every hash recomputed, is
refused with `LedgerForged` instead of being chained onto. A branch deleted under it is
restored from its own chain (which holds everything it wrote), never restarted at seq 1.

Errors: `LedgerUnreadable` (a segment is not JSONL; `fleet ledger verify` says where),
`LedgerPushFailed` (transient: the remote cannot be reached or kept refusing),
`LedgerForged` (permanent: the remote's history no longer holds what we wrote).
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NoReturn

import msgspec
import pygit2
from pydantic_core import from_json

from fleet.audit import FleetAt
from fleet.ledger import (
    Break,
    Chain,
    Entry,
    Record,
    RecordRow,
    Tip,
    hashes_match,
    rows_of,
    seal,
    verify,
)
from workloads.errors import RevisionNotFound, SourceUnavailable, WorkloadsError
from workloads.gitauth import GitAuth, connecting
from workloads.ledger_trust import signed_commit
from workloads.loader import ParseCache, load_entries
from workloads.readahead import loose_blob, read_ahead
from workloads.source import git_files, open_repository, resolve_tree

LEDGER_BRANCH = "aifleet/ledger"
SEGMENT_RECORDS = 1000
_SEGMENT_NAME = re.compile(r"^(\d{12})\.jsonl$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T")
_SIGNATURE = ("aifleet", "aifleet@localhost")
_NOT_FAST_FORWARD = ("fast-forward", "fastforward", "rejected", "not present locally")
"""How libgit2 (local transport) and servers word "someone else pushed first"."""


class LedgerUnreadable(WorkloadsError):
    """A ledger segment cannot be read as JSONL records."""


class LedgerPushFailed(SourceUnavailable):
    """The remote could not be reached, or refused every attempt; retry later."""


class LedgerForged(WorkloadsError):
    """The remote ledger tip does not contain the last commit this writer pushed: the
    branch was rewritten (or deleted) under us. Never chained onto; a person decides."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: str
    first_seq: int
    oid: pygit2.Oid


def _branch_ref(branch: str) -> str:
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def _commit_of(repo: pygit2.Repository, ref: str) -> pygit2.Commit | None:
    """The commit `ref` names (a branch name, full ref or commit id), None if absent."""
    for name in (_branch_ref(ref), ref):
        r = repo.references.get(name)
        if r is not None:
            return r.peel(pygit2.Commit)
    try:
        return repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        return None


def segments(repo: pygit2.Repository, commit: pygit2.Commit | None) -> list[Segment]:
    """Every segment of the ledger at `commit`, in seq order; symlinks are not followed."""
    if commit is None or "ledger" not in commit.tree:
        return []
    out: list[Segment] = []
    stack: list[tuple[str, pygit2.Object]] = [("ledger", commit.tree["ledger"])]
    while stack:
        path, entry = stack.pop()
        if entry.filemode == pygit2.enums.FileMode.TREE:
            tree = repo[entry.id]
            assert isinstance(tree, pygit2.Tree)
            stack.extend((f"{path}/{child.name}", child) for child in tree)
        elif entry.filemode == pygit2.enums.FileMode.BLOB:
            m = _SEGMENT_NAME.match(path.rsplit("/", 1)[-1])
            if m:
                out.append(Segment(path, int(m.group(1)), entry.id))
    out.sort(key=lambda s: (s.first_seq, s.path))
    return out


def _hashes(seg: Segment, data: bytes | memoryview) -> bytes:
    """The read-ahead check: b"1" when every line holds the hash of its bytes."""
    return b"1" if hashes_match(bytes(data)) else b"0"


def _blob(repo: pygit2.Repository, oid: pygit2.Oid) -> bytes:
    """A blob's bytes, inflated once (`repo[oid].data` inflates a loose object twice)."""
    kind, data = repo.odb.read(oid)
    if kind != pygit2.enums.ObjectType.BLOB:
        raise LedgerUnreadable(f"object {oid} is not a file")
    return bytes(data)


def _split(data: bytes) -> list[str]:
    """A segment's lines. On newlines only: a reason may hold U+2028, which JSON leaves
    unescaped and `str.splitlines` would split on."""
    return data.decode("utf-8", "replace").rstrip("\n").split("\n") if data.strip() else []


_ROWS = msgspec.json.Decoder(RecordRow)


Progress = Callable[[int, int, int], None]
"""Told (records so far, segments read, segments) as a bulk read goes."""


class LedgerReader:
    """Reads the ledger of one repo at one ref (default: the ledger branch)."""

    def __init__(self, repo_path: str | os.PathLike[str], ref: str = LEDGER_BRANCH) -> None:
        self.repo, _ = open_repository(repo_path)
        self.ref = ref
        self.commit = _commit_of(self.repo, ref)
        self.segments = segments(self.repo, self.commit)
        self.checked = 0
        """Records looked at by the last `verify`."""

    def lines(self) -> Iterator[tuple[str, int, str]]:
        """(segment path, line number, JSONL line) for every record, in order."""
        for seg in self.segments:
            for n, line in enumerate(_split(_blob(self.repo, seg.oid)), 1):
                yield seg.path, n, line

    def docs(self) -> Iterator[dict[str, Any]]:
        """Every record as parsed JSON, fast, for reports over millions of records.

        One parse per segment, with pydantic-core's JSON parser (twice as fast as `json`
        on these records; keys interned), chained in C so no Python frame runs per
        record. Does not check the chain (`verify` does). A segment that is not JSONL
        raises LedgerUnreadable with file and line.
        """
        return chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[dict[str, Any]]]:
        for seg in self.segments:
            data = _blob(self.repo, seg.oid).rstrip(b"\n")
            if not data:
                continue
            try:
                batch: list[dict[str, Any]] = from_json(
                    b"[" + data.replace(b"\n", b",") + b"]", cache_strings="keys")
            except ValueError:
                batch = list(self._strict(seg, data))
            yield batch

    def rows(self, progress: Progress | None = None, *, check: Chain | None = None,
             stop_at_break: bool = False) -> Iterator[RecordRow]:
        """Every record as a `RecordRow`, in order: the fast path for audit and cost.

        One decode per segment, in C, chained in C. A line that is not a record raises
        LedgerUnreadable with file and line. `progress` as for `verify`, as each
        segment is handed on.

        With `check`, the hash chain is verified in the same pass (`Chain.feed` on each
        segment, by the read-ahead child when there is one, before the segment is
        handed on): `check.broken` is the first break, as `verify` would name it. With
        `stop_at_break`, no rows are handed on from the segment holding the break on.
        """
        return chain.from_iterable(self._row_batches(progress, check, stop_at_break))

    def _row_batches(self, progress: Progress | None, check: Chain | None = None,
                     stop_at_break: bool = False) -> Iterator[list[RecordRow]]:
        segs = self.segments
        count = 0
        notes: list[bytes] = []
        blobs = read_ahead(self._segment_blob, segs, check=None if check is None else _hashes,
                           adopt=notes.append)
        for i, data in enumerate(blobs):
            seg = segs[i]
            try:
                rows = _ROWS.decode_lines(data)  # blank lines are skipped, not records
            except msgspec.MsgspecError:
                if check is not None and check.feed(bytes(data), seg.path) is not None \
                        and stop_at_break:
                    blobs.close()
                    return
                self._bad_row(seg, bytes(data).rstrip(b"\n"))
            if check is not None:
                check.follow(rows, notes.pop() == b"1", data, seg.path)
                if stop_at_break and check.broken is not None:
                    blobs.close()
                    return
            count += len(rows)
            if progress is not None:
                progress(count, i + 1, len(segs))
            yield rows

    def _segment_blob(self, seg: Segment) -> bytes | memoryview:
        data = loose_blob(self.repo, seg.oid)
        return _blob(self.repo, seg.oid) if data is None else data

    def _checked_blob(self, seg: Segment) -> bytes:
        return _blob(self.repo, seg.oid)

    def _bad_row(self, seg: Segment, data: bytes) -> NoReturn:
        """Raise LedgerUnreadable for the first line of `data` that is not a record."""
        for n, line in enumerate(data.split(b"\n"), 1):
            try:
                json.loads(line)
            except ValueError as e:
                raise LedgerUnreadable(f"{seg.path}:{n}: not a JSON record ({e}); run "
                                       "`fleet ledger verify`") from e
            try:
                _ROWS.decode(line)
            except msgspec.MsgspecError as e:
                raise LedgerUnreadable(f"{seg.path}:{n}: not a ledger record ({e}); run "
                                       "`fleet ledger verify`") from e
        raise LedgerUnreadable(f"{seg.path}: cannot be read as records; run "
                               "`fleet ledger verify`")

    def _strict(self, seg: Segment, data: bytes) -> Iterator[dict[str, Any]]:
        for n, line in enumerate(data.split(b"\n"), 1):
            try:
                doc = json.loads(line)
            except ValueError as e:
                raise LedgerUnreadable(f"{seg.path}:{n}: not a JSON record ({e}); run "
                                       "`fleet ledger verify`") from e
            if not isinstance(doc, dict):
                raise LedgerUnreadable(f"{seg.path}:{n}: not a JSON object")
            yield doc

    def records(self) -> Iterator[Record]:
        for seg, n, line in self.lines():
            try:
                yield Record.from_json(json.loads(line))
            except ValueError as e:
                raise LedgerUnreadable(f"{seg}:{n}: {e}") from e

    def verify(self, progress: Progress | None = None) -> Break | None:
        """The first broken record with its `segment:line`, or None if the chain holds.
        `progress(records so far, segments read, segments)` after each segment."""
        places: list[tuple[str, int]] = []  # (segment, first index in it)
        count = 0

        def texts() -> Iterator[str]:
            nonlocal count
            segs = self.segments
            # Through libgit2 (its SHA-1 check on), read ahead by a forked child while
            # this process hashes: a break ends it early, so close it explicitly.
            blobs = read_ahead(self._checked_blob, segs)
            try:
                for i, data in enumerate(blobs):
                    places.append((segs[i].path, count))
                    for line in _split(bytes(data)):
                        count += 1
                        yield line
                    if progress is not None:
                        progress(count, i + 1, len(segs))
            finally:
                blobs.close()

        def where(index: int) -> str:
            path, first = next(p for p in reversed(places) if p[1] <= index)
            return f"{path}:{index - first + 1}"

        broken = verify(texts(), where=where)
        self.checked = count
        return broken

    def tip(self) -> Tip:
        """The last record's seq and hash, read from the last segment only."""
        return _tip_at(self.repo, self.commit)

    def hashes_at(self, seqs: Iterable[int]) -> dict[int, str]:
        """The hash of the record at each of `seqs` (absent: no such record), reading only
        the segments that hold them (for comparing with an anchor)."""
        want = sorted(set(seqs))
        firsts = [s.first_seq for s in self.segments]
        by_seg: dict[int, set[int]] = {}
        for q in want:
            i = bisect_right(firsts, q) - 1
            if i >= 0:
                by_seg.setdefault(i, set()).add(q)
        out: dict[int, str] = {}
        for i, wanted in sorted(by_seg.items()):
            for line in _split(_blob(self.repo, self.segments[i].oid)):
                try:
                    doc = json.loads(line)
                    seq, h = doc["seq"], doc["hash"]
                except (ValueError, KeyError, TypeError):
                    continue  # the chain check names it
                if seq in wanted and isinstance(h, str):
                    out[seq] = h
        return out


def fast_bulk_reads() -> None:
    """For a CLI process about to read a whole ledger: skip libgit2's per-object SHA-1.

    libgit2 re-hashes every object it reads (collision-detecting SHA-1, half the cost
    of reading a segment). Storage corruption is still caught by zlib's checksum on
    inflate, and tampering by the ledger's own hash chain (`fleet ledger verify`, which
    keeps Git's check on). Process-wide: never call it in the controller.
    """
    pygit2.option(pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION, False)


def read_ledger(repo_path: str | os.PathLike[str], ref: str = LEDGER_BRANCH
                ) -> Iterator[Record]:
    """Every record of the ledger, streamed segment by segment."""
    return LedgerReader(repo_path, ref).records()


class LedgerWriter:
    """Appends batches of entries to the ledger branch, pushing when there is a remote.

    `remote` is a remote's name in the repository (`origin`) or a URL or path;
    `credentials` go with every fetch and push (the remote's URL holds none);
    `signing_key`, an SSH private key file, signs every commit as `git commit -S` with
    `gpg.format=ssh` would (`workloads.ledger_trust`).
    """

    def __init__(self, repo_path: str | os.PathLike[str], *, branch: str = LEDGER_BRANCH,
                 remote: str | None = None, segment_records: int = SEGMENT_RECORDS,
                 max_attempts: int = 5, credentials: GitAuth | None = None,
                 signing_key: str | os.PathLike[str] | None = None) -> None:
        self.repo, _ = open_repository(repo_path)
        self.signing_key = signing_key
        self.credentials = credentials
        self.ref = _branch_ref(branch)
        self.remote_name = remote
        self.segment_records = segment_records
        self.max_attempts = max_attempts
        self.tracking = f"refs/aifleet/remote-ledger/{branch.replace('/', '-')}"
        self.pushed_ref = f"refs/aifleet/ledger-pushed/{branch.replace('/', '-')}"
        """Our last commit the remote accepted: every later remote tip must contain it."""
        self.attempts = 0
        """Commit attempts made by the last `append` (1 when no retry was needed)."""
        if remote is not None:
            self._clear_stale_locks()

    def _clear_stale_locks(self) -> None:
        """Lock files of this writer's own refs left by a process killed mid-update; left
        there, every later update of that ref would fail. Only for a writer with a
        remote: its repository is the controller's own mirror (one writer, in the state
        dir), never a repository another process may be writing to."""
        gitdir = self.repo.path
        for ref in (self.ref, self.tracking, self.pushed_ref, "refs/aifleet/ledger-pending",
                    "refs/aifleet/ledger-fetched"):
            lock = os.path.join(gitdir, *ref.split("/")) + ".lock"
            if os.path.exists(lock):
                os.remove(lock)

    def head(self) -> tuple[Tip, str | None]:
        """The ledger branch's last record and commit, as this writer last wrote or saw it
        (for anchoring the head)."""
        commit = _commit_of(self.repo, self.ref)
        return _tip_at(self.repo, commit), None if commit is None else str(commit.id)

    def _remote(self) -> pygit2.Remote:
        assert self.remote_name is not None
        if self.remote_name in self.repo.remotes.names():
            return self.repo.remotes[self.remote_name]
        url = self.remote_name
        if "://" not in url and not url.startswith("git@"):
            url = os.path.abspath(url)
        return self.repo.remotes.create_anonymous(url)

    def _fetch(self) -> pygit2.Commit | None:
        """The remote's ledger tip (None when the remote has no ledger branch yet)."""
        remote = self._remote()
        try:
            with connecting(self.credentials, remote.url or "") as callbacks:
                heads = remote.list_heads(callbacks=callbacks)
            if self.ref not in {h.name for h in heads}:
                # Gone (or never there): a branch we pushed to is restored from our own
                # chain, which holds everything we wrote; never a new chain from seq 1.
                mine = self.pushed
                return None if mine is None else self.repo[mine].peel(pygit2.Commit)
            pending = "refs/aifleet/ledger-fetched"
            with connecting(self.credentials, remote.url or "") as callbacks:
                remote.fetch([f"+{self.ref}:{pending}"], callbacks=callbacks)
        except pygit2.GitError as e:
            raise LedgerPushFailed(f"cannot fetch the ledger from {_redact(remote.url)}: "
                                   f"{e}") from e
        tip = _commit_of(self.repo, pending)
        assert tip is not None
        self.check_tip(tip)
        self.repo.references.create(self.tracking, tip.id, force=True)
        return tip

    @property
    def pushed(self) -> pygit2.Oid | None:
        """The last ledger commit the remote accepted from this writer, if any."""
        ref = self.repo.references.get(self.pushed_ref)
        return None if ref is None else ref.peel(pygit2.Commit).id

    def check_tip(self, tip: pygit2.Commit) -> None:
        """Raise LedgerForged unless `tip` is, or descends from, our last pushed commit."""
        mine = self.pushed
        if mine is None:
            return  # nothing written by us yet (or a new state dir): nothing to compare
        if tip.id != mine and not self.repo.descendant_of(tip.id, mine):
            raise LedgerForged(f"the remote ledger tip {str(tip.id)[:12]} does not contain "
                               f"{str(mine)[:12]}, the last ledger commit this controller "
                               "pushed: the branch was rewritten and force-pushed; refusing "
                               "to chain onto it")

    def remote_events(self) -> list[RecordRow]:
        """Every record at the remote's tip (checked as `check_tip`), for a restart to
        reconcile the ledger with what runs."""
        base = _commit_of(self.repo, self.ref) if self.remote_name is None else self._fetch()
        if base is None:
            return []
        # docs(), not rows(): no read-ahead child forked from the controller's process
        return rows_of(LedgerReader(self.repo.path, str(base.id)).docs())

    def refresh(self) -> None:
        """Fetch the remote's tip (checked as `check_tip`), when there is a remote."""
        if self.remote_name is not None:
            self._fetch()

    def tail_entries(self, n: int) -> list[Entry]:
        """The entries of the last `n` records at the tip this writer last saw."""
        ref = self.ref if self.remote_name is None else self.tracking
        commit = _commit_of(self.repo, ref)
        out: list[Entry] = []
        for seg in reversed(segments(self.repo, commit)):
            lines = _split(_blob(self.repo, seg.oid))
            out[:0] = [Record.from_json(json.loads(line)).entry for line in lines]
            if len(out) >= n:
                break
        return out[-n:] if n else []

    def append(self, entries: Sequence[Entry]) -> list[Record]:
        """Seal `entries` onto the ledger tip, commit them, push; the records written."""
        if not entries:
            return []
        for e in entries:
            if not _DATE.match(e.time):
                raise ValueError(f"entry time {e.time!r} is not RFC 3339 (YYYY-MM-DDThh:mm:ssZ)")
        self.attempts = 0
        # With a remote, start from the tip the last push or fetch saw: one round trip
        # when nobody else wrote; a stale tip costs one rejected push and a re-chain.
        if self.remote_name is None:
            base = _commit_of(self.repo, self.ref)
        elif self.repo.references.get(self.tracking) is not None:
            base = _commit_of(self.repo, self.tracking)
        else:
            base = self._fetch()
        last_error = ""
        while self.attempts < self.max_attempts:
            self.attempts += 1
            records = seal(entries, _tip_at(self.repo, base))
            commit = self._commit(base, records)
            if self.remote_name is None:
                self.repo.references.create(self.ref, commit, force=True)
                return records
            rejected = self._push(commit)
            if rejected is None:
                self.repo.references.create(self.ref, commit, force=True)
                self.repo.references.create(self.tracking, commit, force=True)
                self.repo.references.create(self.pushed_ref, commit, force=True)
                return records
            last_error = rejected
            base = self._fetch()  # another writer was first: re-chain onto its tip
        raise LedgerPushFailed(f"ledger push refused {self.max_attempts} times: {last_error}")

    def _push(self, commit: pygit2.Oid) -> str | None:
        """None when the remote took the commit, else the refusal (to retry)."""
        pending = "refs/aifleet/ledger-pending"
        self.repo.references.create(pending, commit, force=True)
        remote = self._remote()
        try:
            with connecting(self.credentials, remote.url or "") as cb:
                remote.push([f"{pending}:{self.ref}"], callbacks=cb)
        except pygit2.GitError as e:
            msg = str(e)
            if any(m in msg.lower() for m in _NOT_FAST_FORWARD):
                return msg
            raise LedgerPushFailed(f"cannot push the ledger to {_redact(remote.url)}: "
                                   f"{msg}") from e
        return cb.rejected

    def _commit(self, base: pygit2.Commit | None, records: list[Record]) -> pygit2.Oid:
        repo = self.repo
        tree = base.tree if base is not None else None
        segs = segments(repo, base)
        lines = [r.line() for r in records]
        writes: list[tuple[str, bytes]] = []
        if segs:
            tail = segs[-1]
            old = _blob(repo, tail.oid)
            room = self.segment_records - old.count(b"\n")
            if room > 0:
                take, lines = lines[:room], lines[room:]
                writes.append((tail.path, old + "".join(f"{ln}\n" for ln in take).encode()))
        first = records[-1].seq - len(lines) + 1
        for i in range(0, len(lines), self.segment_records):
            chunk = lines[i:i + self.segment_records]
            rec = records[len(records) - len(lines) + i]
            y, m, d = _DATE.match(rec.entry.time).groups()  # type: ignore[union-attr]
            path = f"ledger/{y}/{m}/{d}/{first + i:012d}.jsonl"
            writes.append((path, "".join(f"{ln}\n" for ln in chunk).encode()))
        for path, data in writes:
            new = repo[_put(repo, tree, path.split("/"), repo.create_blob(data))]
            assert isinstance(new, pygit2.Tree)
            tree = new
        assert tree is not None
        sig = pygit2.Signature(*_SIGNATURE)
        message = (f"ledger: records {records[0].seq}-{records[-1].seq}\n\n"
                   f"head {records[-1].hash}\n")
        parents = [base.id] if base is not None else []
        if self.signing_key is not None:
            return signed_commit(repo, self.signing_key, sig, message, tree.id, parents)
        oid: pygit2.Oid = repo.create_commit(None, sig, sig, message, tree.id, parents)
        return oid


def _tip_at(repo: pygit2.Repository, commit: pygit2.Commit | None) -> Tip:
    for seg in reversed(segments(repo, commit)):
        data = _blob(repo, seg.oid).rstrip(b"\n")
        if data.strip():  # an emptied segment is skipped, not read as a record
            last = json.loads(data.rsplit(b"\n", 1)[-1])
            return Tip(int(last["seq"]), str(last["hash"]))
    return Tip()


class FleetHistory:
    """The policy and clusters of the fleet at any commit, for judging ledger records.

    Read once per distinct content: commits that changed only workloads share the
    trees of `clusters/` and `policies/`, so they share one `FleetAt` (the audit also
    relies on that identity to notice a relabelled cluster cheaply).
    """

    def __init__(self, repo_path: str | os.PathLike[str]) -> None:
        self.repo, self.prefix = open_repository(repo_path)
        self._by_content: dict[tuple[str, str], FleetAt] = {}
        self._by_commit: dict[str, FleetAt | None] = {}
        self._cache = ParseCache()
        self.reads = 0

    def at(self, commit: str) -> FleetAt | None:
        """The fleet at `commit`; None when the repo does not have it."""
        if commit in self._by_commit:
            return self._by_commit[commit]
        try:
            tree = resolve_tree(self.repo, commit, self.prefix)
        except RevisionNotFound:
            self._by_commit[commit] = None
            return None
        key = tuple(str(tree.tree[f].id) if tree.tree is not None and f in tree.tree else ""
                    for f in ("clusters", "policies"))
        assert len(key) == 2
        fa = self._by_content.get(key)
        if fa is None:
            entries = [e for e in git_files(tree) if not e.path.startswith("workloads/")]
            fa = self._by_content[key] = FleetAt.of(load_entries(entries, self._cache))
            self.reads += 1
        self._by_commit[commit] = fa
        return fa


def _put(repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str],
         blob: pygit2.Oid) -> pygit2.Oid:
    """A new tree: `tree` with the blob at `parts` (folders made or updated on the way)."""
    tb = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    name = parts[0]
    if len(parts) == 1:
        tb.insert(name, blob, pygit2.enums.FileMode.BLOB)
    else:
        sub: pygit2.Tree | None = None
        if tree is not None and name in tree:
            obj = repo[tree[name].id]
            sub = obj if isinstance(obj, pygit2.Tree) else None
        tb.insert(name, _put(repo, sub, parts[1:], blob), pygit2.enums.FileMode.TREE)
    oid: pygit2.Oid = tb.write()
    return oid


def _redact(url: str | None) -> str:
    """Never show credentials embedded in a URL."""
    url = url or ""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
