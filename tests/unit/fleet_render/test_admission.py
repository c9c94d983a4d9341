"""What a real API server would refuse of a workload's objects, said at the workload's
fields; and which rendered Job changes cannot be made in place."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.ids import ClusterName, Flavour
from fleet.placement.types import Assignment
from fleet.render import render
from fleet.render.admission import (
    is_dns1035_label,
    is_label_value,
    recreate_needed,
    workload_problems,
)
from tests.unit.fleet_placement.builders import cluster, workload

C = cluster("eu-fra-1", "DE", (("h100-80gb", 64, 8),))


@pytest.mark.parametrize(("value", "ok"), [
    ("triage", True), ("1st-triage", False), ("a" * 63, True), ("a" * 64, False),
    ("ends-", False), ("Upper", False)], ids=str)
def test_dns1035_label_as_apimachinery(value: str, ok: bool) -> None:
    assert is_dns1035_label(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("", True), ("a.b_c-D", True), ("x" * 63, True), ("x" * 64, False), ("-a", False),
    ("not valid!", False)], ids=str)
def test_label_value_as_apimachinery(value: str, ok: bool) -> None:
    assert is_label_value(value) is ok


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "1st-triage", "wtype": "inference"}, ("metadata", "name")),
    ({"placement": {"tolerations": [{"key": "m", "operator": "Exists",
                                     "effect": "NoSchedule", "tolerationSeconds": 5}]}},
     ("spec", "placement", "tolerations", 0, "tolerationSeconds")),
    ({"placement": {"tolerations": [{"key": "m", "value": "not valid!"}]}},
     ("spec", "placement", "tolerations", 0, "value")),
    ({"name": "t" * 62, "wtype": "training", "replicas": 10}, ("metadata", "name")),
], ids=["service-name", "toleration-seconds", "toleration-value", "indexed-hostname"])
def test_what_the_server_refuses_is_said_at_the_field(kwargs: dict[str, Any],
                                                      field: tuple[Any, ...]) -> None:
    name = kwargs.pop("name", "w")
    (problem,) = workload_problems(workload(name, **kwargs))
    assert problem.path == field


@pytest.mark.parametrize("kwargs", [
    {"name": "1st-batch", "wtype": "batch"},  # a Job's name may start with a digit
    {"name": "t" * 61, "wtype": "training", "replicas": 10},  # t...t-9: 63
    {"placement": {"tolerations": [
        {"key": "aifleet.dev/unreachable", "operator": "Exists", "tolerationSeconds": 60},
        {"key": "d", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
        {"key": "m", "value": "a.b_c"}]}},
], ids=["job-name-digit", "indexed-hostname-63", "good-tolerations"])
def test_what_the_server_takes_passes(kwargs: dict[str, Any]) -> None:
    name = kwargs.pop("name", "w")
    assert workload_problems(workload(name, **kwargs)) == []


def _job(wtype: str, replicas: int, image: str = "registry.internal/x:v1") -> Any:
    w = workload("j", wtype=wtype, replicas=replicas, count=8, image=image)
    objs = render(w, Assignment(ClusterName("eu-fra-1"), Flavour("h100-80gb"),
                                replicas, 8), C, "c1")
    (job,) = [o for o in objs if o["kind"] == "Job"]
    return job


@pytest.mark.parametrize(("before", "after", "why"), [
    (_job("batch", 2), _job("batch", 3), "spec.completions"),
    # Indexed completions could change with parallelism, but a training pod's
    # WORLD_SIZE is its replicas: the template changes with them
    (_job("training", 2), _job("training", 3), "spec.template"),
    (_job("training", 2), _job("training", 2, "registry.internal/x:v2"), "spec.template"),
    (_job("batch", 2), _job("training", 2), "spec.completionMode"),
    (_job("batch", 2), _job("batch", 2), None),
], ids=["nonindexed-completions", "training-resize-world-size", "template", "mode",
     "same"])
def test_recreate_needed_names_what_the_server_refuses_in_place(
        before: Any, after: Any, why: str | None) -> None:
    reason = recreate_needed(before, after)
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason
