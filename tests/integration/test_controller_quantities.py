"""A real API server stores quantities canonical (`0.5` -> `500m`, `1024Mi` -> `1Gi`,
an integer GPU count -> `"8"`); the simulated clusters do the same. A controller that
compared spellings would see drift on every such object at every resync and re-apply
it forever (on a Job: delete and re-create it). Through the real controller: over five
resyncs, no drift, no extra API write, no Job re-created."""

from __future__ import annotations

from pathlib import Path

from controllers.demo.sandbox import until
from tests.support.controller import FAST, TRAIN, fast_settings, fleet_files, rolled_out, sandbox


def _odd_spellings() -> dict[str, str | bytes]:
    files = fleet_files()
    for path in ("workloads/nlp-team/train.yaml", "workloads/nlp-team/serve.yaml"):
        doc = files[path]
        assert isinstance(doc, str)
        files[path] = doc.replace("    gpu:\n", '    cpu: "0.5"\n    memory: 1024Mi\n    gpu:\n')
    return files


async def test_canonical_quantities_are_never_drift_over_five_resyncs(tmp_path: Path) -> None:
    async with sandbox(tmp_path, _odd_spellings()) as box, box.controller(
            fast_settings(box, resync_interval=0.3), adapter_options=FAST) as m:
        placed = await rolled_out(m, box)
        train_on = placed[TRAIN][0]
        assert box.sim is not None
        stored = box.sim.clusters[train_on].objects("Job", "nlp-team")
        job = next(j for j in stored if j["metadata"]["name"] == "train")
        requests = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert (requests["cpu"], requests["memory"]) == ("500m", "1Gi")  # as kube stores it
        assert requests["nvidia.com/gpu"] == "8"
        uid = job["metadata"]["uid"]
        writes = {n: a.stats.calls["apply"] + a.stats.calls["delete"]
                  for n, a in m.adapters.items()}
        runs = m.reconciler.totals.runs
        await until(lambda: m.reconciler.totals.runs >= runs + 5 * len(m.adapters), 60,
                    what="five resyncs of every cluster")
        assert m.drift == []
        assert all(not a.drift_log for a in m.adapters.values())
        assert {n: a.stats.calls["apply"] + a.stats.calls["delete"]
                for n, a in m.adapters.items()} == writes
        again = box.sim.clusters[train_on].objects("Job", "nlp-team")
        assert next(j for j in again if j["metadata"]["name"] == "train")["metadata"][
            "uid"] == uid
