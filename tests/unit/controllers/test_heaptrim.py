"""`fleet run` gives glibc's free heap back every few seconds (issue 22; measured in
controllers/runtime/heaptrim.py's docstring)."""

from __future__ import annotations

import sys

import anyio
import pytest

from controllers.runtime import heaptrim


async def test_the_trimmer_trims_once_per_period_off_the_loop() -> None:
    import threading
    calls: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 3:
            raise anyio.get_cancelled_exc_class()()  # stop after three periods

    def trim() -> int:
        calls.append(threading.current_thread().name)
        return 1

    t = heaptrim.Trimmer(trim, every=7.0, sleep=sleep)
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await t.run()
    assert slept == [7.0] * 4 and t.trims == 3 == len(calls)
    assert threading.main_thread().name not in calls  # in a worker thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's call")
def test_malloc_trim_is_glibcs_and_gives_pages_back() -> None:
    trim = heaptrim.malloc_trim()
    assert trim is not None
    # 8 MiB freed inside the heap, below a chunk still in use: glibc keeps the pages
    # (it trims only the top of its heap) until asked; asked, it says it released some.
    held = [bytearray(4096) for _ in range(2000)]
    del held[:-1]
    assert trim() == 1
