"""Keeping it there: drift corrected; a cluster lost, its workloads failed over within
residency, and on its return the stale copies deleted before anything else runs there."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import jsonschema

from clusters.sim import SimFleet
from controllers.demo.faults import find_deployment, inject_replica_drift, workloads_on
from controllers.demo.sandbox import synced, until
from controllers.runtime.manager import Manager
from fleet.render import WORKLOAD_LABEL
from tests.specs import load_schema
from tests.support.controller import FAST, SERVE, TRAIN, fast_settings, rolled_out, sandbox, where


async def test_drift_by_another_field_manager_is_corrected(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        cluster, ns, name, replicas = find_deployment(box.sim)
        await inject_replica_drift(box.sim, cluster, ns, name, replicas + 3)
        await until(lambda: find_deployment(box.sim, (cluster, ns, name))[3]  # type: ignore[arg-type]
                    == replicas, 10, what="drift corrected")
        doc = m.status()
        jsonschema.validate(doc, load_schema("status.schema.json"))
        row = next(w for w in doc["workloads"] if w["id"] == SERVE)
        assert row["drift"][0]["cluster"] == cluster
        assert "spec.replicas" in row["drift"][0]["paths"]
        assert row["drift"][0]["manager"] == "kubectl-edit"
        assert row["drift"][0]["corrected"] is True
        assert f'aifleet_drift_corrections_total{{cluster="{cluster}"}} 1' in m.metrics_text()


async def test_failover_stays_in_jurisdiction_and_stale_copies_go_first(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        lost = where(m.status())[TRAIN][0]
        other_eu = ({"eu-fra-1", "eu-par-1"} - {lost}).pop()
        await box.sim.clusters[lost].down()

        def failed_over() -> bool:
            doc = m.status()
            row = next(w for w in doc["workloads"] if w["id"] == TRAIN)
            return where(doc)[TRAIN] == [other_eu] and row["sync"] == "Synced"

        await until(failed_over, 20, what="train failed over")
        doc = m.status()
        assert next(c for c in doc["clusters"] if c["name"] == lost)["health"] == "Unreachable"
        assert TRAIN in workloads_on(box.sim, other_eu)
        # eu-personal data never leaves the EU, even when the EU is short of a cluster.
        assert TRAIN not in workloads_on(box.sim, "us-east-1")
        moved = {w for w, cs in where(doc).items() if lost not in cs}
        await box.sim.clusters[lost].up()
        await until(lambda: not (workloads_on(box.sim, lost) & moved),  # type: ignore[arg-type]
                    20, what="stale copies removed")
        # Counted once the whole delete call returns (the Jobs and Deployments this
        # reads can be gone a moment before the workloads' other objects are).
        await until(lambda: m.reconciler.totals.stale_deleted >= 1, 10,
                    what="removed as stale copies")
        # Once the stale copy is gone, the gang runs in exactly one cluster.
        assert [c for c in ("eu-fra-1", "eu-par-1", "us-east-1")
                if TRAIN in workloads_on(box.sim, c)] == [other_eu]


async def test_a_cordoned_cluster_keeps_what_runs_and_gets_nothing_new(
        tmp_path: Path) -> None:
    from tests.fleetdocs import cluster, workload

    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        home = where(m.status())[TRAIN][0]
        jurisdiction = {"eu-fra-1": "DE", "eu-par-1": "FR"}[home]
        cordoned = cluster(home, jurisdiction, (("h100-80gb", 32, 8),)) + "  cordoned: true\n"
        commit = box.repo.commit({
            f"clusters/{home}.yaml": cordoned,
            # Another eu-personal gang that would fit on either EU cluster.
            "workloads/nlp-team/train2.yaml": workload("train2"),
        }, f"cordon {home}, add train2")
        m.trigger_fetch()
        await until(lambda: synced(m.status(), commit) == (4, 4), 20, what="train2 placed")
        placed = where(m.status())
        assert placed[TRAIN] == [home]  # keeps what runs
        assert home not in placed["nlp-team/train2"]  # gets nothing new
        assert TRAIN in workloads_on(box.sim, home)


async def test_a_restart_while_a_cluster_is_down_still_waits_out_the_grace(
        tmp_path: Path) -> None:
    # The down cluster cannot say what runs on it: the restarted controller takes that
    # from the last plan it saved, keeps the workload there through the grace, then
    # fails it over (without the saved plan it would move at once).
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        async with box.controller(fast_settings(box), adapter_options=FAST) as first:
            placed = await rolled_out(first, box)
        assert (tmp_path / "state" / "last-plan.json").exists()
        lost = placed[TRAIN][0]
        other_eu = ({"eu-fra-1", "eu-par-1"} - {lost}).pop()
        await box.sim.clusters[lost].down()
        grace = 3.0
        async with box.controller(fast_settings(box, failover_grace=grace),
                                  adapter_options=FAST) as second:
            await until(lambda: second.desired.plan is not None, 20, what="first plan")
            doc = second.status()
            assert next(c for c in doc["clusters"] if c["name"] == lost)["health"] == \
                "Unreachable"
            assert where(doc) == placed  # nothing moved: train waits on the down cluster
            await until(lambda: where(second.status())[TRAIN] == [other_eu], 20,
                        what="train failed over after the grace")
            _unreachable_for_the_grace(second, lost, grace)  # not at once


async def test_a_removed_cluster_is_drained_then_disconnected(tmp_path: Path) -> None:
    # Its Cluster file gone, nothing of ours may keep running there unmanaged: the gang
    # job moves (in the EU), its copy on the removed cluster is deleted, the deletion is
    # on the ledger, and the controller lets go of the cluster.
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True), adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        removed = where(m.status())[TRAIN][0]
        other_eu = ({"eu-fra-1", "eu-par-1"} - {removed}).pop()
        assert workloads_on(box.sim, removed)
        sim = box.sim
        # A slow drain: without holding the move back, the new copy would start first.
        sim.clusters[removed].faults.set_latency(1.0, prefix="/apis/batch/v1/namespaces/")
        twice: list[bool] = []

        async def watch() -> None:  # the gang must never run in two clusters at once
            while True:
                twice.append(TRAIN in workloads_on(sim, removed)
                             and TRAIN in workloads_on(sim, other_eu))
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            commit = box.repo.commit({f"clusters/{removed}.yaml": None}, "retire a cluster")
            m.trigger_fetch()
            await until(lambda: not workloads_on(sim, removed), 20,
                        what="removed cluster drained")
            await until(lambda: removed not in m.adapters, 10, what="removed cluster let go")
            await until(lambda: synced(m.status(), commit) == (3, 3), 20, what="rollout")
            tg.cancel_scope.cancel()
        assert len(twice) > 10 and not any(twice)
        doc = m.status()
        assert where(doc)[TRAIN] == [other_eu]
        assert removed not in {c["name"] for c in doc["clusters"]}
        assert not [c for c in doc["source"]["conditions"] if c["type"] == "ClusterRetiring"]
        assert m.retiring == set()

        def pruned() -> list[str]:
            try:
                return [r.entry.reason for r in read_ledger(box.repo.path)
                        if r.entry.event == "Pruned" and r.entry.cluster == removed
                        and r.entry.workload == TRAIN]
            except WorkloadsError:
                return []  # no ledger branch yet

        await until(lambda: bool(pruned()), 15, what="Pruned on the ledger")
        assert pruned() == ["its cluster was removed from the repo"]


async def test_a_removed_cluster_that_is_down_is_drained_when_it_answers(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        removed = where(m.status())[TRAIN][0]
        other_eu = ({"eu-fra-1", "eu-par-1"} - {removed}).pop()
        await box.sim.clusters[removed].down()
        await until(lambda: m.adapters[removed].health_state == "Unreachable", 10,
                    what="cluster unreachable")
        commit = box.repo.commit({f"clusters/{removed}.yaml": None}, "retire a cluster")
        m.trigger_fetch()
        # Gone from the repo: moved at once (no grace), and the SRE is told what is left.
        await until(lambda: where(m.status()).get(TRAIN) == [other_eu], 20, what="moved")
        retiring = [c for c in m.status()["source"]["conditions"]
                    if c["type"] == "ClusterRetiring"]
        assert len(retiring) == 1 and retiring[0]["message"].startswith(f"{removed}: ")
        assert "Unreachable" in retiring[0]["message"]
        await box.sim.clusters[removed].up()
        await until(lambda: not workloads_on(box.sim, removed), 20,  # type: ignore[arg-type]
                    what="drained once back")
        await until(lambda: removed not in m.adapters, 10, what="let go")
        await until(lambda: synced(m.status(), commit) == (3, 3), 20, what="rollout")
        # the gang job runs in exactly one cluster
        assert [c for c in ("eu-fra-1", "eu-par-1", "us-east-1")
                if TRAIN in workloads_on(box.sim, c)] == [other_eu]


async def test_a_restart_finishes_draining_a_removed_cluster(tmp_path: Path) -> None:
    # The removed Cluster file held the way to reach it: the state dir keeps it.
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        sim = box.sim
        async with box.controller(fast_settings(box), adapter_options=FAST) as first:
            await rolled_out(first, box)
            removed = where(first.status())[TRAIN][0]
            await sim.clusters[removed].down()
            await until(lambda: first.adapters[removed].health_state == "Unreachable", 10,
                        what="cluster unreachable")
            box.repo.commit({f"clusters/{removed}.yaml": None}, "retire a cluster")
            first.trigger_fetch()
            await until(lambda: removed in first.retiring, 10, what="retiring")
        saved = tmp_path / "state" / "retiring.json"
        assert removed in json.loads(saved.read_text())["clusters"]
        async with box.controller(fast_settings(box), adapter_options=FAST) as second:
            await until(lambda: removed in second.adapters, 10, what="reconnected")
            assert removed in second.retiring
            assert TRAIN in workloads_on(sim, removed)  # still there: down
            await sim.clusters[removed].up()
            await until(lambda: not workloads_on(sim, removed), 20, what="drained")
            await until(lambda: removed not in second.adapters, 10, what="let go")
        assert json.loads(saved.read_text())["clusters"] == {}


async def test_a_replica_with_an_empty_state_dir_reads_the_plan_from_the_home_cluster(
        tmp_path: Path) -> None:
    # A new pod (an emptyDir state dir) started during an outage: the placements the
    # last writer kept in the home cluster's ConfigMap still hold the gang through the
    # grace.
    from controllers.persist import sharedplan

    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        home = "us-east-1"  # eu-personal train never runs there
        first_settings = fast_settings(box, state_dir=tmp_path / "state-a",
                                       leader_cluster=home)
        async with box.controller(first_settings, adapter_options=FAST) as first:
            placed = await rolled_out(first, box)
            client = first.adapters[home].client
            shared = await sharedplan.read(client, first.home.namespace)
            assert shared is not None and shared[TRAIN][0].cluster == placed[TRAIN][0]
        lost = placed[TRAIN][0]
        await box.sim.clusters[lost].down()
        grace = 3.0
        second_settings = fast_settings(box, state_dir=tmp_path / "state-b",
                                        leader_cluster=home, failover_grace=grace)
        async with box.controller(second_settings, adapter_options=FAST) as second:
            await until(lambda: second.desired.plan is not None, 20, what="first plan")
            assert where(second.status()) == placed  # kept on the down cluster
            other_eu = ({"eu-fra-1", "eu-par-1"} - {lost}).pop()
            await until(lambda: where(second.status())[TRAIN] == [other_eu], 20,
                        what="failed over after the grace")
            _unreachable_for_the_grace(second, lost, grace)


def _unreachable_for_the_grace(m: Manager, cluster: str, grace: float) -> None:
    """The move came only once the controller's own clock (the one its failover decision
    reads) had seen the cluster Unreachable for the whole grace: ordering, not timing."""
    health = m.adapters[cluster].health
    assert health.unreachable_since is not None
    assert health.clock() - health.unreachable_since >= grace


def terminating_pods(sim: SimFleet, cluster: str) -> list[tuple[str, str]]:
    """(namespace, name) of our pods on `cluster` being deleted, not yet gone."""
    store = sim.clusters[cluster].store
    return [(o["metadata"]["namespace"], o["metadata"]["name"])
            for o in store.list(store.resources.lookup("Pod"))
            if (o["metadata"].get("labels") or {}).get(WORKLOAD_LABEL)
            and o["metadata"].get("deletionTimestamp")]


def retiring(m: Manager) -> list[str]:
    return [c["message"] for c in m.status()["source"]["conditions"]
            if c["type"] == "ClusterRetiring"]


def waits_for_pods_alone(messages: list[str]) -> bool:
    """One retiring cluster, its objects seen deleted, the gang's pods seen terminating."""
    return len(messages) == 1 and "deleting" not in messages[0] \
        and "waiting for the pods of" in messages[0] and TRAIN in messages[0]


