"""`fleet cluster add` and `fleet cluster list` from the outside (a subprocess each)
against a simulated management cluster and two members over HTTPS; what they created
is checked with the real kubectl v1.35.

The members' and the home's contexts live in two files given as `KUBECONFIG=a:b`
(merged as kubectl merges them), so finding `--context` proves the merge. The
simulator fills no ServiceAccount token and serves no `serviceaccounts/token`: the
command says so and falls back to the context's own token (checked here). No token
is ever printed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from clusters.credentials import CREDENTIALS_LABEL
from clusters.registration import RULES
from clusters.sim.nodes import SimClusterSpec
from clusters.sim.server import SimFleet, start_sim

ROOT = Path(__file__).resolve().parents[2]
FLEET = [sys.executable, "-m", "controllers.cli"]
NS = "aifleet-system"


def _kubectl() -> str | None:
    local = ROOT / ".cache" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


pytestmark = pytest.mark.skipif(_kubectl() is None, reason="kubectl not found: run "
                                "`make kubectl`")


async def run(args: list[str], kubeconfig: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLEET_SERVER",)}
    env["KUBECONFIG"] = kubeconfig
    p = await anyio.run_process(args, cwd=ROOT, env=env, check=False)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


async def kubectl_json(kubeconfig: Path, context: str, *args: str) -> Any:
    kubectl = _kubectl()
    assert kubectl is not None
    rc, out, err = await run([kubectl, "--kubeconfig", str(kubeconfig), "--context",
                              context, *args, "-o", "json"], str(kubeconfig))
    assert rc == 0, err
    return json.loads(out)


async def test_cluster_add_registers_members_and_list_reaches_them(tmp_path: Path) -> None:
    members: SimFleet = await start_sim([SimClusterSpec("m1", ()), SimClusterSpec("m2", ())])
    home: SimFleet = await start_sim([SimClusterSpec("mgmt", ())])
    try:
        mk = members.write_kubeconfig(tmp_path / "members.yaml")
        hk = home.write_kubeconfig(tmp_path / "home.yaml")
        merged = f"{hk}{os.pathsep}{tmp_path / 'absent.yaml'}{os.pathsep}{mk}"
        tokens = [c.token for c in (*members.clusters.values(), *home.clusters.values())]
        for name in ("m1", "m2"):
            rc, out, err = await run([*FLEET, "cluster", "add", name, "--context", name,
                                      "--home-context", "mgmt"], merged)
            assert rc == 0, err
            assert f"credentials Secret {NS}/{name} written" in out
            assert "no ServiceAccount token" in err and "own credentials" in err
            assert not any(t in out + err for t in tokens)

        # On the member: the account, its scoped role, the binding, the token Secret.
        sa = await kubectl_json(mk, "m1", "get", "serviceaccount", "aifleet-manager",
                                "-n", NS)
        assert sa["metadata"]["name"] == "aifleet-manager"
        role = await kubectl_json(mk, "m1", "get", "clusterrole", "aifleet-manager")
        assert role["rules"] == RULES
        assert not any("secrets" in r["resources"] or "*" in r["verbs"] for r in RULES)
        binding = await kubectl_json(mk, "m1", "get", "clusterrolebinding",
                                     "aifleet-manager")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aifleet-manager",
                                        "namespace": NS}]
        assert binding["roleRef"]["name"] == "aifleet-manager"

        # On the home: one labelled Secret per member, server and token of that member.
        listed = await kubectl_json(hk, "mgmt", "get", "secrets", "-n", NS, "-l",
                                    f"{CREDENTIALS_LABEL}=true")
        by_name = {s["metadata"]["name"]: s for s in listed["items"]}
        assert set(by_name) == {"m1", "m2"}
        for name in ("m1", "m2"):
            data = by_name[name]["data"]
            assert sorted(data) == ["ca.crt", "server", "token"]
            assert base64.b64decode(data["server"]).decode() == members.clusters[name].url
            assert base64.b64decode(data["token"]).decode() == members.clusters[name].token

        # Adding again converges (server-side apply), never fails on AlreadyExists.
        rc, _, err = await run([*FLEET, "cluster", "add", "m1", "--context", "m1",
                                "--home-context", "mgmt"], merged)
        assert rc == 0, err

        rc, out, err = await run([*FLEET, "cluster", "list", "--home-context", "mgmt",
                                  "-o", "json"], merged)
        assert rc == 0, err
        rows = {r["name"]: r for r in json.loads(out)["clusters"]}
        assert {n: r["state"] for n, r in rows.items()} == {"m1": "Reachable",
                                                              "m2": "Reachable"}
        # A member that goes away is listed Unreachable, with no credential in the line.
        await members.clusters["m2"].close()
        rc, out, err = await run([*FLEET, "cluster", "list", "--home-context", "mgmt"],
                                 merged)
        assert rc == 0, err
        line = next(ln for ln in out.splitlines() if ln.startswith("m2 "))
        assert "Unreachable" in line and not any(t in out for t in tokens)
    finally:
        await members.close()
        await home.close()


async def test_a_token_filled_in_by_the_member_is_the_one_stored(tmp_path: Path) -> None:
    """Where the member's token controller fills the ServiceAccount's token Secret (the
    simulator does not: the test writes `data.token` as it would, before the command),
    that token is stored, with no warning, instead of the kubeconfig's own."""
    members = await start_sim([SimClusterSpec("m1", ())])
    home = await start_sim([SimClusterSpec("mgmt", ())])
    try:
        mk = members.write_kubeconfig(tmp_path / "members.yaml")
        hk = home.write_kubeconfig(tmp_path / "home.yaml")
        sa_token = "sa-token-filled-by-the-token-controller"
        manifest = tmp_path / "token.json"
        manifest.write_text(json.dumps(
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": {"name": "aifleet-manager-token", "namespace": NS,
                          "annotations": {"kubernetes.io/service-account.name":
                                          "aifleet-manager"}},
             "data": {"token": base64.b64encode(sa_token.encode()).decode()}}))
        kubectl = _kubectl()
        assert kubectl is not None
        for args in (["create", "namespace", NS],
                     ["apply", "--server-side", "-f", str(manifest)]):
            rc, _, err = await run([kubectl, "--context", "m1", *args], str(mk))
            assert rc == 0, err
        rc, out, err = await run([*FLEET, "cluster", "add", "m1", "--context", "m1",
                                  "--kubeconfig", str(mk), "--home-kubeconfig", str(hk)],
                                 str(mk))
        assert rc == 0, err
        assert "(ServiceAccount token)" in out and "warning" not in err
        assert sa_token not in out + err
        secret = await kubectl_json(hk, "mgmt", "get", "secret", "m1", "-n", NS)
        assert base64.b64decode(secret["data"]["token"]).decode() == sa_token
    finally:
        await members.close()
        await home.close()
