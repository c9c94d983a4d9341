"""Health against a simulated cluster: Healthy, Degraded on API errors, Unreachable once
nothing answers for the grace period and Healthy again when it is back; retries that
honour Retry-After and stop; a workload's Progressing -> Running -> Succeeded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from clusters.client import NAMESPACE, RetryPolicy
from clusters.errors import NotFound, ServerError, Throttled
from clusters.health import ClusterHealth, job_health
from tests.support.adapter import (
    FAST,
    TEAM,
    Connected,
    connected,
    deployment,
    job,
    namespace,
    stored,
    until,
)
from tests.support.clock import RecordingSleep

OPTIONS = dataclasses.replace(FAST, degraded_window=0.5)


async def _states_until(c: Connected, final: ClusterHealth, within: float = 10.0
                        ) -> list[ClusterHealth]:
    """The distinct health states seen, in order, until `final`."""
    seen: list[ClusterHealth] = [c.adapter.health_state]

    def look() -> bool:
        state = c.adapter.health_state
        if state != seen[-1]:
            seen.append(state)
        return state == final

    await until(look, within, what=f"health {final}")
    return seen


async def test_a_cluster_that_goes_down_becomes_unreachable_and_comes_back_healthy(
        tmp_path: Path) -> None:
    async with connected(tmp_path, options=OPTIONS) as c:
        await c.adapter.apply([namespace(), deployment("serve", gpus=0)])
        assert c.adapter.health_state == "Healthy"
        await c.cluster.down()
        states = await _states_until(c, "Unreachable")
        # Degraded first: Unreachable only once nothing answered for `unreachable_after`
        # on the tracker's own clock (the exact arithmetic: tests/unit/clusters).
        assert states == ["Healthy", "Degraded", "Unreachable"]
        h = c.adapter.health
        assert h.unreachable_since is not None and h.first_no_answer == h.unreachable_since
        assert h.clock() - h.unreachable_since >= OPTIONS.unreachable_after

        # A change made while we could not see it is caught once the cluster is back.
        await c.cluster.edit("Deployment", TEAM, "serve", {"spec": {"replicas": 3}})
        await c.cluster.up()
        states = await _states_until(c, "Healthy")
        assert states[0] == "Unreachable" and states[-1] == "Healthy"
        assert c.adapter.health.unreachable_since is None
        await until(lambda: stored(c, "Deployment")["serve"]["spec"]["replicas"] == 1,
                    within=15, what="drift made while down corrected after")


async def test_server_errors_make_a_cluster_degraded_for_a_while(tmp_path: Path) -> None:
    async with connected(tmp_path, options=OPTIONS) as c:
        c.cluster.faults.fail_next(2, 503, prefix="/version")
        states = await _states_until(c, "Degraded", within=5)
        assert states == ["Healthy", "Degraded"]
        await until(lambda: c.adapter.health_state == "Healthy", within=5,
                    what="healthy once the errors are older than the window")


@pytest.mark.parametrize(("retry_after", "cap", "expect"),
                         [(1, 30.0, 1.0), (5, 0.3, 0.3)],
                         ids=["honoured", "capped"])
async def test_429_waits_for_retry_after_then_succeeds(
        tmp_path: Path, retry_after: int, cap: float, expect: float) -> None:
    sleep = RecordingSleep()
    options = dataclasses.replace(
        OPTIONS, retry=RetryPolicy(attempts=3, base=0.02, cap=0.1, max_retry_after=cap),
        sleep=sleep)
    async with connected(tmp_path, options=options, run=False) as c:
        c.cluster.faults.fail_next(1, 429, retry_after=retry_after, prefix="/api/v1/namespaces")
        await c.adapter.client.request("GET", NAMESPACE.item("default"), verb="get")
        assert sleep.sleeps == [expect]  # one wait, as long as Retry-After (or the cap)
        assert c.adapter.stats.retries == 1
        assert c.adapter.stats.errors["TooManyRequests"] == 1


async def test_429_past_the_retry_budget_is_raised_with_its_retry_after(
        tmp_path: Path) -> None:
    options = dataclasses.replace(
        OPTIONS, retry=RetryPolicy(attempts=2, base=0.02, cap=0.1, max_retry_after=0.1))
    async with connected(tmp_path, options=options, run=False) as c:
        c.cluster.faults.fail_next(5, 429, retry_after=7, prefix="/api/v1/namespaces")
        with pytest.raises(Throttled) as e:
            await c.adapter.client.request("GET", NAMESPACE.item("default"), verb="get")
        assert e.value.retry_after == 7
        assert c.adapter.stats.calls["get"] == 2


async def test_retries_are_finite_and_permanent_errors_are_not_retried(
        tmp_path: Path) -> None:
    async with connected(tmp_path, options=OPTIONS, run=False) as c:
        c.cluster.faults.fail_next(10, 503, prefix="/api/v1/namespaces")
        with pytest.raises(ServerError):
            await c.adapter.client.request("GET", NAMESPACE.item("default"), verb="get")
        assert c.adapter.stats.calls["get"] == 3  # FAST: 3 attempts
        c.cluster.faults.clear()
        with pytest.raises(NotFound):
            await c.adapter.client.request("GET", NAMESPACE.item("nope"), verb="get")
        assert c.adapter.stats.calls["get"] == 4


async def test_a_job_goes_progressing_then_running_then_succeeded(tmp_path: Path) -> None:
    # Running lasts job_seconds: long enough to be seen on a busy machine.
    async with connected(tmp_path, options=OPTIONS, job_seconds=2.0) as c:
        await c.adapter.apply([namespace(), job("train", gpus=2, parallelism=2)])
        seen = [c.adapter.workload_health("nlp-team.train")]

        def look() -> bool:
            state = c.adapter.workload_health("nlp-team.train")
            if state != seen[-1]:
                seen.append(state)
            return state == "Succeeded"

        await until(look, 15, what="the Job succeeded")
        assert seen == ["Progressing", "Running", "Succeeded"]


async def test_a_deployment_goes_progressing_then_running(tmp_path: Path) -> None:
    async with connected(tmp_path, options=OPTIONS) as c:
        await c.adapter.apply([namespace(), deployment("serve", replicas=2, gpus=1)])
        assert c.adapter.workload_health("nlp-team.serve") == "Progressing"
        await until(lambda: c.adapter.workload_health("nlp-team.serve") == "Running",
                    what="the Deployment available")
        assert c.adapter.workload_health("nlp-team.missing") == "Unknown"


@pytest.mark.parametrize(("spec", "status", "health"), [
    ({"parallelism": 2, "completions": 2}, {"active": 1, "ready": 1}, "Progressing"),
    ({"parallelism": 2, "completions": 2}, {"active": 2, "ready": 2}, "Running"),
    ({"parallelism": 2, "completions": 2}, {"active": 1, "ready": 1, "succeeded": 1},
     "Running"),
    ({"parallelism": 4, "completions": 8}, {"active": 4, "ready": 3, "succeeded": 2},
     "Progressing"),
    ({"parallelism": 0, "completions": 1}, {}, "Progressing"),
], ids=["starting", "all-running", "one-of-two-done", "not-all-ready", "suspended"])
def test_a_job_with_some_pods_done_and_the_rest_running_is_running(
        spec: dict[str, int], status: dict[str, int], health: str) -> None:
    # Seen live above: the pods of a gang finish a few ms apart, and the Job must not
    # flicker back to Progressing between the first and the last.
    assert job_health({"spec": spec, "status": status}) == health


async def test_a_returning_cluster_is_listed_as_soon_as_it_answers(tmp_path: Path) -> None:
    # Found by the long chaos run (seed 4, steps 57-62): the controller restarted while a
    # cluster was down; its informers backed off to 5-10 s between attempts, so when the
    # cluster came back it stayed unlisted (not reconciled) for up to ten seconds while
    # a failed-over gang's stale copy ran there. The heartbeat wakes them when it answers.
    async with connected(tmp_path, run=False) as c:
        await c.cluster.down()
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.adapter.run)
            informers = c.adapter.informers()
            # Five failures in a row: each informer now waits at least 3.2 s (6.4 s with
            # jitter 0.5..1) before its next attempt.
            await until(lambda: min(i.resumes for i in informers) >= 5, 30,
                        what="informers backing off")
            assert not c.adapter.synced.is_set()
            await c.cluster.up()
            await until(c.adapter.synced.is_set, 2.5, what="listed once it answers")
            tg.cancel_scope.cancel()


async def test_no_heartbeat_while_other_requests_are_answered(tmp_path: Path) -> None:
    """The heartbeat is for a cluster nothing else talks to: while the controller's
    own requests are answered within a beat, no `GET /version` is sent; once they stop,
    the beats come again (the beat's own answer never counts as another's)."""
    now = [1000.0]

    def clock() -> float:  # moves only when the test says, yet never reads the same
        now[0] += 1e-9
        return now[0]

    options = dataclasses.replace(FAST, heartbeat_interval=0.05, clock=clock)
    async with connected(tmp_path, options=options) as c:
        a = c.adapter
        now[0] += 10  # the lists' answers are old: beats
        beats = a.heartbeats
        await until(lambda: a.heartbeats >= beats + 3, what="beats of an idle cluster")
        now[0] += 1
        beats, skipped = a.heartbeats, a.heartbeats_skipped
        for _ in range(500):  # the controller busy with the cluster: answers all along
            await a.client.request("GET", "/api/v1/nodes", verb="list")
            if a.heartbeats_skipped >= skipped + 3:
                break
            await anyio.sleep(0.01)
        assert a.heartbeats_skipped >= skipped + 3
        assert a.heartbeats <= beats + 1  # one may have been on its way already
        assert c.cluster.requests[("GET", "/version", False)] >= 3
        now[0] += 1  # the last answer is a beat old: beats again
        beats = a.heartbeats
        await until(lambda: a.heartbeats >= beats + 2, what="beats again")
        assert a.health_state == "Healthy"
