"""Identity, fencing, TLS and secrets, through the real controller on simulated clusters.

- Bad TLS material in a cluster's kubeconfig (a CA, client certificate or key that is
  not PEM) makes that cluster unreachable with a condition; the controller runs on.
- A `${VAR}` in a Cluster file's kubeconfig path never reads a secret from the
  controller's environment, and the repo's credentials never reach the mirror's config.
- Two Cluster files on the same API server are both refused: nothing written there.
- A tenant's `aifleet.dev/lease-generation` annotation never makes the leader refuse,
  and one failed object does not stop prune of the cluster's other workloads.
- A keyless `{operator: Exists}` toleration does not pass the fleet's own taints.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
import yaml

from clusters.sim import tls
from controllers.demo.sandbox import Sandbox, synced, until
from controllers.runtime.manager import Manager
from tests.fleetdocs import cluster, workload
from tests.gitserver import git_http_server
from tests.support.controller import FAST, fast_settings, fleet_files, rolled_out, sandbox, where


def with_connection(doc: str, kubeconfig: str, context: str) -> str:
    """A Cluster document (`tests.fleetdocs.cluster`) with an explicit connection."""
    return doc + f"  connection: {{kubeconfig: '{kubeconfig}', context: {context}}}\n"


def extra_cluster(name: str, jurisdiction: str = "US") -> str:
    return cluster(name, jurisdiction, (("h100-80gb", 32, 8),))


def conditions(m: Manager, kind: str) -> list[str]:
    return [c["message"] for c in m.status()["source"]["conditions"] if c["type"] == kind]


async def status_over_http(m: Manager) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{m.port}/api/v1/status")
        r.raise_for_status()
        return r.text


# --------------------------------------------------------------------------- finding 6

BAD_TLS = ("bad-ca-file", "bad-ca-data", "bad-cert", "bad-key")


def _bad_tls_kubeconfig(box: Sandbox, name: str) -> Path:
    """A copy of the sandbox's kubeconfig whose `name` context has broken TLS material."""
    doc: dict[str, Any] = yaml.safe_load(box.kubeconfig.read_text())
    entry = next(c["cluster"] for c in doc["clusters"] if c["name"] == name)
    user = next(u["user"] for u in doc["users"] if u["name"] == f"{name}-admin")
    garbage = base64.b64encode(b"this is not PEM").decode()
    material = tls.make_tls()
    if name == "bad-ca-file":
        ca = box.root / "not-a-ca.crt"
        ca.write_text("this is not PEM\n")
        del entry["certificate-authority-data"]
        entry["certificate-authority"] = str(ca)
    elif name == "bad-ca-data":
        entry["certificate-authority-data"] = garbage
    elif name == "bad-cert":
        user["client-certificate-data"] = garbage
        user["client-key-data"] = base64.b64encode(material.key_pem).decode()
    else:
        user["client-certificate-data"] = base64.b64encode(material.cert_pem).decode()
        user["client-key-data"] = garbage
    path = box.root / f"kubeconfig-{name}"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_bad_tls_material_makes_a_cluster_unreachable_and_the_controller_runs_on(
        tmp_path: Path) -> None:
    files = fleet_files()
    for name in BAD_TLS:
        files[f"clusters/{name}.yaml"] = extra_cluster(name)
    async with sandbox(tmp_path, files) as box:
        for name in BAD_TLS:  # the Cluster files point at the broken copies
            path = _bad_tls_kubeconfig(box, name)
            files[f"clusters/{name}.yaml"] = with_connection(extra_cluster(name), str(path),
                                                             name)
        commit = box.repo.commit(files, "clusters with broken TLS material")
        async with box.controller(fast_settings(box), adapter_options=FAST) as m:
            await until(lambda: synced(m.status(), commit) == (3, 3), 20,
                        what="rollout on the good clusters")
            placed = where(m.status())
            failed = conditions(m, "ClusterConnectionFailed")
            for name in BAD_TLS:
                assert any(msg.startswith(f"{name}: ") and "TLS material" in msg
                           for msg in failed), (name, failed)
                assert name not in m.adapters
            noted = {e["cluster"] for e in m.feed.document()["events"]
                     if e["event"] == "ClusterConnectionFailed"}
            assert noted >= set(BAD_TLS)  # the page's events timeline says so too
            assert not any(c in BAD_TLS for cs in placed.values() for c in cs)
            assert json.loads(await status_over_http(m))["workloads"]  # still serving


# -------------------------------------------------------------------------- finding 13

SECRET = "whsec-0123456789-do-not-leak"
TOKEN = "ghp-forge-token-do-not-leak"


