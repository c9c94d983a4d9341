"""Node Leases as the simulated kubelets write them (clusters/sim/leases.py)."""

from __future__ import annotations

from typing import Any

from clusters.sim import leases, nodes, objects, ssa
from clusters.sim.nodes import SimNode
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store


def _store(count: int) -> Store:
    store = Store("unit")
    store.create(BY_KIND["Namespace"], {"metadata": {"name": leases.NAMESPACE}})
    for i in range(count):
        node = nodes.node_object(SimNode(f"n{i}", "H100", 8), uid=objects.new_uid(),
                                 created=objects.now(), index=i)
        store.create(BY_KIND["Node"], node)
    return store


def _fields(obj: dict[str, Any]) -> Any:
    return [e["fieldsV1"] for e in obj["metadata"]["managedFields"]]


def test_every_lease_records_what_record_update_would_for_the_kubelet() -> None:
    store = _store(3)
    assert leases.NodeLeases(store).renew() == 3
    for node in store.list(BY_KIND["Node"]):
        lease = store.get(BY_KIND["Lease"], leases.NAMESPACE, node["metadata"]["name"])
        fresh = leases.lease_for(node, lease["spec"]["renewTime"])
        expected = ssa.record_update(None, fresh, leases.MANAGER, now="t")
        assert _fields(lease) == _fields(expected)
        assert lease["metadata"]["managedFields"][0]["manager"] == "kubelet"


def test_a_renewal_moves_renew_time_only_and_skips_nodes_that_are_not_ready() -> None:
    store = _store(2)
    kubelets = leases.NodeLeases(store)
    kubelets.renew()
    first = {o["metadata"]["name"]: o for o in store.list(BY_KIND["Lease"])}
    node = store.get(BY_KIND["Node"], "", "n1")
    down = {**node, "status": {**node["status"], "conditions": [
        {**c, "status": "Unknown"} if c["type"] == "Ready" else c
        for c in node["status"]["conditions"]]}}
    store.replace(BY_KIND["Node"], down, node, subresource="status", check_rv=False)
    assert kubelets.renew() == 1
    after = {o["metadata"]["name"]: o for o in store.list(BY_KIND["Lease"])}
    assert after["n1"] is first["n1"]
    assert after["n0"]["metadata"]["resourceVersion"] != first["n0"]["metadata"][
        "resourceVersion"]
    assert {k: v for k, v in after["n0"]["spec"].items() if k != "renewTime"} == \
        {k: v for k, v in first["n0"]["spec"].items() if k != "renewTime"}
    assert after["n0"]["metadata"]["managedFields"] == first["n0"]["metadata"]["managedFields"]
