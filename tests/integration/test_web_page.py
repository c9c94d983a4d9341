"""The controller's web page, loaded in headless Chromium against a running controller.

Real Git repo, simulated clusters, the real Manager serving `GET /`; Chromium runs the
page's JavaScript (which reads `api/v1/status`) and dumps the DOM it built. The
assertions read what a person would see: the fleet map by jurisdiction, the cluster
table, the workloads that need attention with their reason, the residency panel.

Chromium comes from Debian's `chromium` package (`make browser` installs it; `make check`
runs that first). Without it the test is skipped on a developer machine, never in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import anyio
import pytest

from tests.fleetdocs import workload
from tests.integration.test_controller_harness import (
    FAST,
    fast_settings,
    fleet_files,
    rolled_out,
    sandbox,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STUCK = "latam-team/br-scoring"


class _Elements(HTMLParser):
    """Text of every element carrying a data-* attribute the page sets, by attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, str], str] = {}
        self.body_loaded = False
        self._open: list[tuple[str, tuple[str, str] | None]] = []
        self._text: dict[tuple[str, str], list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = None
        for name, value in attrs:
            if name == "data-loaded" and tag == "body":
                self.body_loaded = value == "true"
            if name.startswith("data-") and name != "data-loaded" and value is not None:
                key = (name[5:], value)
                self._text.setdefault(key, [])
        self._open.append((tag, key))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, key = self._open.pop()
            if key is not None:
                self.found[key] = " ".join("".join(self._text[key]).split())
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, key in self._open:
            if key is not None:
                self._text[key].append(data + " ")


def dump_dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (make browser)")
async def test_web_page_shows_map_clusters_attention_and_residency(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium: `make check` runs `make browser`"
    files = fleet_files()
    # Brazilian personal data and no cluster in Brazil: Pending, and the page says why.
    files[f"workloads/{STUCK}.yaml"] = workload(
        "br-scoring", "latam-team", data_class="br-personal")
    async with sandbox(tmp_path, files) as box, box.controller(fast_settings(box),
                                                               adapter_options=FAST) as m:
        await rolled_out(m, box)
        html = await anyio.to_thread.run_sync(
            dump_dom, f"http://127.0.0.1:{m.port}/", tmp_path / "chromium")

    page = _Elements()
    page.feed(html)
    assert page.body_loaded, "the page's script did not load the status"
    found = page.found
    # Fleet map: one box per jurisdiction, each listing its clusters.
    assert "eu-fra-1" in found[("jurisdiction", "DE")]
    assert "eu-par-1" in found[("jurisdiction", "FR")]
    assert "us-east-1" in found[("jurisdiction", "US")]
    # Cluster table: region, jurisdiction, health, GPUs.
    row = found[("cluster", "eu-fra-1")]
    assert "r-eu-fra-1 DE Healthy" in row and "h100-80gb" in row
    # Needs attention: the stuck workload, with the placement diagnosis.
    stuck = found[("workload", STUCK)]
    assert stuck.startswith(f"{STUCK} Pending")
    assert "0/3 clusters: 3 residency(br-personal)" in stuck
    # Residency panel: EU personal data runs only in EU jurisdictions, and passes.
    eu = found[("data-class", "eu-personal")]
    running_in = eu.split()[2:-1]
    assert running_in and set(running_in) <= {"DE,", "DE", "FR,", "FR"}
    assert eu.endswith("ok")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (make browser)")
async def test_web_page_asks_for_a_token_when_the_api_needs_one(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium: `make check` runs `make browser`"
    tokens = tmp_path / "tokens"
    tokens.write_text("read read-token-0123456789abcdef\n")
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, api_tokens_file=tokens), adapter_options=FAST) as m:
        await rolled_out(m, box)
        html = await anyio.to_thread.run_sync(
            dump_dom, f"http://127.0.0.1:{m.port}/", tmp_path / "chromium")

    page = _Elements()
    page.feed(html)
    assert not page.body_loaded, "the page showed fleet data without a token"
    assert '<form id="auth">' in html, "the token form is not shown"  # `hidden` removed
    assert "a token is required" in html
    assert "eu-fra-1" not in html