async def test_a_path_variable_never_reads_a_secret_and_the_mirror_keeps_no_credential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_WEBHOOK_SECRET", SECRET)
    files = fleet_files()
    files["clusters/leaky.yaml"] = with_connection(
        extra_cluster("leaky"), "${FLEET_WEBHOOK_SECRET}/kubeconfig", "leaky")
    async with sandbox(tmp_path, files) as box:
        with git_http_server(tmp_path, "bot", TOKEN) as base, \
                structlog.testing.capture_logs() as logs:
            settings = fast_settings(box, repo=f"http://bot:{TOKEN}@{base[7:]}/fleet",
                                     webhook_secret=SECRET)
            async with box.controller(settings, adapter_options=FAST) as m:
                await rolled_out(m, box)  # fetched over HTTP with the credentials
                failed = conditions(m, "ClusterConnectionFailed")
                assert any(msg.startswith("leaky: ") and "${FLEET_WEBHOOK_SECRET}" in msg
                           and "may not be used" in msg for msg in failed), failed
                served = await status_over_http(m)
                errors = json.dumps(m.connect_errors)
        assert any(e.get("event") == "cluster_connect_failed" and e.get("cluster") == "leaky"
                   for e in logs)  # the logs were captured, and said it
        for secret in (SECRET, TOKEN):
            assert secret not in served
            assert secret not in errors
            assert secret not in repr(logs)
        mirror = settings.state_dir / "mirror.git"
        config = (mirror / "config").read_text()
        assert TOKEN not in config and "bot@" not in config
        assert stat.S_IMODE((mirror / "config").stat().st_mode) == 0o600
        assert stat.S_IMODE(mirror.stat().st_mode) == 0o700


# ------------------------------------------------------------------------ tolerations

HOLD = "  taints:\n    - {key: aifleet.dev/hold, effect: NoSchedule}\n"


async def test_a_keyless_toleration_does_not_pass_the_fleets_own_taints(
        tmp_path: Path) -> None:
    files = fleet_files()
    for path, doc in list(files.items()):
        if path.startswith("clusters/"):
            files[path] = str(doc) + HOLD  # every cluster on hold
    files["workloads/nlp-team/sneaky.yaml"] = workload(
        "sneaky", data_class="public",
        extra_spec="    tolerations: [{operator: Exists}]\n")
    files["workloads/nlp-team/allowed.yaml"] = workload(
        "allowed", data_class="public",
        extra_spec="    tolerations: [{key: aifleet.dev/hold, operator: Exists}]\n")
    async with sandbox(tmp_path, files) as box, \
            box.controller(fast_settings(box), adapter_options=FAST) as m:
        await until(lambda: m.desired.plan is not None, 20, what="first plan")
        status = {w["id"]: w for w in m.status()["workloads"]}
        assert status["nlp-team/allowed"]["status"] == "Placed"
        assert status["nlp-team/sneaky"]["status"] == "Pending"
        assert "aifleet.dev/hold" in json.dumps(status["nlp-team/sneaky"])
        assert box.sim is not None
        assert not [o for c in box.sim.clusters.values() for o in c.objects("Job")
                    if o["metadata"]["name"] == "sneaky"]


# --------------------------------------------------------------------------- finding 7

def _pinned_rank() -> str:
    return workload("rank", "search-team", data_class="public",
                    extra_spec="    clusters: [us-east-1]\n").replace("  replicas: 2\n",
                                                                       "  replicas: 1\n")


def _objects(box: Sandbox, cluster: str, name: str) -> list[tuple[str, str]]:
    assert box.sim is not None
    return sorted((o["kind"], o["metadata"]["uid"])
                  for kind in ("Job", "Deployment", "Service")
                  for o in box.sim.clusters[cluster].objects(kind)
                  if o["metadata"]["name"] == name)


