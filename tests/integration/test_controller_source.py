"""The Git side under trouble: a failed fetch, a force-push, a commit broken as a whole.

In each case the controller keeps serving the last good commit -- nothing pruned,
nothing moved -- and says why in the status conditions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import synced, until
from tests.fleetdocs import cluster
from tests.support.controller import (
    FAST,
    SERVE,
    condition,
    fast_settings,
    rolled_out,
    sandbox,
    serve_doc,
    where,
)


def deployment_replicas(box: Any, cluster_name: str) -> int:
    dep = next(o for o in box.sim.clusters[cluster_name].objects("Deployment")
               if o["metadata"]["name"].startswith("serve"))
    return int(dep["spec"]["replicas"])


async def test_a_failed_fetch_keeps_the_last_good_commit(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        moved = box.repo.path.with_name("fleet-gone")
        box.repo.path.rename(moved)
        await until(lambda: condition(m.status(), "SourceUnavailable") is not None, 10,
                    what="SourceUnavailable")
        cond = condition(m.status(), "SourceUnavailable")
        assert cond is not None and cond["reason"] == "FetchFailed"
        assert box.first_commit[:12] in cond["message"]
        # Nothing pruned on the strength of an unreachable repo.
        assert where(m.status()) == placed
        for wid, clusters in placed.items():
            for c in clusters:
                assert wid in workloads_on(box.sim, c)  # type: ignore[arg-type]
        moved.rename(box.repo.path)
        await until(lambda: condition(m.status(), "SourceUnavailable") is None, 10,
                    what="source back")


async def test_a_force_push_to_an_older_commit_is_refused(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        newer = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                                "serve x2")
        m.trigger_fetch()
        await until(lambda: synced(m.status(), newer) == (3, 3), 20, what="serve x2")
        serve_on = where(m.status())[SERVE][0]
        assert deployment_replicas(box, serve_on) == 2
        box.repo.force_to(box.first_commit)
        m.trigger_fetch()
        await until(lambda: condition(m.status(), "NonFastForwardRefused") is not None, 10,
                    what="NonFastForwardRefused")
        doc = m.status()
        assert doc["source"]["appliedCommit"] == newer
        assert doc["source"]["observedCommit"] == box.first_commit
        assert deployment_replicas(box, serve_on) == 2


async def test_a_commit_broken_as_a_whole_is_not_applied(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        broken = cluster("eu-par-1", "FR", (("h100-80gb", 32, 8),)).replace(
            "jurisdiction: FR", "jurisdiction: 12")
        bad = box.repo.commit({"clusters/eu-par-1.yaml": broken,
                               "workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                              "typo in a Cluster file")
        m.trigger_fetch()
        await until(lambda: condition(m.status(), "SourceUnavailable") is not None, 10,
                    what="SourceUnavailable")
        cond = condition(m.status(), "SourceUnavailable")
        assert cond is not None and cond["reason"] == "InvalidCommit"
        assert "eu-par-1" in cond["message"]
        doc = m.status()
        assert doc["source"]["observedCommit"] == bad
        assert doc["source"]["appliedCommit"] == box.first_commit
        assert where(doc) == placed
        assert deployment_replicas(box, placed[SERVE][0]) == 1
