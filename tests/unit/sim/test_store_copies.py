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


def _containers(value: Any) -> list[Any]:
    out: list[Any] = []
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            out.append(v)
            todo += v.values()
        elif isinstance(v, list):
            out.append(v)
            todo += v
    return out


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.sampled_from(["a", "b", "name", "c"]), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "spec", "extra"]), JSONISH, max_size=3),
       st.dictionaries(st.sampled_from(["x", "y"]), st.text(max_size=3), max_size=2))
def test_an_apply_that_creates_shares_nothing_with_the_body(
        parts: dict[str, Any], labels: dict[str, str]) -> None:
    """What lets the apply handler store `ssa.apply(None, body)` without a copy
    (`Store.create(fresh=True)`): the object it builds holds no dict or list of the
    body's, so a body the request still holds can never change what is stored."""
    from clusters.sim import ssa

    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "a", "labels": labels}, **parts}
    new = ssa.apply(None, body, "m", now="t", force=False)
    theirs = {id(c) for c in _containers(body)}
    assert not [c for c in _containers(new) if id(c) in theirs]
