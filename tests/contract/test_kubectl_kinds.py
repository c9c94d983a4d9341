"""kubectl v1.35 with the storage kinds: discovery, and the typed (protobuf) writes of
`kubectl create secret|serviceaccount` and `kubectl delete`.

Same server and binary as `test_kubectl.py` (its `kubectl` fixture): the simulator by
default, `FLEET_E2E_KUBECONFIG` for a real cluster.
"""

from __future__ import annotations

import base64

from tests.contract.test_kubectl import Kubectl, kubectl, pytestmark

__all__ = ["kubectl", "pytestmark"]


async def test_api_resources_lists_the_storage_kinds(kubectl: Kubectl) -> None:
    out = (await kubectl("api-resources", "-o", "name")).ok().out.split()
    for name in ("secrets", "serviceaccounts", "roles.rbac.authorization.k8s.io",
                 "clusterrolebindings.rbac.authorization.k8s.io",
                 "poddisruptionbudgets.policy", "networkpolicies.networking.k8s.io",
                 "ingresses.networking.k8s.io", "leases.coordination.k8s.io"):
        assert name in out, name


async def test_create_and_delete_secret_and_serviceaccount(kubectl: Kubectl,
                                                          ns: str) -> None:
    (await kubectl("-n", ns, "create", "secret", "generic", "creds",
                   "--from-literal=password=s3cret")).ok()
    secret = await kubectl.json("-n", ns, "get", "secret", "creds")
    assert secret["data"] == {"password": base64.b64encode(b"s3cret").decode()}
    assert secret["type"] == "Opaque"
    (await kubectl("-n", ns, "create", "serviceaccount", "robot")).ok()
    assert (await kubectl.json("-n", ns, "get", "sa", "robot"))["metadata"]["name"] == "robot"
    (await kubectl("-n", ns, "delete", "secret", "creds", "--wait=false")).ok()
    gone = await kubectl("-n", ns, "get", "secret", "creds")
    assert gone.rc != 0 and "NotFound" in gone.err


async def test_get_shows_each_storage_kinds_columns(kubectl: Kubectl, ns: str) -> None:
    (await kubectl("-n", ns, "create", "secret", "generic", "creds",
                   "--from-literal=a=1", "--from-literal=b=2")).ok()
    (await kubectl("-n", ns, "create", "serviceaccount", "robot")).ok()
    (await kubectl("-n", ns, "create", "rolebinding", "reader", "--clusterrole=view",
                   f"--serviceaccount={ns}:robot")).ok()
    secrets = (await kubectl("-n", ns, "get", "secret", "creds")).ok().out.splitlines()
    assert secrets[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert secrets[1].split()[:3] == ["creds", "Opaque", "2"]
    sa = (await kubectl("-n", ns, "get", "sa", "robot")).ok().out.splitlines()
    assert sa[0].split() == ["NAME", "SECRETS", "AGE"] and sa[1].split()[:2] == ["robot", "0"]
    rb = (await kubectl("-n", ns, "get", "rolebinding", "reader", "-o", "wide")).ok()
    lines = rb.out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert lines[1].split()[1] == "ClusterRole/view" and lines[1].split()[-1] == f"{ns}/robot"
