"""Writes that copy only the paths they change answer as the deep copies they replaced,
and leave the stored objects they start from as they were."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.controllers import ControlPlane
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store

NS, PODS, JOBS = BY_KIND["Namespace"], BY_KIND["Pod"], BY_KIND["Job"]
CONDITION = st.fixed_dictionaries({"type": st.sampled_from(["PodScheduled", "Ready"]),
                                   "status": st.sampled_from(["True", "False"])})


def old_bind(pod: dict[str, Any], node: str, scheduled: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["spec"]["nodeName"] = node
    status = new.setdefault("status", {})
    status["conditions"] = [c for c in status.get("conditions") or []
                            if c.get("type") != "PodScheduled"] + [scheduled]
    return new


@settings(max_examples=100, deadline=None)
@given(st.lists(CONDITION, max_size=3), st.booleans(), CONDITION,
       st.sampled_from(["n1", "n2"]))
def test_a_bind_answers_as_the_deep_copy_did(
        conditions: list[dict[str, Any]], has_status: bool, scheduled: dict[str, Any],
        node: str) -> None:
    s = Store("t")
    s.create(NS, {"metadata": {"name": "a"}})
    pod = s.create(PODS, {"metadata": {"name": "p", "namespace": "a", "labels": {"x": "y"}},
                          "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    if has_status:
        pod = s.replace(PODS, {**pod, "status": {**pod["status"], "conditions": conditions}},
                        pod, subresource="status", check_rv=False)
    else:
        s.table(PODS)[("a", "p")] = pod = {k: v for k, v in pod.items() if k != "status"}
    before = json.dumps(pod)
    expected = old_bind(pod, node, scheduled)
    got = s.bind(PODS, pod, node, scheduled)
    expected["metadata"]["resourceVersion"] = got["metadata"]["resourceVersion"]
    assert json.dumps(got) == json.dumps(expected)
    assert json.dumps(pod) == before


def test_a_controller_pod_shares_nothing_with_its_owners_template() -> None:
    async def run() -> None:
        s = Store("t")
        cp = ControlPlane(s, job_seconds=60, pod_start_seconds=60)
        s.create(NS, {"metadata": {"name": "a"}})
        job = s.create(JOBS, {"metadata": {"name": "j", "namespace": "a"}, "spec": {
            "template": {"metadata": {"labels": {"x": "y"}}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}}}})
        before = json.dumps(job)
        cp.new_pod(job, "j-1", {"extra": "1"}, {"note": "n"}, hostname="j-0")
        pod = s.get(PODS, "a", "j-1")
        pod["spec"]["containers"][0]["image"] = "changed"
        pod["metadata"]["labels"]["x"] = "changed"
        assert json.dumps(job) == before
        cp.close()
    asyncio.run(run())
