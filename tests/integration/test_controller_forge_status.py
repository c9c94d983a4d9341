"""After a merge, the controller reports each cluster's rollout on the commit.

One commit status per cluster, context `aifleet/<cluster>` (so clusters never overwrite
each other's status, the failure Flux users report in notification-controller #194):
`pending` when the commit is adopted, `success` once that cluster has it applied. The
forge (GitHub's REST API) is faked with respx, which intercepts only httpx; the
simulated clusters and the real controller run over real HTTP as in every e2e test.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from controllers.sandbox import synced, until
from tests.integration.test_controller_harness import (
    CLUSTERS,
    FAST,
    fast_settings,
    sandbox,
)

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
            await until(lambda: synced(m.status(), box.first_commit) == (3, 3), 20,
                        what="first rollout")
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
