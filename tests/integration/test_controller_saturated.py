"""A busy controller never mistakes itself for a broken cluster, and keeps answering
(issue 22, items 0 and 2).

The real controller on simulated clusters over HTTP, its event loop saturated by a CPU
burner in the same loop (blocks longer than the heartbeat timeout and the Unreachable
threshold, again and again, while re-plans are asked for). The simulated clusters are
healthy all along (they share the loop, so they are starved too, as a controller's
heartbeats are when placement holds the CPU). Counted, not timed: no cluster is ever
reported Unreachable, no health change is seen, and no workload moves; the loop lag
was measured and the timeouts it caused were discounted.

The second test also plans a bigger fleet (a commit of 30 more workloads) while the
loop is saturated, and counts the answers to `GET /api/v1/status` and the signed
webhook made meanwhile: the saturation lasts until each has been answered a number
of times (no request may fail, none is timed), nothing placed before moves."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx

from controllers.demo.sandbox import until
from controllers.runtime.manager import Manager
from tests.fleetdocs import workload
from tests.support.controller import (
    FAST,
    fast_settings,
    rolled_out,
    sandbox,
    where,
)

BLOCK = 1.5
"""Seconds each burn holds the loop: past the heartbeat timeout (1 s) and past
`unreachable_after` (1 s) of the FAST options."""
BURNS = 8


def burn(seconds: float) -> None:
    """Hold the CPU and the loop, as a placement pass in the loop's thread would."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1


def placements(m: Manager) -> dict[str, tuple[str, ...]]:
    plan = m.desired.plan
    assert plan is not None
    return {str(w): tuple(sorted(f"{a.cluster}:{a.flavour}:{a.replicas}"
                                 for a in p.assignments))
            for w, p in plan.workloads.items()}


async def test_a_saturated_controller_reports_no_healthy_cluster_unreachable(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=2.0), adapter_options=FAST) as m:
        before = await rolled_out(m, box)
        await until(lambda: all(a.health_state == "Healthy" for a in m.adapters.values()),
                    10, what="all healthy")
        plans_seen = {tuple(sorted(placements(m).items()))}
        states_seen: set[str] = set()
        discounted_before = sum(a.health.busy for a in m.adapters.values())
        done = anyio.Event()

        async def watch() -> None:
            while not done.is_set():
                states_seen.update(a.health_state for a in m.adapters.values())
                plans_seen.add(tuple(sorted(placements(m).items())))
                await anyio.sleep(0.05)

        async def saturate() -> None:
            for i in range(BURNS):
                if i % 4 == 0:
                    m.trigger_plan()  # re-plans under load: each must keep everything
                burn(BLOCK)
                # One turn of the loop between burns: a request goes out, but its
                # answer (a few more turns) waits behind the next burn and times out.
                await anyio.lowlevel.checkpoint()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(saturate)
        assert m.loop_lag.worst() >= BLOCK * 0.9  # the load did starve the loop
        assert sum(a.health.busy for a in m.adapters.values()) > discounted_before
        assert "Unreachable" not in states_seen, states_seen
        assert not any(state == "Unreachable" for _, state in m.replans.health_changes)
        assert len(plans_seen) == 1  # nothing moved, in any plan made meanwhile
        assert await rolled_out(m, box) == before
        assert m.status()["controller"]["eventLoop"]["stalledSeconds"] > 0


ANSWERS = 5
"""Answers of each kind (status, webhook) to count while the loop is saturated."""
MAX_BURNS = 200
"""A bound, so a controller that stops answering fails the test rather than hangs it."""
SECRET = b"s3cret"


def extra_workloads(n: int) -> dict[str, str | bytes | None]:
    return {f"workloads/search-team/batch-{i}.yaml": workload(
        f"batch-{i}", "search-team", data_class="public").replace(
        "  replicas: 2\n", "  replicas: 1\n").replace("      count: 8\n", "      count: 1\n")
        for i in range(n)}


async def test_a_saturated_controller_keeps_answering_status_and_the_webhook(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, webhook_secret=SECRET.decode(), poll_interval=3600),
            adapter_options=FAST) as m:
        before = await rolled_out(m, box)
        await until(lambda: all(a.health_state == "Healthy" for a in m.adapters.values()),
                    10, what="all healthy")
        old = placements(m)
        # the rolled-out fleet's document published (reads are answered with the last
        # one published; on a saturated loop a newer one may not come in time)
        await m.status_cache.rebuild()
        states_seen: set[str] = set()
        moved: list[str] = []
        answered = {"status": 0, "webhook": 0}
        failed: list[str] = []
        burns = 0
        done = anyio.Event()
        commit = box.repo.commit(extra_workloads(30), "30 more workloads")
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()

        async def watch() -> None:
            while not done.is_set():
                states_seen.update(a.health_state for a in m.adapters.values())
                now = placements(m)
                moved.extend(w for w, where in old.items() if now.get(w) != where)
                await anyio.sleep(0.05)

        async def ask(c: httpx.AsyncClient, kind: str) -> None:
            while answered[kind] < ANSWERS and not done.is_set():
                if kind == "status":
                    r = await c.get("/api/v1/status")
                    ok = r.status_code == 200 and len(r.json()["workloads"]) >= 3
                else:
                    r = await c.post("/hooks/git", content=body,
                                     headers={"X-Hub-Signature-256": signature})
                    ok = r.status_code == 202
                if not ok:
                    failed.append(f"{kind}: {r.status_code}")
                answered[kind] += 1

        async def saturate() -> None:
            nonlocal burns
            while min(answered.values()) < ANSWERS and burns < MAX_BURNS:
                burn(BLOCK)
                burns += 1
                await anyio.sleep(0.05)  # the loop runs between burns, briefly
            done.set()

        # No client timeout: an answer is counted however late it comes.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}",
                                     timeout=None) as c, anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(ask, c, "status")
            tg.start_soon(ask, c, "webhook")
            tg.start_soon(saturate)
        assert answered == {"status": ANSWERS, "webhook": ANSWERS} and not failed
        assert burns < MAX_BURNS
        assert m.status_cache.served >= ANSWERS  # the pre-serialised document answered
        assert m.loop_lag.worst() >= BLOCK * 0.9  # the load did starve the loop
        assert "Unreachable" not in states_seen, states_seen
        assert not any(state == "Unreachable" for _, state in m.replans.health_changes)
        assert not moved, sorted(set(moved))
        # The webhook's fetch brought the commit; it is applied, and what ran still runs.
        await until(lambda: m.applied_commit == commit, 60, what="the new commit applied")
        assert {w: p for w, p in where(m.status()).items() if w in before} == before
        plan = m.desired.plan
        assert plan is not None and len(plan.workloads) == 33
