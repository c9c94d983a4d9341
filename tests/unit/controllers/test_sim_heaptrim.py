"""`fleet sim up` gives glibc's free heap back as `fleet run` does
(`controllers.runtime.heaptrim`): one trimmer while it serves, stopped when it stops,
none with AIFLEET_MALLOC_TRIM=0. Counted with the simulated clusters faked and the
trimmer's thread not started."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

import clusters.sim
from clusters.sim import SimClusterSpec
from controllers.commands import sim
from controllers.runtime import heaptrim


class FakeSim:
    """What `_serve` uses of a `SimFleet`: no cluster, a kubeconfig path."""

    clusters: dict[str, Any] = {}

    async def __aenter__(self) -> FakeSim:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def write_kubeconfig(self, path: Path) -> Path:
        return path


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """`sim._serve` with its clusters faked, returning at once (as if Ctrl-C), each
    trimmer's start and stop counted (no thread), `malloc_trim` there on any libc."""
    seen = {"start": 0, "stop": 0}

    async def start_sim(*_a: object, **_k: object) -> FakeSim:
        return FakeSim()

    async def signalled() -> None:
        assert seen["stop"] == 0  # serving: not stopped yet
        return None

    def start(self: heaptrim.Trimmer) -> None:
        seen["start"] += 1

    def stop(self: heaptrim.Trimmer) -> None:
        seen["stop"] += 1

    monkeypatch.setattr(clusters.sim, "start_sim", start_sim)
    monkeypatch.setattr(sim, "_until_signalled", signalled)
    monkeypatch.setattr(heaptrim, "malloc_trim", lambda: lambda: 1)
    monkeypatch.setattr(heaptrim.Trimmer, "start", start)
    monkeypatch.setattr(heaptrim.Trimmer, "stop", stop)
    monkeypatch.setenv("AIFLEET_GC_DEFAULTS", "1")  # the collector left alone here
    return seen


def serve(tmp_path: Path) -> None:
    args = argparse.Namespace(job_seconds=30.0, pod_start_seconds=1.0, time_scale=1.0,
                              kubeconfig=tmp_path / "sim.kubeconfig")
    asyncio.run(sim._serve([SimClusterSpec("eu-fra-1", ())], args, None))


def test_sim_up_trims_the_heap_while_it_serves(
        counted: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIFLEET_MALLOC_TRIM", raising=False)
    serve(tmp_path)
    assert counted == {"start": 1, "stop": 1}


def test_sim_up_does_not_trim_when_told_not_to(
        counted: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIFLEET_MALLOC_TRIM", "0")
    serve(tmp_path)
    assert counted == {"start": 0, "stop": 0}
