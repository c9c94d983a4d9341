"""A change the API server refuses to make to a running Job in place never deletes that
Job unless its workload asked for it (`spec.recreate: onChange`): on a real server a
NonIndexed Job's completions and any Job's pod template are immutable, and deleting a
training Job throws its work away. An Indexed Job's completions could change in place
with parallelism, but a training pod's WORLD_SIZE is its replicas, so resizing one is a
re-create too. Through the real controller on simulated clusters that
refuse exactly what kube-apiserver 1.35 refuses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema

from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from controllers.runtime.replanner import Replanner
from fleet.capacity import CapacitySnapshot
from fleet.placement.types import Plan, PreviousPlan
from fleet.render.keys import SOURCE_COMMIT
from fleet.spec import FleetSpec
from tests.fleetdocs import workload
from tests.specs import load_schema
from tests.support.controller import FAST, TRAIN, fast_settings, fleet_files, sandbox

ETL = "nlp-team/etl"
ETL_FILE = "workloads/nlp-team/etl.yaml"
TRAIN_FILE = "workloads/nlp-team/train.yaml"


def _etl(replicas: int, recreate: str | None = None) -> str:
    doc = workload("etl", data_class="public", wtype="batch").replace(
        "  replicas: 2\n", f"  replicas: {replicas}\n").replace(
        "      count: 8\n", "      count: 1\n")  # fits where it runs: resized, not moved
    return doc + (f"  recreate: {recreate}\n" if recreate else "")


def _files(recreate: str | None = None) -> dict[str, str | bytes]:
    return {**fleet_files(), ETL_FILE: _etl(2, recreate)}


def _job(box: Sandbox, m: Manager, wid: str) -> dict[str, Any]:
    team, name = wid.split("/")
    cluster = next(w for w in m.status()["workloads"] if w["id"] == wid)["placements"][0][
        "cluster"]
    assert box.sim is not None
    return next(j for j in box.sim.clusters[cluster].objects("Job", team)
                if j["metadata"]["name"] == name)


def _row(m: Manager, wid: str) -> dict[str, Any]:
    return next(w for w in m.status()["workloads"] if w["id"] == wid)


async def _rolled_out(m: Manager, box: Sandbox) -> None:
    await until(lambda: synced(m.status(), box.first_commit) == (4, 4), 20,
                what="first rollout")


async def test_a_running_job_is_kept_when_a_change_needs_a_recreate(tmp_path: Path) -> None:
    async with sandbox(tmp_path, _files()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await _rolled_out(m, box)
        uid = _job(box, m, ETL)["metadata"]["uid"]
        deletes = sum(a.stats.calls["delete"] for a in m.adapters.values())
        box.repo.commit({ETL_FILE: _etl(3)}, "etl: 3 replicas")
        m.trigger_fetch()
        await until(lambda: any("re-create is needed" in r["message"]
                                for r in _row(m, ETL)["reasons"]), 20,
                    what="the status saying a re-create is needed")
        row = _row(m, ETL)
        assert row["sync"] == "Failed"
        assert any("spec.completions" in r["message"] for r in row["reasons"])
        # said as such, per cluster, in the status document and `fleet status`
        (need,) = row["recreateNeeded"]
        jsonschema.validate(m.status(), load_schema("status.schema.json"))
        assert need["cluster"] == row["placements"][0]["cluster"]
        assert "spec.completions" in need["reason"]
        from controllers.status.statusview import render_workload
        shown = render_workload(m.status(), ETL) or ""
        assert f"re-create needed on {need['cluster']}" in shown
        # and `fleet plan --server` (planning from what runs) says it too
        r = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "controllers.cli", "plan",
                             str(box.repo.path), "--server", f"http://127.0.0.1:{m.port}",
                             "-o", "json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        planned = next(w for w in json.loads(r.stdout)["workloads"] if w["id"] == ETL)
        assert planned["recreateNeeded"] == row["recreateNeeded"]
        job = _job(box, m, ETL)
        assert job["metadata"]["uid"] == uid and job["spec"]["completions"] == 2
        assert sum(a.stats.calls["delete"] for a in m.adapters.values()) == deletes
        assert not m.drift  # what the server refused is not drift of what runs


async def test_recreate_on_change_replaces_the_job_when_asked(tmp_path: Path) -> None:
    async with sandbox(tmp_path, _files("onChange")) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await _rolled_out(m, box)
        uid = _job(box, m, ETL)["metadata"]["uid"]
        commit = box.repo.commit({ETL_FILE: _etl(3, "onChange")}, "etl: 3 replicas")
        m.trigger_fetch()
        await until(lambda: _row(m, ETL)["commit"] == commit and
                    _row(m, ETL)["sync"] == "Synced", 20, what="the Job re-created")
        job = _job(box, m, ETL)
        assert job["metadata"]["uid"] != uid and job["spec"]["completions"] == 3


class HeldPlacer:
    """The controller's own placement (`Replanner`), held in its worker thread until
    released once asked to: a plan of one commit still being made when the next commit
    is adopted (what a big fleet's plan of seconds makes likely under load)."""

    def __init__(self) -> None:
        self.inner = Replanner()
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, spec: FleetSpec, capacity: CapacitySnapshot,
                 previous: PreviousPlan | None = None, *, commit: str | None = None
                 ) -> Plan:
        self.entered.set()
        self.release.wait(30)
        return self.inner(spec, capacity, previous, commit=commit)


