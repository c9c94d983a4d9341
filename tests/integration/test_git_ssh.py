"""The fleet repo over SSH (`--git-ssh-key` + `--git-known-hosts`), against a real SSH
server on 127.0.0.1 running the real `git-upload-pack` and `git-receive-pack`: fetched
(and the ledger pushed) with the right key from a known host; an unknown or changed
host key is refused before any credential is sent (the controller stays up, status
says why, and a corrected known_hosts is read on the next fetch); a key the server
does not accept is refused; no key material is shown anywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pygit2
import pytest
import structlog

from controllers.demo.sandbox import until
from tests.gitrepo import GitRepo
from tests.gitsshserver import git_ssh_server, new_key
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox
from workloads.gitsource import GitSource
from workloads.gitssh import SshKey, _matches
from workloads.ledger_store import LEDGER_BRANCH, read_ledger

LEDGER = f"refs/heads/{LEDGER_BRANCH}"


def key_lines(path: Path) -> list[str]:
    """The private key's body lines: none may appear anywhere the controller writes."""
    return [line for line in path.read_text().splitlines()
            if line and not line.startswith("-----")]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def source_conditions(doc: dict[str, object]) -> list[dict[str, str]]:
    source = doc["source"]
    assert isinstance(source, dict)
    return list(source["conditions"])


async def test_the_controller_fetches_over_ssh_with_its_key_from_a_known_host(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "id_ed25519"
    client = new_key(key)
    known = tmp_path / "known_hosts"
    caplog.set_level(logging.DEBUG)
    async with sandbox(tmp_path) as box:
        with git_ssh_server(tmp_path, client) as server, \
                structlog.testing.capture_logs() as logs:
            known.write_text("# ssh-keyscan output\n" + server.known_hosts_line())
            settings = fast_settings(box, repo=server.url("fleet"), git_ssh_key=key,
                                     git_known_hosts=known, ledger=True)
            async with box.controller(settings, adapter_options=FAST) as m:
                placed = await rolled_out(m, box)  # fetched over SSH, then applied
                # ... and the ledger pushed back over SSH with the same key
                await until(lambda: LEDGER in box.repo.repo.references, 20,
                            what="the ledger pushed")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
                    pages = [(await c.get(path)).text
                             for path in ("/metrics", "/", "/api/v1/events")]
                shown = json.dumps(m.status())
        config = (settings.state_dir / "mirror.git" / "config").read_text()
        ledger = json.dumps([r.line() for r in read_ledger(box.repo.path)])
    assert placed and server.url("fleet") in config
    # libgit2's home holds the known_hosts given, nothing else
    assert files_under(Path(pygit2.settings.homedir or "")) == [".ssh", ".ssh/known_hosts"]
    for text in (config, shown, repr(logs), caplog.text, ledger, *pages):
        for line in key_lines(key):
            assert line not in text


@pytest.mark.parametrize("case", ["unknown", "changed"])
async def test_an_unknown_or_changed_host_key_is_refused_and_the_controller_stays_up(
        tmp_path: Path, case: str) -> None:
    key = tmp_path / "id_ed25519"
    client = new_key(key)
    known = tmp_path / "known_hosts"
    async with sandbox(tmp_path) as box:
        with git_ssh_server(tmp_path, client) as server:
            if case == "unknown":  # a known_hosts for another server only
                known.write_text(server.known_hosts_line().replace("127.0.0.1", "git.other"))
                says = "is not in --git-known-hosts"
            else:  # this server's name, another key: what a man in the middle shows
                known.write_text(server.known_hosts_line(new_key()))
                says = "does not match its entry in --git-known-hosts"
            settings = fast_settings(box, repo=server.url("fleet"), git_ssh_key=key,
                                     git_known_hosts=known)
            async with box.controller(settings, adapter_options=FAST) as m:
                await until(lambda: any(
                    c["type"] == "SourceUnavailable" and says in c["message"]
                    for c in source_conditions(m.status())), 20, what="the host refused")
                assert m.desired.spec is None  # nothing read, nothing applied
                # still running: the corrected Secret is read before the next fetch
                known.write_text(server.known_hosts_line())
                await rolled_out(m, box)


async def test_a_url_without_a_user_logs_in_as_git(tmp_path: Path) -> None:
    GitRepo(tmp_path / "fleet").commit({"README.md": "fleet\n"}, "init")
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    with git_ssh_server(tmp_path, new_key(key)) as server:
        known.write_text(server.known_hosts_line())
        url = server.url("fleet").replace("git@", "")
        result = await GitSource(url, "main", tmp_path / "state",
                                 credentials=SshKey(key, known)).poll()
    assert result.observed is not None and not result.conditions
    assert set(server.users) == {"git"}


async def test_a_key_the_server_does_not_accept_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fleet").mkdir()
    pygit2.init_repository(str(tmp_path / "fleet"), bare=True)
    wrong = tmp_path / "id_wrong"
    new_key(wrong)
    known = tmp_path / "known_hosts"
    with git_ssh_server(tmp_path, new_key()) as server:
        known.write_text(server.known_hosts_line())
        source = GitSource(server.url("fleet"), "main", tmp_path / "state",
                           credentials=SshKey(wrong, known))
        result = await source.poll()
    (refused,) = result.conditions
    assert refused.type == "SourceUnavailable"
    assert f"refused the credentials of --git-ssh-key {wrong}" in refused.message
    assert not any(line in refused.message for line in key_lines(wrong))


@pytest.mark.parametrize(("patterns", "token", "match"), [
    ("[127.0.0.1]:2222", "[127.0.0.1]:2222", True),
    ("[127.0.0.1]:2222", "127.0.0.1", False),
    ("git.example.com,10.0.0.1", "10.0.0.1", True),
    ("*.example.com", "git.example.com", True),
    ("!git.example.com", "git.example.com", False),
    # what `ssh-keygen -H` wrote for "git.example.com" (`ssh-keygen -F` finds it)
    ("|1|0I/LnIaqZLvZrSTDY2CU8AMar+k=|F3ChgkWPzYuqvRWAQy17ob3MZo8=", "git.example.com",
     True),
    ("|1|0I/LnIaqZLvZrSTDY2CU8AMar+k=|F3ChgkWPzYuqvRWAQy17ob3MZo8=", "git.other.com",
     False),
], ids=["port", "other-port", "list", "wildcard", "negated", "hashed", "hashed-other"])
def test_known_hosts_names_a_host_as_ssh_does(patterns: str, token: str, match: bool) -> None:
    assert _matches(patterns, token) is match
