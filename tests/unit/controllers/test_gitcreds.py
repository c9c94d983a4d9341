"""Which Git credentials `fleet run` was given, and why they cannot start: one of the
three ways only, each with what it needs, fitting the URL's scheme, files usable; said
in one line naming flags and files (never a file's content)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from controllers.gitcreds import git_auth, git_auth_problem
from controllers.settings import Settings
from workloads.gitauth import TokenFile
from workloads.githubapp import GithubApp
from workloads.gitssh import SshKey

ROOT = Path(__file__).resolve().parents[3]
HTTPS, SSH = "https://git.example.com/ml/fleet.git", "git@git.example.com:ml/fleet.git"
KNOWN = ("git.example.com ssh-ed25519 "
         "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ssh = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())
    app = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    out = {"token": b"ghp_x\n", "ssh": ssh, "known": KNOWN.encode(), "empty": b"# none\n",
           "app": app, "junk": b"not a key\n"}
    for name, data in out.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in out}


CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("token", HTTPS, {"git_token_file": "token"}, ""),
    ("ssh", SSH, {"git_ssh_key": "ssh", "git_known_hosts": "known"}, ""),
    ("app", HTTPS, {"github_app_id": "=1", "github_app_installation_id": "=2",
                    "github_app_key_file": "app"}, ""),
    ("two-ways", HTTPS, {"git_token_file": "token", "git_ssh_key": "ssh",
                         "git_known_hosts": "known"},
     "--git-token-file and --git-ssh-key are different Git credentials: give one"),
    ("ssh-without-known-hosts", SSH, {"git_ssh_key": "ssh"},
     "--git-ssh-key and --git-known-hosts go together"),
    ("app-half", HTTPS, {"github_app_id": "=1"},
     "a GitHub App needs --github-app-installation-id, --github-app-key-file too"),
    ("ssh-key-https-url", HTTPS, {"git_ssh_key": "ssh", "git_known_hosts": "known"},
     "--git-ssh-key does not fit --repo"),
    ("token-ssh-url", SSH, {"git_token_file": "token"}, "--git-token-file does not fit"),
    ("no-host-key", SSH, {"git_ssh_key": "ssh", "git_known_hosts": "empty"},
     "has no host key"),
    ("unknown-host", "ssh://git@git.example.com:2222/ml/fleet.git",
     {"git_ssh_key": "ssh", "git_known_hosts": "known"},
     "has no entry for [git.example.com]:2222, the host of --repo"),
    ("not-a-key", SSH, {"git_ssh_key": "junk", "git_known_hosts": "known"},
     "is not a private key"),
    ("app-not-pem", HTTPS, {"github_app_id": "=1", "github_app_installation_id": "=2",
                            "github_app_key_file": "junk"},
     "is not an unencrypted PEM private key"),
]


def settings(repo: str, given: dict[str, str], files: dict[str, Path]) -> Settings:
    values: dict[str, Any] = {k: v[1:] if v.startswith("=") else files[v]
                              for k, v in given.items()}
    return Settings(repo=repo, **values)


@pytest.mark.parametrize(("repo", "given", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_git_credentials_are_checked_at_start(files: dict[str, Path], repo: str,
                                              given: dict[str, str], says: str) -> None:
    problem = git_auth_problem(settings(repo, given, files))
    assert (says in problem) if says else problem == ""
    for secret in ("ghp_x", "PRIVATE KEY"):
        assert secret not in problem


@pytest.mark.parametrize(("index", "kind"), [(0, TokenFile), (1, SshKey), (2, GithubApp)],
                         ids=["token", "ssh", "app"])
def test_each_way_makes_its_credentials(files: dict[str, Path], index: int,
                                        kind: type) -> None:
    _, repo, given, _ = CASES[index]
    assert isinstance(git_auth(settings(repo, given, files)), kind)


def test_fleet_run_refuses_an_ssh_key_without_known_hosts(files: dict[str, Path]) -> None:
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", SSH,
                        "--git-ssh-key", str(files["ssh"])], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2 and "--git-known-hosts go together" in r.stderr, r.stderr
