"""read_ahead: the same blobs in the same order as reading them here, whatever the child
does, and no child left behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

from workloads.forkmap import can_fork
from workloads.readahead import loose_blob, read_ahead

needs_fork = pytest.mark.skipif(not can_fork(), reason="needs os.fork and two CPUs")
PARENT = os.getpid()
BIG = 3 * (1 << 20)  # three times the pipe: the child must block and resume


def blob(k: int) -> bytes:
    """Blob k: its number and the pid that read it, padded to a size that varies."""
    size = BIG if k == 7 else (0 if k == 3 else k * 1000)
    head = f"{k}:{os.getpid()}:".encode()
    return head + b"x" * size


def fails_in_child(k: int) -> bytes:
    if os.getpid() != PARENT and k == 20:
        raise KeyError("object missing in the child")
    return blob(k)


def parts(data: bytes | memoryview) -> tuple[int, int, int]:
    k, pid, pad = bytes(data).split(b":", 2)
    return int(k), int(pid), len(pad)


@needs_fork
def test_blobs_come_back_in_order_read_by_a_second_process() -> None:
    keys = list(range(40))
    got = [parts(d) for d in read_ahead(blob, keys)]
    assert [(k, size) for k, _, size in got] == [(k, len(blob(k).split(b":", 2)[2]))
                                                 for k in keys]
    pids = {pid for _, pid, _ in got}
    assert PARENT not in pids and len(pids) == 1


@needs_fork
def test_what_a_failed_child_did_not_send_is_read_here() -> None:
    got = [parts(d) for d in read_ahead(fails_in_child, list(range(40)))]
    assert [k for k, _, _ in got] == list(range(40))
    assert {pid for k, pid, _ in got if k >= 20} == {PARENT}
    assert PARENT not in {pid for k, pid, _ in got if k < 20}


@needs_fork
def test_stopping_early_ends_and_reaps_the_child() -> None:
    it = read_ahead(blob, list(range(200)))
    _, child, _ = parts(next(it))
    assert child != PARENT
    it.close()
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # waited for: not even a zombie


def note(k: int, data: bytes | memoryview) -> bytes:
    """A check's note: which key, which process checked it, and the blob's size."""
    return f"{k}:{os.getpid()}:{len(data)}".encode()


@pytest.mark.parametrize("read", [blob, fails_in_child], ids=["child", "child-fails-at-20"])
def test_each_blob_is_checked_where_it_is_read_and_its_note_adopted_before_it(
        read: Callable[[int], bytes]) -> None:
    notes: list[bytes] = []
    for d in read_ahead(read, list(range(40)), check=note, adopt=notes.append):
        k, pid, _ = parts(d)
        assert notes[-1] == f"{k}:{pid}:{len(d)}".encode()  # checked by the reader of d
    assert [int(n.split(b":")[0]) for n in notes] == list(range(40))


@pytest.mark.parametrize("keys", [list(range(5)), []], ids=["few-blobs", "none"])
def test_few_blobs_are_read_here(keys: list[int]) -> None:
    got = [parts(d) for d in read_ahead(blob, keys)]
    assert [k for k, _, _ in got] == keys and {pid for _, pid, _ in got} <= {PARENT}


def test_a_read_error_is_raised_here_in_order() -> None:
    def read(k: int) -> bytes:
        if k == 30:
            raise KeyError(f"object {k} missing")
        return blob(k)

    seen: list[int] = []
    with pytest.raises(KeyError, match="object 30 missing"):
        for d in read_ahead(read, list(range(40))):
            seen.append(parts(d)[0])
    assert seen == list(range(30))


def test_a_loose_blob_reads_as_libgit2_reads_it_and_anything_else_is_left_to_libgit2(
        tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    data = b'{"seq":1}\n' * 50_000 + "Daten\u2028bleiben".encode()
    oid = repo.create_blob(data)
    view = loose_blob(repo, oid)
    assert view is not None and bytes(view) == data == repo.odb.read(oid)[1]

    tree = repo.TreeBuilder()
    tree.insert("f", oid, pygit2.enums.FileMode.BLOB)
    assert loose_blob(repo, tree.write()) is None  # a tree, not a blob

    packed = repo.create_blob(b"packed")
    assert repo.pack() >= 1
    hexid = str(packed)
    (tmp_path / "r.git" / "objects" / hexid[:2] / hexid[2:]).unlink()  # only in the pack
    assert loose_blob(repo, packed) is None and repo.odb.read(packed)[1] == b"packed"

    damaged = repo.create_blob(b"will be cut short" * 100)
    hexid = str(damaged)
    path = tmp_path / "r.git" / "objects" / hexid[:2] / hexid[2:]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:20])
    assert loose_blob(repo, damaged) is None