async def test_a_drain_waiting_for_pods_to_terminate_says_so(tmp_path: Path) -> None:
    # The simulated kubelet in real time: a deleted Job's and Deployment's pods take
    # their 30 s grace period to terminate, and the drain waits for them (a gang waits
    # for them elsewhere). Status says so, not "deleting the 0 workloads".
    async with sandbox(tmp_path, time_scale=1.0) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await rolled_out(m, box)
        sim = box.sim
        assert sim is not None
        removed = where(m.status())[TRAIN][0]
        box.repo.commit({f"clusters/{removed}.yaml": None}, "retire a cluster")
        m.trigger_fetch()
        await until(lambda: not workloads_on(sim, removed)
                    and bool(terminating_pods(sim, removed)), 20,
                    what="objects deleted, pods terminating")
        # The store has them deleted at once; the controller sees it through its
        # informers a moment later (objects first or pods first): wait for what is
        # asserted, its own view, not for the store's.
        await until(lambda: waits_for_pods_alone(retiring(m)), 10,
                    what="status says the drain waits for the gang's pods, nothing else")
        [message] = retiring(m)
        assert message.startswith(f"{removed}: its Cluster file was removed; waiting for "
                                  "the pods of ") and TRAIN in message, message
        assert "deleting" not in message and message.endswith("(cluster Healthy)")
        assert removed in m.adapters  # not let go while they run
        # The kubelet is done with them (as `kubectl delete pod --force` would be).
        for ns, name in terminating_pods(sim, removed):
            sim.clusters[removed].store.delete(
                sim.clusters[removed].store.resources.lookup("Pod"), ns, name,
                grace_seconds=0)
        await until(lambda: removed not in m.adapters, 20, what="let go")
        assert retiring(m) == []
