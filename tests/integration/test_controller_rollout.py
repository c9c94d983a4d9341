"""The controller end to end: first rollout, one-workload commits, prune, invalid files.

Real Git repo, simulated clusters over HTTP, the real Manager; the assertions read the
clusters' own stores (`SimCluster.objects`), not the controller's beliefs.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import jsonschema
import structlog.testing

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import synced, until
from controllers.runtime.manager import Manager
from tests.specs import load_schema
from tests.support.controller import (
    FAST,
    RANK,
    SERVE,
    TRAIN,
    fast_settings,
    rolled_out,
    sandbox,
    serve_doc,
    where,
)
from tests.support.logs import logged


def written(box: object, cluster: str) -> dict[tuple[str, str, str], str]:
    """Per object, the content hash only our writes set (status updates by the
    cluster's own controllers change resourceVersion, not this)."""
    sim = box.sim  # type: ignore[attr-defined]
    out = {}
    for kind in ("Job", "Deployment", "Service"):
        for o in sim.clusters[cluster].objects(kind):
            m = o["metadata"]
            out[(kind, m["namespace"], m["name"])] = (m.get("annotations") or {}).get(
                "aifleet.dev/content-hash", "")
    return out


def apply_calls(m: Manager) -> int:
    return sum(a.stats.calls.get("apply", 0) for a in m.adapters.values())


async def test_first_rollout_places_applies_and_reports(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        doc = m.status()
        jsonschema.validate(doc, load_schema("status.schema.json"))
        placed = where(doc)
        # eu-personal data stays in the EU; every workload is live where the plan says.
        assert set(placed[TRAIN]) <= {"eu-fra-1", "eu-par-1"}
        assert box.sim is not None
        for wid, clusters in placed.items():
            for c in clusters:
                assert wid in workloads_on(box.sim, c)
        assert doc["source"]["appliedCommit"] == box.first_commit
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
            assert (await c.get("/readyz")).status_code == 200
            metrics = (await c.get("/metrics")).text
            cap = (await c.get("/api/v1/capacity")).json()
        assert 'aifleet_placements{status="Placed"} 3' in metrics
        assert "aifleet_api_calls_total{cluster=" in metrics
        assert "aifleet_gpus_allocated{cluster=" in metrics
        assert cap["kind"] == "CapacitySnapshot"
        assert {c["name"] for c in cap["clusters"]} == {"eu-fra-1", "eu-par-1", "us-east-1"}


async def test_a_commit_changing_one_workload_touches_only_its_objects(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        before = {c: written(box, c) for c in ("eu-fra-1", "eu-par-1", "us-east-1")}
        calls_before = apply_calls(m)
        commit = box.repo.commit({"workloads/nlp-team/serve.yaml":
                                  serve_doc(image="registry.internal/serve:v2")}, "serve v2")
        m.trigger_fetch()
        await until(lambda: synced(m.status(), commit) == (3, 3), 20, what="serve v2 applied")
        serve_on = set(where(m.status())[SERVE])
        for c, rvs in before.items():
            after = written(box, c)
            changed = {k for k in rvs if after.get(k) != rvs[k]}
            assert all(ns == "nlp-team" and name.startswith("serve")
                       for _kind, ns, name in changed), (c, changed)
            if c in serve_on:
                assert changed, f"serve's objects on {c} were not updated"
        # Exactly serve's Deployment and Service were written: one PATCH each.
        assert apply_calls(m) - calls_before == 2 * len(serve_on)
        rows = {w["id"]: w for w in m.status()["workloads"]}
        assert rows[SERVE]["commit"] == commit
        assert rows[TRAIN]["commit"] == box.first_commit  # untouched: its own commit


async def test_a_removed_workload_is_pruned_and_an_invalid_one_kept(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        assert box.sim is not None
        rank_on = where(m.status())[RANK]
        train_on = where(m.status())[TRAIN]
        commit = box.repo.commit({
            "workloads/search-team/rank.yaml": None,
            # A typo makes train invalid: it must keep running, not be pruned.
            "workloads/nlp-team/train.yaml": "apiVersion: aifleet.dev/v1alpha1\nkind: Workload\n"
                                             "metadata: {name: train, namespace: nlp-team}\n"
                                             "spec: {type: training, replicas: two}\n",
        }, "remove rank, break train")
        m.trigger_fetch()
        await until(lambda: m.status()["source"]["appliedCommit"] == commit, 20,
                    what="commit applied")
        await until(lambda: all(RANK not in workloads_on(box.sim, c)  # type: ignore[arg-type]
                                for c in rank_on), 10, what="rank pruned")
        for c in train_on:
            assert TRAIN in workloads_on(box.sim, c)
        rows = {w["id"]: w for w in m.status()["workloads"]}
        assert RANK not in rows
        assert rows[TRAIN]["status"] == "Invalid"
        assert rows[TRAIN]["reasons"]


async def test_decisions_are_recorded_on_the_ledger_branch(tmp_path: Path) -> None:
    from fleet.render import intent_hash
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    def events() -> list[tuple[str, str]]:
        try:
            return [(r.entry.event, r.entry.workload) for r in read_ledger(box.repo.path)]
        except WorkloadsError:
            return []  # no ledger branch yet

    async with sandbox(tmp_path) as box, box.controller(fast_settings(box, ledger=True),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        await until(lambda: {(e, w) for e, w in events() if e == "Applied"} >= {
            ("Applied", TRAIN), ("Applied", SERVE), ("Applied", RANK)}, 15,
                    what="Applied records pushed")
        recorded = events()
        assert {("Placed", TRAIN), ("Placed", SERVE), ("Placed", RANK)} <= set(recorded)
        entry = next(r.entry for r in read_ledger(box.repo.path)
                     if r.entry.event == "Placed" and r.entry.workload == TRAIN)
        assert entry.cluster in ("eu-fra-1", "eu-par-1")
        assert entry.jurisdiction in ("DE", "FR")
        assert entry.commit == box.first_commit
        # Each record proves residency on its own: dataClass, intent, policy in force.
        spec = m.desired.spec
        assert spec is not None
        assert entry.data_class == "eu-personal"
        assert entry.intent_hash == intent_hash(spec.workloads[TRAIN])
        assert entry.policy_version == spec.residency.version
        applied = next(r.entry for r in read_ledger(box.repo.path)
                       if r.entry.event == "Applied" and r.entry.workload == TRAIN)
        assert applied.jurisdiction in ("DE", "FR") and applied.data_class == "eu-personal"
        assert applied.manifest_digest is not None and len(applied.manifest_digest) == 64
        serve = next(r.entry for r in read_ledger(box.repo.path)
                     if r.entry.event == "Placed" and r.entry.workload == SERVE)
        assert serve.data_class == "public"


async def test_the_signed_webhook_fetches_at_once_and_a_bad_signature_is_refused(
        tmp_path: Path) -> None:
    import hashlib
    import hmac

    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, poll_interval=3600, webhook_secret="s3cret"),
            adapter_options=FAST) as m:
        await rolled_out(m, box)
        commit = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(replicas=2)},
                                 "serve x2")
        body = b'{"ref": "refs/heads/main"}'
        good = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        with structlog.testing.capture_logs() as logs:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{m.port}") as c:
                bad = await c.post("/hooks/git", content=body,
                                   headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
                assert bad.status_code == 401
                # A hook asks for the fetch before it is answered: none was asked for.
                assert logged(logs, "git_webhook_received") == 0
                assert m.status()["source"]["observedCommit"] == box.first_commit
                ok = await c.post("/hooks/git", content=body,
                                  headers={"X-Hub-Signature-256": f"sha256={good}"})
                assert ok.status_code == 202
                assert logged(logs, "git_webhook_received") == 1
        # The poll interval is an hour: only the webhook explains the rollout.
        await until(lambda: synced(m.status(), commit) == (3, 3), 10,
                    what="applied after the webhook")


async def test_commits_on_a_settled_fleet_are_replanned_incrementally(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(fast_settings(box),
                                                         adapter_options=FAST) as m:
        await rolled_out(m, box)
        for i in range(4):
            commit = box.repo.commit({"workloads/nlp-team/serve.yaml": serve_doc(
                image=f"registry.internal/serve:v{i + 2}")}, f"serve v{i + 2}")
            m.trigger_fetch()
            await until(lambda: synced(m.status(), commit) == (3, 3), 20,  # noqa: B023
                        what=f"serve v{i + 2} applied")
            assert next(w for w in m.status()["workloads"] if w["id"] == SERVE)[
                "commit"] == commit
        assert m.placer.counts["incremental"] >= 1, m.placer.counts
        assert 'aifleet_placement_runs_total{kind="incremental"}' in m.metrics_text()
