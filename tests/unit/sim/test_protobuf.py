"""Kubernetes protobuf bodies (what kubectl's generators send) decoded to JSON objects."""

from __future__ import annotations

import pytest

from clusters.sim.errors import SimError
from clusters.sim.protobuf import MAGIC, decode


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f(n: int, v: int | str | bytes) -> bytes:
    if isinstance(v, int):
        return _varint(n << 3) + _varint(v)
    data = v.encode() if isinstance(v, str) else v
    return _varint(n << 3 | 2) + _varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + f(1, f(1, api_version) + f(2, kind)) + f(2, raw) + f(3, "") + f(4, "")


def meta(name: str, **labels: str) -> bytes:
    # Go's non-pointer fields are always on the wire, empty or not.
    out = f(1, name) + f(2, "") + f(3, "") + f(4, "") + f(5, "") + f(6, "") + f(7, 0) + f(8, b"")
    for k, v in labels.items():
        out += f(11, f(1, k) + f(2, v))
    return out


def test_a_namespace_decodes_without_the_empty_fields() -> None:
    body = envelope("v1", "Namespace", f(1, meta("foo")) + f(2, b"") + f(3, f(1, b"")))
    assert decode(body) == {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "foo"}}


def test_a_deployment_decodes_replicas_selector_template_and_ports() -> None:
    container = (f(1, "nginx") + f(2, "nginx:1.27") + f(5, "")
                 + f(6, f(1, "") + f(2, 0) + f(3, 80) + f(4, "") + f(5, ""))
                 + f(8, f(2, f(1, "nvidia.com/gpu") + f(2, f(1, "1")))) + f(16, 0))
    template = f(1, meta("", app="web")) + f(2, f(2, container) + f(3, ""))
    spec = f(1, 0) + f(2, f(1, f(1, "app") + f(2, "web"))) + f(3, template) + f(7, 0)
    obj = decode(envelope("apps/v1", "Deployment", f(1, meta("web")) + f(2, spec)))
    assert obj["spec"]["replicas"] == 0, "a pointer field keeps its zero"
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c == {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                 "resources": {"requests": {"nvidia.com/gpu": "1"}}}
    assert obj["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}


def test_a_service_decodes_int_or_string_target_ports() -> None:
    port = f(1, "http") + f(2, "TCP") + f(3, 80) + f(4, f(1, 1) + f(2, 0) + f(3, "web"))
    obj = decode(envelope("v1", "Service", f(1, meta("s")) + f(2, f(1, port) + f(4, "ClusterIP"))))
    assert obj["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80,
                                     "targetPort": "web"}]


@pytest.mark.parametrize(("body", "why"), [
    (b"{}", "magic"),
    (envelope("v1", "Binding", f(1, meta("x"))), "kind Binding"),
    (envelope("v1", "ConfigMap", f(1, meta("x")) + f(9, "surprise")), "field 9 of ConfigMap"),
], ids=["not-protobuf", "unknown-kind", "unknown-field-with-a-value"])
def test_what_cannot_be_decoded_is_a_415_naming_why(body: bytes, why: str) -> None:
    with pytest.raises(SimError) as err:
        decode(body)
    assert err.value.code == 415 and why in err.value.message


def test_delete_options_decode_with_preconditions_and_propagation() -> None:
    # What a typed client (helm uninstall, its Secret storage driver) sends on DELETE.
    raw = f(1, 0) + f(2, f(1, "uid-1") + f(2, "42")) + f(4, "Background") + f(5, "All")
    opts = decode(envelope("v1", "DeleteOptions", raw))
    assert opts["preconditions"] == {"uid": "uid-1", "resourceVersion": "42"}
    assert opts["propagationPolicy"] == "Background"
    assert opts["dryRun"] == ["All"]
    assert opts["gracePeriodSeconds"] == 0


def test_a_secret_decodes_its_bytes_as_base64_and_its_type() -> None:
    raw = (f(1, meta("sh.helm.release.v1.web.v1", owner="helm"))
           + f(2, f(1, "release") + f(2, b"\x1f\x8b\x00"))
           + f(3, "helm.sh/release.v1") + f(4, f(1, "note") + f(2, "plain")))
    secret = decode(envelope("v1", "Secret", raw))
    assert secret["data"] == {"release": "H4sA"}
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["stringData"] == {"note": "plain"}
    assert secret["metadata"]["labels"] == {"owner": "helm"}
