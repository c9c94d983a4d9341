"""The steps of `fleet demo`, each one checked, not just shown.

Every step waits on what the controller publishes (`/api/v1/status`, the same document
`fleet status` reads) or on the simulated API servers' stores, with a deadline; a step
that does not happen fails the demo (exit 1) with what was expected. The controller's
own logs go to a file, so the terminal shows only the story.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import structlog

from controllers.demo.sandbox import Sandbox, folder_files, synced, until
from controllers.logs import configure
from controllers.runtime.manager import Manager
from controllers.status.statusview import render_fleet, table

NEW_WORKLOAD = """\
# Added by `fleet demo`: a translation service for public text
apiVersion: aifleet.dev/v1alpha1
kind: Workload
metadata:
  name: demo-translator
  namespace: search-team
  labels: {project: demo, owner: demo.user, cost-centre: cc-6200}
spec:
  type: inference
  image: registry.internal/search/translator:1.0
  replicas: 2
  resources:
    gpu:
      count: 1
      flavours: [l40s-48gb, a100-80gb]
  placement:
    dataClass: public
  priority: 100
  inference:
    port: 8000
"""

NEW_ID = "search-team/demo-translator"


class Narrator:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.tty = out.isatty()

    def step(self, n: int, total: int, title: str) -> None:
        self.say(f"\n[{n}/{total}] {title}")

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            print(f"\r  {text}\x1b[K", end="", file=self.out, flush=True)

    def done(self, text: str) -> None:
        if self.tty:
            print("\r\x1b[K", end="", file=self.out)
        self.say(f"  ✓ {text}  ({time.perf_counter() - self.started:.1f} s)")


def _free_listen(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    with socket.socket() as s:
        try:
            s.bind((host or "127.0.0.1", int(port or 0)))
        except OSError:
            return f"{host or '127.0.0.1'}:0"
    return listen


def _placements(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {w["id"]: sorted(p["cluster"] for p in w["placements"]) for w in doc["workloads"]}


def _jurisdiction(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["jurisdiction"] for c in doc["clusters"]}


async def run_demo(fleet: Path, keep_running: bool, listen: str, workdir: Path | None,
                   log_file: Path | None) -> int:
    n = Narrator()
    root = workdir or Path(tempfile.mkdtemp(prefix="aifleet-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    log_path = log_file or root / "controller.log"
    configure("info", json=True)
    log_stream = log_path.open("a")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_stream))
    # aiohttp and asyncio report the simulated outage through stdlib logging: to the file.
    logging.basicConfig(stream=log_stream, level=logging.WARNING, force=True)
    box = Sandbox(root, folder_files(fleet))
    total = 6
    try:
        n.say(f"aifleet demo: fleet {fleet}, working in {root}")
        n.say(f"controller logs: {log_path}")
        sim = await box.start_clusters(job_seconds=3600.0, pod_start_seconds=0.2)
        n.say(f"started {len(sim.clusters)} simulated clusters: "
              f"{', '.join(sorted(sim.clusters))}")
        settings = box.settings(listen=_free_listen(listen), failover_grace=3.0,
                                unreachable_after=2.0, poll_interval=5.0,
                                webhook_secret="demo-secret")
        manager = Manager(settings)
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            n.say(f"controller up at http://127.0.0.1:{manager.port} "
                  f"(status, metrics, capacity)")
            await _rollout(n, manager, box, 1, total)
            await _kueue(n, box, 2, total)
            await _new_workload(n, manager, box, 3, total)
            await _drift(n, manager, box, 4, total)
            await _failover(n, manager, box, 5, total)
            n.step(6, total, "Final status (what `fleet status` shows)")
            n.say(render_fleet(manager.status()))
            n.say(f"\nDemo finished in {time.perf_counter() - n.started:.1f} s.")
            if keep_running:
                n.say(f"\nStill running. Try:\n"
                      f"  fleet status --server http://127.0.0.1:{manager.port}\n"
                      f"  curl http://127.0.0.1:{manager.port}/metrics\n"
                      f"  kubectl --kubeconfig {box.kubeconfig} --context "
                      f"{sorted(sim.clusters)[0]} get jobs,deployments -A\n"
                      f"Ctrl-C to stop.")
                await anyio.sleep_forever()
            tg.cancel_scope.cancel()
        return 0
    except TimeoutError as e:
        n.say(f"\n  ✗ demo step failed: {e} (see {log_path})")
        return 1
    finally:
        with anyio.CancelScope(shield=True):
            await box.close()
        log_stream.close()
        if workdir is None:  # also after Ctrl-C with --keep-running
            shutil.rmtree(root, ignore_errors=True)


async def _rollout(n: Narrator, m: Manager, box: Sandbox, step: int, total: int) -> None:
    n.step(step, total, "Initial rollout: every workload placed within its rules, applied")

    def done() -> bool:
        ok, want = synced(m.status(), box.first_commit)
        n.progress(f"synced {ok}/{want} placed workloads")
        return want > 0 and ok == want

    await until(done, 40, what="initial rollout")
    doc = m.status()
    where = _jurisdiction(doc)
    rows = []
    for w in doc["workloads"]:
        places = ", ".join(f"{p['cluster']}({where.get(p['cluster'], '?')}) "
                           f"{p['replicas']}x{p['flavour']}" for p in w["placements"])
        why = _diagnosis(w) if w["status"] != "Placed" else ""
        rows.append((w["id"], w["status"], places or why))
    n.say("\n".join("  " + line for line in table(("WORKLOAD", "STATUS", "WHERE"), rows)))
    ok, want = synced(doc)
    n.done(f"{ok}/{want} placed workloads live on "
           f"{len({p for ps in _placements(doc).values() for p in ps})} clusters")


async def _kueue(n: Narrator, box: Sandbox, step: int, total: int) -> None:
    """On a Kueue cluster: the multi-pod training job aifleet rendered with its team's
    queue-name was created suspended (Kueue's webhook), queued in the team's LocalQueue
    (applied by aifleet from the TeamQuotas), admitted by quota, and its pods each know
    their rank and rank 0's address."""
    from controllers.demo.faults import kueue_admission, kueue_training, rendezvous
    from fleet.render import workload_id_of_label

    n.step(step, total, "Kueue: a training job queued, admitted by quota, its ranks wired")
    assert box.sim is not None
    sim = box.sim
    found = kueue_training(sim)
    if found is None:
        n.done("no Kueue cluster runs a multi-pod training job in this fleet: skipped")
        return
    cluster, ns, label = found
    c = sim.clusters[cluster]
    took = await until(lambda: bool(kueue_admission(c, ns, label)[1]), 20,
                       what=f"{label} admitted by Kueue on {cluster}")
    queue, message = kueue_admission(c, ns, label)
    n.say(f"  {cluster}: {workload_id_of_label(label)} created suspended, queued in "
          f"LocalQueue {ns}/{queue}; Kueue: {message}")
    pods = await until_value(lambda: rendezvous(c, ns, label), 20,
                             what=f"{label}'s pods running")
    for rank, host, master in pods:
        n.say(f"    pod {host}: NODE_RANK={rank} MASTER_ADDR={master}")
    n.done(f"admitted {took:.1f} s into this step; {len(pods)} pods, "
           f"{len({m for _r, _h, m in pods})} rendezvous address")


async def until_value(get: Any, within: float, *, what: str) -> Any:
    """`until` for a check that returns what it found (falsy: not yet)."""
    box: list[Any] = []

    def ready() -> bool:
        box[:] = [get()]
        return bool(box[0])
    await until(ready, within, what=what)
    return box[0]


async def _new_workload(n: Narrator, m: Manager, box: Sandbox, step: int,
                        total: int) -> None:
    n.step(step, total, f"A new workload is committed: {NEW_ID}")
    commit = box.repo.commit({"workloads/search-team/demo-translator.yaml": NEW_WORKLOAD},
                             "Add demo-translator")
    n.say(f"  committed {commit[:12]}; webhook POST /hooks/git")
    await _post_hook(m)

    def placed() -> bool:
        doc = m.status()
        row = next((w for w in doc["workloads"] if w["id"] == NEW_ID), None)
        return (doc["source"]["appliedCommit"] == commit and row is not None
                and row["sync"] == "Synced")

    took = await until(placed, 20, what=f"{NEW_ID} placed and applied")
    row = next(w for w in m.status()["workloads"] if w["id"] == NEW_ID)
    n.done(f"{NEW_ID} placed on {', '.join(p['cluster'] for p in row['placements'])} "
           f"and applied {took:.1f} s after the push")


async def _post_hook(m: Manager) -> None:
    import hashlib
    import hmac

    import httpx

    body = b'{"ref": "refs/heads/main"}'
    secret = m.settings.webhook_secret
    assert secret is not None
    sig = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    async with httpx.AsyncClient() as c:
        r = await c.post(f"http://127.0.0.1:{m.port}/hooks/git", content=body,
                         headers={"X-Hub-Signature-256": f"sha256={sig}"})
        r.raise_for_status()


async def _drift(n: Narrator, m: Manager, box: Sandbox, step: int, total: int) -> None:
    from controllers.demo.faults import find_deployment, inject_replica_drift

    n.step(step, total, "Drift: someone scales a Deployment by hand (kubectl edit)")
    assert box.sim is not None
    cluster, ns, name, replicas = find_deployment(box.sim)
    await inject_replica_drift(box.sim, cluster, ns, name, replicas + 3)
    n.say(f"  {cluster}: deployment {ns}/{name} replicas {replicas} -> {replicas + 3} "
          "by field manager kubectl-edit")

    def healed() -> bool:
        return find_deployment(box.sim, (cluster, ns, name))[3] == replicas  # type: ignore[arg-type]

    took = await until(healed, 15, what="drift corrected")
    n.done(f"drift on spec.replicas detected and corrected in {took:.1f} s")


async def _failover(n: Narrator, m: Manager, box: Sandbox, step: int, total: int) -> None:
    assert box.sim is not None
    doc = m.status()
    before = _placements(doc)
    where = _jurisdiction(doc)
    counts: dict[str, int] = {}
    for clusters in before.values():
        for c in clusters:
            counts[c] = counts.get(c, 0) + 1
    victim = max(sorted(counts), key=lambda c: counts[c])
    affected = sorted(w for w, cs in before.items() if victim in cs)
    n.step(step, total, f"Cluster {victim} ({where[victim]}) goes down with "
                        f"{len(affected)} workloads")
    await box.sim.clusters[victim].down()

    def failed_over() -> bool:
        d = m.status()
        rows = {w["id"]: w for w in d["workloads"]}
        health = {c["name"]: c["health"] for c in d["clusters"]}
        n.progress(f"{victim} is {health.get(victim)}")
        for wid in affected:
            r = rows[wid]
            if r["status"] == "Placed" and (victim in [p["cluster"] for p in r["placements"]]
                                            or r["sync"] != "Synced"):
                return False
        return True

    took = await until(failed_over, 40, what=f"failover from {victim}")
    after = m.status()
    rows = {w["id"]: w for w in after["workloads"]}
    # A spread that lost a cluster keeps its surviving replicas (Placed, degraded): its
    # copy on the victim is not stale, the plan made after the return keeps it there.
    degraded = {w for w in affected if rows[w]["status"] == "Placed"
                and any(r.get("rule") == "Degraded" for r in rows[w]["reasons"])}
    table_rows = []
    for wid in affected:
        r = rows[wid]
        now = ", ".join(f"{p['cluster']}({where.get(p['cluster'], '?')})"
                        for p in r["placements"]) or "-"
        note = r["status"] if r["status"] != "Placed" else (
            "degraded: kept where it still runs" if wid in degraded else "failed over")
        if r["status"] != "Placed" and r["reasons"]:
            note += ": " + _diagnosis(r)
        table_rows.append((wid, str(r.get("dataClass") or "-"), f"{victim}({where[victim]})",
                           now, note))
    n.say("\n".join("  " + line for line in table(
        ("WORKLOAD", "DATA CLASS", "FROM", "TO", ""), table_rows)))
    n.done(f"{victim} Unreachable; its workloads re-placed within their residency in "
           f"{took:.1f} s")
    n.say(f"  {victim} comes back")
    await box.sim.clusters[victim].up()
    moved = {w for w in affected if rows[w]["status"] == "Placed"} - degraded

    def cleaned() -> bool:
        from controllers.demo.faults import workloads_on

        return not (workloads_on(box.sim, victim) & moved)  # type: ignore[arg-type]

    took = await until(cleaned, 30, what=f"stale copies removed from {victim}")
    n.done(f"stale copies on {victim} deleted first ({len(moved)} workloads), "
           f"{took:.1f} s after it returned")


def _diagnosis(w: dict[str, Any]) -> str:
    """The workload's own reason (the "0/N clusters: ..." line), whole: a cut count misleads."""
    reasons = w.get("reasons") or []
    own = [str(r["message"]) for r in reasons if not r.get("cluster")]
    return (own or [str(r["message"]) for r in reasons] or [""])[0]
