"""The management cluster as an operator's kubectl reaches it: requests over HTTPS with
its bearer token, and members' credentials Secrets put there (what `fleet cluster add`
writes), for the tests of `--cluster-secrets`."""

from __future__ import annotations

import json
import ssl
from collections.abc import Collection

import httpx

from clusters.credentials import secret_body
from clusters.sim import tls
from controllers.demo.sandbox import Sandbox

NS = "aifleet-system"
"""The controller's namespace, where the credentials Secrets live."""


async def home_request(box: Sandbox, method: str, path: str, body: object = None,
                       content_type: str = "application/json",
                       ok: Collection[int] = (200, 201)) -> int:
    """One request to the management cluster (async: the simulator runs in this loop);
    its status, which must be one of `ok`."""
    assert box.home is not None
    home = box.home.clusters["home"]
    ctx = ssl.create_default_context(cadata=tls.make_tls().ca_pem.decode())
    async with httpx.AsyncClient(verify=ctx) as client:
        r = await client.request(method, f"{home.url}{path}",
                                 content=None if body is None else json.dumps(body),
                                 headers={"Authorization": f"Bearer {home.token}",
                                          "Content-Type": content_type})
    assert r.status_code in ok, r.text
    return r.status_code


async def create_namespace(box: Sandbox) -> None:
    await home_request(box, "POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        ok=(200, 201, 409))


async def put_credentials(box: Sandbox, cluster: str, *, token: bool = True) -> None:
    """The member's credentials Secret (its server, CA and, with `token`, its token)."""
    assert box.sim is not None
    member = box.sim.clusters[cluster]
    await home_request(box, "POST", f"/api/v1/namespaces/{NS}/secrets",
                       secret_body(cluster, NS, server=member.url, ca=tls.make_tls().ca_pem,
                                   token=member.token if token else None))
