"""fork_map and Background: the same results as doing the work here, whatever the child
does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workloads.forkmap import Background, can_fork, fork_map

needs_fork = pytest.mark.skipif(not can_fork(), reason="needs os.fork and two CPUs")
PARENT = os.getpid()


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fails_in_child(x: int) -> int:
    if os.getpid() != PARENT:
        raise RuntimeError("the helper breaks")
    return x + 1


@needs_fork
def test_fork_map_gives_the_serial_result_in_order_and_uses_a_second_process() -> None:
    items = list(range(3000))
    out = fork_map(square_with_pid, items, min_items=100)
    assert [v for v, _ in out] == [x * x for x in items]
    pids = {pid for _, pid in out}
    assert PARENT in pids and len(pids) == 2


def test_fork_map_stays_in_this_process_for_a_small_list() -> None:
    out = fork_map(square_with_pid, list(range(10)), min_items=100)
    assert {pid for _, pid in out} == {PARENT}


def test_fork_map_never_forks_when_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFLEET_NO_FORK", "1")
    out = fork_map(square_with_pid, list(range(2000)), min_items=100)
    assert {pid for _, pid in out} == {PARENT}


@needs_fork
def test_a_failing_helper_costs_time_not_results() -> None:
    items = list(range(500))
    assert fork_map(fails_in_child, items, min_items=10) == [x + 1 for x in items]


@needs_fork
def test_background_work_is_done_by_the_time_wait_returns(tmp_path: Path) -> None:
    target = tmp_path / "written"

    def write() -> None:
        target.write_text(str(os.getpid()))

    with Background() as bg:
        bg.run(write)
    assert target.read_text() != str(PARENT)  # a child wrote it, and it is there now


@needs_fork
def test_background_counts_failed_work() -> None:
    bg = Background()
    bg.run(lambda: 1 / 0)
    bg.run(lambda: None)
    assert bg.wait() == 1


def fails_in_parent(x: int) -> int:
    if os.getpid() == PARENT and x == 5:
        raise KeyError(x)
    return x


def children() -> set[int]:
    """This process's children, running or not yet reaped (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        out.update(int(p) for p in (task / "children").read_text().split())
    return out


@needs_fork
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_an_error_here_leaves_no_helper_behind() -> None:
    before = children()
    with pytest.raises(KeyError):
        fork_map(fails_in_parent, list(range(2000)), min_items=10)
    assert children() <= before  # killed and reaped, not left running or a zombie
