"""Informers against a simulated cluster: a cut watch resumes from the last
resourceVersion without a re-list, and a 410 (history expired while the watch was away)
re-lists and emits what changed meanwhile, so no event is lost."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from clusters.client import DEPLOYMENT
from clusters.informer import Informer
from clusters.sim.resources import BY_KIND
from clusters.slim import metadata_only
from fleet.render import OWNED_SELECTOR
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

Seen = list[tuple[str, str, Any]]


def _recorder(seen: Seen) -> Any:
    def handle(event: str, obj: dict[str, Any]) -> None:
        seen.append((event, obj["metadata"]["name"], (obj.get("spec") or {}).get("replicas")))
    return handle


async def _watching(c: Connected, tg: anyio.abc.TaskGroup, seen: Seen,
                    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Informer:
    watches = len(c.cluster.open_watches)
    inf = Informer(c.adapter.client, DEPLOYMENT, label_selector=OWNED_SELECTOR,
                   watch_timeout=30, handler=_recorder(seen), keep=keep)
    tg.start_soon(inf.run)
    with anyio.fail_after(5):
        await inf.synced.wait()
    await until(lambda: len(c.cluster.open_watches) > watches, what="the watch open")
    return inf


async def test_a_410_after_the_history_expired_relists_and_loses_no_event(
        tmp_path: Path) -> None:
    # Self-heal off: the adapter must not put things back before our informer re-lists.
    options = dataclasses.replace(FAST, self_heal=False)
    async with connected(tmp_path, options=options) as c, anyio.create_task_group() as tg:
        await c.adapter.apply([namespace(), *serving("serve-a", gpus=0),
                               *serving("serve-b", gpus=0), *serving("serve-d", gpus=0)])
        seen: Seen = []
        inf = await _watching(c, tg, seen)
        assert {n for _e, n, _r in seen} == {"serve-a", "serve-b", "serve-d"}
        # The same, keeping metadata only (as the adapter's owned kinds do): handlers
        # get whole objects, a re-list's DELETED gets what the cache kept.
        slim_seen: Seen = []
        slim = await _watching(c, tg, slim_seen, keep=metadata_only)
        old_d = stored(c, "Deployment")["serve-d"]["metadata"]["uid"]

        # While every watch is away: one object edited, one deleted, one created, one
        # deleted and created again under its name; then the history is forgotten, so
        # resuming from the last version gets 410 Gone.
        c.cluster.faults.cut_watches()
        seen.clear()
        slim_seen.clear()
        deployments = BY_KIND["Deployment"]
        await c.cluster.edit("Deployment", TEAM, "serve-a", {"spec": {"replicas": 4}})
        c.cluster.store.delete(deployments, TEAM, "serve-b", propagation="Background")
        c.cluster.store.create(deployments, deployment("serve-c", gpus=0),
                               manager="someone-else")
        c.cluster.store.delete(deployments, TEAM, "serve-d", propagation="Background")
        c.cluster.store.create(deployments, deployment("serve-d", gpus=0, replicas=2),
                               manager="someone-else")
        c.cluster.faults.expire_watches()

        await until(lambda: inf.relists == 1, what="the re-list after 410")
        await until(lambda: ("MODIFIED", "serve-a", 4) in seen
                    and ("ADDED", "serve-c", 1) in seen
                    and ("DELETED", "serve-b", 1) in seen
                    and ("ADDED", "serve-d", 2) in seen, what="the differences emitted")
        assert seen.index(("DELETED", "serve-d", 1)) < seen.index(("ADDED", "serve-d", 2))
        assert sorted(n for _ns, n in inf.store) == ["serve-a", "serve-c", "serve-d"]
        assert inf.store[(TEAM, "serve-d")]["metadata"]["uid"] != old_d
        await until(lambda: slim.relists == 1 and len(slim_seen) == len(seen),
                    what="the metadata-only informer's re-list")
        # The same events in the same order; a DELETED from the re-list carries no spec.
        assert [(e, n, None if e == "DELETED" else r) for e, n, r in seen] == slim_seen
        assert sorted(slim.store) == sorted(inf.store)
        assert all(set(o) == {"apiVersion", "kind", "metadata"} and "labels" not in
                   o["metadata"] for o in slim.store.values())
        # The adapter's own informers went through the same 410 and saw the changes to
        # objects it applied as drift.
        await until(lambda: {("serve-a", "spec.replicas"), ("serve-b", "(object)")} <= {
            (r.key[3], r.fields[0].path) for r in c.adapter.drift_log}, what="drift seen")
        tg.cancel_scope.cancel()


async def test_a_cut_watch_resumes_from_the_last_version_without_a_relist(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c, anyio.create_task_group() as tg:
        await c.adapter.apply([namespace(), *serving("serve-a", gpus=0)])
        seen: Seen = []
        inf = await _watching(c, tg, seen)
        lists = c.adapter.stats.calls["list"]
        seen.clear()

        assert c.cluster.faults.cut_watches() >= 1
        await c.cluster.edit("Deployment", TEAM, "serve-a", {"spec": {"replicas": 2}})
        await until(lambda: ("MODIFIED", "serve-a", 2) in seen, what="the edit seen")
        assert inf.relists == 0 and inf.resumes >= 1
        assert c.adapter.stats.calls["list"] == lists
        tg.cancel_scope.cancel()
