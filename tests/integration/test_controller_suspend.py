"""`fleet suspend|resume|sync` against the real controller on simulated clusters: a
suspended workload is left as it is (no apply, no drift correction, no prune), recorded
in the ledger, shown in status and kept across a restart; resume puts it right at once.
The CLI runs in a subprocess, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from controllers.demo.faults import find_deployment, inject_replica_drift, owned
from controllers.demo.sandbox import Sandbox, until
from controllers.runtime.manager import Manager
from tests.fleetdocs import POLICY
from tests.specs import load_schema
from tests.support.controller import (
    FAST,
    RANK,
    SERVE,
    fast_settings,
    rolled_out,
    sandbox,
    serve_doc,
)

ROOT = Path(__file__).resolve().parents[2]


async def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("FLEET_SERVER", "NO_COLOR")})


def row(m: Manager, wid: str) -> dict[str, Any]:
    return next(w for w in m.status()["workloads"] if w["id"] == wid)


def serve_image(box: Sandbox) -> str:
    assert box.sim is not None
    cluster, ns, name, _ = find_deployment(box.sim)
    dep = next(o for o in owned(box.sim, cluster, "Deployment")
               if (o["metadata"]["namespace"], o["metadata"]["name"]) == (ns, name))
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def ledger_events(box: Sandbox) -> list[tuple[str, str, str | None]]:
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    try:
        return [(r.entry.event, r.entry.workload, r.entry.cluster)
                for r in read_ledger(box.repo.path)]
    except WorkloadsError:
        return []  # no ledger branch yet


async def test_a_suspended_workload_is_left_alone_shown_recorded_and_kept_across_restarts(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        assert box.sim is not None
        settings = fast_settings(box, ledger=True)
        async with box.controller(settings, adapter_options=FAST) as m:
            await rolled_out(m, box)
            url = f"http://127.0.0.1:{m.port}"
            r = await fleet("suspend", SERVE, "--server", url)
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == f"workload {SERVE} suspended"
            again = await fleet("suspend", SERVE, "--server", url)
            assert again.returncode == 0 and "already suspended" in again.stdout

            # Drift is seen, and left alone.
            cluster, ns, name, replicas = find_deployment(box.sim)
            await inject_replica_drift(box.sim, cluster, ns, name, replicas + 3)
            await until(lambda: any(not d["corrected"] for d in row(m, SERVE).get("drift", [])),
                        10, what="drift reported")
            # A new commit of it is planned but not applied.
            new = box.repo.commit(
                {"workloads/nlp-team/serve.yaml": serve_doc(image="registry.internal/serve:v2")},
                "serve v2")
            await until(lambda: m.status()["source"]["appliedCommit"] == new, 20,
                        what="new commit applied elsewhere")
            assert serve_image(box) == "registry.internal/serve:v1"
            assert find_deployment(box.sim, (cluster, ns, name))[3] == replicas + 3

            doc = m.status()
            jsonschema.validate(doc, load_schema("status.schema.json"))
            assert row(m, SERVE)["suspended"]["since"].endswith("Z")
            assert "suspended" not in row(m, RANK)
            cond = next(c for c in doc["source"]["conditions"] if c["type"] == "Suspended")
            assert SERVE in cond["message"]
            text = await fleet("status", "--server", url)
            assert text.returncode == 0 and "! Suspended: " in text.stdout, text.stderr
            one = await fleet("status", SERVE, "--server", url)
            assert "suspended since" in one.stdout
            wide = await fleet("get", "workloads", "-o", "wide", "--server", url)
            line = next(ln for ln in wide.stdout.splitlines() if ln.startswith(SERVE))
            assert row(m, SERVE)["suspended"]["since"] in line

        # A restart keeps it suspended: what the new commit says is still not applied.
        async with box.controller(settings, adapter_options=FAST) as m2:
            await until(lambda: m2.status()["source"]["appliedCommit"] == new, 20,
                        what="restarted controller applied the head")
            assert row(m2, SERVE)["suspended"]
            assert serve_image(box) == "registry.internal/serve:v1"
            assert find_deployment(box.sim, (cluster, ns, name))[3] == replicas + 3

            r = await fleet("resume", SERVE, "--server", f"http://127.0.0.1:{m2.port}")
            assert r.returncode == 0 and f"workload {SERVE} resumed" in r.stdout, r.stderr
            await until(lambda: serve_image(box) == "registry.internal/serve:v2"
                        and find_deployment(box.sim, (cluster, ns, name))[3] == replicas,
                        15, what="resumed workload reconciled")
            assert "suspended" not in row(m2, SERVE)
            await until(lambda: {("Suspended", SERVE), ("Resumed", SERVE)} <= {
                (e, w) for e, w, _ in ledger_events(box)}, 15, what="ledger records")
        state = json.loads((settings.state_dir / "suspended.json").read_text())
        assert state == {"version": 1, "workloads": {}, "clusters": {}}
        assert (settings.state_dir / "suspended.json").stat().st_mode & 0o077 == 0


async def test_a_suspended_cluster_keeps_what_runs_there_and_the_rest_goes_on(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        assert box.sim is not None
        await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        cluster, ns, name, replicas = find_deployment(box.sim)
        r = await fleet("suspend", "--cluster", cluster, "--server", url)
        assert r.returncode == 0 and f"cluster {cluster} suspended" in r.stdout, r.stderr
        await inject_replica_drift(box.sim, cluster, ns, name, replicas + 2)
        await until(lambda: any(not d["corrected"] for d in row(m, SERVE).get("drift", [])),
                    10, what="drift reported")
        # Removing the workload from the repo prunes nothing on a suspended cluster.
        gone = box.repo.commit({"workloads/nlp-team/serve.yaml": None}, "drop serve")
        await until(lambda: m.status()["source"]["appliedCommit"] == gone, 20,
                    what="commit applied on the other clusters")
        assert find_deployment(box.sim, (cluster, ns, name))[3] == replicas + 2
        doc = m.status()
        crow = next(c for c in doc["clusters"] if c["name"] == cluster)
        assert crow["suspended"]["since"]
        status = await fleet("status", "--server", url)
        assert any(ln.startswith(cluster) and "(suspended)" in ln
                   for ln in status.stdout.splitlines()), status.stdout
        text = await fleet("get", "clusters", "-o", "wide", "--server", url)
        assert any(ln.startswith(cluster) and crow["suspended"]["since"] in ln
                   for ln in text.stdout.splitlines()), text.stdout
        r = await fleet("resume", "--cluster", cluster, "--server", url)
        assert r.returncode == 0, r.stderr
        await until(lambda: not any(
            (o["metadata"]["namespace"], o["metadata"]["name"]) == (ns, name)
            for o in owned(box.sim, cluster, "Deployment")), 15, what="pruned after resume")


async def test_a_suspension_never_keeps_data_where_residency_now_forbids_it(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        assert box.sim is not None
        await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        cluster, ns, name, _ = find_deployment(box.sim)
        r = await fleet("suspend", SERVE, "--server", url)
        assert r.returncode == 0, r.stderr
        # `public` data may now run only outside the jurisdiction SERVE runs in.
        elsewhere = "[US]" if cluster.startswith("eu-") else "[EU]"
        policy = POLICY.replace('public: {allowed: ["*"]}', f"public: {{allowed: {elsewhere}}}")
        assert policy != POLICY
        box.repo.commit({"policies/residency.yaml": policy}, "public data elsewhere")
        await until(lambda: not any(
            (o["metadata"]["namespace"], o["metadata"]["name"]) == (ns, name)
            for o in owned(box.sim, cluster, "Deployment")), 20,
            what="the forbidden copy deleted despite the suspension")
        assert row(m, SERVE)["suspended"]


async def test_sync_and_bad_requests_answer_in_one_line(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        url = f"http://127.0.0.1:{m.port}"
        r = await fleet("sync", "--server", url)
        assert r.returncode == 0 and "fetch and reconcile of the fleet started" in r.stdout
        r = await fleet("sync", SERVE, "--server", url)
        assert r.returncode == 0 and f"workload {SERVE}" in r.stdout, r.stderr
        for args, said in (
                (["suspend", "nope/nope"], "no workload nope/nope"),
                (["resume", "--cluster", "nowhere"], "no cluster nowhere"),
                (["sync", "nope/nope"], "no workload nope/nope"),
                (["suspend"], "name a WORKLOAD or --cluster"),
                (["suspend", SERVE, "--cluster", "eu-fra-1"], "name a WORKLOAD or --cluster")):
            r = await fleet(*args, "--server", url)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        r = await fleet("suspend", SERVE, "--server", "http://127.0.0.1:9")
        assert r.returncode == 2 and "cannot reach the controller" in r.stderr
        # A cross-site form post cannot suspend anything: JSON only.
        async with httpx.AsyncClient() as c:
            resp = await c.post(f"{url}/api/v1/suspend", content=f"workload={SERVE}",
                                headers={"Content-Type": "text/plain"})
        assert resp.status_code == 415 and "suspended" not in row(m, SERVE)


async def test_a_follower_refuses_to_suspend_and_the_leader_does_it(tmp_path: Path) -> None:
    async with sandbox(tmp_path, home=True) as box:
        a_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-a",
                                   state_dir=tmp_path / "state-a")
        b_settings = fast_settings(box, home=True, leader_elect=True, identity="replica-b",
                                   state_dir=tmp_path / "state-b")
        async with box.controller(a_settings, adapter_options=FAST, lease_duration=2.0) as a:
            await rolled_out(a, box)
            async with box.controller(b_settings, adapter_options=FAST,
                                      lease_duration=2.0) as b:
                await until(lambda: b.desired.plan is not None and b.elector is not None, 10,
                            what="follower planned")
                assert b.status()["leader"]["leading"] is False
                r = await fleet("suspend", SERVE, "--server", f"http://127.0.0.1:{b.port}")
                assert r.returncode == 2 and "may not act" in r.stderr, r.stderr
                assert "suspended" not in row(b, SERVE)
                assert not (tmp_path / "state-b" / "suspended.json").exists()
                r = await fleet("suspend", SERVE, "--server", f"http://127.0.0.1:{a.port}")
                assert r.returncode == 0, r.stderr
                assert row(a, SERVE)["suspended"]
