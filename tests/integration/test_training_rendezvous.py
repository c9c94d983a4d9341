"""Multi-node training that starts: a 4-replica training workload, rendered through the
contract and applied with server-side apply to a simulated cluster over real HTTP, runs
4 pods that each see a distinct NODE_RANK and the same MASTER_ADDR, and MASTER_ADDR
names the rank-0 pod's DNS name (its hostname, set by the Job controller from the
completion index, in the subdomain of the headless Service of the same name).

The env a pod would see is resolved from the stored pods as the kubelet does: a literal
`value`, or a `fieldRef` on the pod's own annotations (which the Job controller sets)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio

from clusters.adapter import ClusterAdapter
from clusters.kubeconfig import ConnectionSpec
from clusters.sim import SimClusterSpec, SimNode
from fleet.ids import ClusterName, Flavour
from fleet.models import Cluster, Stack
from fleet.placement.types import Assignment
from fleet.render import namespace, render
from tests.support.adapter import FAST, H100, NAME, TEAM, connected, until
from tests.unit.fleet_placement.builders import workload

_FIELD = re.compile(r"^metadata\.annotations\['([^']+)'\]$")


def four_nodes() -> SimClusterSpec:
    labels = {"nvidia.com/gpu.product": H100, "nvidia.com/gpu.count": "8"}
    return SimClusterSpec(NAME, tuple(SimNode(f"{NAME}-h100-{i}", H100, 8, labels)
                                      for i in range(4)))


def cluster() -> Cluster:
    return Cluster.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": NAME},
        "spec": {"region": "r", "jurisdiction": "DE", "gpus": [
            {"flavour": "h100-80gb", "product": H100, "count": 32, "perNode": 8}]}})


def env_seen(pod: dict[str, Any]) -> dict[str, str]:
    """The main container's env as the kubelet would resolve it for this pod."""
    annotations = pod["metadata"].get("annotations") or {}
    out: dict[str, str] = {}
    for e in pod["spec"]["containers"][0].get("env") or ():
        if "value" in e:
            out[e["name"]] = e["value"]
            continue
        path = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
        m = _FIELD.match(path)
        if m is not None and m.group(1) in annotations:
            out[e["name"]] = annotations[m.group(1)]
    return out


async def test_each_pod_of_a_4_replica_training_job_gets_its_own_rank_and_rank_0s_address(
        tmp_path: Path) -> None:
    w = workload("llama", TEAM, wtype="training", replicas=4, count=8,
                 command=["torchrun", "train.py"], env={"EPOCHS": "3"})
    objects = [namespace(TEAM), *render(
        w, Assignment(ClusterName(NAME), Flavour("h100-80gb"), 4, 8), cluster(), "c1")]
    async with connected(tmp_path, spec=four_nodes(), job_seconds=60.0) as c:
        result = await c.adapter.applier.apply(objects, prune=False)
        assert not result.failed, result.failed

        def pods() -> list[dict[str, Any]]:
            return [p for p in c.cluster.objects("Pod", TEAM)
                    if p["metadata"]["name"].startswith("llama-")]

        await until(lambda: len(pods()) == 4, what="4 pods")
        seen = [env_seen(p) for p in pods()]
        assert sorted(e["NODE_RANK"] for e in seen) == ["0", "1", "2", "3"]
        assert {e["MASTER_ADDR"] for e in seen} == {"llama-0.llama.nlp-team.svc"}
        assert {(e["WORLD_SIZE"], e["MASTER_PORT"], e["EPOCHS"]) for e in seen} == {
            ("4", "29500", "3")}
        # MASTER_ADDR resolves to rank 0: its hostname and subdomain are the first two
        # labels, and the subdomain is a headless Service selecting these pods
        rank0 = next(p for p, e in zip(pods(), seen, strict=True) if e["NODE_RANK"] == "0")
        host, sub, ns, _svc = seen[0]["MASTER_ADDR"].split(".")
        assert (rank0["spec"]["hostname"], rank0["spec"]["subdomain"], ns) == (
            host, sub, TEAM)
        (svc,) = [s for s in c.cluster.objects("Service", TEAM)
                  if s["metadata"]["name"] == sub]
        assert svc["spec"]["clusterIP"] == "None"
        labels = rank0["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())


async def test_on_a_dra_cluster_the_pods_claim_their_gpus_from_the_rendered_template(
        tmp_path: Path) -> None:
    # The simulated DRA driver and scheduler (resource.k8s.io/v1) allocate each pod's
    # claim from the ResourceSlices: the render's claim template, class and CEL
    # selector on the product are what a real DRA cluster would take.
    spec = four_nodes()
    dra_cluster = cluster().model_copy(update={"spec": cluster().spec.model_copy(
        update={"stack": Stack(gpu_allocation="dra")})})
    w = workload("llama", TEAM, wtype="training", replicas=2, count=8)
    objects = [namespace(TEAM), *render(
        w, Assignment(ClusterName(NAME), Flavour("h100-80gb"), 2, 8), dra_cluster, "c1")]
    assert [o["kind"] for o in objects] == [
        "Namespace", "ResourceClaimTemplate", "Service", "Job"]
    async with connected(tmp_path, spec=SimClusterSpec(spec.name, spec.nodes, dra=True),
                         job_seconds=60.0) as c:
        result = await c.adapter.applier.apply(objects, prune=False)
        assert not result.failed, result.failed

        def bound() -> list[str]:
            return sorted(p["spec"].get("nodeName") or "" for p in
                          c.cluster.objects("Pod", TEAM) if p["spec"].get("nodeName"))

        await until(lambda: len(bound()) == 2, what="2 pods bound through their claims")
        assert len(set(bound())) == 2  # 8 devices each: one node each
        claims = c.cluster.objects("ResourceClaim", TEAM)
        assert len(claims) == 2
        assert all(len(cl["status"]["allocation"]["devices"]["results"]) == 8 for cl in claims)
        # a restarted controller's adapter knows the claim template as its own (to prune)
        fresh = await ClusterAdapter.connect(
            ConnectionSpec(NAME, str(c.kubeconfig), NAME), FAST)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fresh.run)
                await fresh.wait_synced(10.0)
                assert ("resource.k8s.io/v1", "ResourceClaimTemplate", TEAM,
                        "llama-gpu") in fresh.applier.owned()
                tg.cancel_scope.cancel()
        finally:
            await fresh.aclose()


