"""The chart's Git credentials (`git.tokenSecret`, `git.sshSecret`, `git.githubApp`),
rendered by the real helm with the values docs/install.md gives: each way is a Secret
mounted read-only as files (no subPath, so the kubelet updates them when the Secret is
rotated) and FLEET_* variables naming those files; the settings the controller reads
from that environment, with the Secret's keys at the mounted paths, start
(`git_auth_problem` says nothing) and make the credentials of that way. Two ways at
once, or half a GitHub App, are refused at render time; a misspelt key by the schema.
Secrets never appear by value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from controllers.gitcreds import git_auth, git_auth_problem
from controllers.settings import Settings
from tests.contract.test_chart import CHART, NS, ROOT, by_kind, run_helm, template
from tests.contract.test_helm import _binary as helm_binary
from workloads.gitauth import TokenFile
from workloads.githubapp import GithubApp
from workloads.gitssh import SshKey

pytestmark = pytest.mark.skipif(helm_binary() is None, reason="helm not found: run `make kubectl`")

KNOWN_HOSTS = ("git.example.com ssh-ed25519 "
               "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")


def secret_keys() -> dict[str, dict[str, bytes]]:
    """What each Secret of docs/install.md holds, by key (made here: no real secret)."""
    ssh = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())
    app = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    return {"aifleet-git-token": {"token": b"not-a-real-token\n"},
            "aifleet-git-ssh": {"ssh-privatekey": ssh, "known_hosts": KNOWN_HOSTS.encode()},
            "aifleet-github-app": {"private-key.pem": app}}


PLACEHOLDERS = {"APP_ID": "123456", "INSTALLATION_ID": "7890123"}


def install_md_ways() -> list[tuple[str, ...]]:
    """The `--set` values of each Git credential way, as docs/install.md gives them
    (its `Values:` lines, without the parenthesised alternatives)."""
    text = (ROOT / "docs" / "install.md").read_text()
    ways = []
    for para in re.findall(r"Values: (.*?)\n\n", text, re.S):
        pairs = re.findall(r"`([\w.]+=[^`]+)`", re.sub(r"\([^)]*\)", "", para))
        ways.append(tuple(a for pair in pairs for a in
                          ("--set", re.sub("|".join(PLACEHOLDERS),
                                           lambda m: PLACEHOLDERS[m.group(0)], pair))))
    return ways


WAYS: dict[str, tuple[tuple[str, ...], type]] = dict(zip(
    ("token", "ssh", "github-app"),
    zip(install_md_ways(), (TokenFile, SshKey, GithubApp), strict=True), strict=True))


def test_install_md_gives_each_way_its_repo_and_secret() -> None:
    assert [w[0] for w in WAYS.values()] == [
        ("--set", "fleet.repo=https://git.example.com/ml/fleet.git",
         "--set", "git.tokenSecret=aifleet-git-token"),
        ("--set", "fleet.repo=git@git.example.com:ml/fleet.git",
         "--set", "git.sshSecret=aifleet-git-ssh"),
        ("--set", "fleet.repo=https://github.com/ml/fleet.git",
         "--set", "git.githubApp.id=123456", "--set", "git.githubApp.installationId=7890123",
         "--set", "git.githubApp.keySecret=aifleet-github-app")]


@pytest.mark.parametrize("way", WAYS, ids=list(WAYS))
def test_each_way_mounts_its_secret_where_the_controller_reads_it(
        way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values, kind = WAYS[way]
    pod = by_kind(template(*values))["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secrets = secret_keys()
    mounted = 0
    for mount in c["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None or secret["secretName"] not in secrets:
            continue
        assert mount["readOnly"] is True and "subPath" not in mount  # rotation reaches it
        folder = tmp_path / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        for key, data in secrets[secret["secretName"]].items():
            (folder / key).write_bytes(data)
        mounted += 1
    assert mounted == 1
    env = {e["name"]: e for e in c["env"]}
    for name, e in env.items():
        assert "value" in e or "valueFrom" in e
        if name.startswith("FLEET_") and "value" in e:
            value = str(e["value"])
            if value.startswith("/etc/aifleet/"):
                value = str(tmp_path / value.lstrip("/"))
            monkeypatch.setenv(name, value)
    settings = Settings()  # type: ignore[call-arg]  # from the pod's environment
    assert git_auth_problem(settings) == ""
    assert isinstance(git_auth(settings), kind)
    for data in (d for keys in secrets.values() for d in keys.values()):
        assert data.decode().strip() not in str(env)  # by reference, never by value


def test_one_git_credential_at_a_time_and_a_whole_github_app() -> None:
    repo = ("--set", "fleet.repo=https://git.example.com/ml/fleet.git")
    r = run_helm("template", "x", str(CHART), "-n", NS, *repo,
                 "--set", "git.tokenSecret=a", "--set", "git.sshSecret=b")
    assert r.returncode != 0 and "give one Git credential" in r.stderr
    r = run_helm("template", "x", str(CHART), "-n", NS, *repo, "--set", "git.githubApp.id=1")
    assert r.returncode != 0 and "needs id, installationId and keySecret" in r.stderr
    r = run_helm("template", "x", str(CHART), "-n", NS, *repo, "--set", "git.sshSecrets=b")
    assert r.returncode != 0 and "sshSecrets" in r.stderr
    plain = by_kind(template(*repo))["Deployment"]["spec"]["template"]["spec"]
    names: set[Any] = {e["name"] for e in plain["containers"][0]["env"]}
    assert not {n for n in names if n.startswith(("FLEET_GIT", "FLEET_GITHUB"))}
