"""Server-side apply against a simulated cluster: what is written, by whom, and what it
costs in API calls (zero for an unchanged object, one PATCH for a changed one)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from clusters.apply import FIELD_MANAGER, HASH_ANNOTATION, compare_resource_versions
from tests.support.adapter import (
    TEAM,
    Connected,
    connected,
    deployment,
    job,
    namespace,
    serving,
    stored,
    until,
)


def fleet_of(n: int, image: str = "registry.internal/serve:v1") -> list[dict[str, object]]:
    objs: list[dict[str, object]] = [namespace()]
    for i in range(n):
        objs += serving(f"serve-{i}", gpus=0, image=image)
    return objs


async def test_apply_creates_objects_with_our_field_manager_and_content_hash(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        result = await c.adapter.apply([*serving("serve"), namespace()])
        assert result.ok and len(result.applied) == 3
        # Namespaces first, whatever the order given (the rest would be refused).
        assert [k[1] for k in result.applied] == ["Namespace", "Service", "Deployment"]
        dep = stored(c, "Deployment")["serve"]
        managers = {m["manager"]: m["operation"] for m in dep["metadata"]["managedFields"]}
        assert managers[FIELD_MANAGER] == "Apply"
        assert len(dep["metadata"]["annotations"][HASH_ANNOTATION]) == 32
        assert result.api_calls == 3


async def test_a_no_op_reapply_costs_zero_api_calls(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        objs = fleet_of(10)
        first = await c.adapter.apply(objs)
        assert first.ok and len(first.applied) == 21
        await until(lambda: len(c.adapter.applier.live) >= 21, what="informers caught up")
        writes = c.adapter.stats.calls["apply"]
        again = await c.adapter.apply(objs)
        assert (len(again.unchanged), again.applied, again.api_calls) == (21, [], 0)
        assert c.adapter.stats.calls["apply"] == writes


async def test_a_no_op_reapply_costs_nothing_even_before_our_own_watch_events_arrive(
        tmp_path: Path) -> None:
    # Applied objects are remembered from the PATCH responses, not from the watch.
    async with connected(tmp_path, run=False) as c:
        objs = fleet_of(3)
        await c.adapter.apply(objs)
        again = await c.adapter.apply(objs)
        assert (len(again.unchanged), again.api_calls) == (7, 0)


async def test_changing_some_objects_costs_one_call_per_changed_object(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        objs = fleet_of(10)
        await c.adapter.apply(objs)
        changed = [*objs]
        for i in (1, 4, 7):
            changed[1 + 2 * i] = deployment(f"serve-{i}", gpus=0,
                                            image="registry.internal/serve:v2")
        result = await c.adapter.apply(changed)
        assert sorted(k[3] for k in result.applied) == ["serve-1", "serve-4", "serve-7"]
        assert result.api_calls == 3
        images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"]
                  for n, d in stored(c, "Deployment").items()}
        assert images["serve-4"].endswith(":v2") and images["serve-5"].endswith(":v1")


async def test_a_job_whose_template_changed_is_deleted_in_background_and_recreated(
        tmp_path: Path) -> None:
    async with connected(tmp_path, job_seconds=60) as c:
        await c.adapter.apply([namespace(), job("train", gpus=8)])
        await until(lambda: _running_pods(c) == 1, what="the first Job's pod running")
        old_uid = stored(c, "Job")["train"]["metadata"]["uid"]

        result = await c.adapter.apply(
            [namespace(), job("train", gpus=8, image="registry.internal/trainer:v2")])
        assert result.ok, result.failed
        assert [k[3] for k in result.recreated] == ["train"]
        # A refused PATCH (422), the DELETE, the PATCH that re-creates it.
        assert result.api_calls == 3
        new = stored(c, "Job")["train"]
        assert new["metadata"]["uid"] != old_uid
        # Background propagation: the old pods go too (an orphaning delete would leave
        # them holding their GPUs), and the new Job's pod runs the new image.
        await until(lambda: {p["spec"]["containers"][0]["image"]
                             for p in c.cluster.objects("Pod", TEAM)}
                    == {"registry.internal/trainer:v2"}, what="old pods collected")
        # The old Job's late events (its DELETED among them) are not drift of the new one.
        key = ("batch/v1", "Job", TEAM, "train")
        assert c.adapter.applier.live[key]["metadata"]["uid"] == new["metadata"]["uid"]
        assert c.adapter.drift_log == [] and c.adapter.applier.corrections == 0


async def test_late_events_of_a_recreated_job_are_never_drift(tmp_path: Path) -> None:
    """The race a loaded machine found: an event of the old Job (a status write of its
    controller, its deletion) reaching the applier while, or after, we replace it. It
    is replayed here in the worst order on purpose, with no clock involved."""
    async with connected(tmp_path, job_seconds=60) as c:
        await c.adapter.apply([namespace(), job("train", gpus=8)])
        await until(lambda: _running_pods(c) == 1, what="the first Job's pod running")
        key = ("batch/v1", "Job", TEAM, "train")
        await until(lambda: (c.adapter.applier.live.get(key) or {}).get("status", {})
                    .get("active") == 1, what="the informer saw the Job running")
        old = c.adapter.applier.live[key]
        # The old Job's status write, late: it arrives while our re-create is in flight.
        late = {**old, "metadata": {**old["metadata"], "resourceVersion":
                                    str(int(old["metadata"]["resourceVersion"]) + 1)},
                "status": {**old["status"], "ready": 1}}
        c.cluster.faults.set_latency(0.2, prefix=f"/apis/batch/v1/namespaces/{TEAM}/jobs")
        applies_before = c.adapter.stats.calls["apply"]
        task = asyncio.ensure_future(c.adapter.apply(
            [namespace(), job("train", gpus=8, image="registry.internal/trainer:v2")]))
        await until(lambda: key in c.adapter.applier._writing, what="the write in flight")
        c.adapter.applier.observe("MODIFIED", late)
        result = await task
        c.cluster.faults.clear()
        assert [k[3] for k in result.recreated] == ["train"]
        new = c.adapter.applier.live[key]
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        # After it: the old incarnation's late MODIFIED and DELETED, replayed again.
        c.adapter.applier.observe("MODIFIED", late)
        c.adapter.applier.observe("DELETED", {**late, "metadata": {
            **late["metadata"], "deletionTimestamp": None}})
        assert c.adapter.applier.live[key]["metadata"]["uid"] == new["metadata"]["uid"]
        await anyio.lowlevel.checkpoint()  # a heal task, had one been started, would be queued now
        assert c.adapter.drift_log == [] and c.adapter.applier.corrections == 0
        # One refused PATCH and the PATCH that re-creates it: no correcting PATCH.
        assert c.adapter.stats.calls["apply"] - applies_before == 2


def test_resource_versions_compare_as_kep_5504_says() -> None:
    assert compare_resource_versions("9", "10") == -1  # longer is newer
    assert compare_resource_versions("123", "122") == 1
    assert compare_resource_versions("77", "77") == 0
    for bad in ("", "0", "012", "12a", "-1", "١٢"):
        assert compare_resource_versions(bad, "5") is None
        assert compare_resource_versions("5", bad) is None


def _running_pods(c: Connected) -> int:
    return sum(1 for p in c.cluster.objects("Pod", TEAM)
               if p.get("status", {}).get("phase") == "Running")


@pytest.mark.parametrize("status", [500, 503], ids=["internal-error", "unavailable"])
async def test_an_apply_retries_server_errors_and_succeeds(tmp_path: Path,
                                                           status: int) -> None:
    async with connected(tmp_path) as c:
        c.cluster.faults.fail_next(2, status, prefix="/api/v1/namespaces/nlp-team")
        result = await c.adapter.apply([namespace(), *serving("serve")])
        assert result.ok, result.failed
        assert c.adapter.stats.retries >= 2
        assert "serve" in stored(c, "Service")


async def test_a_job_change_refused_for_another_reason_is_not_deleted(tmp_path: Path) -> None:
    async with connected(tmp_path, job_seconds=60) as c:
        await c.adapter.apply([namespace(), job("train", gpus=8)])
        uid = stored(c, "Job")["train"]["metadata"]["uid"]
        broken = job("train", gpus=8, image="")  # a template change, and invalid
        result = await c.adapter.apply([namespace(), broken])
        assert [k[3] for k, _e in result.failed] == ["train"] and result.recreated == []
        assert "Required value" in str(result.failed[0][1])
        assert stored(c, "Job")["train"]["metadata"]["uid"] == uid


async def test_workloads_are_applied_in_parallel_and_each_ones_objects_in_order(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace()])
        c.cluster.faults.set_latency(0.1, prefix=f"/api/v1/namespaces/{TEAM}/")
        c.cluster.faults.set_latency(0.1, prefix=f"/apis/apps/v1/namespaces/{TEAM}/")
        objs = [namespace()] + [o for i in range(8) for o in serving(f"s{i}", gpus=0)]
        result = await c.adapter.apply(objs)
        assert result.ok and len(result.applied) == 16
        assert c.cluster.faults.delayed_peak > 1  # one after another would hold one at a time
        services, deployments = stored(c, "Service"), stored(c, "Deployment")
        for i in range(8):
            rv = int(services[f"s{i}"]["metadata"]["resourceVersion"])
            assert rv < int(deployments[f"s{i}"]["metadata"]["resourceVersion"])
        # Deterministic results whatever finished first.
        assert [k[3] for k in result.applied] == [f"s{i}" for i in range(8) for _ in "sd"]
