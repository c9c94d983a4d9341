"""Watches only where there is something to watch (issue 22, item 1): an idle cluster's
adapter holds watches for its Nodes and Pods only (each watch is a TLS connection and a
watcher in the API server); a write of ours starts the watch of its kinds, and drift on
what we wrote is still seen; an owned object written by someone else is found by the idle re-list; a
kind whose last object is gone goes idle again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio

from clusters.sim.resources import BY_KIND
from tests.support.adapter import (
    FAST,
    TEAM,
    Connected,
    connected,
    deployment,
    namespace,
    serving,
    stored,
    until,
)


def server_watches(c: Connected) -> list[str]:
    """The collections the simulated API server has a watch open on, as it sees them."""
    return sorted(r.path.rsplit("/", 1)[-1] for r in c.cluster.open_watches.values())


async def test_an_idle_cluster_is_watched_for_nodes_and_pods_only(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await until(lambda: server_watches(c) == ["nodes", "pods"],
                    what="the watches of nodes and pods only")
        assert c.adapter.watching() == ["Node", "Pod"]
        # Every kind was listed once for the first sync, owned kinds and DRA's included.
        assert c.adapter.stats.calls["list"] >= 9


async def test_a_write_starts_its_kinds_watches_and_drift_on_it_is_seen(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await until(lambda: c.adapter.watching() == ["Node", "Pod"], what="idle")
        await c.adapter.apply([namespace(), *serving("serve-a", gpus=0)])
        # Edited at once, before or after the watch started: the watch begins at the
        # last (empty) list's resourceVersion, so the edit is an event either way.
        await c.cluster.edit("Deployment", TEAM, "serve-a", {"spec": {"replicas": 5}})
        await until(lambda: bool(c.adapter.drift_log), what="the drift reported")
        assert c.adapter.drift_log[0].workload == f"{TEAM}.serve-a"
        await until(lambda: stored(c, "Deployment")["serve-a"]["spec"]["replicas"] == 1,
                    what="the drift corrected")
        assert {"Deployment", "Namespace", "Service"} <= set(c.adapter.watching())
        assert {"deployments", "namespaces", "services"} <= set(server_watches(c))
        assert "Job" not in c.adapter.watching()  # never written: still idle


async def test_an_owned_object_written_elsewhere_is_found_by_the_idle_relist(
        tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, idle_relist=0.2)
    async with connected(tmp_path, options=options) as c:
        assert "Deployment" not in c.adapter.watching()
        c.cluster.store.create(BY_KIND["Namespace"], namespace(), manager="someone-else")
        c.cluster.store.create(BY_KIND["Deployment"], deployment("elsewhere", gpus=0),
                               manager="someone-else")
        await until(lambda: bool(c.adapter.workload_objects(f"{TEAM}.elsewhere")),
                    what="the object found by a re-list")
        await until(lambda: "Deployment" in c.adapter.watching(), what="watched then")


async def test_a_kind_with_nothing_left_goes_idle_again(tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, watch_timeout=1)
    async with connected(tmp_path, options=options) as c:
        await c.adapter.apply([namespace(), *serving("serve-a", gpus=0)])
        await until(lambda: "Deployment" in c.adapter.watching(), what="watched")
        result = await c.adapter.apply([namespace()], allow_empty=True)
        assert len(result.pruned) == 2  # the Deployment and its Service
        # The watch ends (timeoutSeconds) with an empty cache and no write since: idle.
        await until(lambda: "Deployment" not in c.adapter.watching()
                    and "deployments" not in server_watches(c), what="idle again")
        assert "Namespace" in c.adapter.watching()  # still holds our Namespace
        with anyio.fail_after(5):
            await c.adapter.apply([namespace(), *serving("serve-b", gpus=0)])
        await until(lambda: "Deployment" in c.adapter.watching(), what="watched again")
