"""`fleet cluster add`'s fallback: a kubeconfig context's own credentials, read as a
kubeconfig means them (files relative to its folder, `-data` decoded); a plugin user
cannot be stored; the credentials never show in a repr."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from clusters.errors import KubeconfigError
from clusters.registration import RULES, kubeconfig_credentials, member_objects

TOKEN = "kubeconfig-own-token-123"


def _doc(user: dict[str, object], cluster: dict[str, object]) -> dict[str, object]:
    return {"clusters": [{"name": "c", "cluster": {"server": "https://h:6443", **cluster}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}]}


def test_files_are_read_relative_to_the_kubeconfig_and_data_is_decoded(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    creds = kubeconfig_credentials(_doc({"tokenFile": "token"}, {"certificate-authority":
                                                                 "ca.pem"}), "ctx", tmp_path)
    assert (creds.server, creds.token, creds.ca) == ("https://h:6443", TOKEN, b"CA")
    assert TOKEN not in repr(creds)
    cert = kubeconfig_credentials(_doc(
        {"client-certificate-data": base64.b64encode(b"C").decode(),
         "client-key-data": base64.b64encode(b"K").decode()}, {}), "ctx", tmp_path)
    assert (cert.cert, cert.key, cert.token) == (b"C", b"K", None)


def test_a_plugin_user_cannot_be_the_fallback(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="runs a plugin"):
        kubeconfig_credentials(_doc({"exec": {"command": "aws"}}, {}), "ctx", tmp_path)


def test_the_member_role_grants_no_secrets_rbac_or_wildcards() -> None:
    objs = {o["kind"]: o for o in member_objects("aifleet-system")}
    assert objs["ClusterRole"]["rules"] == RULES
    granted = {(g, r) for rule in RULES for g in rule["apiGroups"] for r in rule["resources"]}
    assert not any(r in ("secrets", "*") or g in ("rbac.authorization.k8s.io", "*")
                   for g, r in granted)
    assert not any("*" in rule["verbs"] or "update" in rule["verbs"] for rule in RULES)
