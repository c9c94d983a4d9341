"""A write leaves the parts it shares with the stored object undecoded, for the kinds
whose stored objects decoding would not change: so it answers as decoding all did."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim import objects, patch
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store

NS = BY_KIND["Namespace"]
QUANTITIES = st.sampled_from([0.5, 8, "8", "1024Mi", "1e3", "100m", "0.25", "1Gi", "2k"])
# requests or limits (requests then default to them), so no request exceeds its limit
resources = st.dictionaries(st.sampled_from(["requests", "limits"]), st.dictionaries(
    st.sampled_from(["cpu", "memory"]), QUANTITIES, max_size=2), max_size=1)
pod_spec: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries({
    "restartPolicy": st.just("Never"),
    "containers": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "b"]), "image": st.just("i:1")},
        optional={"resources": resources}), min_size=1, max_size=2,
        unique_by=lambda c: str(c["name"]))}, optional={
    "overhead": st.dictionaries(st.sampled_from(["cpu"]), QUANTITIES, max_size=1),
    "volumes": st.just([{"name": "v", "emptyDir": {"sizeLimit": "1024Mi"}}])})
NOTES = st.dictionaries(st.sampled_from(["note", "sizeLimit"]),
                              st.sampled_from(["0.5", "1Gi"]), max_size=2)


def store() -> Store:
    s = Store("t")
    s.create(NS, {"metadata": {"name": "a"}})
    return s


def shaped(kind: str, spec: dict[str, Any], ann: dict[str, str]) -> dict[str, Any]:
    meta = {"name": "x", "namespace": "a", "annotations": ann}
    spec = {**spec, "restartPolicy": "Never" if kind in ("Pod", "Job") else "Always"}
    template = {"metadata": {"labels": {"app": "x"}}, "spec": spec}
    if kind == "Pod":
        return {"metadata": meta, "spec": spec}
    if kind == "Job":
        return {"metadata": meta, "spec": {"template": template}}
    return {"metadata": meta, "spec": {"selector": {"matchLabels": {"app": "x"}},
                                       "template": template}}


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["Pod", "Deployment", "ReplicaSet", "Job"]), pod_spec, NOTES, NOTES)
def test_decoding_a_stored_object_again_changes_nothing(
        kind: str, spec: dict[str, Any], ann: dict[str, str], later: dict[str, str]) -> None:
    """What skipping the stored parts rests on (`objects.DECODED_WHEN_STORED`)."""
    res = BY_KIND[kind]
    s = store()
    created = s.create(res, shaped(kind, spec, ann), manager="m")
    new = patch.merge_patch(created, {"metadata": {"annotations": later}})
    replaced = s.replace(res, new, created, manager="n")
    for obj in (created, replaced):
        again = copy.deepcopy(obj)
        objects.decode_quantities(res, again)
        assert json.dumps(again) == json.dumps(obj)


def counting(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    real = objects.canonical  # type: ignore[attr-defined]

    def canonical(text: object) -> str:
        calls.append(text)
        return real(text)
    monkeypatch.setattr(objects, "canonical", canonical)
    return calls


def test_a_status_write_decodes_only_the_status_it_brings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = store()
    res = BY_KIND["Pod"]
    pod = s.create(res, shaped("Pod", {"containers": [{"name": "a", "image": "i:1",
                                       "resources": {"requests": {"cpu": "0.5"}}}]}, {}))
    calls = counting(monkeypatch)
    out = s.replace(res, {**pod, "status": {"phase": "Running"}}, pod, manager="kubelet",
                    subresource="status", check_rv=False)
    assert calls == []
    assert out["status"]["phase"] == "Running"
    assert out["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"


def test_a_body_or_a_custom_kind_is_still_decoded_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = store()
    res = BY_KIND["Pod"]
    pod = s.create(res, shaped("Pod", {"containers": [{"name": "a", "image": "i:1",
                                       "resources": {"requests": {"cpu": "0.5"}}}]}, {}))
    calls = counting(monkeypatch)
    s.replace(res, {**copy.deepcopy(pod), "status": {"phase": "Running"}}, pod,
              manager="kubelet", subresource="status", check_rv=False)
    assert calls == ["500m"]
    calls.clear()
    objects.decode_quantities(BY_KIND["Secret"], {"spec": pod["spec"]}, pod)
    assert calls == ["500m"]
