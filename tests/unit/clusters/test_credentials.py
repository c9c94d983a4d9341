"""Credentials Secrets: what `secret_body` writes, `kubeconfig_of_secret` reads back;
a Secret that cannot be used is a `KubeconfigError` naming the Secret and key, never a
value; an exec stanza is refused unless exec plugins are allowed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from clusters.credentials import CREDENTIALS_LABEL, kubeconfig_of_secret, secret_body
from clusters.errors import ExecPluginRefused, KubeconfigError
from clusters.kubeconfig import ConnectionSpec, api_client, resolve, server_of

TOKEN = "tok-0123456789-very-secret"
CA = b"-----BEGIN CERTIFICATE-----\nnot-a-real-ca\n-----END CERTIFICATE-----\n"
SERVER = "https://10.0.0.1:6443"


def conn(name: str = "eu-fra-1") -> ConnectionSpec:
    return ConnectionSpec(name, None, name, secret=name)


def test_what_secret_body_writes_reads_back_as_a_kubeconfig() -> None:
    secret = secret_body("eu-fra-1", "aifleet-system", server=SERVER, ca=CA, token=TOKEN)
    assert secret["metadata"]["labels"][CREDENTIALS_LABEL] == "true"
    doc = kubeconfig_of_secret(secret, "eu-fra-1")
    assert server_of(conn(), inline=doc) == SERVER
    assert doc["users"][0]["user"] == {"token": TOKEN}
    ca = doc["clusters"][0]["cluster"]["certificate-authority-data"]
    assert base64.b64decode(ca) == CA


async def test_a_client_certificate_secret_gives_a_client_for_its_server() -> None:
    secret = secret_body("c", "ns", server="https://127.0.0.1:1", cert=b"x", key=b"y")
    doc = kubeconfig_of_secret(secret, "c")
    assert set(doc["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
    with pytest.raises(KubeconfigError) as info:  # not PEM: said, never quoted
        await api_client(conn("c"), inline=doc)
    assert "TLS material" in str(info.value)


def _with(data: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "eu-fra-1", "namespace": "aifleet-system",
                         "labels": {CREDENTIALS_LABEL: "true"} if labels is None else labels},
            "data": data}


def _b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


@pytest.mark.parametrize(("secret", "says"), [
    (_with({"server": _b64(SERVER), "token": _b64(TOKEN)}, labels={}), "is not labelled"),
    (_with({"token": _b64(TOKEN)}), "key 'server' is missing"),
    (_with({"server": _b64("ftp://" + TOKEN), "token": _b64(TOKEN)}), "not an http(s) URL"),
    (_with({"server": _b64(SERVER), "token": TOKEN + "!!"}), "key 'token' is not base64"),
    (_with({"server": _b64(SERVER), "ca.crt": _b64("x")}), "no credentials"),
    (_with({"server": _b64(SERVER), "exec": _b64("[" + TOKEN)}), "not an exec stanza"),
], ids=["unlabelled", "no-server", "bad-server", "not-base64", "no-credentials", "bad-exec"])
def test_an_unusable_secret_names_the_key_never_a_value(secret: dict[str, Any],
                                                        says: str) -> None:
    with pytest.raises(KubeconfigError) as info:
        kubeconfig_of_secret(secret, "eu-fra-1")
    message = str(info.value)
    assert says in message and "aifleet-system/eu-fra-1" in message
    assert TOKEN not in message and info.value.cluster == "eu-fra-1"


def test_an_exec_secret_is_refused_unless_exec_plugins_are_allowed() -> None:
    stanza = {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws",
              "args": ["eks", "get-token", "--cluster-name", "x"]}
    secret = _with({"server": _b64(SERVER), "exec": _b64(yaml.safe_dump(stanza))})
    doc = kubeconfig_of_secret(secret, "eu-fra-1")
    with pytest.raises(ExecPluginRefused, match="--allow-exec-plugins"):
        resolve(conn(), inline=doc)
    inline, context, _ = resolve(conn(), allow_exec=True, inline=doc)
    assert context == "eu-fra-1" and inline["users"][0]["user"]["exec"]["command"] == "aws"
