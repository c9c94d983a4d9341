"""`GET /api/v1/status` from the status cache (issue 22): the same document as one
built whole, built again only when something changed, and then only the rows whose
inputs changed. The real controller on simulated clusters over HTTP; counted, not
timed (the cache's clock is injected, so its age limit never decides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx

from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from controllers.status.bodies import Body
from controllers.status.cache import StatusCache
from tests.fleetdocs import workload
from tests.support.controller import (
    FAST,
    SERVE,
    fast_settings,
    fleet_files,
    sandbox,
)

EXTRA = [f"extra-{i}" for i in range(6)]


def files() -> dict[str, str | bytes]:
    out = fleet_files()
    for name in EXTRA:  # small public inference workloads: more rows to keep or rebuild
        out[f"workloads/search-team/{name}.yaml"] = workload(
            name, "search-team", data_class="public", wtype="inference").replace(
            "  replicas: 2\n", "  replicas: 1\n").replace("      count: 8\n",
                                                          "      count: 1\n")
    return out


def without_clocks(doc: dict[str, Any]) -> dict[str, Any]:
    """The document less its loop-lag summary (a clock: it moves between two reads)."""
    return {k: v for k, v in doc.items() if k != "controller"}


class Frozen:
    """The cache's clock, still: only the fingerprint decides a rebuild."""

    def __call__(self) -> float:
        return 0.0


def settled_cache(m: Manager) -> StatusCache:
    cache = StatusCache(m, max_age=1.0, slice_rows=2, clock=Frozen())
    m.status_cache = cache
    return cache


async def stable(m: Manager, cache: StatusCache) -> Body:
    """Until two builds in a row rebuild no row (pods done starting); that body."""
    async def quiet() -> bool:
        before = cache.rows_built
        cache._fp = None  # look again
        await cache.body()
        return cache.rows_built == before
    for _ in range(100):
        if await quiet():
            return await cache.body()
        await anyio.sleep(0.2)
    raise AssertionError("the status document never settled")


async def rolled_out(box: Sandbox, m: Manager) -> tuple[StatusCache, Body]:
    """Once the first commit is Synced everywhere: the settled cache and its body."""
    n = 3 + len(EXTRA)
    await until(lambda: synced(m.status(), box.first_commit) == (n, n), 30,
                what="first rollout")
    cache = settled_cache(m)
    return cache, await stable(m, cache)


async def get_while_unchanged(c: httpx.AsyncClient, cache: StatusCache
                             ) -> tuple[Body, httpx.Response]:
    """The cache's document and a `GET /api/v1/status` answered while nothing in the
    fleet changed (no build in between; the controller runs on: a pod's status, an
    event may come between two reads, and then it is asked again)."""
    for _ in range(50):
        held, builds = await cache.body(), cache.builds
        got = await c.get("/api/v1/status")
        if cache.builds == builds:
            return held, got
    raise AssertionError("the fleet never held still for one GET")


async def read_twice_unchanged(c: httpx.AsyncClient, cache: StatusCache
                               ) -> tuple[httpx.Response, httpx.Response]:
    """A plain read, then a gzipped one that built and encoded nothing, the fleet as
    the first showed it (`cache.fresh()`; its clock is still, so the fingerprint
    decides). A suspension goes on to the clusters and changes the fleet after the
    action's answer: a change between the reads is waited out by reading again (a
    second read that always built would never do: the test fails)."""
    for _ in range(50):
        plain = await c.get("/api/v1/status", headers={"Accept-Encoding": "identity"})
        builds, encodes = cache.builds, cache.encodes
        zipped = await c.get("/api/v1/status")
        if (cache.builds, cache.encodes) == (builds, encodes) and cache.fresh():
            return plain, zipped
        await anyio.sleep(0.1)
    raise AssertionError("a second read of the same fleet built or encoded again")


async def served_row(cache: StatusCache, wid: str, key: str, value: str,
                     within: float = 20.0) -> dict[str, Any]:
    """`wid`'s row in the document served, once its `key` is `value` (a build under
    way when the change was made may publish the state before it first)."""
    row: dict[str, Any]
    for _ in range(int(within / 0.1)):
        doc = json.loads((await cache.body()).raw)
        for row in doc["workloads"]:  # (none in the document primed before the plan)
            if row["id"] == wid and row.get(key) == value:
                return row
        await anyio.sleep(0.1)
    raise AssertionError(f"{wid} never served with {key}={value!r}")


