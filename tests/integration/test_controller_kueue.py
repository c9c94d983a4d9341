"""Kueue's quota drives placement, through the real controller on simulated clusters.

Two clusters alike but for Kueue: `a-kueue` (Cluster `spec.stack.kueue: true`, so the
simulator runs Kueue there) and `b-plain`. With room in the team's ClusterQueue on
a-kueue, ties break by name and the workload goes there; with one team's queue full
(another Job holds its quota) while a-kueue's nodes and the other team's queue have
room, a Job of the first team sent there would wait in Kueue's queue, so the controller
places it on b-plain, and the other team's still lands on a-kueue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clusters.sim import SimCluster
from clusters.sim.resources import BY_KIND
from clusters.sim.stacks.kueue import QUEUE_LABEL, custom
from clusters.sim.stacks.schemas import KUEUE_GROUP
from controllers.demo.sandbox import until
from fleet.models import Cluster, TeamQuota
from fleet.render.kueue import kueue_objects
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


def admitted(c: SimCluster, team: str = "nlp-team") -> list[str]:
    """The LocalQueues of the admitted Kueue Workloads of a team."""
    return [w["spec"]["queueName"] for w in c.objects("Workload", team)
            if any(x["type"] == "Admitted" and x["status"] == "True"
                   for x in (w.get("status") or {}).get("conditions") or [])]


def team_queue(c: SimCluster) -> dict[str, Any]:
    cqs = {q["metadata"]["name"]: q for q in c.objects("ClusterQueue")}
    if "nlp-team" not in cqs:
        return {}
    groups = cqs["nlp-team"]["spec"]["resourceGroups"]
    return {f["name"]: f["resources"][0]["nominalQuota"] for g in groups
            if g["coveredResources"] == ["nvidia.com/gpu"] for f in g["flavors"]}


def quota(team: str, nominal: int) -> str:
    return ("apiVersion: aifleet.dev/v1alpha1\nkind: TeamQuota\n"
            f"metadata: {{name: {team}}}\n"
            f"spec:\n  gpus: [{{flavour: h100-80gb, nominal: {nominal}}}]\n")


def two_teams() -> dict[str, str | bytes]:
    """a-kueue (4 nodes of 8) and b-plain; nlp-team and vision-team with 16 GPUs of
    quota each (so each has a 16-GPU queue on a-kueue, as aifleet renders it); one
    8-GPU training Job each."""
    return {
        "clusters/a-kueue.yaml": cluster("a-kueue", "DE", (("h100-80gb", 32, 8),))
        + "  stack: {kueue: true}\n",
        "clusters/b-plain.yaml": cluster("b-plain", "US", (("h100-80gb", 32, 8),)),
        "policies/residency.yaml": POLICY,
        "policies/nlp-team-quota.yaml": quota("nlp-team", 16),
        "policies/vision-team-quota.yaml": quota("vision-team", 16),
        "workloads/nlp-team/train.yaml": workload("train", data_class="public").replace(
            "  replicas: 2\n", "  replicas: 1\n"),
        "workloads/vision-team/fit.yaml": workload(
            "fit", "vision-team", data_class="public").replace(
            "  replicas: 2\n", "  replicas: 1\n"),
        "workloads/nlp-team/eval.yaml": workload(
            "eval", data_class="public", extra_spec="    clusters: [a-kueue]\n").replace(
            "  replicas: 2\n", "  replicas: 1\n"),
    }


def team_queues_as_aifleet_renders_them(files: dict[str, str | bytes], c: SimCluster
                                        ) -> None:
    """The Kueue objects aifleet applies to a-kueue (fleet.render.kueue), made before
    the controller starts so another Job can fill nlp-team's queue first."""
    docs = {k: yaml.safe_load(v) for k, v in files.items()}
    quotas = {d["metadata"]["name"]: TeamQuota.model_validate(d)
              for k, d in docs.items() if k.endswith("-quota.yaml")}
    for team in sorted(quotas):
        c.store.create(BY_KIND["Namespace"], {"metadata": {"name": team}})
    cl = Cluster.model_validate(docs["clusters/a-kueue.yaml"])
    for obj in kueue_objects(cl, quotas, ()):
        _create(c, obj["kind"], obj)


def nlp_job_out_of_band(c: SimCluster, pods: int, gpus: int) -> None:
    """A Job of nlp-team's that aifleet does not manage, in the team's own queue."""
    c.store.create(BY_KIND["Job"], {
        "metadata": {"name": "adhoc", "namespace": "nlp-team",
                     "labels": {QUEUE_LABEL: "nlp-team"}},
        "spec": {"backoffLimit": 0, "parallelism": pods, "completions": pods,
                 "template": {"spec": {
            "restartPolicy": "Never", "nodeSelector": {"nvidia.com/gpu.product": PRODUCT},
            "containers": [{"name": "main", "image": "nlp/adhoc:v1",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}}})


async def test_one_teams_full_queue_sends_its_next_workload_elsewhere_the_other_lands(
        tmp_path: Path) -> None:
    """nlp-team's queue on a-kueue is full (its 16 GPUs held by a Job aifleet does not
    manage), while a-kueue's nodes still have 16 free and vision-team's queue, outside
    any cohort, has room: nlp-team/train goes to b-plain, vision-team/fit to a-kueue,
    where Kueue admits it, and nlp-team/eval, which may run on a-kueue only, is
    Pending with the queue's reason. The cluster-wide sum of quotas (before: 32 nominal, 16
    reserved) would have let both in, and nlp-team's Job would have waited there."""
    files = two_teams()
    async with sandbox(tmp_path, files) as box:
        assert box.sim is not None
        kueue = box.sim.clusters["a-kueue"]
        team_queues_as_aifleet_renders_them(files, kueue)
        nlp_job_out_of_band(kueue, 2, 8)
        await until(lambda: gpus_running(kueue) == 16, 10, what="the ad-hoc 16 GPUs admitted")
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: bool(where(m.status()).get("nlp-team/train"))
                        and bool(where(m.status()).get("vision-team/fit")), 20,
                        what="both placed")
            doc = m.status()
            assert where(doc) == {"nlp-team/train": ["b-plain"], "vision-team/fit": ["a-kueue"],
                                  "nlp-team/eval": []}
            # one that may only go to a-kueue waits, and says why in Kueue's terms
            [row] = [w for w in doc["workloads"] if w["id"] == "nlp-team/eval"]
            why = [r for r in row["reasons"] if r.get("cluster") == "a-kueue"]
            assert [(r["rule"], r["message"]) for r in why] == [(
                "KueueQueue", "Kueue ClusterQueue nlp-team: 0 h100-80gb GPUs of quota free "
                "(nominal 16), needs 8")]
            await until(lambda: admitted(kueue, "vision-team") == ["vision-team"], 10,
                        what="vision-team's Job admitted by Kueue")
            # what the controller read: the teams' queues, not one summed figure
            k = m.adapters["a-kueue"].kueue_queues()
            assert k is not None
            by_name = {q.name: q.flavours for q in k.cluster_queues}
            assert [f[2].nominal for f in by_name["nlp-team"]] == [16]
            assert [f[3] for f in by_name["nlp-team"]] == [16]  # held by others
            assert (("nlp-team", "nlp-team"), "nlp-team") in k.local_queues
            # the nodes themselves are not capped by any quota: 32 - 16 - fit's 8, once
            # fit's pod is bound (admission comes first)
            await until(lambda: sum(n.free for n in m.adapters["a-kueue"].nodes()) == 8,
                        10, what="fit's pod bound on a-kueue")


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
