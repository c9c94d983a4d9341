"""`fleet sim up` tunes its garbage collector as `fleet run` does (issue 22): the
simulator's heap is its stored objects, and full collections walked them all again.
Counted with injected freeze, collect and sleep."""

from __future__ import annotations

import asyncio
import gc

import pytest

from controllers.commands import sim
from controllers.runtime import gctune


class Stop(Exception):
    pass


def test_the_heap_is_frozen_each_period_young_cycles_collected_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIFLEET_GC_DEFAULTS", raising=False)
    seen: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise Stop

    async def run() -> None:
        task = sim._settle_heap(freeze=lambda: seen.append("freeze"),
                                collect=lambda g: seen.append(f"collect({g})"),
                                sleep=sleep)
        assert task is not None
        with pytest.raises(Stop):
            await task

    before = gc.get_threshold()
    try:
        asyncio.run(run())
        assert gc.get_threshold() == gctune.THRESHOLDS
    finally:
        gc.set_threshold(*before)
    assert seen == ["collect(1)", "freeze"] * 3
    assert slept == [sim.SETTLE_EVERY] * 3


def test_gc_defaults_kept_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFLEET_GC_DEFAULTS", "1")
    seen: list[str] = []

    async def run() -> asyncio.Task[None] | None:
        return sim._settle_heap(freeze=lambda: seen.append("freeze"))

    before = gc.get_threshold()
    try:
        assert asyncio.run(run()) is None
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
    assert seen == []
