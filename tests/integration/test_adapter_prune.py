"""Inventory and prune against a simulated cluster: only objects with our labels are
ours; prune deletes what is no longer desired, never the objects of a workload whose
apply failed in the same pass, and never a whole cluster at once unless the caller
says `allow_empty`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clusters.apply import MANAGED_BY
from clusters.client import DEPLOYMENT, SERVICE
from tests.support.adapter import TEAM, Connected, connected, deployment, namespace, serving, stored

A, B = serving("serve-a", gpus=0), serving("serve-b", gpus=0)


async def _create_out_of_band(c: Connected, obj: dict[str, Any]) -> None:
    """A write by someone else (a plain create, not our apply)."""
    rtype = DEPLOYMENT if obj["kind"] == "Deployment" else SERVICE
    await c.adapter.client.request("POST", rtype.collection(TEAM), verb="create", body=obj)


def _names(c: Connected, kind: str) -> list[str]:
    return sorted(stored(c, kind))


async def test_removing_a_workload_prunes_its_objects_and_keeps_the_rest(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), *A, *B])
        result = await c.adapter.apply([namespace(), *A])
        assert result.ok
        assert sorted((k[1], k[3]) for k in result.pruned) == [
            ("Deployment", "serve-b"), ("Service", "serve-b")]
        assert _names(c, "Deployment") == ["serve-a"]
        assert _names(c, "Service") == ["serve-a"]
        assert TEAM in {n["metadata"]["name"] for n in c.cluster.objects("Namespace")}


async def test_an_empty_desired_set_is_refused_unless_allow_empty(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), *A, *B])
        refused = await c.adapter.apply([namespace()])
        assert refused.pruned == [] and not refused.ok
        assert refused.prune_refused is not None and "allow_empty" in refused.prune_refused
        assert _names(c, "Deployment") == ["serve-a", "serve-b"]

        allowed = await c.adapter.apply([], allow_empty=True)
        assert allowed.ok and len(allowed.pruned) == 4
        assert _names(c, "Deployment") == [] and _names(c, "Service") == []
        # Namespaces are never pruned: they hold objects that are not ours.
        assert TEAM in {n["metadata"]["name"] for n in c.cluster.objects("Namespace")}


async def test_a_scoped_prune_touches_only_the_workloads_in_scope(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), *A, *B])
        result = await c.adapter.apply([], scope={f"{TEAM}.serve-b"})
        assert result.ok and {k[3] for k in result.pruned} == {"serve-b"}
        assert _names(c, "Deployment") == ["serve-a"]


def _unlabelled(name: str) -> dict[str, Any]:
    dep = deployment(name, gpus=0)
    del dep["metadata"]["labels"]
    return dep


def _workload_label_only(name: str) -> dict[str, Any]:
    dep = deployment(name, gpus=0)
    del dep["metadata"]["labels"][MANAGED_BY]
    return dep


@pytest.mark.parametrize("foreign", [_unlabelled, _workload_label_only],
                         ids=["no-labels", "workload-label-without-managed-by"])
@pytest.mark.parametrize("name", ["serve-c", "serve-b-old", "aifleet-serve"],
                         ids=["plain", "like-ours", "aifleet-prefix"])
async def test_objects_without_our_labels_are_never_pruned_whatever_their_name(
        tmp_path: Path, foreign: Any, name: str) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), *A, *B])
        await _create_out_of_band(c, foreign(name))
        pruned = await c.adapter.apply([namespace(), *A])
        assert {k[3] for k in pruned.pruned} == {"serve-b"}
        everything = await c.adapter.apply([], allow_empty=True)
        assert everything.ok and {k[3] for k in everything.pruned} == {"serve-a"}
        assert _names(c, "Deployment") == [name]
        assert all(k[3] != name for k in c.adapter.applier.owned())


async def test_a_failed_apply_holds_back_the_prune_of_its_own_workload_only(
        tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        await c.adapter.apply([namespace(), *A, *B])
        changed_a = serving("serve-a", gpus=0, image="registry.internal/serve:v2")[0]
        # serve-a's Deployment PATCH keeps failing past the retry budget; its Service is
        # no longer desired, and serve-b is gone from the set.
        c.cluster.faults.fail_next(
            10, 503, prefix=DEPLOYMENT.item("serve-a", TEAM))
        result = await c.adapter.apply([namespace(), changed_a])
        assert [k[3] for k, _e in result.failed] == ["serve-a"]
        # One failed workload does not freeze the cluster: serve-b is pruned, but
        # nothing of serve-a is, while its apply fails.
        assert sorted((k[1], k[3]) for k in result.pruned) == [
            ("Deployment", "serve-b"), ("Service", "serve-b")]
        assert _names(c, "Deployment") == ["serve-a"]
        assert _names(c, "Service") == ["serve-a"]

        c.cluster.faults.clear()
        result = await c.adapter.apply([namespace(), changed_a])
        assert result.ok and [(k[1], k[3]) for k in result.pruned] == [("Service", "serve-a")]


async def test_a_large_prune_deletes_in_parallel(tmp_path: Path) -> None:
    async with connected(tmp_path) as c:
        many = [o for i in range(8) for o in serving(f"s{i}", gpus=0)]
        await c.adapter.apply([namespace(), *A, *many])
        c.cluster.faults.set_latency(0.1, prefix=f"/api/v1/namespaces/{TEAM}/")
        c.cluster.faults.set_latency(0.1, prefix=f"/apis/apps/v1/namespaces/{TEAM}/")
        result = await c.adapter.apply([namespace(), *A])
        assert result.ok and len(result.pruned) == 16
        assert c.cluster.faults.delayed_peak > 1  # one after another would hold one at a time
        assert _names(c, "Deployment") == ["serve-a"]


async def test_a_kueue_clusters_queues_do_not_make_an_empty_render_look_full(
        tmp_path: Path) -> None:
    """On a Kueue cluster every render holds the team queues (fleet.render.kueue): a
    render with no workload object is still the suspicious empty one, refused; the
    queues themselves are applied, owned and kept."""
    from dataclasses import replace

    import yaml

    from fleet.models import Cluster
    from fleet.render.kueue import local_queue, resource_flavours
    from tests.fleetdocs import cluster as cluster_file
    from tests.support.adapter import adapter_spec

    spec = replace(adapter_spec(), stack=frozenset({"kueue"}))
    model = Cluster.model_validate(yaml.safe_load(cluster_file("c") + "  stack: {kueue: true}\n"))
    queues = [*resource_flavours(model), local_queue(TEAM)]
    async with connected(tmp_path, spec=spec) as c:
        await c.adapter.apply([namespace(), *queues, *A, *B])
        assert _names(c, "LocalQueue") == [TEAM]
        refused = await c.adapter.apply([namespace(), *queues])
        assert refused.prune_refused is not None and refused.pruned == []
        assert _names(c, "Deployment") == ["serve-a", "serve-b"]
        kept = await c.adapter.apply([namespace(), *queues, *A])
        assert [k[3] for k in kept.pruned] == ["serve-b", "serve-b"]
        assert _names(c, "LocalQueue") == [TEAM]
