"""Drift is a field we apply whose live value differs; additions by others are not drift."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.drift import diff


def deployment(image: str = "i:1", replicas: int = 2, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image,
                                 "env": [{"name": "A", "value": "1"}],
                                 "ports": [{"containerPort": 8000}],
                                 "resources": {"limits": {"nvidia.com/gpu": 1}}}
    container.update(extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "namespace": "t", "labels": {"a": "1"}},
            "spec": {"replicas": replicas,
                     "template": {"spec": {"containers": [container],
                                           "tolerations": [{"key": "m", "operator": "Exists"}]}}}}


def managed(manager: str, fields: dict[str, Any], op: str = "Update",
            time: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"manager": manager, "operation": op, "time": time, "fieldsType": "FieldsV1",
            "fieldsV1": fields}


def test_server_defaults_and_other_managers_fields_are_not_drift() -> None:
    live = deployment(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/x")
    live["metadata"]["labels"]["added-by-someone"] = "y"
    live["metadata"]["uid"] = "123"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] = "1"  # the quantity as a string
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    live["spec"]["template"]["spec"]["tolerations"][0]["effect"] = None
    live["status"] = {"replicas": 2}
    assert diff(deployment(), live) == []


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["spec"].update(replicas=5), "spec.replicas"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil"),
         "spec.template.spec.containers[name=app].image"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"][0].update(value="2"),
         "spec.template.spec.containers[name=app].env[name=A].value"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("env"),
         "spec.template.spec.containers[name=app].env"),
        (lambda d: d["spec"]["template"]["spec"].update(tolerations=[]),
         "spec.template.spec.tolerations"),
        (lambda d: d["metadata"]["labels"].pop("a"), "metadata.labels.a"),
    ],
    ids=["replicas", "image", "env-value", "env-removed", "atomic-list", "label-removed"],
)
def test_a_changed_field_we_apply_is_drift(mutate: Any, path: str) -> None:
    live = deployment()
    mutate(live)
    assert [d.path for d in diff(deployment(), live)] == [path]


def test_drift_names_the_manager_that_owns_the_field_now() -> None:
    live = deployment(image="evil")
    live["metadata"]["managedFields"] = [
        managed("aifleet", {"f:spec": {}}, "Apply"),
        managed("hpa-controller", {"f:spec": {"f:replicas": {}}}),
        managed("kubectl-edit", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"app"}': {"f:image": {}}}}}}}),
    ]
    [d] = diff(deployment(), live)
    assert (d.path, d.desired, d.live, d.manager) == (
        "spec.template.spec.containers[name=app].image", "i:1", "evil", "kubectl-edit")


def test_a_deleted_field_is_blamed_on_the_latest_other_writer() -> None:
    live = deployment()
    del live["metadata"]["labels"]["a"]
    live["metadata"]["managedFields"] = [
        managed("old-script", {}, time="2026-01-01T00:00:00Z"),
        managed("kubectl-edit", {}, time="2026-02-01T00:00:00Z"),
    ]
    assert [d.manager for d in diff(deployment(), live)] == ["kubectl-edit"]
