"""Residency first: a copy whose data the policy in force does not allow on its cluster
is deleted before anything else, whatever would otherwise hold the prune back.

Found by the long chaos run (seed 2, step 72): a commit (allowed) deleted most
workloads while a relabel made a cluster's EU workloads unwelcome there; the new plan
placed nothing anywhere, the apply layer refused to prune a cluster empty ("an empty
render is more often a bug than an intent"), and eu-personal data went on running on a
cluster now labelled US while the commit counted as applied. The real controller on
simulated clusters.
"""

from __future__ import annotations

from pathlib import Path

from controllers.demo.faults import workloads_on
from controllers.demo.sandbox import until
from tests.fleetdocs import cluster
from tests.support.controller import (
    CLUSTERS,
    FAST,
    TRAIN,
    fast_settings,
    rolled_out,
    sandbox,
)


async def test_a_copy_residency_forbids_goes_even_when_the_plan_places_nothing(
        tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box), adapter_options=FAST) as m:
        sim = box.sim
        assert sim is not None
        placed = await rolled_out(m, box)
        here = placed[TRAIN][0]  # eu-personal: in DE or FR
        # Both EU clusters are in the US now, and the two public workloads go (allowed):
        # the eu-personal one may run nowhere (Pending), nothing is placed anywhere.
        # Without the allowance that empty plan is refused as a whole (DeletionsHeld,
        # `test_a_refused_prune_of_everything_shows_in_status`).
        gpus = (("h100-80gb", 32, 8),)
        changes: dict[str, str | bytes | None] = {
            f"clusters/{name}.yaml": cluster(name, "US", gpus)
            for name, j in CLUSTERS.items() if j != "US"}
        changes["workloads/nlp-team/serve.yaml"] = None
        changes["workloads/search-team/rank.yaml"] = None
        head = box.repo.commit(changes, "EU clusters are US clusters now; two services go"
                               "\n\nFleet-Allow: mass-deletion")
        m.trigger_fetch()
        await until(lambda: m.desired.head == head and m.desired.plan is not None
                    and m.desired.plan.commit == head, 20, what="the commit planned")
        assert m.desired.plan is not None
        assert {wp.status for wp in m.desired.plan.workloads.values()} == {"Pending"}
        await until(lambda: TRAIN not in workloads_on(sim, here), 20,
                    what="the eu-personal copy deleted from the US-labelled cluster")
        assert all(TRAIN not in workloads_on(sim, c) for c in CLUSTERS)