async def test_two_cluster_files_on_one_server_are_both_refused_and_nothing_is_deleted(
        tmp_path: Path) -> None:
    files = fleet_files()
    files["workloads/search-team/rank.yaml"] = _pinned_rank()
    async with sandbox(tmp_path, files) as box, \
            box.controller(fast_settings(box), adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        assert placed["search-team/rank"] == ["us-east-1"]
        running = _objects(box, "us-east-1", "rank")
        assert running
        # de-fra-2 is relabelled to reach the US cluster: a mislabelled twin.
        twin = with_connection(extra_cluster("de-fra-2", "DE"), str(box.kubeconfig),
                               "us-east-1")
        commit = box.repo.commit({"clusters/de-fra-2.yaml": twin}, "de-fra-2 -> US")
        m.trigger_fetch()
        await until(lambda: m.applied_commit == commit, 20, what="twin commit applied")
        failed = conditions(m, "ClusterConnectionFailed")
        for name in ("de-fra-2", "us-east-1"):
            assert any(msg.startswith(f"{name}: refused: clusters/de-fra-2.yaml and "
                                      "clusters/us-east-1.yaml reach the same API server")
                       for msg in failed), failed
            assert name not in m.adapters
        # A later commit is planned and applied too; still nothing deleted there.
        later = box.repo.commit({"workloads/nlp-team/serve.yaml": None}, "drop serve")
        m.trigger_fetch()
        await until(lambda: m.applied_commit == later, 20, what="later commit applied")
        assert _objects(box, "us-east-1", "rank") == running
        rank = next(w for w in m.status()["workloads"] if w["id"] == "search-team/rank")
        assert rank["sync"] != "Synced"  # nobody knows: it is not said to be
        plan = m.desired.plan
        assert plan is not None
        assert not any(a.cluster == "de-fra-2" for wp in plan.workloads.values()
                       for a in wp.assignments)


# -------------------------------------------------------------------------- finding 10

ROOT = Path(__file__).resolve().parents[2]
US = "us-east-1"


def _pinned(name: str, team: str, replicas: int = 1) -> str:
    return workload(name, team, data_class="public", wtype="inference",
                    extra_spec=f"    clusters: [{US}]\n").replace(
        "  replicas: 2\n", f"  replicas: {replicas}\n").replace(
        "      count: 8\n", "      count: 1\n")


def _live(box: Sandbox, kind: str, name: str) -> dict[str, Any] | None:
    assert box.sim is not None
    return next((o for o in box.sim.clusters[US].objects(kind)
                 if o["metadata"]["name"] == name), None)


def _sync(m: Manager, wid: str) -> str:
    return str(next(w for w in m.status()["workloads"] if w["id"] == wid)["sync"])


async def test_a_tenants_generation_annotation_never_freezes_the_leader_nor_prune(
        tmp_path: Path) -> None:
    kubectl = ROOT / ".cache" / "bin" / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl not found: run `make kubectl`")
    files = fleet_files()
    files["workloads/nlp-team/serve.yaml"] = _pinned("serve", "nlp-team")
    files["workloads/search-team/rank.yaml"] = _pinned("rank", "search-team")
    files["workloads/search-team/index.yaml"] = _pinned("index", "search-team")
    async with sandbox(tmp_path, files, home=True) as box:
        settings = fast_settings(box, leader_elect=True, identity="replica-a",
                                 home=True)
        async with box.controller(settings, adapter_options=FAST, lease_duration=2.0) as m:
            await until(lambda: synced(m.status(), box.first_commit) == (4, 4), 20,
                        what="first rollout")
            # A tenant who may edit its Deployment claims a leader generation of 999.
            done = await anyio.run_process(
                [str(kubectl), "--kubeconfig", str(box.kubeconfig), "--context", US,
                 "-n", "nlp-team", "annotate", "deployment", "serve",
                 "aifleet.dev/lease-generation=999", "--overwrite"], check=False)
            assert done.returncode == 0, done.stderr
            adapter = m.adapters[US]
            await until(lambda: any(
                (o["metadata"].get("annotations") or {}).get("aifleet.dev/lease-generation")
                == "999" for o in adapter.workload_objects("nlp-team.serve")), 10,
                what="the controller saw the annotation")
            commit = box.repo.commit({
                "workloads/nlp-team/serve.yaml": _pinned("serve", "nlp-team", replicas=2),
                "workloads/search-team/rank.yaml": None}, "serve x2, rank gone")
            m.trigger_fetch()
            await until(lambda: synced(m.status(), commit) == (3, 3), 20,
                        what="the leader applied the commit")
            dep = _live(box, "Deployment", "serve")
            assert dep is not None and dep["spec"]["replicas"] == 2
            assert m.elector is not None
            assert dep["metadata"]["annotations"]["aifleet.dev/lease-generation"] == \
                str(m.elector.generation)  # the tenant's value overwritten
            assert _live(box, "Deployment", "rank") is None  # pruned

            # One workload's writes fail: the others on the cluster are still pruned.
            assert box.sim is not None
            box.sim.clusters[US].faults.fail_next(
                10_000, 503, prefix="/apis/apps/v1/namespaces/nlp-team/deployments/serve")
            failing = box.repo.commit({
                "workloads/nlp-team/serve.yaml": _pinned("serve", "nlp-team", replicas=3),
                "workloads/search-team/index.yaml": None}, "serve x3, index gone")
            m.trigger_fetch()
            # The pass is over once it has recorded serve's failure: the prune runs after
            # the applies and before that record (`clusters.apply.Applier.execute`), so
            # index being gone from the server says nothing yet about serve's status.
            # (`m.applied_commit` stays the last one applied everywhere: it never is this.)
            await until(lambda: m.desired.head == failing and _sync(m, "nlp-team/serve")
                        == "Failed", 20, what="the pass that failed serve recorded")
            assert _live(box, "Deployment", "index") is None  # pruned although serve fails
            dep = _live(box, "Deployment", "serve")
            assert dep is not None and dep["spec"]["replicas"] == 2  # kept, not pruned
