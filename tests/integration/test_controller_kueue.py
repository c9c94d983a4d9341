"""Kueue's quota drives placement, through the real controller on simulated clusters.

Two clusters alike but for Kueue: `a-kueue` (Cluster `spec.stack.kueue: true`, so the
simulator runs Kueue there) and `b-plain`. Both have two free 8-GPU H100 nodes. With
room in a-kueue's ClusterQueue, ties break by name and the workload goes there; with
the ClusterQueue's quota all reserved by someone else's admitted Job, a-kueue's nodes
still have 8 free GPUs, but a Job sent there would wait in Kueue's queue, so the
controller sees no free capacity there and places the workload on b-plain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusters.sim import SimCluster
from clusters.sim.resources import BY_KIND
from clusters.sim.stacks.kueue import QUEUE_LABEL, custom
from clusters.sim.stacks.schemas import KUEUE_GROUP
from controllers.demo.sandbox import until
from tests.fleetdocs import POLICY, cluster, workload
from tests.support.controller import FAST, fast_settings, sandbox, where

TRAIN = "nlp-team/train"
PRODUCT = "NVIDIA-H100-80GB"


def files() -> dict[str, str | bytes]:
    return {
        "clusters/a-kueue.yaml": cluster("a-kueue", "DE", (("h100-80gb", 16, 8),))
        + "  stack: {kueue: true}\n",
        "clusters/b-plain.yaml": cluster("b-plain", "US", (("h100-80gb", 16, 8),)),
        "policies/residency.yaml": POLICY,
        "workloads/nlp-team/train.yaml": workload("train", data_class="public").replace(
            "  replicas: 2\n", "  replicas: 1\n"),
    }


def _create(c: SimCluster, kind: str, obj: dict[str, Any]) -> None:
    res = custom(c.crds, KUEUE_GROUP, kind)
    assert res is not None, f"{kind} not served on {c.name}"
    c.store.create(res, obj)


def queue_with(c: SimCluster, nominal: int) -> None:
    """Another team's Kueue setup: an h100 flavour and a ClusterQueue of `nominal`."""
    c.store.create(BY_KIND["Namespace"], {"metadata": {"name": "other-team"}})
    _create(c, "ResourceFlavor", {"metadata": {"name": "h100"},
                                  "spec": {"nodeLabels": {"nvidia.com/gpu.product": PRODUCT}}})
    _create(c, "ClusterQueue", {"metadata": {"name": "other-team"}, "spec": {
        "namespaceSelector": {}, "resourceGroups": [{
            "coveredResources": ["nvidia.com/gpu"],
            "flavors": [{"name": "h100", "resources": [
                {"name": "nvidia.com/gpu", "nominalQuota": nominal}]}]}]}})
    _create(c, "LocalQueue", {"metadata": {"name": "other-team", "namespace": "other-team"},
                              "spec": {"clusterQueue": "other-team"}})


