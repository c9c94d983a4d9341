"""An HTTPS token for the fleet repo from a file (`--git-token-file`, a mounted
Secret's key): fetched with it over real smart HTTP (`git http-backend` behind basic
auth), and the token is in no mirror file, status or log; without it the server says
401 and nothing is applied; a rotated token is read again before the next fetch; an
unusable file stops `fleet run` at start (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import structlog

from controllers.demo.sandbox import until
from tests.gitserver import git_http_server
from tests.support.controller import FAST, fast_settings, rolled_out, sandbox

TOKEN = "ghs_0123456789abcdefTOKEN"
ROOT = Path(__file__).resolve().parents[2]


async def test_the_repo_is_fetched_with_the_token_file_and_the_token_is_never_shown(
        tmp_path: Path) -> None:
    token_file = tmp_path / "git-token"
    token_file.write_text(TOKEN + "\n")  # as `kubectl create secret --from-file` keeps it
    async with sandbox(tmp_path) as box:
        with git_http_server(tmp_path, "bot", TOKEN) as base, \
                structlog.testing.capture_logs() as logs:
            settings = fast_settings(box, repo=f"{base}/fleet", git_token_file=token_file,
                                     git_username="bot")
            async with box.controller(settings, adapter_options=FAST) as m:
                await rolled_out(m, box)  # fetched over HTTP with the token
                shown = json.dumps(m.status())
        config = (settings.state_dir / "mirror.git" / "config").read_text()
        assert f"{base}/fleet" in config
        for text in (config, shown, repr(logs)):
            assert TOKEN not in text


async def test_a_rotated_token_file_is_read_again_before_the_next_fetch(
        tmp_path: Path) -> None:
    token_file = tmp_path / "git-token"
    token_file.write_text("ghs_revoked_0000\n")  # the Secret before its rotation
    async with sandbox(tmp_path) as box:
        with git_http_server(tmp_path, "bot", TOKEN) as base:
            settings = fast_settings(box, repo=f"{base}/fleet", git_token_file=token_file,
                                     git_username="bot")
            async with box.controller(settings, adapter_options=FAST) as m:
                await until(lambda: any(
                    c["type"] == "SourceUnavailable" and
                    f"refused the credentials of --git-token-file {token_file}" in c["message"]
                    for c in m.status()["source"]["conditions"]), 20, what="the 401")
                assert m.desired.spec is None
                token_file.write_text(TOKEN + "\n")  # the kubelet updates the mounted key
                await rolled_out(m, box)  # no restart


async def test_without_the_token_nothing_is_fetched(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        with git_http_server(tmp_path, "bot", TOKEN) as base:
            settings = fast_settings(box, repo=f"{base}/fleet",
                                     state_dir=tmp_path / "state-none")
            async with box.controller(settings, adapter_options=FAST) as m:
                await until(lambda: any(c["type"] == "SourceUnavailable"
                                        for c in m.status()["source"]["conditions"]), 20,
                            what="the fetch refused")
                assert m.desired.spec is None


def test_an_unusable_token_file_stops_fleet_run_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, says in ((tmp_path / "absent", "cannot read --git-token-file"),
                       (empty, "is empty")):
        r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo",
                            str(tmp_path), "--git-token-file", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 2 and says in r.stderr, r.stderr
