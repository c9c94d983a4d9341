"""On a Kueue cluster aifleet creates Jobs suspended and Kueue unsuspends them when it
admits them (as a MultiKueue worker sees it). `spec.suspend` is create-only in the render
contract (`fleet.render.keys.CREATE_ONLY`): Kueue's `false` is not drift, a re-apply or
a change of intent does not suspend the admitted Job again. Against a simulated cluster
over real HTTP, with the simulator standing in for Kueue's write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet.ids import ClusterName, Flavour
from fleet.placement.types import Assignment
from fleet.render import namespace, render
from tests.support.adapter import H100, NAME, TEAM, connected, until
from tests.unit.fleet_placement.builders import workload
from tests.unit.fleet_render.test_render_ai import KUEUE

KEY = ("batch/v1", "Job", TEAM, "etl")


def objects(priority: int = 0) -> list[dict[str, Any]]:
    w = workload("etl", TEAM, wtype="batch", replicas=1, count=8, priority=priority)
    cluster = KUEUE.model_copy(update={"spec": KUEUE.spec.model_copy(update={"gpus": tuple(
        g.model_copy(update={"product": H100}) for g in KUEUE.spec.gpus)})})
    a = Assignment(ClusterName(NAME), Flavour("h100-80gb"), 1, 8)
    return [namespace(TEAM), *render(w, a, cluster, "c1")]


async def test_kueue_unsuspending_an_admitted_job_is_neither_drift_nor_undone(
        tmp_path: Path) -> None:
    async with connected(tmp_path, job_seconds=60.0) as c:
        applier = c.adapter.applier
        assert (await c.adapter.apply(objects())).ok
        await until(lambda: KEY in applier.live, what="the Job seen")
        assert applier.live[KEY]["spec"]["suspend"] is True  # created suspended
        assert applier.live[KEY]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == TEAM

        await c.cluster.edit("Job", TEAM, "etl", {"spec": {"suspend": False}},
                             manager="kueue")  # admitted
        await until(lambda: applier.live[KEY]["spec"].get("suspend") is False,
                    what="the admission seen")
        again = await c.adapter.apply(objects())
        assert again.ok and KEY in again.unchanged
        # a change of intent that the running Job takes in place (its intent hash)
        changed = await c.adapter.apply(objects(priority=5))
        assert changed.ok and KEY in changed.applied
        job = next(j for j in c.cluster.objects("Job", TEAM) if j["metadata"]["name"] == "etl")
        assert job["spec"]["suspend"] is False
        assert job["metadata"]["annotations"]["aifleet.dev/intent-hash"] == (
            objects(priority=5)[1]["metadata"]["annotations"]["aifleet.dev/intent-hash"])
        assert not c.adapter.drift_log and applier.corrections == 0
