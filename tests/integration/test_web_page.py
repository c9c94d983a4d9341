"""The controller's web page, loaded in headless Chromium against a running controller.

Real Git repo, simulated clusters, the real Manager serving `GET /`; Chromium runs the
page's JavaScript (which reads `api/v1/status` and `api/v1/events`) and dumps the DOM it
built. The assertions read what a person would see: the jurisdictions, the cluster
table with its counts, reasons and failover countdown, the workloads that need
attention with their reason, the workload list with its filters and drill-down (both
kept in the URL's fragment, so a dump of `/#team=x` is the page after choosing team x),
the events timeline (a failover appears in it), the residency panel; and that names and
reasons from the repo are shown as text, never run as HTML.

Chromium comes from Debian's `chromium` package (`make browser` installs it; `make check`
runs that first). Without it the test is skipped on a developer machine, never in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import anyio
import pytest

from controllers.demo.sandbox import until
from controllers.runtime.manager import Manager
from tests.fleetdocs import workload
from tests.support.controller import (
    FAST,
    RANK,
    SERVE,
    TRAIN,
    fast_settings,
    fleet_files,
    rolled_out,
    sandbox,
    where,
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


needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                    reason="needs Debian's chromium (make browser)")


async def page_at(m: Manager, fragment: dict[str, str], profile: Path
                  ) -> tuple[str, dict[tuple[str, str], str]]:
    """The DOM the page builds at `/#<fragment>`, and its data-* elements' text."""
    assert CHROMIUM is not None, "CI must have chromium: `make check` runs `make browser`"
    url = f"http://127.0.0.1:{m.port}/" + ("#" + urlencode(fragment) if fragment else "")
    html = await anyio.to_thread.run_sync(dump_dom, url, profile)
    page = _Elements()
    page.feed(html)
    assert page.body_loaded, "the page's script did not load the status"
    return html, page.found


def shown_workloads(found: dict[tuple[str, str], str]) -> set[str]:
    """The ids in the workload list (rows carry `data-wl`)."""
    return {value for (attr, value) in found if attr == "wl"}


def events_rows(found: dict[tuple[str, str], str]) -> list[str]:
    """The events timeline's rows, newest first."""
    rows = [(int(v), text) for (attr, v), text in found.items() if attr == "event"]
    return [text for _, text in sorted(rows, reverse=True)]


@needs_chromium
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