def their_job(c: SimCluster, gpus: int) -> None:
    c.store.create(BY_KIND["Job"], {
        "metadata": {"name": "theirs", "namespace": "other-team",
                     "labels": {QUEUE_LABEL: "other-team"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "nodeSelector": {"nvidia.com/gpu.product": PRODUCT},
            "containers": [{"name": "main", "image": "other/trainer:v1",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}}})


def gpus_running(c: SimCluster) -> int:
    return sum(int(((ctr.get("resources") or {}).get("limits") or {}).get(
        "nvidia.com/gpu", 0)) for p in c.objects("Pod") if p["spec"].get("nodeName")
        for ctr in p["spec"]["containers"])


async def test_a_kueue_cluster_with_room_in_its_queue_is_chosen_and_gets_team_queues(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, files()) as box:
        assert box.sim is not None and box.sim.clusters["a-kueue"].spec.stack == {"kueue"}
        queue_with(box.sim.clusters["a-kueue"], 16)
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: bool(where(m.status()).get(TRAIN)), 20, what="train placed")
            assert where(m.status())[TRAIN] == ["a-kueue"]
            # aifleet applied the team's queue there (no TeamQuota: the cluster's GPUs)
            await until(lambda: bool(team_queue(box.sim.clusters["a-kueue"])), 10,
                        what="nlp-team ClusterQueue applied")
            kueue = box.sim.clusters["a-kueue"]
            assert team_queue(kueue) == {"h100-80gb": 16}
            # the rendered Job (queue-name, created suspended) is admitted by Kueue there
            await until(lambda: admitted(kueue) == ["nlp-team"], 10, what="admitted")
            [job] = kueue.objects("Job", "nlp-team")
            assert job["spec"]["suspend"] is False
            # someone raises the team's quota out of band: aifleet puts it back
            [cq] = [q for q in kueue.objects("ClusterQueue")
                    if q["metadata"]["name"] == "nlp-team"]
            groups = cq["spec"]["resourceGroups"]
            groups[-1]["flavors"][0]["resources"][0]["nominalQuota"] = 64
            await kueue.edit("ClusterQueue", None, "nlp-team",
                             {"spec": {"resourceGroups": groups}})
            assert team_queue(kueue) == {"h100-80gb": 64}
            await until(lambda: team_queue(kueue) == {"h100-80gb": 16}, 10,
                        what="drift corrected")


def admitted(c: SimCluster) -> list[str]:
    """The LocalQueues of the admitted Kueue Workloads of nlp-team."""
    return [w["spec"]["queueName"] for w in c.objects("Workload", "nlp-team")
            if any(x["type"] == "Admitted" and x["status"] == "True"
                   for x in (w.get("status") or {}).get("conditions") or [])]


def team_queue(c: SimCluster) -> dict[str, Any]:
    cqs = {q["metadata"]["name"]: q for q in c.objects("ClusterQueue")}
    if "nlp-team" not in cqs:
        return {}
    groups = cqs["nlp-team"]["spec"]["resourceGroups"]
    return {f["name"]: f["resources"][0]["nominalQuota"] for g in groups
            if g["coveredResources"] == ["nvidia.com/gpu"] for f in g["flavors"]}


async def test_a_kueue_cluster_whose_queue_is_full_is_not_chosen_despite_free_nodes(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path, files()) as box:
        assert box.sim is not None
        kueue = box.sim.clusters["a-kueue"]
        queue_with(kueue, 8)
        their_job(kueue, 8)
        await until(lambda: gpus_running(kueue) == 8, 10, what="their 8 GPUs admitted")
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: bool(where(m.status()).get(TRAIN)), 20, what="train placed")
            assert where(m.status())[TRAIN] == ["b-plain"]
            nodes = {n.name: (n.gpus - n.used, n.free) for n in m.adapters["a-kueue"].nodes()}
            # 8 GPUs free on the nodes, none in the quota: both figures are visible
            assert sum(free_nodes for free_nodes, _ in nodes.values()) == 8
            assert sum(free for _, free in nodes.values()) == 0


def queued(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [w for w in doc["workloads"] if w["id"] == TRAIN]
    return [r for r in (rows[0]["reasons"] if rows else []) if r.get("rule") == "Queued"]


async def test_a_workload_kueue_keeps_queued_says_so_with_kueues_message(
        tmp_path: Path) -> None:
    """Placed by the fleet, waiting in Kueue's queue on the cluster: the Kueue Workload
    of its Job (podSets carry our workload label, as Kueue copies the pod template)
    is not admitted, and `fleet status` shows why in Kueue's words. The Workload is
    made here by hand (a second Job of the team's, as Kueue would see it): it goes to
    the queue aifleet applied for the team (no TeamQuota here: the cluster's 16 GPUs),
    which the rendered `train` Job (queue-name label, created suspended, admitted by
    Kueue) already holds 8 of, and asks for 24."""
    async with sandbox(tmp_path, files()) as box:
        assert box.sim is not None
        kueue = box.sim.clusters["a-kueue"]
        queue_with(kueue, 16)
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: bool(where(m.status()).get(TRAIN)), 20, what="placed")
            assert where(m.status())[TRAIN] == ["a-kueue"]
            assert queued(m.status()) == []
            await until(lambda: bool(team_queue(kueue)) and bool(kueue.objects(
                "LocalQueue", "nlp-team")), 10, what="team queues applied")
            _create(kueue, "Workload", {
                "metadata": {"name": "job-train-abcde", "namespace": "nlp-team"},
                "spec": {"queueName": "nlp-team", "podSets": [{
                    "name": "main", "count": 1, "template": {
                        "metadata": {"labels": {"aifleet.dev/workload": "nlp-team.train"}},
                        "spec": {"containers": [{
                            "name": "main", "image": "x:1",
                            "resources": {"limits": {"nvidia.com/gpu": "24"}}}]}}}]}})
            await until(lambda: bool(queued(m.status())), 10, what="Queued reason")
            assert queued(m.status()) == [{
                "cluster": "a-kueue", "rule": "Queued",
                "message": "queued by Kueue in LocalQueue nlp-team: couldn't assign "
                           "flavors to pod set main: insufficient unused quota for "
                           "nvidia.com/gpu in flavor h100-80gb, 16 more needed"}]