async def test_a_mig_flavour_on_a_dra_cluster_claims_slices_of_its_profile(
        tmp_path: Path) -> None:
    mig = "NVIDIA-A100-SXM4-80GB-MIG-3g.40gb"
    labels = {"nvidia.com/gpu.product": mig, "nvidia.com/gpu.count": "4"}
    spec = SimClusterSpec(NAME, (SimNode(f"{NAME}-mig-0", mig, 4, labels),
                                 *four_nodes().nodes[:1]), dra=True)
    c_model = Cluster.model_validate({
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": NAME},
        "spec": {"region": "r", "jurisdiction": "DE", "stack": {"gpuAllocation": "dra"},
                 "gpus": [{"flavour": "a100-3g-40gb", "product": mig, "count": 4,
                           "perNode": 4}]}})
    w = workload("eval", TEAM, wtype="batch", replicas=1, count=2,
                 flavours=("a100-3g-40gb",))
    objects = [namespace(TEAM), *render(
        w, Assignment(ClusterName(NAME), Flavour("a100-3g-40gb"), 1, 2), c_model, "c1")]
    rct = objects[1]
    assert rct["spec"]["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] == (
        "mig.nvidia.com")
    async with connected(tmp_path, spec=spec, job_seconds=60.0) as c:
        result = await c.adapter.applier.apply(objects, prune=False)
        assert not result.failed, result.failed
        await until(lambda: any(p["spec"].get("nodeName") for p in
                                c.cluster.objects("Pod", TEAM)), what="the pod bound")
        (pod,) = c.cluster.objects("Pod", TEAM)
        assert pod["spec"]["nodeName"] == f"{NAME}-mig-0"
        (claim,) = c.cluster.objects("ResourceClaim", TEAM)
        devices = [r["device"] for r in claim["status"]["allocation"]["devices"]["results"]]
        assert len(devices) == 2 and all("-mig-" in d for d in devices)


async def test_a_restarted_adapter_knows_our_jobset_as_its_own(tmp_path: Path) -> None:
    # On a JobSet cluster training renders as a JobSet; a restarted controller must list
    # it as owned, or a workload removed meanwhile would leave it running for ever.
    spec = four_nodes()
    js_cluster = cluster().model_copy(update={"spec": cluster().spec.model_copy(
        update={"stack": Stack(jobset=True)})})
    w = workload("llama", TEAM, wtype="training", replicas=2, count=8)
    objects = [namespace(TEAM), *render(
        w, Assignment(ClusterName(NAME), Flavour("h100-80gb"), 2, 8), js_cluster, "c1")]
    assert "JobSet" in [o["kind"] for o in objects]
    async with connected(tmp_path, spec=SimClusterSpec(spec.name, spec.nodes,
                                                       stack=frozenset({"jobset"})),
                         job_seconds=60.0) as c:
        result = await c.adapter.applier.apply(objects, prune=False)
        assert not result.failed, result.failed
        fresh = await ClusterAdapter.connect(
            ConnectionSpec(NAME, str(c.kubeconfig), NAME), FAST)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fresh.run)
                await fresh.wait_synced(10.0)
                assert ("jobset.x-k8s.io/v1alpha2", "JobSet", TEAM, "llama") in \
                    fresh.applier.owned()
                # and the removal of the workload prunes it (nothing else desired here)
                pruned = await fresh.applier.apply([namespace(TEAM)], prune=True,
                                                   allow_empty=True)
                assert ("jobset.x-k8s.io/v1alpha2", "JobSet", TEAM, "llama") in pruned.pruned
                tg.cancel_scope.cancel()
        finally:
            await fresh.aclose()
