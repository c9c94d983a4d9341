"""After a merge, the controller reports each cluster's rollout on the commit.

One commit status per cluster, context `aifleet/<cluster>` (so clusters never overwrite
each other's status, the failure Flux users report in notification-controller #194):
`pending` when the commit is adopted, `success` once that cluster has it applied. The
forge (GitHub's REST API) is faked with respx, which intercepts only httpx; the
simulated clusters and the real controller run over real HTTP as in every e2e test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import respx

from controllers.demo.sandbox import synced, until
from tests.support.controller import CLUSTERS, FAST, fast_settings, rolled_out, sandbox

TOKEN = "ghp_do-not-print-this-token"
STATUSES = r"https://api\.github\.com/repos/acme/fleet/statuses/(?P<sha>[0-9a-f]{40})"


async def test_each_cluster_reports_its_rollout_as_its_own_commit_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with respx.mock(assert_all_mocked=True) as forge:
        route = forge.post(url__regex=STATUSES).mock(return_value=httpx.Response(201))

        def posted() -> list[tuple[str, str, str, str]]:
            out = []
            for call in route.calls:
                body = json.loads(call.request.content)
                sha = str(call.request.url).rsplit("/", 1)[1]
                out.append((sha, body["context"], body["state"], body["description"]))
            return out

        def succeeded() -> set[str]:
            return {ctx for _, ctx, state, _ in posted() if state == "success"}

        async with sandbox(tmp_path) as box, box.controller(
                fast_settings(box, forge="github", forge_repo="acme/fleet"),
                adapter_options=FAST) as m:
            await rolled_out(m, box)
            await until(lambda: succeeded() == {f"aifleet/{c}" for c in CLUSTERS}, 10,
                        what="a success status per cluster")

    calls = posted()
    assert {sha for sha, *_ in calls} == {box.first_commit}
    for cluster in CLUSTERS:
        mine = [(state, desc) for _, ctx, state, desc in calls if ctx == f"aifleet/{cluster}"]
        # pending first, then success; each posted once (statuses are posted on change only)
        assert mine[0] == ("pending", "rolling out")
        assert [s for s, _ in mine] == ["pending", "success"]
    on_fra = next(d for _, ctx, s, d in calls if ctx == "aifleet/eu-fra-1" and s == "success")
    assert on_fra.startswith("applied: ")
    request = route.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    out = capsys.readouterr()
    assert TOKEN not in out.out and TOKEN not in out.err


async def test_a_cluster_whose_apply_keeps_failing_reports_failure_until_it_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with respx.mock(assert_all_mocked=True) as forge:
        route = forge.post(url__regex=STATUSES).mock(return_value=httpx.Response(201))

        def posted() -> list[tuple[str, str, str]]:
            return [(json.loads(c.request.content)["context"],
                     json.loads(c.request.content)["state"],
                     json.loads(c.request.content)["description"]) for c in route.calls]

        def last_state() -> dict[str, str]:
            return {ctx: state for ctx, state, _ in posted()}

        async with sandbox(tmp_path) as box:
            assert box.sim is not None
            for sim_cluster in box.sim.clusters.values():  # every Job write fails
                sim_cluster.faults.fail_next(10_000, 503, prefix="/apis/batch/v1/namespaces/")
            async with box.controller(
                    fast_settings(box, forge="github", forge_repo="acme/fleet"),
                    adapter_options=FAST) as m:
                await until(lambda: "failure" in last_state().values(), 20,
                            what="a failure status for a cluster with a Job")
                failing = sorted(c for c, s in last_state().items() if s == "failure")
                for sim_cluster in box.sim.clusters.values():
                    sim_cluster.faults.clear()
                await until(lambda: synced(m.status(), box.first_commit) == (3, 3), 30,
                            what="rollout once the writes go through")
                await until(lambda: set(last_state().values()) == {"success"}, 10,
                            what="every cluster back to success")

    for ctx in failing:
        mine = [(s, d) for c, s, d in posted() if c == ctx]
        assert mine[0][0] == "pending" and mine[-1][0] == "success"
        failure = next(d for s, d in mine if s == "failure")
        assert re.match(r"apply failed: \d+ objects? failed; first: Job \S+/\S+: ", failure)
        assert len(failure) <= 140


def _failed_passes(m: object) -> dict[str, float]:
    """Failed reconciles per cluster, read from the controller's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(m.metrics_text()):  # type: ignore[attr-defined]
        for s in fam.samples:
            if s.name == "aifleet_reconciles_total" and s.labels["result"] == "failed":
                out[s.labels["cluster"]] = s.value
    return out


async def test_commit_status_turns_to_failure_only_after_three_failed_applies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with respx.mock(assert_all_mocked=True) as forge:
        route = forge.post(url__regex=STATUSES).mock(return_value=httpx.Response(201))

        def states() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for c in route.calls:
                body = json.loads(c.request.content)
                out.setdefault(body["context"].removeprefix("aifleet/"), []).append(
                    body["state"])
            return out

        seen: list[tuple[dict[str, list[str]], dict[str, float]]] = []

        def failed_somewhere() -> bool:
            posted, failed = states(), _failed_passes(m)  # posted first: counts only grow
            seen.append((posted, failed))
            return any("failure" in s for s in posted.values())

        async with sandbox(tmp_path) as box:
            assert box.sim is not None
            for sim_cluster in box.sim.clusters.values():  # every Job write fails
                sim_cluster.faults.fail_next(10_000, 503, prefix="/apis/batch/v1/namespaces/")
            async with box.controller(
                    fast_settings(box, forge="github", forge_repo="acme/fleet"),
                    adapter_options=FAST) as m:
                assert m.settings.status_failure_after == 3  # the default
                await until(failed_somewhere, 30, interval=0.02,
                            what="a failure status for a cluster with a Job")

    for posted, failed in seen:
        for cluster, st in posted.items():
            if "failure" in st:
                assert failed.get(cluster, 0) >= 3, (cluster, failed)
    assert any(0 < n < 3 for _, failed in seen for n in failed.values()), \
        "never saw a cluster with 1-2 failed applies (the test proves nothing)"
    # Before the failure: pending only, however many failed passes there were.
    for cluster, st in states().items():
        if "failure" in st:
            assert set(st[:st.index("failure")]) == {"pending"}, (cluster, st)