async def test_a_plan_of_the_previous_commit_is_never_applied_as_the_new_one(
        tmp_path: Path) -> None:
    placer = HeldPlacer()
    async with sandbox(tmp_path, _files("onChange")) as box, box.controller(
            fast_settings(box), adapter_options=FAST, place=placer) as m:
        await _rolled_out(m, box)
        uid = _job(box, m, ETL)["metadata"]["uid"]
        cluster = _row(m, ETL)["placements"][0]["cluster"]
        placer.release.clear()
        placer.entered.clear()
        m.trigger_plan()  # a plan of the first commit, held while it is being made
        await until(placer.entered.is_set, 20, what="a plan of the first commit started")
        commit = box.repo.commit({ETL_FILE: _etl(3, "onChange")}, "etl: 3 replicas")
        m.trigger_fetch()
        await until(lambda: m.desired.head == commit, 20, what="the commit adopted")
        mixed: list[dict[str, Any]] = []

        def sample() -> None:  # the new commit's stamp on the old commit's size
            assert box.sim is not None  # (no Job between the re-create's delete and create)
            for job in box.sim.clusters[cluster].objects("Job", "nlp-team"):
                if job["metadata"]["name"] == "etl" and job["spec"]["completions"] != 3 \
                        and (job["metadata"].get("annotations") or {}).get(
                            SOURCE_COMMIT) == commit:
                    mixed.append(job)

        def done() -> bool:
            sample()
            return _row(m, ETL)["commit"] == commit and _row(m, ETL)["sync"] == "Synced"

        placer.release.set()  # the first commit's plan lands after the second's adoption
        await until(done, 20, interval=0.01, what="the Job re-created")
        assert mixed == []
        job = _job(box, m, ETL)
        assert job["metadata"]["uid"] != uid and job["spec"]["completions"] == 3


async def test_a_training_resize_keeps_the_running_job_and_says_its_world_size_changed(
        tmp_path: Path) -> None:
    # An Indexed Job's completions could change in place with parallelism, but every
    # training pod carries WORLD_SIZE = replicas in its template: a resize is a new
    # world, so the running Job is kept and a re-create is said to be needed.
    async with sandbox(tmp_path, _files()) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        await _rolled_out(m, box)
        uid = _job(box, m, TRAIN)["metadata"]["uid"]
        doc = fleet_files()[TRAIN_FILE]
        assert isinstance(doc, str)
        box.repo.commit({TRAIN_FILE: doc.replace("  replicas: 2\n", "  replicas: 1\n")},
                        "train: 1")
        m.trigger_fetch()
        await until(lambda: any("re-create is needed" in r["message"]
                                for r in _row(m, TRAIN)["reasons"]), 20,
                    what="the status saying a re-create is needed")
        (need,) = _row(m, TRAIN)["recreateNeeded"]
        assert "spec.template" in need["reason"]
        job = _job(box, m, TRAIN)
        assert job["metadata"]["uid"] == uid
        assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (2, 2)
