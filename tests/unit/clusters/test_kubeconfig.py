"""Kubeconfig handling: exec and auth-provider plugins refused unless allowed; no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clusters.errors import ExecPluginRefused, KubeconfigError
from clusters.kubeconfig import ConnectionSpec, api_client, read_kubeconfig, server_of

SECRET = "s3cr3t-token-value"


def write(tmp_path: Path, user: dict[str, object]) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": {"server": "http://127.0.0.1:1"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
        "users": [{"name": "u1", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "user",
    [
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws",
                  "args": ["eks", "get-token"]}, "token": SECRET},
        {"auth-provider": {"name": "gcp", "config": {"access-token": SECRET}}},
    ],
    ids=["exec", "auth-provider"],
)
def test_plugins_are_refused_by_default_without_leaking_secrets(tmp_path: Path,
                                                               user: dict[str, object]) -> None:
    path = write(tmp_path, user)
    with pytest.raises(ExecPluginRefused) as info:
        read_kubeconfig(ConnectionSpec("eu-fra-1", str(path), "c1"))
    message = str(info.value)
    assert "--allow-exec-plugins" in message and "eu-fra-1" in message
    assert SECRET not in message


def test_plugins_pass_the_check_when_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                     "command": "true"}})
    doc, context, _ = read_kubeconfig(ConnectionSpec("c", str(path), "c1"), allow_exec=True)
    assert context == "c1" and doc["users"][0]["user"]["exec"]["command"] == "true"


async def test_token_kubeconfig_gives_a_client_for_the_context(tmp_path: Path) -> None:
    path = write(tmp_path, {"token": SECRET})
    client = await api_client(ConnectionSpec("c", str(path), "c1"))
    try:
        assert client.configuration.host == "http://127.0.0.1:1"
    finally:
        await client.close()


def test_path_variables_expand_and_unset_ones_are_errors(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"token": SECRET})
    monkeypatch.setenv("FLEET_KUBECONFIG", str(path))
    read_kubeconfig(ConnectionSpec("c", "${FLEET_KUBECONFIG}", "c1"))
    monkeypatch.delenv("FLEET_KUBECONFIG")
    with pytest.raises(KubeconfigError, match=r"\$\{FLEET_KUBECONFIG\} is not set"):
        read_kubeconfig(ConnectionSpec("c", "${FLEET_KUBECONFIG}", "c1"))


def test_a_path_may_name_no_variable_but_the_kubeconfig_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_WEBHOOK_SECRET", SECRET)
    with pytest.raises(KubeconfigError) as info:
        read_kubeconfig(ConnectionSpec("c", "${FLEET_WEBHOOK_SECRET}/kubeconfig", "c1"))
    assert "${FLEET_WEBHOOK_SECRET}" in str(info.value) and SECRET not in str(info.value)
    assert "may not be used" in str(info.value)


def test_errors_quote_the_path_as_written_not_its_expansion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KUBECONFIG", str(tmp_path / "private-folder"))
    with pytest.raises(KubeconfigError) as info:
        read_kubeconfig(ConnectionSpec("c", "${FLEET_KUBECONFIG}/missing", "c1"))
    assert "${FLEET_KUBECONFIG}/missing" in str(info.value)
    assert "private-folder" not in str(info.value)


def test_missing_context_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, {"token": SECRET})
    with pytest.raises(KubeconfigError, match="context 'nope' not found"):
        read_kubeconfig(ConnectionSpec("c", str(path), "nope"))


def _config(name: str, server: str, *, current: str | None = None,
            ca: str | None = None) -> dict[str, object]:
    cluster: dict[str, object] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = ca
    doc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"token": SECRET}}]}
    if current:
        doc["current-context"] = current
    return doc


def test_a_kubeconfig_list_is_merged_as_kubectl_merges_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = tmp_path / "a" / "config"
    b = tmp_path / "b" / "config"
    a.write_text(yaml.safe_dump(_config("one", "https://a.example:6443", current="one")))
    # b names "one" too (a wins it), adds "two", and sets its own current-context.
    doc_b = _config("two", "https://b.example:6443", current="two", ca="ca.pem")
    doc_b["clusters"].append({"name": "one", "cluster": {"server": "https://b-one:1"}})  # type: ignore[attr-defined]
    b.write_text(yaml.safe_dump(doc_b))
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing'}:{b}")
    doc, context, _ = read_kubeconfig(ConnectionSpec("two", None, "two"))
    assert context == "two"
    assert doc["current-context"] == "one"  # the first file to set it
    # Only the context used, its user and its cluster come back (`_slim`).
    assert [c["name"] for c in doc["clusters"]] == ["two"]
    # b's relative CA path means b's folder, not a's.
    two = doc["clusters"][0]
    assert two["cluster"]["certificate-authority"] == str(tmp_path / "b" / "ca.pem")
    assert server_of(ConnectionSpec("two", "${KUBECONFIG}", "two")) == "https://b.example:6443"
    # a names "one" first: it wins it.
    assert server_of(ConnectionSpec("one", "${KUBECONFIG}", "one")) == "https://a.example:6443"


def test_a_read_kubeconfig_is_the_callers_own_copy_of_one_context(tmp_path: Path) -> None:
    """The parsed file is shared between reads (one parse for N clusters); what a read
    returns is a copy of the context used alone: changing it changes no other read,
    and a file of many contexts is not copied whole for each."""
    doc = _config("c0", "https://c0.example:6443")
    for i in range(1, 50):
        more = _config(f"c{i}", f"https://c{i}.example:6443")
        for section in ("clusters", "contexts", "users"):
            doc[section].extend(more[section])  # type: ignore[attr-defined]
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    got, context, _ = read_kubeconfig(ConnectionSpec("c7", str(path), "c7"))
    assert context == "c7"
    assert [c["name"] for c in got["contexts"]] == ["c7"]
    assert [u["name"] for u in got["users"]] == ["c7"]
    got["clusters"][0]["cluster"]["server"] = "https://changed:1"
    got["users"][0]["user"]["token"] = "changed"
    again, _, _ = read_kubeconfig(ConnectionSpec("c7", str(path), "c7"))
    assert again["clusters"][0]["cluster"]["server"] == "https://c7.example:6443"
    assert again["users"][0]["user"]["token"] == SECRET
    assert server_of(ConnectionSpec("c49", str(path), "c49")) == "https://c49.example:6443"


def test_a_kubeconfig_list_of_missing_files_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'x'}:{tmp_path / 'y'}")
    with pytest.raises(KubeconfigError, match="none of the kubeconfig files"):
        read_kubeconfig(ConnectionSpec("c", None, "c"))


def test_a_kubeconfig_is_parsed_once_per_text_and_each_reader_gets_its_own_copy(
        tmp_path: Path) -> None:
    """Every cluster's connection and the twin check read the kubeconfig: one file of
    many contexts was parsed again each time, in the event loop (issue 22)."""
    import clusters.kubeconfig as kc

    path = write(tmp_path, {"token": "t1"})
    spec = ConnectionSpec("c1", str(path), "c1")
    first, _, _ = read_kubeconfig(spec)
    parsed = kc._PARSED[path.read_text()]
    servers = {server_of(spec) for _ in range(10)}
    assert servers == {"http://127.0.0.1:1"}
    assert kc._PARSED[path.read_text()] is parsed  # the one parse, kept
    first["users"][0]["user"]["token"] = "changed by a caller"
    again, _, _ = read_kubeconfig(spec)
    assert again["users"][0]["user"]["token"] == "t1"
    assert again is not parsed and first is not parsed
    write(tmp_path, {"token": "t2"})  # the file changed: parsed again
    changed, _, _ = read_kubeconfig(spec)
    assert changed["users"][0]["user"]["token"] == "t2"
