"""`whatif --down REGION` predicts what the controller really does when that region goes."""

from __future__ import annotations

from pathlib import Path

from controllers.demo.sandbox import synced, until
from fleet.capacity import declared_capacity
from fleet.whatif import Scenario, whatif
from tests.support.controller import FAST, TRAIN, fast_settings, rolled_out, sandbox, where
from workloads.loader import read_fleet


async def test_a_region_outage_ends_where_whatif_said(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, failover_grace=1.0), adapter_options=FAST) as m:
        await rolled_out(m, box)
        spec = read_fleet(box.repo.path, box.first_commit).spec
        capacity = declared_capacity(spec.clusters)
        now = where(m.status())
        # the premise: planning from the repo gives what the controller placed
        assert {wid: sorted(p.clusters) for wid, p in
                whatif(spec, capacity, Scenario()).after.workloads.items()} == now

        lost = now[TRAIN][0]
        region = spec.clusters[lost].spec.region  # type: ignore[index]
        predicted = whatif(spec, capacity, Scenario(down=(region,)))
        expected = {wid: sorted(p.clusters) for wid, p in predicted.after.workloads.items()}
        assert TRAIN in {c.workload for c in predicted.changes}
        assert lost not in expected[TRAIN] and expected[TRAIN] != []

        assert box.sim is not None
        await box.sim.clusters[lost].down()
        await until(lambda: where(m.status()) == expected, 30,
                    what=f"the controller's placement to match whatif {expected}")
        # and it stays there: a settled decision, not a state passed through
        await until(lambda: synced(m.status())[0] == synced(m.status())[1], 20,
                    what="moved workloads synced")
        assert where(m.status()) == expected
