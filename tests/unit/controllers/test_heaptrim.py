"""`fleet run` gives glibc's free heap back every few seconds (issue 22; measured in
controllers/runtime/heaptrim.py's docstring)."""

from __future__ import annotations

import sys

import pytest

from controllers.runtime import heaptrim


def waiter(looks: int, waited: list[float]):  # type: ignore[no-untyped-def]
    """A trimmer's wait that lets it look `looks` times, then stops it."""
    def wait(seconds: float) -> bool:
        waited.append(seconds)
        return len(waited) > looks
    return wait


def test_the_trimmer_trims_once_per_period_in_a_thread_of_its_own() -> None:
    import threading
    calls: list[str] = []
    waited: list[float] = []

    def trim() -> int:
        calls.append(threading.current_thread().name)
        return 1

    t = heaptrim.Trimmer(trim, every=3.0, check=1.0, rss=lambda: 500 << 20,
                         wait=waiter(9, waited))
    t.start().join(timeout=30)
    assert waited == [1.0] * 10 and t.trims == 3 and t.early == 0
    assert calls == ["heap-trim"] * 3  # not the loop's thread


def test_growth_brings_the_next_trim_forward_and_what_it_gave_back_is_counted() -> None:
    mib = 1 << 20
    # start 800; +10 (no); +30 since the start: trim, which gives 25 back (805);
    # +5, +10 since then (no); +24 since then: trim, which gives nothing back
    readings = iter([800, 810, 830, 805, 810, 815, 829, 829])
    t = heaptrim.Trimmer(lambda: 1, every=100.0, check=1.0, step=24 * mib,
                         rss=lambda: next(readings) * mib, wait=waiter(5, []))
    t.run()
    assert t.trims == 2 and t.early == 2
    assert t.freed == 25 * mib


def test_without_a_reading_of_its_rss_it_trims_on_the_period_alone() -> None:
    t = heaptrim.Trimmer(lambda: 1, every=2.0, check=1.0, rss=lambda: None,
                         wait=waiter(6, []))
    t.run()
    assert t.trims == 3 and t.early == 0 and t.freed == 0


def test_stop_ends_the_thread() -> None:
    t = heaptrim.Trimmer(lambda: 1, every=3600.0, check=3600.0)
    thread = t.start()
    t.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and t.trims == 0


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
