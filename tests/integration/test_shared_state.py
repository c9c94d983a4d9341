"""The shared state store (`controllers.persist.sharedstate`) against a simulated
management cluster over real HTTP: documents split across ConfigMaps when they are big,
read back whole; a writer that dies half-way leaves the previous copy readable; an older
leader's write is refused; a follower writes nothing; a home that cannot answer says so."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from clusters.client import KubeClient
from clusters.configmap import put_configmap
from clusters.kubeconfig import ConnectionSpec, api_client
from clusters.namespace import DEFAULT
from clusters.sim import SimClusterSpec, SimFleet, start_sim
from controllers.persist.sharedstate import (
    GENERATION,
    KEY,
    SharedStore,
    Unreadable,
    configmap_name,
    configmap_names,
    encode,
    part_name,
)

HEAD = "/api/v1/namespaces/aifleet-system/configmaps/" + configmap_name("suspended")


@asynccontextmanager
async def home(tmp: Path) -> AsyncIterator[tuple[SimFleet, KubeClient]]:
    sim = await start_sim([SimClusterSpec("home", ())])
    async with sim:
        path = sim.write_kubeconfig(tmp / "kubeconfig")
        client = KubeClient("home", await api_client(ConnectionSpec("home", str(path), "home")))
        try:
            yield sim, client
        finally:
            await client.close()


def store(client: KubeClient, *, generation: int | None = 1, may_write: bool = True,
          chunk: int = 1000) -> SharedStore:
    async def fence() -> str | None:
        return None

    return SharedStore(lambda: client, lambda: may_write, DEFAULT, fence, lambda: generation,
                       chunk=chunk)


def suspensions(n: int) -> dict[str, Any]:
    """A suspensions document that does not compress much: n hashed workload ids."""
    return {"version": 1, "clusters": {}, "workloads": {
        f"team/{hashlib.sha256(str(i).encode()).hexdigest()}": "2026-12-03T10:00:00Z"
        for i in range(n)}}


def ours(sim: SimFleet) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in sim.clusters["home"].objects("ConfigMap")
            if o["metadata"]["name"].startswith("aifleet-state-")}


async def test_a_big_document_is_split_across_configmaps_and_read_back_whole(
        tmp_path: Path) -> None:
    async with home(tmp_path) as (sim, client):
        s = store(client)
        big = suspensions(45)
        assert await s.write("suspended", big) is None
        stored = ours(sim)
        assert len(stored) == 3  # the head and its parts
        assert set(stored) <= set(configmap_names())  # the names the chart's Role lists
        assert all(len(o["binaryData"]["state.json.gz"]) <= 1000 for o in stored.values())
        assert stored[configmap_name("suspended")]["data"]["parts"] == "3"
        assert await s.read("suspended") == big
        # Too big for MAX_PARTS: not written (the state dir keeps it), the copy stays.
        why = await s.write("suspended", suspensions(80))
        assert why is not None and "would need" in why
        assert await s.read("suspended") == big
        # A small one replaces it: one ConfigMap, the old parts deleted.
        small = suspensions(1)
        assert await s.write("suspended", small) is None
        assert list(ours(sim)) == [configmap_name("suspended")]
        assert await s.read("suspended") == small


async def test_a_writer_that_dies_half_way_leaves_the_previous_copy_readable(
        tmp_path: Path) -> None:
    async with home(tmp_path) as (sim, client):
        s = store(client)
        before = suspensions(45)  # three parts
        assert await s.write("suspended", before) is None
        # The next write got its parts in and died before its head (as `_write` does
        # it: parts first, then the head that names them).
        digest, chunks = encode(suspensions(50), 1000)
        head = ours(sim)[configmap_name("suspended")]
        free = "b" if head["data"]["slot"] == "a" else "a"
        for i, piece in enumerate(chunks[1:], start=1):
            await put_configmap(client, part_name("suspended", free, i), {
                "data": {"sha256": digest}, "binaryData": {KEY: piece}}, namespace=DEFAULT)
        assert len(ours(sim)) == 5  # both slots' parts are there
        assert await s.read("suspended") == before
        # A part of the head's own slot rewritten under a reader: read again later,
        # never taken for "no copy" (which would let a stale local file win).
        await put_configmap(client, part_name("suspended", head["data"]["slot"], 1), {
            "data": {"sha256": digest}, "binaryData": {KEY: chunks[1]}}, namespace=DEFAULT)
        with pytest.raises(Unreadable):
            await s.read("suspended")


async def test_an_older_leaders_write_is_refused(tmp_path: Path) -> None:
    async with home(tmp_path) as (sim, client):
        newer, older = store(client, generation=3), store(client, generation=2)
        assert await newer.write("suspended", suspensions(1)) is None
        head = ours(sim)[configmap_name("suspended")]
        assert head["metadata"]["annotations"][GENERATION] == "3"
        why = await older.write("suspended", suspensions(0))
        assert why is not None and "newer leader" in why
        assert await newer.read("suspended") == suspensions(1)


async def test_a_follower_writes_nothing(tmp_path: Path) -> None:
    async with home(tmp_path) as (sim, client):
        why = await store(client, may_write=False).write("suspended", suspensions(1))
        assert why == "this replica may not act"
        assert ours(sim) == {}
        assert await store(client).read("suspended") is None  # no copy: None


async def test_a_home_that_cannot_answer_is_unreadable_and_a_damaged_copy_unusable(
        tmp_path: Path) -> None:
    async with home(tmp_path) as (sim, client):
        s = store(client)
        assert await s.write("suspended", suspensions(2)) is None
        sim.clusters["home"].faults.fail_next(1, 503, prefix=HEAD)
        with pytest.raises(Unreadable):
            await s.read("suspended")
        await sim.clusters["home"].edit("ConfigMap", "aifleet-system",
                                        configmap_name("suspended"),
                                        {"data": {"sha256": "0" * 64, "parts": "1"}})
        assert await s.read("suspended") is None  # said (shared_state_unusable)