async def test_the_cached_status_is_the_whole_document_rebuilt_only_where_it_changed(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, files()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        cache, body = await rolled_out(box, m)
        assert without_clocks(json.loads(body.raw)) == without_clocks(m.status())
        # Nothing changed: the same bytes, no build.
        builds, served = cache.builds, cache.served_cached
        assert await cache.body() is body
        assert (cache.builds, cache.served_cached) == (builds, served + 1)
        # Over HTTP: the very bytes the cache holds.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            held, got = await get_while_unchanged(c, cache)
        assert got.status_code == 200 and got.content == held.raw
        # One workload suspended: one build (before the action's answer), and one row
        # built again, not all of them. Counted at the answer: the suspension goes on
        # to the clusters and may change the fleet again after it.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            builds, rows = cache.builds, cache.rows_built
            r = await c.post("/api/v1/suspend", json={"workload": SERVE})
            assert r.status_code == 200
            assert (cache.builds, cache.rows_built - rows) == (builds + 1, 1)
            after = (await c.get("/api/v1/status")).json()
        row = next(w for w in after["workloads"] if w["id"] == SERVE)
        assert "suspended" in row
        settled = await stable(m, cache)
        assert without_clocks(json.loads(settled.raw)) == without_clocks(m.status())


async def test_with_the_refresher_a_changed_fleet_is_answered_at_once_then_rebuilt(
        tmp_path: Path) -> None:
    """Once a document exists, no request waits for a build: one that finds it out of
    date gets it at once and the refresher builds the next; an operator action is
    answered once a document that shows it is published, so the next read shows it."""
    from dataclasses import replace

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await until(lambda: synced(m.status(), box.first_commit) == (3, 3), 30,
                    what="first rollout")
        cache = m.status_cache  # the manager's, with its refresher running
        first = await cache.body()
        key = next(k for k in m.live if k[1] == SERVE)
        m.live[key] = replace(m.live[key], sync="Failed", message="refused: test")
        builds, stale = cache.builds, cache.served_stale
        again = await cache.body()
        assert again is first  # out of date, answered at once with the last document
        assert (cache.builds, cache.served_stale) == (builds, stale + 1)
        # The refresher's next build shows it (one under way when it was made, started
        # before it, may be published first).
        assert (await served_row(cache, SERVE, "sync", "Failed"))["id"] == SERVE
        assert cache.builds > builds
        # A one-shot reader (`fleet status`) asks for the state of now: no-cache. (Its
        # wait is bounded, `fresh_wait`; not what is tested here, so not a clock here.)
        cache.fresh_wait = 60.0
        m.live[key] = replace(m.live[key], sync="Synced", message=None)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            now = (await c.get("/api/v1/status", headers={"Cache-Control": "no-cache"})
                   ).json()
        assert next(w for w in now["workloads"] if w["id"] == SERVE)["sync"] == "Synced"
        # An operator action: the next read shows it.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            assert (await c.post("/api/v1/suspend",
                                 json={"workload": SERVE})).status_code == 200
            doc = (await c.get("/api/v1/status")).json()
        assert "suspended" in next(w for w in doc["workloads"] if w["id"] == SERVE)


async def test_served_status_equals_a_fresh_build_over_random_changes(
        tmp_path: Path) -> None:
    """Property-style, through the real server: random sequences of changes (workloads
    suspended and resumed over the API, what a reconcile recorded for a suspended one
    rewritten); after each, the bytes served, gzipped or not, are the document built
    now, and asking again with nothing changed builds and encodes nothing."""
    import random
    from dataclasses import replace

    async with sandbox(tmp_path, files()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        cache, _ = await rolled_out(box, m)  # no refresher: each request asks the cache
        rng = random.Random(2222)
        suspended: set[str] = set()
        ids = sorted({str(k[1]) for k in m.live})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            for _ in range(12):
                wid = rng.choice(ids)
                if wid in suspended and rng.random() < 0.5:
                    key = next(k for k in m.live if str(k[1]) == wid)
                    m.live[key] = replace(m.live[key], sync=rng.choice(
                        ["Synced", "Failed", "Applying"]), health=rng.choice(
                        ["Healthy", "Progressing", "Degraded"]),
                        message=rng.choice([None, "refused: test"]))
                elif wid in suspended:
                    r = await c.post("/api/v1/resume", json={"workload": wid})
                    assert r.status_code == 200, r.text
                    suspended.discard(wid)
                else:
                    r = await c.post("/api/v1/suspend", json={"workload": wid})
                    assert r.status_code == 200, r.text
                    suspended.add(wid)
                plain, zipped = await read_twice_unchanged(c, cache)
                assert without_clocks(plain.json()) == without_clocks(m.status())
                assert zipped.headers["content-encoding"] == "gzip"
                assert zipped.content == plain.content  # the same bytes, gzipped once
        assert cache.builds >= 12  # every change was built (and served) anew


async def test_held_rows_keep_no_live_object_and_a_changed_one_is_built_again(
        tmp_path: Path) -> None:
    """Issue 22 (each replica <= 1 GiB): a held row's key names the live objects and
    pods it was built from by resourceVersion, not by holding them (the informers
    replace an object on every change, so a key holding objects kept every object's
    previous version alive until the row's next build). An out-of-band change to one
    Deployment gives it a new version: its row is built again, and the document served
    is the one built whole."""
    from controllers.demo.faults import find_deployment
    from fleet.render import WORKLOAD_LABEL, workload_id_of_label

    async with sandbox(tmp_path, files()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        cache, _ = await rolled_out(box, m)
        assert box.sim is not None
        cluster, ns, name, _ = find_deployment(box.sim)

        def held_by_controller() -> dict[str, Any]:
            return next(o for o in m.adapters[cluster].applier.live.values()
                        if o.get("kind") == "Deployment"
                        and (o["metadata"]["namespace"], o["metadata"]["name"]) == (ns, name))
        live = held_by_controller()
        wid = workload_id_of_label(live["metadata"]["labels"][WORKLOAD_LABEL])
        held = cache._rows
        assert held and all(not any(isinstance(x, dict) for x in r.key)
                            for r in held.values())
        before = held[wid].key
        assert live["metadata"]["resourceVersion"] in before
        await box.sim.clusters[cluster].edit(
            "Deployment", ns, name, {"metadata": {"annotations": {"team/note": "x"}}})
        await until(lambda: (held_by_controller()["metadata"].get("annotations") or {}).get(
            "team/note") == "x", 20, what="the edit seen by the controller")
        settled = await stable(m, cache)
        assert cache._rows[wid].key != before
        assert not any(isinstance(x, dict) for x in cache._rows[wid].key)
        assert without_clocks(json.loads(settled.raw)) == without_clocks(m.status())
