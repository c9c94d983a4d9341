"""An Invalid workload keeps its last good state: where it last ran, as it ran.

Found by the long chaos run (seed 1, step 75): a workload whose file broke keeps its
live copy (invariant: never pruned for a typo); its cluster was then relabelled to a
jurisdiction its data class does not allow, and the protected copy went on running
there. Through the real controller: the copy is kept while its file is broken, and
deleted once the cluster it runs on is in a jurisdiction the policy forbids for it."""

from __future__ import annotations

from pathlib import Path

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import until
from tests.fleetdocs import cluster
from tests.support.controller import CLUSTERS, FAST, TRAIN, fast_settings, rolled_out, sandbox


async def test_an_invalid_workloads_copy_goes_where_residency_now_forbids_it(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        assert box.sim is not None
        placed = await rolled_out(m, box)
        here = placed[TRAIN][0]  # eu-personal: in DE or FR
        box.repo.commit({"workloads/nlp-team/train.yaml": "kind: Workload\nspec: [broken\n"},
                        "a typo")
        m.trigger_fetch()
        await until(lambda: any(w["id"] == TRAIN and w["status"] == "Invalid"
                                for w in m.status()["workloads"]), 20, what="Invalid")
        assert TRAIN in workloads_on(box.sim, here)  # kept: its last good state
        relabelled = box.repo.commit(
            {f"clusters/{here}.yaml": cluster(here, "US", (("h100-80gb", 32, 8),))},
            f"{here} is in the US now")
        m.trigger_fetch()
        await until(lambda: m.status()["source"]["appliedCommit"] == relabelled, 20,
                    what="relabel applied")
        await until(lambda: TRAIN not in workloads_on(box.sim, here), 20,
                    what="the copy deleted where residency forbids it")
        assert CLUSTERS[here] != "US"


async def test_an_invalid_gangs_stale_copy_goes_when_its_cluster_returns(
        tmp_path: Path) -> None:
    # Found by the long chaos run (seed 1, steps 145-159): a gang failed over while its
    # cluster was down, then its file broke; when the cluster came back its old copy
    # was "the last good state" too, and the gang ran twice for as long as it stayed
    # Invalid. Its last good state is its last placement: the copy elsewhere goes.
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        assert box.sim is not None
        placed = await rolled_out(m, box)
        lost = placed[TRAIN][0]
        other = ({"eu-fra-1", "eu-par-1"} - {lost}).pop()
        await box.sim.clusters[lost].down()
        await until(lambda: TRAIN in workloads_on(box.sim, other), 30, what="failed over")
        box.repo.commit({"workloads/nlp-team/train.yaml": "kind: Workload\nspec: [broken\n"},
                        "a typo")
        m.trigger_fetch()
        await until(lambda: any(w["id"] == TRAIN and w["status"] == "Invalid"
                                for w in m.status()["workloads"]), 20, what="Invalid")
        await box.sim.clusters[lost].up()
        await until(lambda: TRAIN not in workloads_on(box.sim, lost), 30,
                    what="the stale copy deleted on the returned cluster")
        assert TRAIN in workloads_on(box.sim, other)  # its last good state stays
