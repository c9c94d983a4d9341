"""The controller and its ledger under attack and failure (issue 18).

Real controller, simulated clusters over HTTP, the sandbox's bare Git repo as the
ledger's remote. A ledger rewritten and force-pushed under the controller is refused
(never chained onto); a blocked push fails /readyz and stops cluster actions until the
ledger is writable; a placement recorded but never applied is flagged by `fleet audit
residency --live` and closed by the next process at restart; every record carries the
fleet commit it was decided at, so the audit sees relabels right.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import structlog.testing

from controllers.demo.sandbox import Sandbox, until
from controllers.runtime.manager import JOURNAL_FILE, Manager
from controllers.runtime.reconcile import live_manifest_digest
from fleet.audit import open_placements
from fleet.ids import ClusterName
from fleet.ledger import Entry, Record
from fleet.render import workload_id_of_label
from tests.fleetdocs import cluster, workload
from tests.support.controller import (
    FAST,
    RANK,
    SERVE,
    TRAIN,
    condition,
    fast_settings,
    rolled_out,
    sandbox,
    serve_doc,
)
from tests.support.logs import logged
from workloads.errors import WorkloadsError
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader, LedgerWriter, read_ledger

ROOT = Path(__file__).resolve().parents[2]
BRANCH_REF = f"refs/heads/{LEDGER_BRANCH}"


def records(box: Sandbox) -> list[Record]:
    try:
        return list(read_ledger(box.repo.path))
    except WorkloadsError:
        return []  # no ledger branch yet


def all_applied(box: Sandbox) -> bool:
    applied = {r.entry.workload for r in records(box) if r.entry.event == "Applied"}
    return applied >= {TRAIN, SERVE, RANK}


async def planned(m: Manager, logs: Sequence[Mapping[str, Any]], commit: str) -> int:
    """Until `commit` is planned; where the log stood then (what follows is of it)."""
    await until(lambda: m.desired.plan is not None and m.desired.plan.commit == commit, 20,
                what=f"{commit[:12]} planned")
    return len(logs)


async def blocked_passes(m: Manager, logs: Sequence[Mapping[str, Any]], *, since: int,
                         passes: int) -> None:
    """Until every cluster the plan changes (what it should run is not what it last
    applied) has begun `passes` passes since the log's entry `since`, each stopped by
    the ledger at its gate: a pass that would write has had its turn by then."""
    changed = sorted(name for name in m.adapters if m.reconciler.applied_signature.get(
        name) != m.desired.signature(ClusterName(name)))
    assert changed, "the plan changes no cluster: nothing would be written anyway"

    def each_blocked() -> bool:
        return all(logged(logs, "reconcile_blocked_by_ledger", since=since, cluster=c)
                   >= passes for c in changed)
    await until(each_blocked, 20, what=f"{passes} blocked passes on each of {changed}")


async def get(m: Manager, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
        return await c.get(path)


async def audit_live(box: Sandbox) -> tuple[int, dict[str, Any]]:
    done = await anyio.run_process(
        [sys.executable, "-m", "controllers.cli", "audit", "residency", str(box.repo.path),
         "--live", str(box.kubeconfig), "--format", "json"],
        check=False, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


async def test_a_forged_force_pushed_ledger_is_refused_and_cluster_actions_stop(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True), adapter_options=FAST) as m:
        await rolled_out(m, box)
        await until(lambda: all_applied(box) and m.events is not None
                    and m.events.pending == 0, 20, what="rollout recorded")  # type: ignore[attr-defined]
        # The forger rewrites the branch: the last record dropped, one edited, every
        # hash recomputed, force-pushed. `verify` alone cannot tell.
        kept = [r.entry for r in records(box)[:-1]]
        kept[0] = dataclasses.replace(kept[0], reason="edited by the forger")
        box.repo.repo.references.delete(BRANCH_REF)
        LedgerWriter(box.repo.path).append(kept)
        forged_tip = box.repo.repo.references[BRANCH_REF].target
        assert LedgerReader(box.repo.path).verify() is None

        box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)}, "serve x2")
        await until(lambda: condition(m.status(), "LedgerForged") is not None, 30,
                    what="the forged ledger refused")
        cond = condition(m.status(), "LedgerForged")
        assert cond is not None and "does not contain" in cond["message"]
        assert box.repo.repo.references[BRANCH_REF].target == forged_tip  # not chained onto
        ready = await get(m, "/readyz")
        assert ready.status_code == 503 and "LedgerForged" in ready.text
        assert "aifleet_ledger_forged 1" in (await get(m, "/metrics")).text

        # Fail closed: a later commit is planned but not applied anywhere, after two
        # passes of each cluster it changes (each retries after 1 s) began on its plan.
        with structlog.testing.capture_logs() as logs:
            c3 = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(
                replicas=2, image="registry.internal/serve:v2")}, "serve v2")
            mark = await planned(m, logs, c3)
            await blocked_passes(m, logs, since=mark, passes=2)
        assert m.applied_commit != c3
        assert all(lp.commit != c3 for lp in m.live.values())


async def test_a_blocked_ledger_push_fails_readyz_and_holds_actions_until_writable(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True, ledger_max_backlog=1), adapter_options=FAST) as m:
        await rolled_out(m, box)
        await until(lambda: all_applied(box), 20, what="rollout recorded")
        # The remote refuses to move the branch (its ref is locked): pushes fail.
        lock = box.repo.path / "refs" / "heads" / "aifleet" / "ledger.lock"
        lock.write_text("")
        c2 = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                             "serve x2")
        await until(lambda: condition(m.status(), "LedgerUnwritable") is not None, 30,
                    what="the blocked ledger said")
        ready = await get(m, "/readyz")
        assert ready.status_code == 503 and "LedgerUnwritable" in ready.text
        metrics = (await get(m, "/metrics")).text
        assert "aifleet_ledger_blocked 1" in metrics
        assert "aifleet_ledger_write_failures_total 0" not in metrics
        with structlog.testing.capture_logs() as logs:
            c3 = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(
                replicas=2, image="registry.internal/serve:v2")}, "serve v2")
            mark = await planned(m, logs, c3)
            await blocked_passes(m, logs, since=mark, passes=2)
        assert m.applied_commit != c3  # fail closed: nothing acted on unrecorded

        lock.unlink()  # writable again: the backlog goes out, then the rollout goes on
        await until(lambda: m.applied_commit == c3 and condition(
            m.status(), "LedgerUnwritable") is None, 60, what="recovered")
        await until(lambda: any(r.entry.commit == c3 and r.entry.event == "Applied"
                                for r in records(box)), 30, what="c3 recorded")
        assert (await get(m, "/readyz")).status_code == 200
        assert c2  # planned while blocked; its records are on the ledger now too


async def test_a_placement_recorded_but_never_applied_is_closed_at_restart(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        settings = fast_settings(box, ledger=True)
        async with box.controller(settings, adapter_options=FAST) as m:
            placed = await rolled_out(m, box)
            await until(lambda: all_applied(box) and m.events is not None
                        and m.events.pending == 0, 20, what="rollout recorded")  # type: ignore[attr-defined]
        # What a process killed mid-rollout leaves: RANK recorded Placed (and pushed) on
        # a cluster it never reached, and SERVE's Placed only in the journal.
        elsewhere = sorted({"eu-fra-1", "eu-par-1", "us-east-1"} - set(placed[RANK]))[0]
        serve_away = sorted({"eu-fra-1", "eu-par-1", "us-east-1"} - set(placed[SERVE]))[0]
        head = box.repo.head()
        LedgerWriter(box.repo.path).append([Entry(
            "2026-12-01T10:00:00Z", "Placed", RANK, commit=head, cluster=elsewhere,
            data_class="public", flavour="h100-80gb", gpus=8)])
        journaled = Entry("2026-12-01T10:00:01Z", "Placed", SERVE, commit=head,
                          cluster=serve_away, data_class="public", flavour="h100-80gb",
                          gpus=1)
        with (settings.state_dir / JOURNAL_FILE).open("a") as f:
            f.write(json.dumps({"entry": dataclasses.asdict(journaled)}) + "\n")

        _code, doc = await audit_live(box)
        phantoms = {(f["workload"], f["cluster"]) for f in doc["findings"]
                    if f["kind"] == "NotRunning"}
        assert phantoms == {(RANK, elsewhere)}, doc["findings"]

        async with box.controller(settings, adapter_options=FAST) as m:
            def closed() -> set[tuple[str, str | None]]:
                return {(r.entry.workload, r.entry.cluster) for r in records(box)
                        if r.entry.event == "Pruned"
                        and r.entry.reason == "not found at restart"}
            await until(lambda: closed() >= {(RANK, elsewhere), (SERVE, serve_away)}, 30,
                        what="phantoms closed")
            assert any(r.entry == journaled for r in records(box))  # replayed, once
            assert sum(r.entry == journaled for r in records(box)) == 1
        _code, doc = await audit_live(box)
        assert not [f for f in doc["findings"] if f["kind"] == "NotRunning"], doc["findings"]
        running = {(p["workload"], p["cluster"]) for p in doc["periods"] if p["to"] is None}
        assert running == {(w, c) for w, cs in placed.items() for c in cs}


async def test_relabels_are_judged_at_the_fleet_commit_each_record_was_decided_at(
        tmp_path: Path) -> None:
    """Both EU clusters are relabelled US at c2: TRAIN (EU data) can go nowhere, its
    live copy is kept, and the only records after c2 are Pending and the like. They
    carry c2, so the audit sees the relabel and the violation (it saw neither when
    Pending and Pruned carried `commit: null`)."""
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True), adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        await until(lambda: all_applied(box), 20, what="rollout recorded")
        c2 = box.repo.commit({
            "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "US", (("h100-80gb", 32, 8),)),
            "clusters/eu-par-1.yaml": cluster("eu-par-1", "US", (("h100-80gb", 32, 8),))},
            "relabel the EU clusters US")
        # TRAIN's Pending of the relabel (not one of the first commit, which a cluster
        # Unreachable at the first plan under load would give): it carries c2.
        def train_pending() -> list[Entry]:
            return [r.entry for r in records(box) if r.entry.event == "Pending"
                    and r.entry.workload == TRAIN and r.entry.commit != box.first_commit]
        await until(lambda: bool(train_pending()), 30, what="TRAIN pending")
        assert all(r.entry.commit is not None for r in records(box))
        assert train_pending()[0].commit == c2
        assert not [r for r in records(box) if r.entry.event == "Applied"
                    and r.entry.commit not in (box.first_commit, c2)]
    done = await anyio.run_process(
        [sys.executable, "-m", "controllers.cli", "audit", "residency", str(box.repo.path),
         "--format", "json"],
        check=False, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stderr.decode()
    doc = json.loads(done.stdout)
    [train_cluster] = placed[TRAIN]
    relabels = [f for f in doc["findings"] if f["kind"] == "JurisdictionChanged"
                and f["cluster"] == train_cluster]
    assert len(relabels) == 1 and relabels[0]["violation"], doc["findings"]
    assert relabels[0]["commit"] == c2
    bad = [p for p in doc["periods"] if p["workload"] == TRAIN and not p["allowed"]]
    assert [(p["cluster"], p["jurisdiction"]) for p in bad] == [(train_cluster, "US")]
    # nothing spurious: one relabel per cluster, never back
    assert all(" -> US" in f["message"] for f in doc["findings"]
               if f["kind"] == "JurisdictionChanged")


def _step(rng: random.Random, run: int) -> dict[str, str | bytes | None]:
    """One rollout step: scale or re-image a workload, add or remove one."""
    kind = rng.choice(["scale", "image", "add", "remove"])
    if kind == "scale":
        return {"workloads/nlp-team/serve.yaml": serve_doc(replicas=rng.randint(1, 3))}
    if kind == "image":
        return {"workloads/nlp-team/serve.yaml": serve_doc(
            image=f"registry.internal/serve:v{run}")}
    extra = "workloads/search-team/extra.yaml"
    if kind == "add":
        return {extra: workload("extra", "search-team", data_class="public").replace(
            "  replicas: 2\n", "  replicas: 1\n")}
    return {extra: None}


def unsettled(m: Manager, box: Sandbox, run: int, head: str) -> str:
    """Why run `run` of the kill -9 test did not settle: all a failure needs to be
    read from its output alone (the source, the ledger, where they disagree)."""
    live = {(str(workload_id_of_label(lbl)), name)
            for name, a in m.adapters.items() for lbl in a.live_workloads()}
    opened = open_placements(r.entry for r in records(box))
    ledger: Any = m.events
    return (f"run {run}: head {head[:12]}, applied {(m.applied_commit or '-')[:12]}; "
            f"ledger pending {getattr(ledger, 'pending', None)}, problem "
            f"{m.ledger_problem()}; source {[(c.type, c.message) for c in m.conditions]}; "
            f"only in the ledger {sorted(opened - live)}, only live {sorted(live - opened)}")


async def test_kill_9_at_random_points_of_a_rollout_leaves_a_record_or_a_reported_gap(
        tmp_path: Path) -> None:
    """20 runs, seeded: a rollout step is committed, `fleet run --ledger` (a process)
    starts on it and is SIGKILLed at a random moment (connecting, planning, applying,
    writing the ledger); the next process (same state dir) starts and settles. Then the
    ledger holds a period open exactly where the clusters run a workload of ours, and
    its chain is intact: nothing the killed process did on a cluster goes unrecorded."""
    rng = random.Random(18)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["PYTHONPATH"] = str(ROOT)
    async with sandbox(tmp_path) as box:
        settings = fast_settings(box, ledger=True)
        for run in range(20):
            changes = _step(rng, run)
            if changes:
                box.repo.commit(changes, f"step {run}")
            head = box.repo.head()
            log_path = tmp_path / f"run-{run}.log"
            with log_path.open("wb") as log:
                proc = await anyio.open_process(
                    [sys.executable, "-m", "controllers.cli", "run", "--repo",
                     str(box.repo.path), "--kubeconfig", str(box.kubeconfig), "--state-dir",
                     str(settings.state_dir), "--listen", "127.0.0.1:0", "--ledger",
                     "--poll-interval", "0.5", "--unreachable-after", "1",
                     "--log-json", "true"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
            try:
                await anyio.sleep(rng.uniform(0.3, 4.0))
                assert proc.returncode is None, log_path.read_text()[-2000:]
            finally:
                proc.kill()
                await proc.wait()

            async with box.controller(settings, adapter_options=FAST) as m:
                def settled(head: str = head) -> bool:
                    ledger: Any = m.events
                    if m.applied_commit != head or ledger is None or ledger.pending:
                        return False
                    live = {(str(workload_id_of_label(lbl)), name): live_manifest_digest(
                                a.workload_objects(lbl))
                            for name, a in m.adapters.items()
                            for lbl in a.live_workloads()}
                    done = records(box)
                    last_applied = {(r.entry.workload, r.entry.cluster):
                                    r.entry.manifest_digest
                                    for r in done if r.entry.event == "Applied"}
                    # where it runs, and what exactly runs there (the last apply recorded)
                    return open_placements(r.entry for r in done) == set(live) and all(
                        last_applied.get(k) == digest for k, digest in live.items())
                try:
                    await until(settled, 60, what=f"run {run}: ledger agrees with clusters")
                except TimeoutError:
                    raise AssertionError(unsettled(m, box, run, head)) from None
            assert LedgerReader(box.repo.path).verify() is None


async def test_a_new_leader_closes_what_the_old_leader_recorded_and_never_applied(
        tmp_path: Path) -> None:
    """HA: the leader's last act was a Placed record it never carried out; the replica
    that takes the Lease over compares the ledger with the clusters before it decides
    anything, closes that period, and records nothing twice."""
    replicas: dict[str, Manager] = {}
    stop = {name: anyio.Event() for name in ("a", "b")}

    async def replica(name: str) -> None:
        settings = fast_settings(box, home=True, leader_elect=True, identity=name,
                                 ledger=True, state_dir=tmp_path / f"state-{name}")
        async with box.controller(settings, adapter_options=FAST, lease_duration=2.0) as m:
            replicas[name] = m
            await stop[name].wait()

    async with sandbox(tmp_path, home=True) as box, anyio.create_task_group() as tg:
        tg.start_soon(replica, "a")
        await until(lambda: "a" in replicas and replicas["a"].may_act(), 15, what="a leads")
        a = replicas["a"]
        placed = await rolled_out(a, box)
        await until(lambda: all_applied(box) and a.events is not None
                    and a.events.pending == 0, 20,  # type: ignore[attr-defined]
                    what="rollout recorded")
        tg.start_soon(replica, "b")
        await until(lambda: "b" in replicas and replicas["b"].desired.plan is not None, 15,
                    what="b follows")
        b = replicas["b"]
        assert not b.may_act()
        elsewhere = sorted({"eu-fra-1", "eu-par-1", "us-east-1"} - set(placed[RANK]))[0]
        LedgerWriter(box.repo.path).append([Entry(
            "2026-12-01T10:00:00Z", "Placed", RANK, commit=box.repo.head(),
            cluster=elsewhere, data_class="public", flavour="h100-80gb", gpus=8)])
        before = len(records(box))
        stop["a"].set()  # a is gone; b takes the Lease over
        await until(lambda: b.may_act(), 20, what="b leads")
        await until(lambda: any(r.entry.event == "Pruned" and r.entry.workload == RANK
                                and r.entry.cluster == elsewhere
                                and r.entry.reason == "not found at restart"
                                for r in records(box)), 20, what="phantom closed")
        new = records(box)[before:]
        assert not [r for r in new if "found running" in r.entry.reason], new
        stop["b"].set()
