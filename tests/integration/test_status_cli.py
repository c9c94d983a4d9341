"""`fleet status` against a controller's status endpoint, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from controllers.server import Endpoints, bound_port, build_app, serve
from tests.specs import load_schema
from tests.support.status import DOC

ROOT = Path(__file__).resolve().parents[2]



def test_the_sample_document_follows_the_status_schema() -> None:
    jsonschema.validate(DOC, load_schema("status.schema.json"))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async def nothing() -> None:
        return None

    ep = Endpoints(status=lambda: DOC, capacity=dict, metrics=str,
                   ready=lambda: (True, "ok"), on_git_hook=nothing)
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


async def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=60)


async def test_fleet_view_lists_clusters_and_what_needs_attention(url: str) -> None:
    r = await fleet("status", "--server", url)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Fleet: 2 clusters (1 healthy, 1 unreachable) · 3 workloads")
    assert "56/64 GPUs allocated" not in out and "48/64 GPUs allocated" in out
    assert "! SourceUnavailable: fetch failed" in out
    assert "eu-fra-1   eu-central-1  DE   Healthy      h100-80gb 48/64          1       1" in out
    attention = out.split("Needs attention (2):")[1]
    assert "vision-team/detector" in attention and "0/2 clusters: 1 residency" in attention
    assert "search-team/ranker" in attention and "drift on eu-fra-1" in attention
    assert "llama-finetune" not in attention  # drift corrected, running: fine


async def test_filters_and_json(url: str) -> None:
    r = await fleet("status", "--server", url, "--state", "Pending", "--format", "json")
    assert [w["id"] for w in json.loads(r.stdout)["workloads"]] == ["vision-team/detector"]
    r = await fleet("status", "--server", url, "--team", "nlp-team", "--format", "json")
    assert [w["id"] for w in json.loads(r.stdout)["workloads"]] == ["nlp-team/llama-finetune"]


async def test_one_workload_in_detail(url: str) -> None:
    r = await fleet("status", "nlp-team/llama-finetune", "--server", url)
    assert r.returncode == 0
    assert "nlp-team/llama-finetune: Placed · sync Synced · health Running" in r.stdout
    assert "eu-fra-1  4         h100-80gb  32" in r.stdout
    assert "spec.parallelism by kubectl-edit (corrected)" in r.stdout
    r = await fleet("status", "nope/nope", "--server", url)
    assert r.returncode == 2 and "no workload nope/nope" in r.stderr


async def test_unreachable_controller_is_one_clear_line() -> None:
    r = await fleet("status", "--server", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert r.stderr.startswith("fleet: cannot read status from http://127.0.0.1:9")


async def test_state_is_any_case_and_an_unknown_one_is_refused(url: str) -> None:
    r = await fleet("status", "--server", url, "--state", "pending", "--format", "json")
    assert [w["id"] for w in json.loads(r.stdout)["workloads"]] == ["vision-team/detector"]
    r = await fleet("status", "--server", url, "--state", "Bogus")
    assert r.returncode == 2 and "unknown state 'Bogus'" in r.stderr
    assert "Nothing needs attention" not in r.stdout


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--team", "nope", "no workloads of team nope in the fleet"),
    ("--cluster", "nope", "no cluster nope in the fleet"),
])
async def test_a_team_or_cluster_the_fleet_lacks_is_an_error_not_an_all_clear(
        url: str, flag: str, value: str, said: str) -> None:
    r = await fleet("status", "--server", url, flag, value)
    assert r.returncode == 2 and said in r.stderr and r.stdout == ""


@pytest.mark.parametrize("value", ["-1", "0", "nope"])
async def test_a_bad_watch_interval_is_one_line_and_exit_2(url: str, value: str) -> None:
    r = await fleet("status", "--server", url, "--watch", value)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--watch" in r.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_watch_into_a_pipe_writes_no_screen_escapes(url: str, fmt: str) -> None:
    def watch_twice() -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controllers.cli", "status", "--server", url,
             "--watch", "0.05", "--format", fmt],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        out = ""
        try:
            marker = "Fleet:" if fmt == "text" else '"apiVersion"'
            while out.count(marker) < 2:  # two refreshes, however long they take
                line = proc.stdout.readline()
                assert line, "the watch ended early"
                out += line
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        return out

    out = await asyncio.to_thread(watch_twice)
    assert "\x1b[" not in out
    if fmt == "json":
        first = out[:out.index("}\n{") + 2]
        assert json.loads(first)["kind"] == "FleetStatus"


@pytest.mark.parametrize(("age", "shown"), [(4.9, False), (5.0, True), (37.6, True)])
async def test_a_stale_document_shows_its_age(age: float, shown: bool) -> None:
    """A controller that could not build a newer document in time answers with its last
    one and its `Age`: from 5 s on, `fleet status` says so (above the text; on stderr
    beside JSON, which stays the document)."""
    from controllers.status.bodies import Body

    async def nothing() -> None:
        return None

    async def last_document(_fresh: bool) -> tuple[Body, float]:
        return Body.of(DOC), age

    ep = Endpoints(status=lambda: DOC, capacity=dict, metrics=str,
                   ready=lambda: (True, "ok"), on_git_hook=nothing,
                   status_now=last_document)
    runner = await serve(build_app(ep, None), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{bound_port(runner)}"
        text = await fleet("status", "--server", url)
        one = await fleet("status", "nlp-team/llama-finetune", "--server", url)
        as_json = await fleet("status", "--server", url, "--format", "json")
    finally:
        await runner.cleanup()
    assert (text.returncode, one.returncode, as_json.returncode) == (0, 0, 0)
    said = f"Age: {int(age)} s (the controller's last status document"
    if shown:
        assert text.stdout.startswith(said) and "\nFleet: 2 clusters" in text.stdout
        assert one.stdout.startswith(said)
        assert said in as_json.stderr
    else:
        assert "Age:" not in text.stdout + text.stderr + one.stdout + as_json.stderr
        assert text.stdout.startswith("Fleet: 2 clusters")
    assert json.loads(as_json.stdout)["kind"] == "FleetStatus"