@needs_chromium
async def test_web_page_lists_workloads_with_filters_and_counts_per_cluster(
        tmp_path: Path) -> None:
    files = fleet_files()
    files[f"workloads/{STUCK}.yaml"] = workload(
        "br-scoring", "latam-team", data_class="br-personal")
    async with sandbox(tmp_path, files) as box, box.controller(fast_settings(box),
                                                               adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        html, found = await page_at(m, {}, tmp_path / "chromium")
        by_team = (await page_at(m, {"team": "nlp-team"}, tmp_path / "chromium"))[1]
        pending = (await page_at(m, {"state": "Pending"}, tmp_path / "chromium"))[1]
        on_us = (await page_at(m, {"cluster": "us-east-1"}, tmp_path / "chromium"))[1]
        public = (await page_at(m, {"class": "public", "team": "search-team"},
                                tmp_path / "chromium"))[1]

    # The time of the last refresh, and jurisdictions named as such.
    assert re.search(r'id="refreshed"[^>]*>refreshed \d\d:\d\d:\d\d UTC', html), html[:3000]
    assert ">Jurisdictions <" in html and "Fleet map by region" not in html
    # Every workload, each with its team, state and clusters; no filter: all of them.
    assert shown_workloads(found) == {TRAIN, SERVE, RANK, STUCK}
    assert found[("wl", TRAIN)].startswith(f"{TRAIN} nlp-team Placed Synced")
    assert found[("wl", STUCK)].startswith(f"{STUCK} latam-team Pending Unknown")
    # Filters: team, state, cluster, data class (two at once: both apply).
    assert shown_workloads(by_team) == {TRAIN, SERVE}
    assert shown_workloads(pending) == {STUCK}
    assert shown_workloads(on_us) == {w for w, cs in placed.items() if "us-east-1" in cs}
    assert shown_workloads(public) == {RANK}
    # Clusters: workloads placed there, synced, drifted, failed.
    for name in ("eu-fra-1", "eu-par-1", "us-east-1"):
        n = sum(1 for cs in placed.values() if name in cs)
        assert found[("cluster", name)].endswith(f"{n} {n} 0 0"), found[("cluster", name)]


@needs_chromium
async def test_web_page_timeline_shows_a_failover_and_the_drilldown_where_it_went(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        lost = where(m.status())[TRAIN][0]
        other_eu = ({"eu-fra-1", "eu-par-1"} - {lost}).pop()
        await box.sim.clusters[lost].down()

        def failed_over() -> bool:
            row = next(w for w in m.status()["workloads"] if w["id"] == TRAIN)
            return [p["cluster"] for p in row["placements"]] == [other_eu] \
                and row["sync"] == "Synced"

        await until(failed_over, 20, what="train failed over")
        _, found = await page_at(m, {"w": TRAIN}, tmp_path / "chromium")

    timeline = events_rows(found)
    # The failover, with where it went and where from; the cluster going away before it.
    failover = [r for r in timeline if f"FailedOver {TRAIN} {other_eu}" in r]
    assert failover and f"from {lost}" in failover[0], timeline
    down = [i for i, r in enumerate(timeline) if f"ClusterUnreachable {lost}" in r]
    assert down and down[0] > timeline.index(failover[0]), timeline  # newest first
    # The cluster table says why the cluster is red, and that its grace is over.
    row = found[("cluster", lost)]
    assert "Unreachable" in row and "failover grace (1 s) over" in row, row
    # The drill-down: where the workload runs now, and its own recent events.
    drill = found[("drilldown", TRAIN)]
    assert found[("placement", other_eu)].startswith(f"{other_eu} "), drill
    assert ("placement", lost) not in found
    assert "Recent events" in drill and "FailedOver" in drill
    assert "status Placed · sync Synced" in found[("facts", TRAIN)]


@needs_chromium
async def test_web_page_counts_down_to_failover_while_a_cluster_is_unreachable(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=600.0), adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        assert box.sim is not None
        lost = placed[TRAIN][0]
        await box.sim.clusters[lost].down()
        await until(lambda: next(c for c in m.status()["clusters"]
                                 if c["name"] == lost)["health"] == "Unreachable",
                    20, what=f"{lost} unreachable")
        _, found = await page_at(m, {}, tmp_path / "chromium")

    row = found[("cluster", lost)]
    n = sum(1 for cs in placed.values() if lost in cs)
    left = re.search(rf"unreachable for \d+ s; its {n} workloads? fail over in (\d+) s", row)
    assert left is not None, row
    assert 0 < int(left.group(1)) <= 600
    assert found[("cluster", lost)].endswith(f"{n} 0 0 0")  # none known to be synced now
    # What runs there needs attention, and says why; the list says where it is stuck.
    assert f"placed on {lost}, which does not answer" in found[("workload", TRAIN)]
    assert f"{lost} (Unreachable)" in found[("wl", TRAIN)]


@needs_chromium
async def test_web_page_shows_injected_names_and_reasons_as_text(tmp_path: Path) -> None:
    files = fleet_files()
    # A workload name and an image full of markup: both invalid, and both shown, as text.
    evil_name = "<script>document.body.dataset.pwned='name'</script>\\\"q"
    files["workloads/nlp-team/evil.yaml"] = workload("evil").replace(
        "name: evil", f'name: "{evil_name}"')
    files["workloads/nlp-team/img.yaml"] = workload("img").replace(
        "registry.internal/trainer:v1",
        "\"<img src=x onerror=\\\"document.body.dataset.pwned='reason'\\\">\"")
    evil = "nlp-team/<script>document.body.dataset.pwned='name'</script>\"q"
    async with sandbox(tmp_path, files) as box, box.controller(fast_settings(box),
                                                               adapter_options=FAST) as m:
        await until(lambda: any(w["id"] == evil for w in m.status()["workloads"]), 20,
                    what="the invalid workload in status")
        await rolled_out(m, box)
        html, found = await page_at(m, {"w": evil}, tmp_path / "chromium")

    assert "data-pwned" not in html  # neither ran
    assert "<script>document.body" not in html and "<img src=x" not in html
    assert found[("wl", evil)].startswith(evil + " nlp-team Invalid")
    assert found[("drilldown", evil)].startswith(f"Workload {evil} close")
    img = found[("workload", "nlp-team/img")]
    assert "image '<img src=x onerror=\"document.body.dataset.pwned=" in img, img


@needs_chromium
async def test_web_page_says_why_a_cluster_is_degraded(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        box.sim.clusters["us-east-1"].faults.fail_next(3, 503)
        await until(lambda: next(c for c in m.status()["clusters"]
                                 if c["name"] == "us-east-1")["health"] == "Degraded",
                    20, what="us-east-1 degraded")
        _, found = await page_at(m, {"ev": "health"}, tmp_path / "chromium")

    row = found[("cluster", "us-east-1")]
    assert "Degraded" in row, row
    # The controller's own reason when its status gives one; else what Degraded means.
    assert "answers with errors" in row or "503" in row, row
    # The health filter of the timeline: only health changes, this one among them.
    timeline = events_rows(found)
    assert timeline and all(" Cluster" in r for r in timeline), timeline
    assert any("ClusterDegraded us-east-1 was Healthy" in r for r in timeline), timeline


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
