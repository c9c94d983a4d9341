"""A first plan waits for the clusters the spec names that are not connected yet.

The 1,000 x 50,000 run made its first plan while the clusters were still being
connected: `wait_listed` looked only at connected adapters, found none waiting, and the
plan saw every cluster Unknown (every workload Pending). Unconnected clusters now count
as not listed, unless connecting them failed or they are refused twins (both said in
status), or they belong to a shard this replica does not hold.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.support.clustersets import bare_cluster_set


def test_clusters_not_connected_yet_count_as_not_listed(tmp_path: Path) -> None:
    cs = bare_cluster_set(tmp_path)
    assert cs.not_listed() == []  # what it said before: nothing to wait for
    assert cs.not_listed(["eu-1", "us-1", "us-2"]) == ["eu-1", "us-1", "us-2"]
    cs.connect_errors["eu-1"] = "no context eu-1 in the kubeconfig"
    cs.twins["us-1"] = ("us-1", "us-9")
    assert cs.not_listed(["eu-1", "us-1", "us-2"]) == ["us-2"]
    cs.wanted = lambda name: name != "us-2"  # another shard's: its holder lists it
    assert cs.not_listed(["eu-1", "us-1", "us-2"]) == []


async def test_wait_listed_waits_until_an_unconnected_cluster_is_accounted_for(
        tmp_path: Path) -> None:
    cs = bare_cluster_set(tmp_path)
    done, looked = anyio.Event(), anyio.Event()
    turns = 0

    def expected() -> list[str]:
        nonlocal turns
        turns += 1
        if turns >= 20:
            looked.set()
        return ["eu-1"]

    async def wait() -> None:
        await cs.wait_listed(tick=0, say_every=1e9, expected=expected)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        with anyio.fail_after(5):
            await looked.wait()
        assert not done.is_set()  # 20 looks, still waiting for eu-1
        cs.connect_errors["eu-1"] = "refused"  # could not connect: said in status
        with anyio.fail_after(5):
            await done.wait()
