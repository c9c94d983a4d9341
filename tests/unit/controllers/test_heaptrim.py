"""`fleet run` gives glibc's free heap back every few seconds (issue 22; measured in
controllers/runtime/heaptrim.py's docstring)."""

from __future__ import annotations

import sys

import pytest

from controllers.runtime import heaptrim


class Stop(Exception):
    """Ends a trimmer's loop after the readings a test gives it."""


def sleeper(looks: int, slept: list[float]):  # type: ignore[no-untyped-def]
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > looks:
            raise Stop
    return sleep


async def test_the_trimmer_trims_once_per_period_off_the_loop() -> None:
    import threading
    calls: list[str] = []
    slept: list[float] = []

    def trim() -> int:
        calls.append(threading.current_thread().name)
        return 1

    t = heaptrim.Trimmer(trim, every=3.0, check=1.0, rss=lambda: 500 << 20,
                         sleep=sleeper(9, slept))
    with pytest.raises(Stop):
        await t.run()
    assert slept == [1.0] * 10 and t.trims == 3 == len(calls) and t.early == 0
    assert threading.main_thread().name not in calls  # in a worker thread


async def test_growth_brings_the_next_trim_forward_and_what_it_gave_back_is_counted() -> None:
    mib = 1 << 20
    # start 800; +10 (no); +30 since the start: trim, which gives 25 back (805);
    # +5, +10 since then (no); +24 since then: trim, which gives nothing back
    readings = iter([800, 810, 830, 805, 810, 815, 829, 829])
    trims: list[int] = []

    def trim() -> int:
        trims.append(1)
        return 1

    t = heaptrim.Trimmer(trim, every=100.0, check=1.0,
                         step=24 * mib, rss=lambda: next(readings) * mib,
                         sleep=sleeper(5, []))
    with pytest.raises(Stop):
        await t.run()
    assert t.trims == 2 == len(trims) and t.early == 2
    assert t.freed == 25 * mib


async def test_without_a_reading_of_its_rss_it_trims_on_the_period_alone() -> None:
    t = heaptrim.Trimmer(lambda: 1, every=2.0, check=1.0, rss=lambda: None,
                         sleep=sleeper(6, []))
    with pytest.raises(Stop):
        await t.run()
    assert t.trims == 3 and t.early == 0 and t.freed == 0


def test_rss_bytes_reads_this_process() -> None:
    rss = heaptrim.rss_bytes()
    if sys.platform.startswith("linux"):
        assert rss is not None and rss > 1 << 20
    else:
        assert rss is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's call")
def test_malloc_trim_is_glibcs_and_gives_pages_back() -> None:
    trim = heaptrim.malloc_trim()
    assert trim is not None
    # 8 MiB freed inside the heap, below a chunk still in use: glibc keeps the pages
    # (it trims only the top of its heap) until asked; asked, it says it released some.
    held = [bytearray(4096) for _ in range(2000)]
    del held[:-1]
    assert trim() == 1
